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
from dataclasses import dataclass, replace
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

    def forward_eval(self, x):
        """``forward`` as in eval mode, whatever ``self.training`` says."""
        h = self.linear(x)
        if self.norm is not None:
            norm = self.norm
            h = F.batch_norm(h, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                             False, 0.0, norm.eps)
        return self.act(h)


# Categorical columns with at most this many codes (categories + missing +
# unknown) are one-hot coded; wider ones get a learned EMBEDDING_DIM embedding.
ONE_HOT_MAX_CODES = 10
EMBEDDING_DIM = 8


def categorical_width(codes):
    """Input width of a categorical column with ``codes`` codes (the last is
    "unknown", which maps to zeros: one-hot has no column for it)."""
    return codes - 1 if codes <= ONE_HOT_MAX_CODES else EMBEDDING_DIM


PERIODIC_FREQUENCIES = 16  # learned frequencies per numeric column
PERIODIC_SIGMA = 0.1  # initial frequencies ~ N(0, sigma^2)
PIECEWISE_BINS = 16  # quantile bins per numeric column (fewer where values repeat)
ROBUST_BOUND = 1e6  # robust-scaled values are bounded by this before the smooth clip


class PeriodicEmbedding(nn.Module):
    """Periodic numeric embeddings (Gorishniy et al., 2022, "PLR").

    ``x (n, d) -> (n, d * e)``: per column, ``cos`` and ``sin`` of
    ``2 pi f x`` for ``PERIODIC_FREQUENCIES`` learned frequencies ``f``, then
    a linear layer of its own to ``e`` values and a ReLU.
    """

    def __init__(self, d, e, *, dtype=None):
        super().__init__()
        k = PERIODIC_FREQUENCIES
        self.frequencies = nn.Parameter(torch.empty(d, k, device="meta", dtype=dtype))
        self.weight = nn.Parameter(torch.empty(d, 2 * k, e, device="meta", dtype=dtype))
        self.bias = nn.Parameter(torch.empty(d, e, device="meta", dtype=dtype))

    def forward(self, x):
        # column-major: one batched product over the d columns, no permuted copies
        z = (2 * math.pi) * x.t()[:, :, None] * self.frequencies[:, None, :]  # (d, n, k)
        features = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (d, n, 2k)
        out = torch.baddbmm(self.bias[:, None, :], features, self.weight)  # (d, n, e)
        return torch.relu(out).transpose(0, 1).flatten(1)  # (n, d * e)


class PiecewiseEmbedding(nn.Module):
    """Piecewise-linear numeric embeddings (Gorishniy et al., 2022, quantile
    bins with a linear layer and ReLU, "Q-LR").

    ``x (n, d) -> (n, d * e)``: per column, where ``x`` lies in each of its
    ``bins`` bins (0 below the bin, 1 above it, linear inside), then a linear
    layer of its own to ``e`` values and a ReLU. Beyond the training range
    the first bin's position goes on below 0 and the last bin's above 1 by
    the distance to the range (slope 1 in the units ``x`` has, whatever the
    bin's width: a narrow end bin neither blows up values outside the range
    nor float32 rounding at its edge). Each column's first bin is at index 0
    and its last at ``bins - 1``; a column with fewer bins has padding in
    between, whose position is always 0. Buffers, filled by ``set_edges``
    from edges learned in ``fit``: ``offset`` and ``inverse_width`` ``(d,
    bins)`` (a bin's position is ``x * inverse_width + offset``, clamped to
    [0, 1]; both 0 for padding and for a bin of no width), and ``first`` /
    ``last`` ``(d,)``, the ends of the range.
    """

    def __init__(self, d, bins, e, *, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d, bins, e, device="meta", dtype=dtype))
        self.bias = nn.Parameter(torch.empty(d, e, device="meta", dtype=dtype))
        for name in ("offset", "inverse_width"):
            self.register_buffer(name, torch.empty(d, bins, device="meta", dtype=dtype))
        for name in ("first", "last"):
            self.register_buffer(name, torch.empty(d, device="meta", dtype=dtype))

    @torch.no_grad()
    def set_edges(self, edges):
        """``edges``: per column an increasing 1-d tensor of at least one value
        (in the units ``forward`` sees), at most ``bins + 1``. A column with a
        single value has no bin inside the range, only the two extensions."""
        d, bins = self.offset.shape
        offset = torch.zeros(d, bins, dtype=torch.float64)
        inverse_width = torch.zeros(d, bins, dtype=torch.float64)
        first, last = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
        for j, e in enumerate(edges):
            e = torch.as_tensor(e, dtype=torch.float64)
            first[j], last[j] = e[0], e[-1]
            if len(e) < 2:
                continue
            width = torch.diff(e)  # 0 where scaling made edges equal (far outliers)
            inverse = torch.where(width > 0, 1.0 / width, 0.0).clamp(max=1e30)
            slots = [*range(len(width) - 1), bins - 1]  # the last bin at the last index
            inverse_width[j, slots] = inverse
            offset[j, slots] = -e[:-1] * inverse
        for name, value in (("offset", offset), ("inverse_width", inverse_width),
                            ("first", first), ("last", last)):
            getattr(self, name).copy_(value)

    def positions(self, x):
        """``x (n, d) -> (d, n, bins)``: where each value lies in its column's bins."""
        xt = x.t()
        p = torch.addcmul(self.offset[:, None, :], xt[:, :, None],
                          self.inverse_width[:, None, :]).clamp(0, 1)
        below = (xt - self.first[:, None]).clamp(max=0)
        above = (xt - self.last[:, None]).clamp(min=0)
        p[:, :, 0] += below
        p[:, :, -1] += above
        return p

    def forward(self, x):
        out = torch.baddbmm(self.bias[:, None, :], self.positions(x), self.weight)  # (d, n, e)
        return torch.relu(out).transpose(0, 1).flatten(1)  # (n, d * e)


