"""Our lean optimizers make the same updates as torch.optim's."""

import copy

import pytest
import torch

from skmlp._network import build_mlp, decay_groups
from skmlp._training import TrainConfig, make_optimizer

CASES = [
    ("sgd", 0.5, True, lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.5, nesterov=True)),
    ("sgd", 0.5, False, lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.5)),
    ("sgd", 0.0, True, lambda g, lr: torch.optim.SGD(g, lr=lr)),  # no momentum: plain SGD
    ("adam", 0.5, True, lambda g, lr: torch.optim.Adam(g, lr=lr, betas=(0.5, 0.999))),
    ("adamw", 0.8, True, lambda g, lr: torch.optim.AdamW(g, lr=lr, betas=(0.8, 0.999))),
]


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
    for _ in range(5):
        for module, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            module(X).pow(2).mean().backward()
            opt.step()
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
