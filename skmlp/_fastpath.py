"""A hand-written forward/backward pass for ``MLP`` networks (pure torch).

On the small networks that searches and ``check_estimator`` fit by the
hundred, autograd's graph bookkeeping costs more than the arithmetic. A block
opts in when ``Block.fast`` is True (no batch norm, an activation whose table
entry has a gradient kernel): its gradients are a handful of matrix products,
written out here. Any other block runs under autograd inside the same step (its
input is detached and its output back-propagated with the upstream gradient),
and the output layer is always hand-written. ``plan(module, loss)`` returns
the step function, or None for modules that are not an ``MLP`` or losses
without a gradient (training then uses autograd throughout). The gradients
land in ``param.grad``, so any optimizer works unchanged.
"""

import math

import torch
from torch.nn import functional as F

from ._heads import Loss
from ._network import MLP, Bag, PeriodicEmbedding, PiecewiseEmbedding


def _mask(drop, like):
    keep = 1.0 - drop.p
    return torch.empty_like(like).bernoulli_(keep, generator=drop.generator).div_(keep)


class _FastBlock:
    """Linear -> activation -> [dropout], forward and backward by hand."""

    def __init__(self, block):
        self.weight, self.bias = block.linear.weight, block.linear.bias
        # Detached views share storage with the parameters (the optimizer
        # updates them in place), so no autograd graph is recorded.
        self.W, self.b = self.weight.detach(), self.bias.detach()
        self.act = block.kind.forward
        self.grad = block.kind.grad
        self.drop = block.dropout if block.dropout is not None and block.dropout.p > 0 else None

    def forward(self, h):
        z = F.linear(h, self.W, self.b)
        out = z if self.act is None else self.act(z)
        mask = None if self.drop is None else _mask(self.drop, out)
        return (out if mask is None else out * mask), (h, z, out, mask)

    def backward(self, g, saved, need_input_grad):
        h_in, z, out, mask = saved
        if mask is not None:
            g.mul_(mask)
        if self.grad is not None:
            g = self.grad(g, z, out)
        _write_linear_grads(self.weight, self.bias, g, h_in)
        return g @ self.W if need_input_grad else None


class _AutogradBlock:
    """Any block the fast path does not cover: autograd over this block only."""

    def __init__(self, block):
        self.block = block
        self.params = list(block.parameters())

    def forward(self, h):
        h_in = h.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.block(h_in)
        return out.detach(), (h_in, out)

    def backward(self, g, saved, need_input_grad):
        h_in, out = saved
        for p in self.params:
            p.grad = None
        torch.autograd.backward(out, g, inputs=self.params + ([h_in] if need_input_grad else []))
        return h_in.grad if need_input_grad else None


class _Periodic:
    """``PeriodicEmbedding`` forward and backward by hand (no input gradient:
    its input is data). Column-major ``(d, n, .)`` throughout, so both passes
    are batched products over the d columns."""

    def __init__(self, layer):
        self.frequencies, self.weight, self.bias = layer.frequencies, layer.weight, layer.bias
        self.f, self.W, self.b = (p.detach() for p in (layer.frequencies, layer.weight,
                                                       layer.bias))

    def forward(self, x):
        xt = (2 * math.pi) * x.t()[:, :, None]  # (d, n, 1)
        z = xt * self.f[:, None, :]  # (d, n, k)
        features = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (d, n, 2k)
        out = torch.baddbmm(self.b[:, None, :], features, self.W).relu_()  # (d, n, e)
        return out.transpose(0, 1).flatten(1), (xt, features, out)

    def backward(self, g, saved):
        xt, features, out = saved
        d, n, e = out.shape
        g = torch.ops.aten.threshold_backward(g.view(n, d, e).transpose(0, 1), out, 0)
        self.weight.grad = torch.bmm(features.transpose(1, 2), g)  # (d, 2k, e)
        self.bias.grad = g.sum(dim=1)
        g_features = torch.bmm(g, self.W.transpose(1, 2))  # (d, n, 2k)
        k = self.f.shape[1]
        cos, sin = features[..., :k], features[..., k:]
        # d cos(z) = -sin(z) dz, d sin(z) = cos(z) dz, dz / df = 2 pi x
        g_z = g_features[..., k:] * cos - g_features[..., :k] * sin
        self.frequencies.grad = torch.bmm(xt.transpose(1, 2), g_z)[:, 0, :]


