"""The pure torch network: layer order, initialisation, dropout, decay groups."""

import math

import pytest
import torch
from torch import nn

from skmlp._network import GeneratorDropout, build_mlp, decay_groups, set_dropout_generator


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_layer_order_with_batch_norm_and_dropout():
    module = build_mlp(3, (5, 4), 2, activation="tanh", dropout=0.2, batch_norm=True,
                       generator=_gen())
    kinds = [type(layer) for layer in module]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh, GeneratorDropout,
                     nn.Linear, nn.BatchNorm1d, nn.Tanh, GeneratorDropout, nn.Linear]
    assert [m.p for m in module if isinstance(m, GeneratorDropout)] == [0.2, 0.2]
    assert module[-1].out_features == 2


def test_no_hidden_layers_is_linear():
    module = build_mlp(3, (), 2, generator=_gen())
    assert len(module) == 1 and isinstance(module[0], nn.Linear)


def test_glorot_init_from_local_generator_only():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = build_mlp(10, (6,), 2, dtype=torch.float64, generator=_gen(1))
    b = build_mlp(10, (6,), 2, dtype=torch.float64, generator=_gen(1))
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
        assert pa.dtype == torch.float64
    bound = math.sqrt(6 / (10 + 6))
    assert a[0].weight.abs().max() <= bound
    assert a[0].weight.abs().max() > 0.8 * bound  # uniform over the whole range
    sig = build_mlp(10, (6,), 2, activation="logistic", generator=_gen(1))
    assert sig[0].weight.abs().max() <= math.sqrt(2 / 16)
    c = build_mlp(10, (6,), 2, dtype=torch.float64, generator=_gen(2))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_generator_dropout_train_eval_and_repeatable():
    layer = GeneratorDropout(0.5)
    x = torch.ones(2000, 4)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    set_dropout_generator(nn.Sequential(layer), _gen(3))
    first = layer(x)
    assert set(first.unique().tolist()) == {0.0, 2.0}  # inverted dropout scaling
    assert abs(first.mean().item() - 1.0) < 0.1
    set_dropout_generator(nn.Sequential(layer), _gen(3))
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)  # the generator advanced
    assert torch.equal(GeneratorDropout(0.0).train()(x), x)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_decay_groups_hold_weight_matrices_only(batch_norm):
    module = build_mlp(3, (5, 4), 2, batch_norm=batch_norm, generator=_gen())
    groups = decay_groups(module, 0.01)
    decay, rest = groups[0], groups[1]
    assert decay["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    assert all(p.ndim == 1 for p in rest["params"])
    n_params = len(list(module.parameters()))
    assert len(decay["params"]) + len(rest["params"]) == n_params
    assert len(decay["params"]) == 3
