"""The torch network, built from a ``NetworkSpec`` (pure torch).

``MLP`` is ``blocks`` (``Linear -> [BatchNorm1d] -> activation -> [dropout]``)
followed by a linear ``output`` layer that yields logits / raw outputs.
Everything about a choice lives in one table read by construction, validation,
the fast path and the finiteness bound:

* ``ACTIVATIONS``: name -> ``Activation`` (module, function, hand-written
  gradient or None for autograd-only, in-place form, output bound, init gain).
* ``PARAMETER_RULES``: layer type -> how its parameters are initialised and
  which optimizer group (weight decay or not) each one joins. ``build`` refuses
  a module with a parameter no rule covers, so a new layer kind cannot
  silently keep uninitialised or never-updated weights.

Weights are drawn in float64 from a caller-supplied ``torch.Generator`` (the
global torch RNG is never touched), then cast: float32 and float64 networks
with the same seed start from the same weights.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

_aten = torch.ops.aten


# ------------------------------------------------------------- activations
@dataclass(frozen=True)
class Activation:
    """One activation: everything the package derives from its name.

    module : the ``nn.Module`` class placed in the network.
    forward : the function (None for the identity).
    grad : ``grad(g, z, h)``, the gradient given the upstream gradient ``g``,
        the input ``z`` and the output ``h``, as autograd's own kernel computes
        it; None makes blocks with this activation autograd-only.
    in_place : the in-place form used by ``predict`` (None: ``forward``).
    bound : ``"unit"`` if ``|act(z)| <= 1``, ``"linear"`` if
        ``|act(z)| <= max(|z|, 1)``, None if neither holds (the end-of-fit
        check then runs a forward pass instead of the bound).
    gain : the Glorot-uniform numerator: ``sqrt(gain / (fan_in + fan_out))``
        (6 as usual, 2 for the logistic sigmoid, as scikit-learn).
    """

    module: type
    forward: Optional[Callable]
    grad: Optional[Callable]
    in_place: Optional[Callable] = None
    bound: Optional[str] = "linear"
    gain: float = 6.0


_SIGMOID = Activation(nn.Sigmoid, torch.sigmoid, lambda g, z, h: _aten.sigmoid_backward(g, h),
                      torch.sigmoid_, bound="unit", gain=2.0)
ACTIVATIONS = {
    "relu": Activation(nn.ReLU, torch.relu,
                       lambda g, z, h: _aten.threshold_backward(g, h, 0), torch.relu_),
    "tanh": Activation(nn.Tanh, torch.tanh, lambda g, z, h: _aten.tanh_backward(g, h),
                       torch.tanh_, bound="unit"),
    "sigmoid": _SIGMOID,
    "logistic": _SIGMOID,  # scikit-learn's name
    "identity": Activation(nn.Identity, None, None),
    "gelu": Activation(nn.GELU, F.gelu,
                       lambda g, z, h: _aten.gelu_backward(g, z, approximate="none")),
    "silu": Activation(nn.SiLU, F.silu, lambda g, z, h: _aten.silu_backward(g, z)),
    "leaky_relu": Activation(nn.LeakyReLU, F.leaky_relu,
                             lambda g, z, h: _aten.leaky_relu_backward(g, z, 0.01, False)),
    "elu": Activation(nn.ELU, F.elu,
                      lambda g, z, h: _aten.elu_backward(g, 1.0, 1.0, 1.0, False, z)),
}


def has_gradient(activation):
    """Whether the fast path covers ``activation`` (the identity needs no kernel)."""
    return activation.forward is None or activation.grad is not None


# ----------------------------------------------------------------- modules
class GeneratorDropout(nn.Module):
    """Inverted dropout whose masks come from ``self.generator``.

    ``nn.Dropout`` draws from the global torch RNG; this one draws from a local
    generator (set by the training loop), so fits are repeatable without
    seeding torch globally. With ``generator=None`` it falls back to the global
    RNG, like ``nn.Dropout``.
    """

    def __init__(self, p):
        super().__init__()
        self.p = float(p)
        self.generator = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask.div_(keep)

    def extra_repr(self):
        return f"p={self.p}"


class Block(nn.Module):
    """``Linear -> [BatchNorm1d] -> activation -> [dropout]``.

    ``x (n, d_in) -> (n, d_out)``. ``kind`` is the activation's table entry;
    ``fast`` says whether the hand-written backward pass covers the block.
    """

    def __init__(self, d_in, d_out, activation, *, dropout=0.0, batch_norm=False, dtype=None):
        super().__init__()
        self.kind = ACTIVATIONS[activation]
        self.linear = nn.Linear(d_in, d_out, device="meta", dtype=dtype)
        self.norm = nn.BatchNorm1d(d_out, device="meta", dtype=dtype) if batch_norm else None
        self.act = self.kind.module()
        self.dropout = GeneratorDropout(dropout) if dropout > 0 else None
        self.fast = self.norm is None and has_gradient(self.kind)

    def forward(self, x):
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        h = self.act(h)
        return h if self.dropout is None else self.dropout(h)


class MLP(nn.Module):
    """The network: ``forward(x)`` maps ``x (n, n_inputs)`` to ``(n, n_outputs)``."""

    def __init__(self, n_inputs, hidden_dims, n_outputs, *, activation="relu", dropout=0.0,
                 batch_norm=False, dtype=None):
        super().__init__()
        widths = [n_inputs, *hidden_dims]
        self.blocks = nn.ModuleList(
            Block(a, b, activation, dropout=dropout, batch_norm=batch_norm, dtype=dtype)
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.output = nn.Linear(widths[-1], n_outputs, device="meta", dtype=dtype)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.output(x)


# ------------------------------------------------- initialisation, groups
def _glorot(layer, generator, gain):
    bound = math.sqrt(gain / (layer.in_features + layer.out_features))
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _norm_init(layer, generator, gain):
    layer.reset_parameters()  # weight 1, bias 0, fresh running statistics


@dataclass(frozen=True)
class ParameterRule:
    """How a layer type's parameters are initialised and optimised."""

    init: Callable  # init(layer, generator, gain), in float64
    decay: tuple  # parameter names that get weight decay
    no_decay: tuple  # parameter names that do not