class _Piecewise:
    """``PiecewiseEmbedding`` forward and backward by hand (no input gradient;
    the bin positions have no parameters)."""

    def __init__(self, layer):
        self.layer, self.weight, self.bias = layer, layer.weight, layer.bias
        self.W, self.b = layer.weight.detach(), layer.bias.detach()

    def forward(self, x):
        positions = self.layer.positions(x)  # (d, n, bins)
        out = torch.baddbmm(self.b[:, None, :], positions, self.W).relu_()  # (d, n, e)
        return out.transpose(0, 1).flatten(1), (positions, out)

    def backward(self, g, saved):
        positions, out = saved
        d, n, e = out.shape
        g = torch.ops.aten.threshold_backward(g.view(n, d, e).transpose(0, 1), out, 0)
        self.weight.grad = torch.bmm(positions.transpose(1, 2), g)  # (d, bins, e)
        self.bias.grad = g.sum(dim=1)


FAST_EMBEDDINGS = {PeriodicEmbedding: _Periodic, PiecewiseEmbedding: _Piecewise}


class Prepared(tuple):
    """A batch whose parameter-free part is done: ``(x, [x_cat])`` with ``x``
    the columns of ``TableInput.numeric`` (filled and scaled values, then the
    missing-value flags) followed by ``TableInput.one_hot_codes``."""


class PreparedRows:
    """Training rows with the table input's parameter-free part (filling,
    flags, scaling, one-hot codes) applied once to all of them instead of to
    every batch; ``take`` and ``slice`` give ``Prepared`` batches."""

    def __init__(self, numeric, codes):
        self.numeric, self.codes = numeric, codes
        self.shape = tuple(numeric.shape)

    def take(self, idx):
        rest = () if self.codes is None else (self.codes.index_select(0, idx),)
        return Prepared((self.numeric.index_select(0, idx), *rest))

    def slice(self, start, stop):
        rest = () if self.codes is None else (self.codes[start:stop],)
        return Prepared((self.numeric[start:stop], *rest))


class _InputStage:
    """The table input (fill, scale, one-hot, embeddings): the numeric
    embeddings by hand, autograd for the categorical embeddings, a plain
    forward for what has no parameters."""

    def __init__(self, layer):
        self.layer = layer
        self.numeric_embeddings = [FAST_EMBEDDINGS[type(e)](e) for e in layer.numeric_embeddings()]
        self.embedded = list(layer.embeddings.parameters())
        self.params = list(layer.parameters())

    @torch.no_grad()
    def prepare(self, X):
        """``PreparedRows`` of the training rows ``X`` (a ``_data`` rows object),
        or None when X is not held as one dense tensor (sparse input)."""
        numeric = getattr(X, "numeric", X)
        if not isinstance(getattr(numeric, "X", None), torch.Tensor):
            return None  # sparse rows: densified (and prepared) a batch at a time
        x, flags = self.layer.numeric(numeric.X)
        codes = getattr(X, "codes", None)
        one_hot = None if codes is None else self.layer.one_hot_codes(codes, x.dtype)
        if flags is None and one_hot is None and x is numeric.X:
            return None  # nothing to do once: the batches are as they come
        x = torch.cat([p for p in (x, flags, one_hot) if p is not None], dim=1)
        return PreparedRows(x, codes)

    def forward(self, xb):
        layer = self.layer
        x_cat = xb[1] if len(xb) > 1 else None
        one_hot = None
        if isinstance(xb, Prepared):
            d = layer.fill.shape[0]
            m = len(layer.indicator_columns) if layer.fill_missing else 0
            x, flags = xb[0][:, :d], (xb[0][:, d:d + m] if m else None)
            one_hot = xb[0][:, d + m:]
        else:
            with torch.no_grad():
                x, flags = layer.numeric(xb[0])
        embedded = [stage.forward(x) for stage in self.numeric_embeddings]
        parts = [out for out, _ in embedded] or [x]
        if flags is not None:
            parts.append(flags)
        with torch.enable_grad() if self.embedded else torch.no_grad():
            categorical = layer.categorical(x_cat, x.dtype, one_hot)
        out = torch.cat([*parts, *(p.detach() for p in categorical)], dim=1)
        return out, ([(o.shape[1], s) for o, s in embedded], categorical)

    def backward(self, g, saved):
        embedded, categorical = saved
        start = 0
        for stage, (width, state) in zip(self.numeric_embeddings, embedded):
            stage.backward(g[:, start:start + width], state)
            start += width
        if self.embedded:
            for p in self.embedded:
                p.grad = None
            outs, grads, start = [], [], g.shape[1] - sum(c.shape[1] for c in categorical)
            for part in categorical:
                if part.requires_grad:
                    outs.append(part)
                    grads.append(g[:, start:start + part.shape[1]])
                start += part.shape[1]
            torch.autograd.backward(outs, grads, inputs=self.embedded)


