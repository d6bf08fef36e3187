"""A minimal hand-written torch loop of ``TabularMLPClassifier``'s network (W5).

What a user who knows torch would write for the same model, without skmlp:

* the preprocessing done once, up front, in numpy/pandas (skmlp does it inside
  the network, per batch): numeric NaN filled by the median plus a 0/1
  indicator for each column that had NaN; robust scaling (median, IQR) and the
  smooth clip ``x / sqrt(1 + (x/3)^2)``; a categorical column with at most
  ``ONE_HOT_MAX_CATEGORIES`` categories one-hot coded (a column for each
  category and one for "missing"), a wider one as codes for an embedding;
* the network (the layers of ``skmlp._network``: ``PeriodicEmbedding``,
  ``PiecewiseEmbedding``, ``TableInput``, ``EnsembleAdapter``,
  ``EnsembleLinear``): per numeric column 16 learned frequencies, cos/sin, a
  per-column linear 32 -> 4 and ReLU, beside the column's position in each of
  its (up to) 16 quantile bins, a per-column linear 16 -> 4 and ReLU; the
  one-hot/indicator block and 8-dim embeddings beside it; an ensemble of 4
  members (a per-member input scaling vector, the shared hidden
  ``Linear -> ReLU`` layers, a per-member output layer);
* plain autograd and ``torch.optim.Adam`` (lr 1e-3, coupled weight decay 1e-4
  on the weight matrices only, as skmlp), batches from ``randperm`` + indexing,
  the members' mean cross-entropy with label smoothing 0.05 (binary targets: one
  logit, the 0/1 target moved to ``t (1 - s) + s / 2``, as skmlp).

The constants repeat skmlp's on purpose (this contender does not import skmlp);
``tests/test_bench_run.py`` checks that both build networks of the same shape.
"""

import math
import time

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

ONE_HOT_MAX_CATEGORIES = 8  # skmlp: ONE_HOT_MAX_CODES (10) minus the missing and unknown codes
EMBEDDING_DIM = 8
FREQUENCIES, PERIODIC_DIM, SIGMA = 16, 4, 0.1
BINS, PIECEWISE_DIM = 16, 4
N_ENSEMBLE = 4
LABEL_SMOOTHING = 0.05
WEIGHT_DECAY = 1e-4


