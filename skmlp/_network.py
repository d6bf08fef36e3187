"""The torch network: a plain multilayer perceptron.

Pure torch (no scikit-learn, no training): ``build_mlp`` returns an
``nn.Sequential`` of ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``
blocks followed by a linear output layer that yields logits / raw outputs.
Weights are initialised from a caller-supplied ``torch.Generator`` so the global
torch RNG is never touched.
"""

import math

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "logistic": nn.Sigmoid,
    "identity": nn.Identity,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


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


def build_mlp(
    n_inputs,
    hidden_dims,
    n_outputs,
    *,
    activation="relu",
    dropout=0.0,
    batch_norm=False,
    dtype=torch.float32,
    generator=None,
):
    """Build and initialise the MLP on the CPU.

    Layers are created on the ``meta`` device (so their default initialisers,
    which use the global RNG, never run), materialised on the CPU and then
    initialised with Glorot-uniform weights and biases, as scikit-learn's MLP
    does (``sqrt(6 / (fan_in + fan_out))``, ``sqrt(2 / ...)`` for sigmoid).
    """
    layers = []
    width = n_inputs
    for size in hidden_dims:
        layers.append(nn.Linear(width, size, device="meta", dtype=dtype))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size, device="meta", dtype=dtype))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(GeneratorDropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_outputs, device="meta", dtype=dtype))
    module = nn.Sequential(*layers).to_empty(device="cpu")
    init_weights(module, generator, sigmoid=ACTIVATIONS[activation] is nn.Sigmoid)
    return module


@torch.no_grad()
def init_weights(module, generator, sigmoid=False):
    """Glorot-uniform initialisation of every Linear, identity for norms."""
    factor = 2.0 if sigmoid else 6.0
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            bound = math.sqrt(factor / (layer.in_features + layer.out_features))
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(layer, nn.BatchNorm1d):
            layer.reset_parameters()


def set_dropout_generator(module, generator):
    """Point every ``GeneratorDropout`` of ``module`` at ``generator``."""
    for layer in module.modules():
        if isinstance(layer, GeneratorDropout):
            layer.generator = generator


def decay_groups(module, weight_decay):
    """Optimizer parameter groups: weight decay on Linear weights only."""
    decay, no_decay = [], []
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            decay.append(layer.weight)
            no_decay.append(layer.bias)
        elif isinstance(layer, nn.BatchNorm1d):
            no_decay.extend([layer.weight, layer.bias])
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
