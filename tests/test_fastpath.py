"""The hand-written backward pass equals autograd for every activation and loss."""

import pytest
import torch
from torch import nn

from skmlp import _losses as L
from skmlp._fastpath import plan
from skmlp._network import build_mlp

LOSSES = [
    (L.REGRESSION["squared_error"], 3, "real"),
    (L.REGRESSION["absolute_error"], 1, "real"),
    (L.REGRESSION["huber"], 2, "real"),
    (L.REGRESSION["poisson"], 2, "count"),
    (L.BINARY, 1, "binary"),
    (L.BINARY, 3, "binary"),
    (L.MULTICLASS, 4, "class"),
]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity", "gelu", "silu", "leaky_relu", "elu"]


def _target(kind, n, k, gen):
    if kind == "class":
        return torch.randint(0, k, (n,), generator=gen)
    if kind == "binary":
        return torch.randint(0, 2, (n, k), generator=gen).double()
    if kind == "count":
        return torch.rand(n, k, generator=gen, dtype=torch.float64) * 3
    return torch.randn(n, k, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss, k, kind", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_autograd(activation, loss, k, kind, weighted):
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(5, (7, 6), k, activation=activation, dtype=torch.float64, generator=gen)
    X = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    y = _target(kind, 11, k, gen)
    w = torch.rand(11, generator=gen, dtype=torch.float64) if weighted else None

    per_sample = loss.value(module(X), y)
    expected = per_sample.mean() if w is None else (per_sample * w).sum() / w.sum()
    expected.backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None

    value = plan(module, loss)(X, y, w)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
    for ours, ref in zip((p.grad for p in module.parameters()), reference):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


def test_dropout_mask_is_applied_in_backward():
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(4, (16,), 1, dropout=0.5, dtype=torch.float64, generator=gen)
    X = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 1, generator=gen, dtype=torch.float64)
    loss = L.REGRESSION["squared_error"]
    module[2].generator = torch.Generator().manual_seed(3)
    loss.value(module(X), y).mean().backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    module[2].generator = torch.Generator().manual_seed(3)  # same masks
    plan(module, loss)(X, y, None)
    for ours, ref in zip((p.grad for p in module.parameters()), reference):
        torch.testing.assert_close(ours, ref)


def test_unsupported_modules_fall_back_to_autograd():
    gen = torch.Generator().manual_seed(0)
    with_norm = build_mlp(4, (8,), 2, batch_norm=True, generator=gen)
    assert plan(with_norm, L.MULTICLASS) is None
    assert plan(nn.Sequential(nn.Linear(3, 2), nn.Softplus()), L.BINARY) is None
    assert plan(build_mlp(4, (8,), 2, generator=gen), lambda out, y: out.sum(1)) is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_inference_forward_equals_module_and_leaves_input(activation):
    from skmlp._fastpath import inference

    gen = torch.Generator().manual_seed(0)
    module = build_mlp(5, (7, 6), 3, activation=activation, dropout=0.3,
                       dtype=torch.float64, generator=gen).eval()
    X = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    before = X.clone()
    with torch.inference_mode():
        torch.testing.assert_close(inference(module)(X), module(X), rtol=0, atol=0)
    assert torch.equal(X, before)
    with_norm = build_mlp(4, (8,), 2, batch_norm=True, generator=gen)
    assert inference(with_norm) is with_norm