# numeric_embedding -> (embedding, its output width per column) for each embedding
# every numeric column passes through, outputs side by side in this order: 8 values
# per column in all three (the pair at 4 + 4 measured as well as 8 + 8 on the tuning
# tables, for less time: docs/benchmarks.rst).
NUMERIC_EMBEDDINGS = {
    None: (),
    "periodic": (("periodic", 8),),
    "piecewise": (("piecewise", 8),),
    "periodic+piecewise": (("periodic", 4), ("piecewise", 4)),
}


def needs_bins(numeric_embedding):
    """Whether ``numeric_embedding`` needs quantile bins learned in ``fit``."""
    return "piecewise" in dict(NUMERIC_EMBEDDINGS.get(numeric_embedding, ()))


def bin_count(edges):
    """Bins per column of a piecewise embedding with these per-column edges."""
    return max([len(e) - 1 for e in edges] + [1])


def table_width(n_numeric, cardinalities, indicator_columns, numeric_embedding):
    """Width of the table input's output (the first hidden block's input)."""
    parts = NUMERIC_EMBEDDINGS[numeric_embedding]
    numeric = n_numeric * (sum(e for _, e in parts) if parts else 1)
    return (numeric + len(indicator_columns)
            + sum(categorical_width(c) for c in cardinalities))