# ------------------------------------------------------------ preprocessing
def _categorical(df):
    return [c for c in df.columns if df[c].dtype == object or isinstance(
        df[c].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(df[c].dtype)]


def _quantile(x, q):
    # the lower value at the q-th fraction of the sorted column, as skmlp's weighted_quantile
    return float(np.quantile(x, q, method="inverted_cdf"))


def fit_preprocessing(df):
    """The statistics of the frame's columns (a plain dict)."""
    cat = _categorical(df)
    num = [c for c in df.columns if c not in cat]
    stats = {"num": num, "cat": cat, "fill": [], "shift": [], "scale": [], "indicator": [],
             "categories": [], "bins": []}
    for c in num:
        x = df[c].to_numpy(dtype=np.float64)
        nan = np.isnan(x)
        median = _quantile(x[~nan], 0.5) if (~nan).any() else 0.0
        x = np.where(nan, median, x)
        spread = _quantile(x, 0.75) - _quantile(x, 0.25)
        if spread <= 0:  # more than half the rows share a value: their spread around it
            spread = float(np.sqrt(np.mean((x - median) ** 2)))
        stats["fill"].append(median)
        stats["shift"].append(median)
        stats["scale"].append(spread if spread > 0 else 1.0)
        stats["indicator"].append(bool(nan.any()))
        edges = np.unique([_quantile(x, q) for q in np.linspace(0, 1, BINS + 1)])
        edges = (edges - median) / stats["scale"][-1]  # scaled and clipped as the column
        stats["bins"].append(edges / np.sqrt(1 + (edges / 3) ** 2))
    for c in cat:
        stats["categories"].append(sorted(df[c].dropna().unique().tolist()))
    return stats


def transform(stats, df, dtype):
    """``(x_num, x_static, x_codes)``: the scaled numeric columns, the indicator
    and one-hot block, the embedding codes (category, then missing, then unknown)."""
    num = df[stats["num"]].to_numpy(dtype=np.float64).copy() if stats["num"] else np.zeros(
        (len(df), 0))
    nan = np.isnan(num)
    static = [nan[:, np.array(stats["indicator"], dtype=bool)].astype(np.float64)]
    num = np.where(nan, np.array(stats["fill"]), num)
    num = (num - np.array(stats["shift"])) / np.array(stats["scale"])
    num = num / np.sqrt(1 + (num / 3) ** 2)
    codes = []
    for c, cats in zip(stats["cat"], stats["categories"]):
        col = df[c]
        k = len(cats)
        code = pd.Index(cats).get_indexer(col)  # -1: missing or unknown
        code = np.where(col.isna().to_numpy(), k, np.where(code < 0, k + 1, code))
        if k <= ONE_HOT_MAX_CATEGORIES:  # the categories and "missing"; unknown: all zeros
            static.append(np.eye(k + 2)[code][:, : k + 1])
        else:
            codes.append(code)
    static = np.concatenate(static, axis=1)
    codes = np.stack(codes, axis=1) if codes else np.zeros((len(df), 0), dtype=np.int64)
    return (torch.from_numpy(num).to(dtype), torch.from_numpy(static).to(dtype),
            torch.from_numpy(codes.astype(np.int64)))


# ------------------------------------------------------------------ network
class Network(nn.Module):
    """Initialised from ``generator`` (never the global torch RNG), as skmlp:
    Glorot-uniform linear layers, frequencies ~ N(0, 0.1^2), +-1 member scalings."""

    def __init__(self, n_num, n_static, cardinalities, hidden, n_out, generator, bins):
        super().__init__()
        g = generator

        def uniform(*shape, bound):
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound, generator=g))

        d, k, e = n_num, FREQUENCIES, PERIODIC_DIM
        self.frequencies = nn.Parameter(torch.empty(d, k).normal_(0.0, SIGMA, generator=g))
        self.periodic_weight = uniform(d, 2 * k, e, bound=1 / math.sqrt(2 * k))
        self.periodic_bias = uniform(d, e, bound=1 / math.sqrt(2 * k))
        # quantile bins: position 0 below a bin, 1 above, linear inside; beyond the
        # range the first bin goes on below 0 and the last above 1 by the distance to it;
        # a column with fewer bins padded with always-0 positions
        t = max([len(b) - 1 for b in bins] + [1])
        lower, inverse = torch.zeros(d, t, dtype=torch.float64), torch.zeros(d, t, dtype=torch.float64)
        first_bin, last_bin = torch.zeros(d, t, dtype=torch.float64), torch.zeros(d, t, dtype=torch.float64)
        for j, b in enumerate(bins):
            b = torch.as_tensor(b, dtype=torch.float64)
            m = max(len(b) - 1, 1)
            lower[j, :m] = b[:m]
            if len(b) > 1:
                inverse[j, :m] = 1 / torch.diff(b)
            first_bin[j, 0] = last_bin[j, m - 1] = 1.0
        ends = torch.tensor([[b[0], b[-1]] for b in bins], dtype=torch.float64).reshape(d, 2)
        for name, value in (("lower", lower), ("inverse", inverse), ("first_bin", first_bin),
                            ("last_bin", last_bin), ("ends", ends)):
            self.register_buffer(name, value)
        self.piecewise_weight = uniform(d, t, PIECEWISE_DIM, bound=1 / math.sqrt(t))
        self.piecewise_bias = uniform(d, PIECEWISE_DIM, bound=1 / math.sqrt(t))
        # the last code ("unknown") maps to zeros and never learns, as skmlp's
        self.embeddings = nn.ModuleList(skip_init(nn.Embedding, c, EMBEDDING_DIM, padding_idx=c - 1)
                                        for c in cardinalities)
        for emb in self.embeddings:
            with torch.no_grad():
                emb.weight.uniform_(-math.sqrt(3), math.sqrt(3), generator=g)
                emb.weight[-1].zero_()
        width = d * (e + PIECEWISE_DIM) + n_static + EMBEDDING_DIM * len(cardinalities)
        self.adapter = nn.Parameter(
            torch.empty(N_ENSEMBLE, width).bernoulli_(0.5, generator=g) * 2 - 1)
        layers = []
        for h in hidden:
            linear = skip_init(nn.Linear, width, h)
            bound = math.sqrt(6 / (width + h))
            with torch.no_grad():
                linear.weight.uniform_(-bound, bound, generator=g)
                linear.bias.uniform_(-bound, bound, generator=g)
            layers += [linear, nn.ReLU()]
            width = h
        self.hidden = nn.Sequential(*layers)
        self.out_weight = uniform(N_ENSEMBLE, width, n_out, bound=math.sqrt(6 / (width + n_out)))
        self.out_bias = uniform(N_ENSEMBLE, n_out, bound=math.sqrt(6 / (width + n_out)))

    def forward(self, x_num, x_static, x_codes):
        """``(n, N_ENSEMBLE, n_out)``: every member's logits."""
        z = (2 * math.pi) * x_num[..., None] * self.frequencies
        periodic = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
        periodic = torch.relu(torch.einsum("ndk,dke->nde", periodic, self.periodic_weight)
                              + self.periodic_bias).flatten(1)
        position = ((x_num[..., None] - self.lower) * self.inverse).clamp(0, 1)
        position = (position + (x_num - self.ends[:, 0]).clamp(max=0)[..., None] * self.first_bin
                    + (x_num - self.ends[:, 1]).clamp(min=0)[..., None] * self.last_bin)
        piecewise = torch.relu(torch.einsum("ndt,dte->nde", position, self.piecewise_weight)
                               + self.piecewise_bias).flatten(1)
        parts = [periodic, piecewise, x_static] + [emb(x_codes[:, j]) for j, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, dim=1)
        x = (x[:, None, :] * self.adapter).flatten(0, 1)  # (n * k, width)
        h = self.hidden(x).view(-1, N_ENSEMBLE, self.out_weight.shape[1])
        return torch.einsum("nkd,kdo->nko", h, self.out_weight) + self.out_bias

    def decay_groups(self):
        decay = [self.periodic_weight, self.piecewise_weight, self.out_weight]
        decay += [m.weight for m in self.hidden if isinstance(m, nn.Linear)]
        decay += [m.weight for m in self.embeddings]
        ids = {id(p) for p in decay}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": decay, "weight_decay": WEIGHT_DECAY},
                {"params": rest, "weight_decay": 0.0}]