def _flush_tiny(g):
    """Zero the entries of the output gradient below ``sqrt(finfo.tiny)`` (1e-19
    in float32), in place.

    Rows the network already fits with saturated outputs have gradients that
    shrink towards the subnormal range, where x86 CPUs compute the backward
    products up to 100x slower. Such entries move no weight: Adam divides by
    at least ``eps`` (1e-8), SGD steps ``lr`` times them.
    """
    g.masked_fill_(g.abs() < torch.finfo(g.dtype).tiny ** 0.5, 0.0)


def _write_linear_grads(weight, bias, g, h_in):
    if weight.grad is None:
        weight.grad, bias.grad = g.t() @ h_in, g.sum(dim=0)
    else:
        torch.mm(g.t(), h_in, out=weight.grad)
        torch.sum(g, dim=0, out=bias.grad)


class _Adapter:
    """The ensemble's input scaling by hand: ``x (n, d) -> (n * k, d)``."""

    def __init__(self, layer):
        self.weight = layer.weight
        self.r = layer.weight.detach()
        self.params = [layer.weight]

    def forward(self, x):
        return (x[:, None, :] * self.r).flatten(0, 1), x

    def backward(self, g, x, need_input_grad):
        gv = g.view(x.shape[0], -1, x.shape[1])
        # (an einsum here maps to one tiny product per column: 5-9x slower)
        self.weight.grad = (gv * x[:, None, :]).sum(dim=0)
        return (gv * self.r).sum(dim=1) if need_input_grad else None


class _Output:
    """The plain output layer: ``h (n, d) -> (n, o)``."""

    def __init__(self, layer):
        self.weight, self.bias = layer.weight, layer.bias
        self.W, self.b = layer.weight.detach(), layer.bias.detach()

    def forward(self, h):
        return F.linear(h, self.W, self.b), h

    def backward(self, g, h, need_input_grad):
        _write_linear_grads(self.weight, self.bias, g, h)
        return g @ self.W if need_input_grad else None


class _EnsembleOutput:
    """One output layer per member: ``h (n * k, d) -> (n, k, o)``."""

    def __init__(self, layer):
        self.weight, self.bias = layer.weight, layer.bias
        self.W, self.b = layer.weight.detach(), layer.bias.detach()
        self.k, self.d = layer.k, layer.in_features

    # Member-major batched products (bmm): an einsum of the same shapes costs
    # ~15 us more per call in dispatch on CPU, three times per step.
    def forward(self, h):
        hm = h.view(-1, self.k, self.d).transpose(0, 1)  # (k, n, d)
        return torch.bmm(hm, self.W).transpose(0, 1) + self.b, hm

    def backward(self, g, hm, need_input_grad):
        gm = g.transpose(0, 1)  # (k, n, o)
        self.weight.grad = torch.bmm(hm.transpose(1, 2), gm)
        self.bias.grad = g.sum(dim=0)
        if not need_input_grad:
            return None
        return torch.bmm(gm, self.W.transpose(1, 2)).transpose(0, 1).flatten(0, 1)