class TableInput(nn.Module):
    """The table's columns as one input vector.

    ``forward(x_num (n, d) float, x_cat (n, c) int64) -> (n, width)``:
    numeric columns with NaN filled by ``fill`` (``missing="indicator"``) and
    a 0/1 indicator appended for each of ``indicator_columns``; then shifted
    and scaled (``"robust"`` adds the smooth clip ``x / sqrt(1 + (x/3)^2)``,
    which bounds outliers by 3); then every categorical column one-hot coded
    or embedded (see ``categorical_width``). With a ``numeric_embedding``
    the scaled numeric columns pass through its embeddings (``periodic``,
    ``piecewise``; ``bins``: the piecewise embedding's bins per column)
    instead of going in as they are. The statistics are buffers, set from
    the spec, so they travel with the state dict.
    """

    def __init__(self, n_numeric, *, cardinalities=(), indicator_columns=(), missing="error",
                 scaling=None, numeric_embedding=None, bins=0, dtype=None):
        super().__init__()
        parts = dict(NUMERIC_EMBEDDINGS[numeric_embedding]) if n_numeric else {}
        self.periodic = (PeriodicEmbedding(n_numeric, parts["periodic"], dtype=dtype)
                         if "periodic" in parts else None)
        self.piecewise = (PiecewiseEmbedding(n_numeric, bins, parts["piecewise"], dtype=dtype)
                          if "piecewise" in parts else None)
        self.fill_missing = missing == "indicator"
        self.indicator_columns = tuple(indicator_columns)
        self.scaling = scaling
        self.cardinalities = tuple(cardinalities)
        for name in ("fill", "shift", "scale"):
            self.register_buffer(name, torch.empty(n_numeric, device="meta", dtype=dtype))
        self.embeddings = nn.ModuleDict({
            str(j): nn.Embedding(codes, EMBEDDING_DIM, padding_idx=codes - 1, device="meta",
                                 dtype=dtype)
            for j, codes in enumerate(self.cardinalities) if codes > ONE_HOT_MAX_CODES})
        self.width = table_width(n_numeric, self.cardinalities, self.indicator_columns,
                                 numeric_embedding)

    def forward(self, x_num, x_cat=None):
        x, flags = self.numeric(x_num)
        parts = [layer(x) for layer in self.numeric_embeddings()] or [x]
        if flags is not None:
            parts.append(flags)
        parts += self.categorical(x_cat, x.dtype)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def numeric_embeddings(self):
        """The embeddings of the numeric columns, in the order of their outputs."""
        return [layer for layer in (self.periodic, self.piecewise) if layer is not None]

    def numeric(self, x_num):
        """The numeric columns filled and scaled ``(n, d)``, and the 0/1 flags
        of ``indicator_columns`` ``(n, m)`` (None without). No parameters."""
        x, flags = x_num, None
        if self.fill_missing:
            nan = torch.isnan(x)
            if self.indicator_columns:
                flags = nan[:, list(self.indicator_columns)].to(x.dtype)
            x = torch.where(nan, self.fill, x)
        return self.scaled(x), flags

    def scaled(self, x):
        """``x (n, d)`` shifted and scaled as ``scaling`` says."""
        if self.scaling is not None:
            x = (x - self.shift) / self.scale
            if self.scaling == "robust":
                # bounded first: (x / 3) ** 2 overflows for far outliers (|x| > 5e19 in
                # float32), which would map them to 0, the median; at 1e6 the clip is 3
                # to 12 digits
                x = x.clamp(-ROBUST_BOUND, ROBUST_BOUND)
                x = x / torch.sqrt(1 + (x / 3) ** 2)
        return x

    @torch.no_grad()
    def set_bins(self, edges):
        """The piecewise embedding's bins from ``edges`` (per numeric column,
        increasing bin edges in the column's own units, as ``fit`` learned
        them), scaled as the column is."""
        d = len(edges)
        top = max(len(e) for e in edges)
        grid = torch.tensor([list(e) + [e[-1]] * (top - len(e)) for e in edges],
                            dtype=self.shift.dtype).reshape(d, top)
        scaled = self.scaled(grid.t()).t()  # (d, top): each column in its own units
        self.piecewise.set_edges([scaled[j, :len(e)] for j, e in enumerate(edges)])

    def categorical(self, x_cat, dtype, one_hot=None):
        """One part per categorical column: its one-hot code or embedding.
        ``one_hot``: the one-hot codes of these rows as ``one_hot_codes``
        made them (taken from there, not computed again)."""
        parts, start = [], 0
        for j, codes in enumerate(self.cardinalities):
            key = str(j)
            if key in self.embeddings:
                parts.append(self.embeddings[key](x_cat[:, j]))
            elif one_hot is not None:
                parts.append(one_hot[:, start:start + codes - 1])
                start += codes - 1
            else:  # one-hot over the categories and "missing"; "unknown" is all zeros
                parts.append(F.one_hot(x_cat[:, j], codes)[:, :-1].to(dtype))
        return parts

    def one_hot_codes(self, x_cat, dtype):
        """The one-hot parts of ``categorical`` side by side ``(n, w)`` (None
        when no column is one-hot coded). No parameters."""
        parts = [F.one_hot(x_cat[:, j], codes)[:, :-1].to(dtype)
                 for j, codes in enumerate(self.cardinalities) if str(j) not in self.embeddings]
        return torch.cat(parts, dim=1) if parts else None


class EnsembleAdapter(nn.Module):
    """The members' own input scaling (TabM-mini): ``x (n, d) -> (n * k, d)``,
    member ``j`` of row ``i`` at ``i * k + j``, scaled by ``weight[j]``."""

    def __init__(self, k, d, *, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, d, device="meta", dtype=dtype))

    def forward(self, x):
        return (x[:, None, :] * self.weight).flatten(0, 1)


