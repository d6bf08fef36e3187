"""A hand-written forward/backward pass for plain MLPs (pure torch).

On the small networks that searches and ``check_estimator`` fit by the
hundred, autograd's graph bookkeeping costs more than the arithmetic. For the
common architecture -- ``Linear -> activation [-> dropout]`` blocks and a
linear output, no batch norm -- the gradients are a handful of matrix products,
written out here. ``plan(module, loss)`` returns a step function, or None when
the module has a layer this pass does not know (training then uses autograd).
The gradients land in ``param.grad``, so any optimizer works unchanged.
"""

import torch
from torch import nn
from torch.nn import functional as F

from ._losses import Loss
from ._network import GeneratorDropout

_aten = torch.ops.aten


# Each gradient is the kernel autograd itself runs for that activation (one pass,
# no temporaries): g is the upstream gradient, z the activation's input, h its output.
def _relu_grad(g, z, h):
    return _aten.threshold_backward(g, h, 0)


def _tanh_grad(g, z, h):
    return _aten.tanh_backward(g, h)


def _sigmoid_grad(g, z, h):
    return _aten.sigmoid_backward(g, h)


def _leaky_relu_grad(g, z, h):
    return _aten.leaky_relu_backward(g, z, 0.01, False)


def _elu_grad(g, z, h):
    return _aten.elu_backward(g, 1.0, 1.0, 1.0, False, z)


def _gelu_grad(g, z, h):
    return _aten.gelu_backward(g, z, approximate="none")


def _silu_grad(g, z, h):
    return _aten.silu_backward(g, z)


# activation module type -> (forward, gradient given upstream g, input z, output h)
_ACTIVATIONS = {
    nn.ReLU: (torch.relu, _relu_grad),
    nn.Tanh: (torch.tanh, _tanh_grad),
    nn.Sigmoid: (torch.sigmoid, _sigmoid_grad),
    nn.Identity: (None, None),
    nn.LeakyReLU: (nn.functional.leaky_relu, _leaky_relu_grad),
    nn.ELU: (nn.functional.elu, _elu_grad),
    nn.GELU: (nn.functional.gelu, _gelu_grad),
    nn.SiLU: (nn.functional.silu, _silu_grad),
}
_DEFAULT_ARGS = {nn.LeakyReLU: ("negative_slope", 0.01), nn.ELU: ("alpha", 1.0),
                 nn.GELU: ("approximate", "none")}


def _blocks(module):
    """[(linear, activation fns or None, dropout or None)], or None if unsupported."""
    blocks, layers = [], list(module.children()) if isinstance(module, nn.Sequential) else None
    if not layers:
        return None
    i = 0
    while i < len(layers):
        linear = layers[i]
        if not isinstance(linear, nn.Linear):
            return None
        act = drop = None
        if i + 1 < len(layers):
            act_layer = layers[i + 1]
            kind = type(act_layer)
            if kind not in _ACTIVATIONS:
                return None
            attr = _DEFAULT_ARGS.get(kind)
            if attr and getattr(act_layer, attr[0]) != attr[1]:
                return None
            act = _ACTIVATIONS[kind]
            i += 2
            if i < len(layers) and isinstance(layers[i], GeneratorDropout):
                drop = layers[i]
                i += 1
        else:
            i += 1
        blocks.append((linear, act, drop))
    if blocks[-1][1] is not None:  # the output layer must be linear
        return None
    return blocks


