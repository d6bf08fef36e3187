"""Our lean optimizers make the same updates as torch.optim's."""

import copy

import pytest
import torch

from helpers import build_mlp

from skmlp._network import decay_groups
from skmlp._training import TrainConfig, make_optimizer

CASES = [
    ("sgd", 0.5, True, lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.5, nesterov=True)),
    ("sgd", 0.5, False, lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.5)),
    ("sgd", 0.0, True, lambda g, lr: torch.optim.SGD(g, lr=lr)),  # no momentum: plain SGD
    ("adam", 0.5, True, lambda g, lr: torch.optim.Adam(g, lr=lr, betas=(0.5, 0.999))),
    ("adamw", 0.8, True, lambda g, lr: torch.optim.AdamW(g, lr=lr, betas=(0.8, 0.999))),
]


def _five_steps_each(X, *pairs):
    for _ in range(5):
        for module, opt in pairs:
            opt.zero_grad()
            module(X).pow(2).mean().backward()
            opt.step()


@pytest.mark.parametrize("name, momentum, nesterov, reference", CASES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
def test_updates_equal_torch_optim(name, momentum, nesterov, reference, weight_decay, fused):
    gen = torch.Generator().manual_seed(0)
    ours = build_mlp(3, (5,), 2, dtype=torch.float64, generator=gen)
    theirs = copy.deepcopy(ours)
    config = TrainConfig(optimizer=name, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)
    opt_ours = make_optimizer(ours, config, lr=0.05)
    assert opt_ours.fused  # float64 on CPU takes torch's fused kernels
    opt_ours.fused = fused
    opt_theirs = reference(decay_groups(theirs, weight_decay), 0.05)
    X = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    _five_steps_each(X, (ours, opt_ours), (theirs, opt_theirs))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(0)
    module = build_mlp(3, (4,), 1, dtype=torch.float64, generator=gen)
    X = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    config = TrainConfig(optimizer="adam")
    opt = make_optimizer(module, config, lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        module(X).sum().backward()
        opt.step()
    twin = copy.deepcopy(module)
    opt_twin = make_optimizer(twin, config, lr=0.1)
    opt_twin.load_state_dict(opt.state_dict())
    for m, o in ((module, opt), (twin, opt_twin)):
        o.zero_grad()
        m(X).sum().backward()
        o.step()
    for a, b in zip(module.parameters(), twin.parameters()):
        assert torch.equal(a, b)


FUSED_CASES = [
    ("sgd", 0.5, True, lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.5, nesterov=True,
                                                 fused=True)),
    ("sgd", 0.0, False, lambda g: torch.optim.SGD(g, lr=0.05, fused=True)),
    ("adam", 0.5, True, lambda g: torch.optim.Adam(g, lr=0.05, betas=(0.5, 0.999), fused=True)),
    ("adamw", 0.8, True, lambda g: torch.optim.AdamW(g, lr=0.05, betas=(0.8, 0.999),
                                                     fused=True)),
]


@pytest.mark.parametrize("name, momentum, nesterov, reference", FUSED_CASES)
def test_float32_updates_equal_torch_optim_fused_exactly(name, momentum, nesterov, reference):
    gen = torch.Generator().manual_seed(0)
    ours = build_mlp(3, (5,), 2, dtype=torch.float32, generator=gen)
    theirs = copy.deepcopy(ours)
    config = TrainConfig(optimizer=name, momentum=momentum, nesterov=nesterov, weight_decay=0.1)
    opt_ours = make_optimizer(ours, config, lr=0.05)
    opt_theirs = reference(decay_groups(theirs, 0.1))
    X = torch.randn(8, 3, generator=gen)
    _five_steps_each(X, (ours, opt_ours), (theirs, opt_theirs))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_state_moves_between_fused_and_foreach_paths(name):
    gen = torch.Generator().manual_seed(0)
    first = build_mlp(3, (4,), 1, dtype=torch.float64, generator=gen)
    X = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    config = TrainConfig(optimizer=name, weight_decay=0.1)
    straight = copy.deepcopy(first)
    opt = make_optimizer(straight, config, lr=0.1)
    for _ in range(4):
        opt.zero_grad()
        straight(X).sum().backward()
        opt.step()
    switched, state = first, None
    for step, fused in enumerate([True, True, False, False]):
        opt = make_optimizer(switched, config, lr=0.1)
        opt.fused = fused
        if state is not None:
            opt.load_state_dict(state)
        opt.zero_grad()
        switched(X).sum().backward()
        opt.step()
        state = opt.state_dict()
    for a, b in zip(straight.parameters(), switched.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ---------------------------------------- private kernels: used where they work
def _steps_equal_torch_optim(name, reference, **config):
    gen = torch.Generator().manual_seed(0)
    ours = build_mlp(3, (5,), 2, dtype=torch.float64, generator=gen)
    theirs = copy.deepcopy(ours)
    opt_ours = make_optimizer(ours, TrainConfig(optimizer=name, **config), lr=0.05)
    opt_theirs = reference(decay_groups(theirs, config.get("weight_decay", 0.0)), 0.05)
    X = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    _five_steps_each(X, (ours, opt_ours), (theirs, opt_theirs))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    return opt_ours


@pytest.mark.parametrize("name, momentum, nesterov, reference", CASES)
def test_a_missing_fused_kernel_takes_the_public_path(name, momentum, nesterov, reference,
                                                      monkeypatch):
    kernel = {"sgd": "_fused_sgd_", "adam": "_fused_adam_", "adamw": "_fused_adamw_"}[name]
    monkeypatch.delattr(torch, kernel)
    opt = _steps_equal_torch_optim(name, reference, momentum=momentum, nesterov=nesterov,
                                   weight_decay=0.1)
    assert not opt.fused


@pytest.mark.parametrize("name, momentum, nesterov, reference", CASES)
def test_a_raising_fused_kernel_falls_back_for_good(name, momentum, nesterov, reference,
                                                    monkeypatch):
    kernel = {"sgd": "_fused_sgd_", "adam": "_fused_adam_", "adamw": "_fused_adamw_"}[name]
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("kernel not implemented for this build")

    monkeypatch.setattr(torch, kernel, broken)
    opt = _steps_equal_torch_optim(name, reference, momentum=momentum, nesterov=nesterov,
                                   weight_decay=0.1)
    assert not opt.fused and len(calls) == 1  # tried once, then the public path


def test_optimizer_names_are_one_table_for_validation_and_dispatch():
    from skmlp._optim import OPTIMIZERS
    from skmlp._params import BY_NAME

    check, _ = BY_NAME["optimizer"].rule
    assert all(check(name) for name in OPTIMIZERS)
    assert not check("rmsprop")
    module = build_mlp(3, (4,), 1)
    for name, factory in OPTIMIZERS.items():
        if factory is None:  # lbfgs: a full-batch solver, not a step rule
            with pytest.raises(ValueError, match="lbfgs"):
                make_optimizer(module, TrainConfig(optimizer=name), lr=0.1)
        else:
            assert make_optimizer(module, TrainConfig(optimizer=name), lr=0.1) is not None
    with pytest.raises(ValueError, match="rmsprop"):
        make_optimizer(module, TrainConfig(optimizer="rmsprop"), lr=0.1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
def test_tiny_values_are_flushed_to_zero_every_few_steps(name, fused):
    # Values below sqrt(finfo.tiny) (their products are subnormal: up to 100x
    # slower on x86) become zero every FLUSH_EVERY steps; the rest are the
    # optimizer's own updates, as torch.optim makes them.
    from skmlp._optim import FLUSH_EVERY

    gen = torch.Generator().manual_seed(0)
    ours = build_mlp(3, (5,), 2, dtype=torch.float32, generator=gen)
    theirs = copy.deepcopy(ours)
    config = TrainConfig(optimizer=name, momentum=0.9, nesterov=False, weight_decay=0.0)
    opt_ours = make_optimizer(ours, config, lr=0.01)
    opt_ours.fused = fused
    reference = {"sgd": lambda g: torch.optim.SGD(g, lr=0.01, momentum=0.9),
                 "adam": lambda g: torch.optim.Adam(g, lr=0.01, betas=(0.9, 0.999))}[name]
    opt_theirs = reference(decay_groups(theirs, 0.0))
    X = torch.randn(8, 3, generator=gen)
    # the tiny weights' unit is switched off by a large negative bias: no gradient
    with torch.no_grad():
        for module in (ours, theirs):
            module.blocks[0].linear.weight[0].zero_().add_(1e-30)
            module.blocks[0].linear.bias[0] = -1e6
    for step in range(FLUSH_EVERY):
        for module, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            module(X).pow(2).mean().backward()
            opt.step()
    w_ours = ours.blocks[0].linear.weight.detach()
    w_theirs = theirs.blocks[0].linear.weight.detach()
    assert torch.all(w_ours[0] == 0) and torch.all(w_theirs[0] == 1e-30)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        keep = b.detach().abs() >= torch.finfo(torch.float32).tiny ** 0.5
        torch.testing.assert_close(a.detach()[keep], b.detach()[keep], rtol=1e-5, atol=1e-6)
    for buffers in opt_ours._buffers():
        for t in buffers:
            assert not torch.any((t != 0) & (t.abs() < torch.finfo(torch.float32).tiny ** 0.5))