class EnsembleLinear(nn.Module):
    """One output layer per member: ``h (n * k, d) -> (n, k, o)``."""

    def __init__(self, k, d, o, *, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.k = d, o, k
        self.weight = nn.Parameter(torch.empty(k, d, o, device="meta", dtype=dtype))
        self.bias = nn.Parameter(torch.empty(k, o, device="meta", dtype=dtype))

    def forward(self, h):
        h = h.view(-1, self.k, self.in_features).transpose(0, 1)  # (k, n, d)
        return torch.bmm(h, self.weight).transpose(0, 1) + self.bias  # (n, k, o)


class MLP(nn.Module):
    """The network: ``forward(x_num, x_cat=None)`` maps ``x_num (n, n_inputs)``
    (and the categorical codes ``x_cat (n, len(cardinalities))`` when the
    spec has a table input) to ``(n, n_outputs)``."""

    def __init__(self, n_inputs, hidden_dims, n_outputs, *, activation="relu", dropout=0.0,
                 batch_norm=False, dtype=None, table=None, n_ensemble=1):
        super().__init__()
        self.input = None if table is None else TableInput(n_inputs, dtype=dtype, **table)
        widths = [n_inputs if self.input is None else self.input.width, *hidden_dims]
        self.n_ensemble = n_ensemble
        self.adapter = (EnsembleAdapter(n_ensemble, widths[0], dtype=dtype)
                        if n_ensemble > 1 else None)
        self.blocks = nn.ModuleList(
            Block(a, b, activation, dropout=dropout, batch_norm=batch_norm, dtype=dtype)
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.output = (nn.Linear(widths[-1], n_outputs, device="meta", dtype=dtype)
                       if n_ensemble == 1 else
                       EnsembleLinear(n_ensemble, widths[-1], n_outputs, dtype=dtype))

    def forward(self, x_num, x_cat=None):
        """``(n, n_outputs)``, or ``(n, n_ensemble, n_outputs)`` for an ensemble."""
        x = x_num if self.input is None else self.input(x_num, x_cat)
        if self.adapter is not None:
            x = self.adapter(x)
        for block in self.blocks:
            x = block(x)
        return self.output(x)

    def forward_eval(self, x_num, x_cat=None):
        """``forward`` as in eval mode (no dropout, batch norm on its running
        statistics) without reading or setting any module's ``training`` flag,
        so predicting never changes a network that is being trained, also from
        another thread."""
        x = x_num if self.input is None else self.input(x_num, x_cat)
        if self.adapter is not None:
            x = self.adapter(x)
        for block in self.blocks:
            x = block.forward_eval(x)
        return self.output(x)


class Bag(nn.Module):
    """Separate networks as one ensemble (``early_stopping="bagging"``):
    ``forward(x_num, x_cat=None)`` maps the inputs of ``MLP`` to the members'
    outputs ``(n, k, n_outputs)``, as an ``MLP`` with ``n_ensemble=k`` does,
    but no weight is shared, so each member can be trained (and judged) on
    rows of its own."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.n_ensemble = len(self.members)

    def forward(self, x_num, x_cat=None):
        return torch.stack([m(x_num, x_cat) for m in self.members], dim=1)


def seen_codes(cardinalities, x_cat):
    """Per categorical column (``cardinalities``: its number of codes), a bool
    tensor over its codes: which of them a row of ``x_cat (n, c)`` holds."""
    x_cat = torch.as_tensor(x_cat).reshape(-1, len(cardinalities))
    seen = [torch.zeros(codes, dtype=torch.bool) for codes in cardinalities]
    for j, column in enumerate(seen):
        column[x_cat[:, j].unique()] = True
    return seen


@torch.no_grad()
def forget_unseen(module, x_cat, *, seen=None):
    """Make every category that no row of ``x_cat (n, c)`` (the codes the
    network trained on) holds act as "unknown": its embedding row, or its
    one-hot column's weights in the first layer, set to zero. Such a
    category's weights never had a gradient (its rows were all held out, or
    it was declared in ``categories`` but no row has it), so they would
    otherwise stay as initialised, random. ``seen``: ``seen_codes``' answer
    instead of ``x_cat`` (Dask: the union over the workers). ``module``: an
    ``MLP`` or a ``Bag`` member."""
    table = module.input
    if table is None or not table.cardinalities or (x_cat is None and seen is None):
        return
    first = module.blocks[0].linear if len(module.blocks) else module.output
    if seen is None:
        seen = seen_codes(table.cardinalities, x_cat)
    start = table.width - sum(categorical_width(c) for c in table.cardinalities)
    for j, codes in enumerate(table.cardinalities):
        unseen = torch.nonzero(~seen[j][:-1]).flatten()  # the last code is "unknown" itself
        if str(j) in table.embeddings:
            table.embeddings[str(j)].weight[unseen] = 0.0
        elif unseen.numel() and isinstance(first, nn.Linear):
            first.weight[:, start + unseen] = 0.0
        elif unseen.numel() and isinstance(first, EnsembleLinear):  # no hidden layer
            first.weight[:, start + unseen, :] = 0.0
        start += categorical_width(codes)


# ------------------------------------------------- initialisation, groups
def _glorot(layer, generator, gain):
    bound = math.sqrt(gain / (layer.in_features + layer.out_features))
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _norm_init(layer, generator, gain):
    layer.reset_parameters()  # weight 1, bias 0, fresh running statistics


def _periodic_init(layer, generator, gain):
    layer.frequencies.normal_(0.0, PERIODIC_SIGMA, generator=generator)
    bound = 1 / math.sqrt(layer.weight.shape[1])  # torch's Linear default, per column
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _piecewise_init(layer, generator, gain):
    bound = 1 / math.sqrt(layer.weight.shape[1])  # torch's Linear default, per column
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _random_signs(layer, generator, gain):
    # TabM-mini: each member starts from a random +-1 scaling of the shared input
    layer.weight.bernoulli_(0.5, generator=generator).mul_(2).sub_(1)


def _ensemble_linear_init(layer, generator, gain):
    bound = math.sqrt(gain / (layer.in_features + layer.out_features))
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.bias.uniform_(-bound, bound, generator=generator)


def _embedding_init(layer, generator, gain):
    # Unit variance, like a standardised numeric column; the "unknown" row is 0.
    bound = math.sqrt(3.0)
    layer.weight.uniform_(-bound, bound, generator=generator)
    layer.weight[layer.padding_idx].zero_()


@dataclass(frozen=True)
class ParameterRule:
    """How a layer type's parameters are initialised and optimised."""

    init: Callable  # init(layer, generator, gain), in float64
    decay: tuple  # parameter names that get weight decay
    no_decay: tuple  # parameter names that do not


PARAMETER_RULES = {
    nn.Linear: ParameterRule(_glorot, ("weight",), ("bias",)),
    nn.BatchNorm1d: ParameterRule(_norm_init, (), ("weight", "bias")),
    nn.Embedding: ParameterRule(_embedding_init, ("weight",), ()),
    PeriodicEmbedding: ParameterRule(_periodic_init, ("weight",), ("frequencies", "bias")),
    PiecewiseEmbedding: ParameterRule(_piecewise_init, ("weight",), ("bias",)),
    EnsembleAdapter: ParameterRule(_random_signs, (), ("weight",)),
    EnsembleLinear: ParameterRule(_ensemble_linear_init, ("weight",), ("bias",)),
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


def materialise(module):
    """Give every ``meta`` parameter and buffer of ``module`` uninitialised CPU
    storage of its shape and dtype, in place: ``module.to_empty(device="cpu")``
    without its ``torch.empty_like`` on meta tensors, which runs torch's
    Python reference path and imports sympy on a process's first fit (0.3-0.6
    s on this project's 2-core machines, longer than many whole fits)."""
    for layer in module.modules():
        for name, p in list(layer.named_parameters(recurse=False)):
            if p.is_meta:
                storage = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                setattr(layer, name, nn.Parameter(storage, requires_grad=p.requires_grad))
        for name, b in list(layer.named_buffers(recurse=False)):
            if b.is_meta:
                setattr(layer, name, torch.empty(b.shape, dtype=b.dtype, device="cpu"))
    return module


def build(spec, generator):
    """The initialised ``MLP`` for ``spec`` (a ``NetworkSpec``), on the CPU
    (a ``Bag`` of ``spec.n_ensemble`` of them when ``spec.bagged``).

    Layers are created on the ``meta`` device (their default initialisers,
    which use the global RNG, never run), materialised in float64,
    initialised from ``generator`` and cast to the spec's dtype, so the
    weights do not depend on the dtype.
    """
    if spec.bagged:  # k separate one-member networks, drawn one after the other
        member = replace(spec, n_ensemble=1, bagged=False)
        return Bag([build(member, generator) for _ in range(spec.n_ensemble)])
    table = spec.table()
    module = MLP(spec.n_inputs, spec.hidden_dims, spec.n_outputs,
                 activation=spec.activation, dropout=spec.dropout,
                 batch_norm=spec.batch_norm, dtype=torch.float64, table=table,
                 n_ensemble=spec.n_ensemble)
    materialise(module)
    init_weights(module, generator, gain=ACTIVATIONS[spec.activation].gain)
    if module.input is not None:
        with torch.no_grad():
            for name in ("fill", "shift", "scale"):
                values = getattr(spec, name) or ((1.0 if name == "scale" else 0.0),) * spec.n_inputs
                getattr(module.input, name).copy_(torch.tensor(values, dtype=torch.float64))
            if module.input.piecewise is not None:
                module.input.set_bins(spec.bins)
    return module.to(spec.torch_dtype)


def set_dropout_generator(module, generator):
    """Point every ``GeneratorDropout`` of ``module`` at ``generator``."""
    for layer in module.modules():
        if isinstance(layer, GeneratorDropout):
            layer.generator = generator