PARAMETER_RULES = {
    nn.Linear: ParameterRule(_glorot, ("weight",), ("bias",)),
    nn.BatchNorm1d: ParameterRule(_norm_init, (), ("weight", "bias")),
}


def _ruled_layers(module):
    """(layer, rule) for every submodule that has parameters of its own."""
    for layer in module.modules():
        own = dict(layer.named_parameters(recurse=False))
        if not own:
            continue
        rule = PARAMETER_RULES.get(type(layer))
        covered = () if rule is None else rule.decay + rule.no_decay
        missing = sorted(set(own) - set(covered))
        if missing:
            raise TypeError(
                f"{type(layer).__name__} has parameter(s) {missing} that no entry of "
                "skmlp._network.PARAMETER_RULES initialises or puts in an optimizer group; "
                "add a rule for this layer type."
            )
        yield layer, rule


@torch.no_grad()
def init_weights(module, generator, gain=6.0):
    """Initialise every parameter by its layer's rule, from ``generator``."""
    for layer, rule in _ruled_layers(module):
        rule.init(layer, generator, gain)


def decay_groups(module, weight_decay):
    """Optimizer parameter groups: weight decay on weight matrices only."""
    decay, no_decay = [], []
    for layer, rule in _ruled_layers(module):
        decay.extend(getattr(layer, name) for name in rule.decay)
        no_decay.extend(getattr(layer, name) for name in rule.no_decay)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build(spec, generator):
    """The initialised ``MLP`` for ``spec`` (a ``NetworkSpec``), on the CPU.

    Layers are created on the ``meta`` device (their default initialisers,
    which use the global RNG, never run), materialised in float64,
    initialised from ``generator`` and cast to the spec's dtype, so the
    weights do not depend on the dtype.
    """
    module = MLP(spec.n_inputs, spec.hidden_dims, spec.n_outputs,
                 activation=spec.activation, dropout=spec.dropout,
                 batch_norm=spec.batch_norm, dtype=torch.float64)
    module = module.to_empty(device="cpu")
    init_weights(module, generator, gain=ACTIVATIONS[spec.activation].gain)
    return module.to(spec.torch_dtype)


def set_dropout_generator(module, generator):
    """Point every ``GeneratorDropout`` of ``module`` at ``generator``."""
    for layer in module.modules():
        if isinstance(layer, GeneratorDropout):
            layer.generator = generator