def plan(module, loss):
    """A ``step(xb, yb, wb) -> loss`` filling ``.grad``, or None (use autograd)."""
    if not isinstance(loss, Loss) or not isinstance(module, MLP):
        return None
    if not all(p.requires_grad for p in module.parameters()):
        return None
    table = None if module.input is None else _InputStage(module.input)
    stages = [] if module.adapter is None else [_Adapter(module.adapter)]
    stages += [_FastBlock(b) if b.fast else _AutogradBlock(b) for b in module.blocks]
    output = _Output(module.output) if module.n_ensemble == 1 else _EnsembleOutput(module.output)
    # backward through stage i needs its input's gradient only when something
    # before it learns: the table input's embeddings or an earlier stage
    learns_before = []
    learned = table is not None and bool(table.params)
    for stage in stages + [output]:
        learns_before.append(learned)
        learned = True
    k = module.n_ensemble

    def step(xb, yb, wb):
        # xb is the batch's inputs: (x_num,) or (x_num, x_cat)
        h, input_saved = (xb[0], None) if table is None else table.forward(xb)
        saved = []
        for stage in stages:
            h, s = stage.forward(h)
            saved.append(s)
        out, out_saved = output.forward(h)
        if k == 1:
            per_sample, g = loss.value_and_grad(out, yb)
        else:  # the members' mean loss: every member sees every row
            n = out.shape[0]
            flat, g = loss.value_and_grad(out.flatten(0, 1), yb.repeat_interleave(k, dim=0))
            per_sample = flat.view(n, k).mean(dim=1)
            g = g.view(n, k, -1).div_(k)
        if wb is None:
            value = per_sample.mean()
            g.div_(per_sample.shape[0])
        else:
            scale = wb / wb.sum().clamp_min(torch.finfo(wb.dtype).tiny)
            value = (per_sample * scale).sum()
            g.mul_(scale.view(-1, *([1] * (g.ndim - 1))))
        _flush_tiny(g)
        g = output.backward(g, out_saved, need_input_grad=learns_before[-1])
        for index in range(len(stages) - 1, -1, -1):
            g = stages[index].backward(g, saved[index], need_input_grad=learns_before[index])
        if table is not None and table.params:
            table.backward(g, input_saved)
        return value

    step.prepare = None if table is None else table.prepare
    return step


def inference(module):
    """``module``'s eval-mode forward, which never reads or sets ``training``.

    Plain networks get activations applied in place (one output-sized
    allocation saved per hidden layer in ``predict``); ensembles and batch
    norm run ``MLP.forward_eval``; a ``Bag`` stacks its members' forwards. A
    module that is neither is put in eval mode and returned as it is.
    """
    if isinstance(module, Bag):
        members = [inference(m) for m in module.members]
        return lambda x_num, x_cat=None: torch.stack([f(x_num, x_cat) for f in members], dim=1)
    if not isinstance(module, MLP):
        return module.eval()
    if module.n_ensemble > 1 or any(block.norm is not None for block in module.blocks):
        return module.forward_eval
    table = module.input
    steps = []
    for block in module.blocks:  # dropout is the identity in eval mode
        steps.append((block.linear, block.kind.in_place or block.kind.forward))
    output = module.output

    def forward(x_num, x_cat=None):
        h = x_num if table is None else table(x_num, x_cat)
        for layer, act in steps:
            h = F.linear(h, layer.weight, layer.bias)
            if act is not None:  # None: the identity
                h = act(h)
        return F.linear(h, output.weight, output.bias)

    return forward


@torch.no_grad()
def output_bound(module, input_bound):
    """An upper bound on every pre-activation (and so on the output) of
    ``module`` in eval mode, for inputs with ``|x| <= input_bound``; None when
    it cannot be shown from the weights (batch norm, an activation whose table
    entry has no bound, a module that is not an ``MLP``).

    Per layer: ``|W h + b| <= max_row(sum |W|) * bound(h) + max |b|``; a
    ``"unit"`` activation caps the bound at 1, a ``"linear"`` one satisfies
    ``|act(z)| <= max(|z|, 1)``. Computed in float64 on the CPU; non-finite
    weights give inf or nan, which no threshold accepts.
    """
    if not isinstance(module, MLP) or module.input is not None or module.n_ensemble > 1:
        return None  # a table input: the end-of-fit check runs its data pass
    if any(b.norm is not None or b.kind.bound is None for b in module.blocks):
        return None
    bound = torch.tensor(float(input_bound), dtype=torch.float64)
    worst = bound
    for linear, block in [(b.linear, b) for b in module.blocks] + [(module.output, None)]:
        # On the CPU in float64 (MPS has no float64); a few small copies per fit.
        weight = linear.weight.detach().to("cpu", torch.float64).abs().sum(dim=1).max()
        bias = linear.bias.detach().to("cpu", torch.float64).abs().max()
        bound = weight * bound + bias
        worst = torch.maximum(worst, bound)  # nan propagates
        if block is not None and block.kind.forward is not None:
            bound = bound.clamp(max=1.0) if block.kind.bound == "unit" else bound.clamp(min=1.0)
    return float(worst)
