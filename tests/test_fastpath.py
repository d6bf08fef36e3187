"""The hand-written backward pass equals autograd for every activation and loss."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import build_mlp

from skmlp._fastpath import plan
from skmlp._heads import HEADS
from skmlp._network import ACTIVATIONS, has_gradient

LOSSES = [
    (HEADS["squared_error"].loss, 3, "real"),
    (HEADS["absolute_error"].loss, 1, "real"),
    (HEADS["huber"].loss, 2, "real"),
    (HEADS["poisson"].loss, 2, "count"),
    (HEADS["binary"].loss, 1, "binary"),
    (HEADS["multilabel"].loss, 3, "binary"),
    (HEADS["multiclass"].loss, 4, "class"),
]


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
@pytest.mark.parametrize("batch_norm", [False, True], ids=["fast", "autograd-blocks"])
def test_gradients_match_autograd(activation, loss, k, kind, weighted, batch_norm):
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(5, (7, 6), k, activation=activation, dtype=torch.float64, generator=gen,
                       batch_norm=batch_norm)
    X = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    y = _target(kind, 11, k, gen)
    w = torch.rand(11, generator=gen, dtype=torch.float64) if weighted else None

    per_sample = loss.value(module(X), y)
    expected = per_sample.mean() if w is None else (per_sample * w).sum() / w.sum()
    expected.backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None

    value = plan(module, loss)((X,), y, w)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
    for ours, ref in zip((p.grad for p in module.parameters()), reference):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


def test_dropout_mask_is_applied_in_backward():
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(4, (16,), 1, dropout=0.5, dtype=torch.float64, generator=gen)
    X = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 1, generator=gen, dtype=torch.float64)
    loss = HEADS["squared_error"].loss
    module.blocks[0].dropout.generator = torch.Generator().manual_seed(3)
    loss.value(module(X), y).mean().backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    module.blocks[0].dropout.generator = torch.Generator().manual_seed(3)  # same masks
    plan(module, loss)((X,), y, None)
    for ours, ref in zip((p.grad for p in module.parameters()), reference):
        torch.testing.assert_close(ours, ref)


def test_unsupported_modules_fall_back_to_autograd():
    gen = torch.Generator().manual_seed(0)
    with_norm = build_mlp(4, (8,), 2, batch_norm=True, generator=gen)
    assert not with_norm.blocks[0].fast  # its block runs under autograd inside the plan
    assert plan(with_norm, HEADS["multiclass"].loss) is not None
    assert plan(nn.Sequential(nn.Linear(3, 2), nn.Softplus()), HEADS["binary"].loss) is None
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
    with_norm = build_mlp(4, (8,), 2, batch_norm=True, generator=gen).eval()
    X4 = torch.randn(6, 4, generator=gen)
    with torch.inference_mode():
        torch.testing.assert_close(inference(with_norm)(X4), with_norm(X4), rtol=0, atol=0)
    other = nn.Sequential(nn.Linear(3, 2))
    assert inference(other) is other


# --------------------------------------------------- the bound behind the end-of-fit check
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_output_bound_bounds_every_pre_activation(activation, seed):
    from skmlp._fastpath import output_bound

    gen = torch.Generator().manual_seed(seed)
    module = build_mlp(4, (6, 5), 3, activation=activation, dtype=torch.float64,
                       generator=gen).eval()
    with torch.no_grad():  # weights and inputs over several orders of magnitude
        for p in module.parameters():
            p.mul_(10 ** (4 * torch.rand((), generator=gen, dtype=torch.float64) - 1))
    scale = 10 ** (4 * torch.rand((), generator=gen, dtype=torch.float64) - 2)
    X = (2 * torch.rand(300, 4, generator=gen, dtype=torch.float64) - 1) * scale
    # the corners that maximise the first layer's rows are the worst inputs there
    X = torch.cat([X, torch.sign(module.blocks[0].linear.weight.detach()) * X.abs().max()])
    bound = output_bound(module, float(X.abs().max()))
    worst = 0.0

    def record(layer, inputs, output):
        nonlocal worst
        worst = max(worst, float(output.abs().max()))

    hooks = [m.register_forward_hook(record) for m in module.modules()
             if isinstance(m, nn.Linear)]
    with torch.no_grad():
        module(X)
    for hook in hooks:
        hook.remove()
    assert worst <= bound * (1 + 1e-12)
    assert output_bound(build_mlp(4, (8,), 2, batch_norm=True, generator=gen), 1.0) is None


def test_end_of_fit_check_skips_the_data_pass_only_when_the_bound_proves_it(monkeypatch):
    from skmlp import _training
    from skmlp._data import TensorRows

    gen = torch.Generator().manual_seed(0)
    module = build_mlp(3, (8,), 1, generator=gen).eval()  # float32
    data = (TensorRows(torch.randn(50, 3, generator=gen), torch.float32, "cpu"),
            torch.randn(50, 1, generator=gen), None)
    loss = HEADS["squared_error"].loss
    passes = []
    real = _training.inference
    monkeypatch.setattr(_training, "inference", lambda m: passes.append(1) or real(m))

    assert _training.provably_finite(module, loss, data)
    assert _training.outputs_finite(module, loss, data, 50, 10) and passes == []
    with torch.no_grad():
        module.blocks[0].linear.weight.fill_(1e12)  # outputs ~1e13: not proven, but finite
    assert not _training.provably_finite(module, loss, data)
    assert _training.outputs_finite(module, loss, data, 50, 10) and passes == [1]
    with torch.no_grad():
        module.blocks[0].linear.weight.fill_(1e30)  # squared outputs overflow float32
    assert not _training.outputs_finite(module, loss, data, 50, 10) and passes == [1, 1]
    with torch.no_grad():
        module.blocks[0].linear.weight.fill_(0.1)
        module.output.bias.fill_(float("nan"))
    assert not _training.provably_finite(module, loss, data)
    assert not _training.outputs_finite(module, loss, data, 50, 10)
    # exp() of the log-mean overflows long before squares do: poisson's bound is tighter
    with torch.no_grad():
        module.output.bias.fill_(100.0)
    assert _training.provably_finite(module, loss, data)
    assert not _training.provably_finite(module, HEADS["poisson"].loss, data)


def test_end_of_fit_bound_sees_duplicate_sparse_entries_and_poisson_targets():
    import numpy as np
    import scipy.sparse as sp

    from skmlp._data import SparseRows, TensorRows
    from skmlp._training import outputs_finite, provably_finite

    poisson = HEADS["poisson"].loss
    module = build_mlp(1, (4,), 1, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        module.blocks[0].linear.weight.fill_(1.0)
        module.blocks[0].linear.bias.zero_()
        module.output.weight.fill_(0.25)
        module.output.bias.zero_()
    # one stored entry repeated 3 times (a non-canonical CSR matrix): densified, x = 90,
    # so the output is 90 and exp(90) overflows float32; each stored value alone is 30
    X = sp.csr_matrix((np.full(3, 30.0), np.zeros(3, int), np.array([0, 3])), shape=(1, 1))
    data = (SparseRows(X, torch.float32, "cpu"), torch.ones(1, 1), None)
    assert not provably_finite(module, poisson, data)
    assert not outputs_finite(module, poisson, data, 1, 1)
    # large count targets need only the general bound, not poisson's tighter output bound
    small = (TensorRows(torch.full((3, 1), 0.1), torch.float32, "cpu"),
             torch.full((3, 1), 1000.0), None)
    assert provably_finite(module, poisson, small)


# ------------------------------------------------------------ the activation registry
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_registry_each_activation_is_fast_or_autograd_only(name):
    """Every activation either has a gradient kernel that the fast path uses
    (checked against autograd above, for every entry of the table) or is
    autograd-only: its blocks then run under autograd inside the plan."""
    entry = ACTIVATIONS[name]
    block = build_mlp(3, (4,), 1, activation=name).blocks[0]
    assert block.fast == has_gradient(entry)
    assert isinstance(block.act, entry.module)
    if entry.forward is not None:
        z = torch.linspace(-5, 5, 101, dtype=torch.float64)
        torch.testing.assert_close(entry.forward(z), entry.module()(z))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_registry_bound_assumption_holds(name):
    """The end-of-fit bound trusts each entry's ``bound``: check it on a wide grid."""
    entry = ACTIVATIONS[name]
    z = torch.cat([torch.linspace(-50, 50, 20001, dtype=torch.float64),
                   torch.logspace(-6, 30, 400, dtype=torch.float64),
                   -torch.logspace(-6, 30, 400, dtype=torch.float64)])
    h = entry.module()(z)
    if entry.bound == "unit":
        assert h.abs().max() <= 1.0
    elif entry.bound == "linear":
        assert torch.all(h.abs() <= torch.maximum(z.abs(), torch.ones_like(z)))
    else:
        assert entry.bound is None