def _loss(out, target, binary):
    """The members' mean loss, averaged over the batch."""
    n, k, o = out.shape
    if binary:
        t = target.to(out.dtype) * (1 - LABEL_SMOOTHING) + LABEL_SMOOTHING / 2
        return F.binary_cross_entropy_with_logits(out[..., 0], t[:, None].expand(n, k))
    return F.cross_entropy(out.reshape(n * k, o), target.repeat_interleave(k),
                           label_smoothing=LABEL_SMOOTHING)


class Fitted:
    """The fitted model: statistics, network, classes and per-epoch seconds."""

    def __init__(self, stats, net, classes, dtype, device, epoch_seconds):
        self.stats, self.net, self.classes, self.dtype = stats, net, classes, dtype
        self.device, self.epoch_seconds = device, epoch_seconds

    def predict_proba(self, df):
        with torch.inference_mode():
            inputs = (t.to(self.device) for t in transform(self.stats, df, self.dtype))
            out = self.net(*inputs)
            if len(self.classes) == 2:
                p1 = torch.sigmoid(out[..., 0]).mean(dim=1)
                proba = torch.stack([1 - p1, p1], dim=1)
            else:
                proba = torch.softmax(out, dim=-1).mean(dim=1)
            return proba.cpu().numpy()

    def predict(self, df):
        return self.classes[self.predict_proba(df).argmax(axis=1)]


def fit(df, y, hidden=(100,), batch=200, epochs=10, dtype="float32", seed=0, device="cpu"):
    """Train on the frame ``df``; ``Fitted.epoch_seconds`` times each epoch (on a GPU,
    up to the epoch's last loss read back, which waits for its kernels)."""
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    binary = len(classes) == 2
    stats = fit_preprocessing(df)
    x_num, x_static, x_codes = (t.to(device) for t in transform(stats, df, torch_dtype))
    yt = torch.from_numpy(codes.astype(np.int64)).to(device)
    cardinalities = [len(c) + 2 for c in stats["categories"] if len(c) > ONE_HOT_MAX_CATEGORIES]
    generator = torch.Generator().manual_seed(seed)
    net = Network(x_num.shape[1], x_static.shape[1], cardinalities, hidden,
                  1 if binary else len(classes), generator, stats["bins"]).to(device, torch_dtype)
    opt = torch.optim.Adam(net.decay_groups(), lr=1e-3)
    n = yt.shape[0]
    epoch_seconds = []
    for _ in range(epochs):
        tic = time.perf_counter()
        perm = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            loss = _loss(net(x_num[idx], x_static[idx], x_codes[idx]), yt[idx], binary)
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()
        epoch_seconds.append(time.perf_counter() - tic)
    return Fitted(stats, net, classes, torch_dtype, device, epoch_seconds)
