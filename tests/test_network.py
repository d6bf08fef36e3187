"""The pure torch network: structure from the spec, initialisation, dropout,
decay groups, and the rule that every parameter is initialised and optimised."""

import math

import numpy as np
import pytest
import torch
from helpers import build_mlp
from torch import nn

from skmlp._network import (ACTIVATIONS, MLP, PARAMETER_RULES, GeneratorDropout, decay_groups,
                            init_weights, set_dropout_generator)
from skmlp._spec import NetworkSpec


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_blocks_follow_the_spec():
    module = build_mlp(3, (5, 4), 2, activation="tanh", dropout=0.2, batch_norm=True,
                       generator=_gen())
    assert isinstance(module, MLP) and len(module.blocks) == 2
    for block, (d_in, d_out) in zip(module.blocks, [(3, 5), (5, 4)]):
        assert (block.linear.in_features, block.linear.out_features) == (d_in, d_out)
        assert isinstance(block.norm, nn.BatchNorm1d) and isinstance(block.act, nn.Tanh)
        assert isinstance(block.dropout, GeneratorDropout) and block.dropout.p == 0.2
        assert not block.fast  # batch norm: autograd covers the block
    assert module.output.in_features == 4 and module.output.out_features == 2
    plain = build_mlp(3, (5,), 2, generator=_gen())
    assert plain.blocks[0].norm is None and plain.blocks[0].dropout is None
    assert plain.blocks[0].fast


def test_no_hidden_layers_is_linear():
    module = build_mlp(3, (), 2, generator=_gen())
    assert len(module.blocks) == 0 and isinstance(module.output, nn.Linear)
    x = torch.randn(4, 3)
    torch.testing.assert_close(module(x), x @ module.output.weight.T + module.output.bias)


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
    weight = a.blocks[0].linear.weight
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.8 * bound  # uniform over the whole range
    sig = build_mlp(10, (6,), 2, activation="logistic", generator=_gen(1))
    assert sig.blocks[0].linear.weight.abs().max() <= math.sqrt(2 / 16)
    c = build_mlp(10, (6,), 2, dtype=torch.float64, generator=_gen(2))
    assert not torch.equal(weight, c.blocks[0].linear.weight)


def test_initial_weights_do_not_depend_on_the_dtype():
    """Drawn once in float64, then cast: float32 is float64 rounded."""
    f64 = build_mlp(7, (6, 5), 3, dtype=torch.float64, generator=_gen(4))
    f32 = build_mlp(7, (6, 5), 3, dtype=torch.float32, generator=_gen(4))
    for p64, p32 in zip(f64.parameters(), f32.parameters()):
        assert p32.dtype == torch.float32
        assert torch.equal(p64.to(torch.float32), p32)


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


def test_a_parameter_without_a_rule_fails_loudly():
    """A new layer kind (here a LayerNorm) must say how it is initialised and
    optimised; otherwise building or grouping the network raises."""
    module = build_mlp(3, (4,), 2, generator=_gen())
    module.norm = nn.LayerNorm(4)
    with pytest.raises(TypeError, match="LayerNorm.*PARAMETER_RULES"):
        init_weights(module, _gen())
    with pytest.raises(TypeError, match="LayerNorm.*PARAMETER_RULES"):
        decay_groups(module, 0.1)
    assert nn.LayerNorm not in PARAMETER_RULES


def test_every_parameter_of_every_built_network_has_a_rule():
    for activation in ACTIVATIONS:
        for batch_norm in (False, True):
            module = build_mlp(3, (4, 2), 2, activation=activation, batch_norm=batch_norm,
                               dropout=0.1, generator=_gen())
            grouped = [p for g in decay_groups(module, 0.1) for p in g["params"]]
            assert {id(p) for p in grouped} == {id(p) for p in module.parameters()}
            assert len(grouped) == len(list(module.parameters()))


@pytest.mark.parametrize("bagged", [False, True])
def test_building_never_calls_empty_like_on_meta_tensors(monkeypatch, bagged):
    """torch.empty_like on a meta tensor (what Module.to_empty does) runs
    torch's Python reference path, which imports sympy: 0.3-0.6 s on a
    process's first fit. Building materialises the network without it, and
    every parameter and buffer ends up real, in the spec's dtype."""
    real = torch.empty_like

    def guarded(t, *args, **kwargs):
        assert not t.is_meta, "torch.empty_like on a meta tensor"
        return real(t, *args, **kwargs)

    monkeypatch.setattr(torch, "empty_like", guarded)
    spec = NetworkSpec(n_inputs=3, hidden_dims=(4,), n_outputs=2, head_name="binary",
                       activation="relu", batch_norm=True, dtype="float32",
                       cardinalities=(3, 12), n_ensemble=2, bagged=bagged,
                       numeric_embedding="periodic+piecewise", missing="indicator",
                       scaling="robust", indicator_columns=(1,), fill=(0.0,) * 3,
                       shift=(0.0,) * 3, scale=(1.0,) * 3,
                       bins=((0.0, 1.0, 2.0),) * 3)
    module = spec.build(_gen())
    tensors = list(module.parameters()) + list(module.buffers())
    assert tensors and not any(t.is_meta for t in tensors)
    assert all(t.dtype == torch.float32 for t in module.parameters())
    assert all(torch.isfinite(t).all() for t in module.parameters())
    assert all(p.requires_grad for p in module.parameters())
    monkeypatch.undo()
    again = spec.build(_gen())
    for a, b in zip(module.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_spec_round_trip_and_derived_sizes():
    spec = NetworkSpec(5, (7, 3), 2, "binary", activation="gelu", dropout=0.1, dtype="float32")
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert spec.widths() == [5, 7, 3, 2]
    assert spec.macs(10) == 10 * (5 * 7 + 7 * 3 + 3 * 2)
    module = spec.build(_gen())
    assert sum(p.numel() for p in module.parameters()) == 5 * 7 + 7 + 7 * 3 + 3 + 3 * 2 + 2
    assert next(module.parameters()).dtype == torch.float32
    assert spec.head.loss is not None and spec.torch_dtype == torch.float32
    assert np.isfinite(spec.head.safe_output_bound(torch.float32))