def test_an_autograd_only_activation_trains_through_the_plan(monkeypatch):
    """A table entry without a gradient kernel (here: softplus, added for the
    test) is autograd-only: its blocks are not fast, gradients still match."""
    from skmlp import _network

    softplus = _network.Activation(nn.Softplus, F.softplus, None, bound=None)
    monkeypatch.setitem(_network.ACTIVATIONS, "softplus", softplus)
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(5, (7, 6), 2, activation="softplus", dtype=torch.float64, generator=gen)
    assert not any(b.fast for b in module.blocks)
    X = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(11, 2, generator=gen, dtype=torch.float64)
    loss = HEADS["squared_error"].loss
    loss.value(module(X), y).mean().backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    plan(module, loss)((X,), y, None)
    for ours, ref in zip((p.grad for p in module.parameters()), reference):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    from skmlp._fastpath import output_bound
    assert output_bound(module.eval(), 1.0) is None  # no bound declared: the data pass runs


@pytest.mark.parametrize("head, k_out", [("multiclass", 4), ("binary", 1), ("poisson", 2)])
@pytest.mark.parametrize("table", [None, "periodic", "periodic+piecewise"],
                         ids=["plain", "table-periodic", "table-both"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hidden", [(6, 5), ()], ids=["hidden", "linear"])
def test_ensemble_gradients_match_autograd(head, k_out, table, weighted, hidden):
    from skmlp._spec import NetworkSpec

    # bins: 3, 1 and 0 (a constant column) of the 3 columns, so the padding is there
    extra = dict(cardinalities=(15,), scaling="standard", shift=(0.0,) * 3, scale=(1.0,) * 3,
                 numeric_embedding=table,
                 bins=((-1.0, -0.2, 0.4, 1.5), (0.0, 0.5), (0.3,))) if table else {}
    spec = NetworkSpec(3, hidden, k_out, head, dtype="float64", n_ensemble=3, **extra)
    gen = torch.Generator().manual_seed(0)
    module = spec.build(gen)
    xb = (torch.randn(10, 3, generator=gen, dtype=torch.float64),)
    if table:
        xb += (torch.randint(0, 15, (10, 1), generator=gen),)
    kind = {"multiclass": "class", "binary": "binary", "poisson": "count"}[head]
    y = _target(kind, 10, k_out, gen)
    w = torch.rand(10, generator=gen, dtype=torch.float64) if weighted else None
    loss = spec.head.loss
    per_sample = loss(module(*xb), y)  # the members' mean, per row
    expected = per_sample.mean() if w is None else (per_sample * w).sum() / w.sum()
    expected.backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    value = plan(module, loss)(xb, y, w)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
    for (name, p), ref in zip(module.named_parameters(), reference):
        torch.testing.assert_close(p.grad, ref, rtol=1e-9, atol=1e-12, msg=name)


def test_prepared_table_rows_train_as_batches_prepared_one_at_a_time(monkeypatch):
    # fit fills, flags and scales the numeric columns of all training rows once
    # (PreparedRows) instead of per batch: the same fit, to float rounding
    import numpy as np
    import pandas as pd

    from skmlp import MLPTorchClassifier
    from skmlp import _fastpath

    rng = np.random.RandomState(0)
    X = pd.DataFrame({"a": rng.randn(300), "b": rng.randn(300) * 5,
                      "c": rng.choice(["x", "y", "z"], 300)})
    X.loc[::7, "a"] = np.nan
    y = (X["b"] > 0).to_numpy() ^ (X["c"] == "x").to_numpy()
    kw = dict(hidden_dims=(16,), max_iter=5, batch_size=32, missing="indicator",
              scaling="robust", numeric_embedding="periodic", n_ensemble=2, random_state=0)
    calls = []
    original = _fastpath._InputStage.prepare

    def spy(self, rows):
        out = original(self, rows)
        calls.append(out)
        return out

    monkeypatch.setattr(_fastpath._InputStage, "prepare", spy)
    prepared = MLPTorchClassifier(**kw).fit(X, y)
    assert calls and isinstance(calls[0], _fastpath.PreparedRows)
    monkeypatch.setattr(_fastpath._InputStage, "prepare", lambda self, rows: None)
    per_batch = MLPTorchClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(prepared.predict_proba(X), per_batch.predict_proba(X),
                               rtol=1e-9, atol=1e-12)