def plan(module, loss):
    """A ``step(xb, yb, wb) -> loss`` filling ``.grad``, or None (use autograd)."""
    if not isinstance(loss, Loss):
        return None
    blocks = _blocks(module)
    if blocks is None or not all(p.requires_grad for p in module.parameters()):
        return None
    # Detached views share storage with the parameters (the optimizer updates
    # them in place), so no autograd graph is ever recorded here.
    layers = [(lin.weight, lin.bias, lin.weight.detach(), lin.bias.detach(),
               act, drop if drop is not None and drop.p > 0 else None)
              for lin, act, drop in blocks]
    last = len(layers) - 1

    def forward(xb):
        h, saved = xb, []
        for index, (_, _, W, b, act, drop) in enumerate(layers):
            z = F.linear(h, W, b)
            if index == last:
                saved.append((h, None, None, None))
                return z, saved
            out = z if act[0] is None else act[0](z)
            mask = None
            if drop is not None:
                keep = 1.0 - drop.p
                mask = torch.empty_like(out).bernoulli_(keep, generator=drop.generator).div_(keep)
            saved.append((h, z, out, mask))
            h = out if mask is None else out * mask
        raise AssertionError("unreachable: the last layer returns")

    def step(xb, yb, wb):
        out, saved = forward(xb)
        per_sample, g = loss.value_and_grad(out, yb)
        if wb is None:
            value = per_sample.mean()
            g.div_(g.shape[0])
        else:
            scale = wb / wb.sum().clamp_min(torch.finfo(wb.dtype).tiny)
            value = (per_sample * scale).sum()
            g.mul_(scale[:, None])
        for index in range(last, -1, -1):
            weight, bias, W, _, _, _ = layers[index]
            h_in = saved[index][0]
            if weight.grad is None:
                weight.grad, bias.grad = g.t() @ h_in, g.sum(dim=0)
            else:
                torch.mm(g.t(), h_in, out=weight.grad)
                torch.sum(g, dim=0, out=bias.grad)
            if index == 0:
                break
            g = g @ W
            _, z_prev, h_prev, mask = saved[index - 1]
            if mask is not None:
                g.mul_(mask)
            grad_fn = layers[index - 1][4][1]
            if grad_fn is not None:
                g = grad_fn(g, z_prev, h_prev)
        return value

    return step


_IN_PLACE = {torch.relu: torch.relu_, torch.tanh: torch.tanh_, torch.sigmoid: torch.sigmoid_}


def inference(module):
    """``module``'s eval-mode forward with activations applied in place.

    Saves one output-sized allocation per hidden layer in ``predict``; the
    module itself is returned for architectures ``_blocks`` does not know.
    """
    blocks = _blocks(module)
    if blocks is None:
        return module

    def forward(x):
        h = x
        for linear, act, _ in blocks:  # dropout is the identity in eval mode
            h = F.linear(h, linear.weight, linear.bias)
            if act is not None and act[0] is not None:
                h = _IN_PLACE.get(act[0], act[0])(h)
        return h

    return forward


_BOUNDED = (torch.tanh, torch.sigmoid)  # |activation| <= 1


@torch.no_grad()
def output_bound(module, input_bound):
    """An upper bound on every pre-activation (and so on the output) of
    ``module`` in eval mode, for inputs with ``|x| <= input_bound``; None for
    architectures ``_blocks`` does not know.

    Per layer: ``|W h + b| <= max_row(sum |W|) * bound(h) + max |b|``; tanh and
    sigmoid cap the bound at 1, the other activations satisfy
    ``|act(z)| <= max(|z|, 1)``. Computed in float64 on the CPU; non-finite
    weights give inf or nan, which no threshold accepts.
    """
    blocks = _blocks(module)
    if blocks is None:
        return None
    bound = torch.tensor(float(input_bound), dtype=torch.float64)
    worst = bound
    for linear, act, _ in blocks:  # dropout is the identity in eval mode
        # On the CPU in float64 (MPS has no float64); a few small copies per fit.
        weight = linear.weight.detach().to("cpu", torch.float64).abs().sum(dim=1).max()
        bias = linear.bias.detach().to("cpu", torch.float64).abs().max()
        bound = weight * bound + bias
        worst = torch.maximum(worst, bound)  # nan propagates
        if act is not None and act[0] is not None:
            bound = bound.clamp(max=1.0) if act[0] in _BOUNDED else bound.clamp(min=1.0)
    return float(worst)
