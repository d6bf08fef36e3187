"""Dask estimators: one model trained data-parallel over the workers that hold the data.

``DaskMLPClassifier``, ``DaskMLPRegressor``, ``DaskTabularMLPClassifier`` and
``DaskTabularMLPRegressor`` take the parameters of their skmlp estimator plus
``client`` and ``timeout``. ``fit`` takes dask arrays and DataFrames; the
partitions stay on the workers that hold them:

1. every partition is validated where it lives (the estimator's own checks);
2. what ``fit`` learns about the columns and the targets (categories, medians,
   quartiles, means, standard deviations, classes, class weights, target
   scaling) is reduced over all partitions and equals what ``fit`` learns in
   memory on the same rows (see ``_column_statistics``);
3. one ``torch.distributed`` gloo process group per fit joins the workers that
   hold data (rank 0 opens the store on a port the system picks: no port is
   guessed, so ports in use are no failure); every worker runs
   ``_training.fit_loop`` on its own rows, with ``_AllReduce`` as its ``sync``:
   gradients (weighted by each worker's batch weight) and BatchNorm buffers are
   summed in one all-reduce per step, so all workers apply the same step and
   hold the same weights; epoch losses, validation scores and stop requests are
   reduced too, so all stop at the same epoch;
4. rank 0's estimator is the result (``to_local()``).

``batch_size`` is the global batch, as in ``fit``: an epoch has
``ceil(n_train / batch_size)`` steps on every worker, each worker's batch its
share of that step's rows (its rows / steps), and the gradient of a step is
the mean over all workers' rows of the step, so ``lr`` reads as in ``fit``.

Faults end the fit with an error and leave the estimator unfitted: a partition
that fails to compute (before training starts), a worker that leaves the
cluster (the driver watches the workers; the others' collectives fail at once
when the connection drops, or after ``timeout`` seconds), an exception on any
worker (its error is raised, not the others' broken collectives).

All coupling with the estimators' private helpers (``_check_data``,
``_sample_weight``, ``_encode_targets``, ``_fit_columns``, ``_start``,
``_split``, ``_tensors``, ``_config``, ``_training_loss``,
``_outputs_score``, ``_negative_loss``, ``_head``, ``_callback``, ``_finish``) and
private state
(``_layout``, ``_numeric_stats``, ``_spec``, ``_state``, ``_rng_state``,
``_validating``) is in ``_Recipe`` below.
"""

import copy
import datetime
import gc
import hashlib
import inspect
import math
import time
import traceback
import uuid
import warnings
from urllib.parse import urlparse

import numpy as np
import torch

try:
    import dask
    import dask.array as da
    import torch.distributed as dist
    from distributed import default_client, get_worker
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("skmlp.dask needs Dask distributed and torch.distributed: "
                      "pip install 'skmlp[dask]'.") from exc

from ._base import AUTO_EARLY_STOPPING_ROWS, _trained_codes
from ._classifier import MLPTorchClassifier, balanced_class_weight
from ._network import (PIECEWISE_BINS, forget_unseen, needs_bins, seen_codes,
                       set_dropout_generator)
from ._params import validate_params
from ._regressor import MLPTorchRegressor
from ._tabular import TabularMLPClassifier, TabularMLPRegressor
from ._threads import torch_threads
from ._training import fit_loop, has_batch_norm

__all__ = ["DaskMLPClassifier", "DaskMLPRegressor", "DaskTabularMLPClassifier",
           "DaskTabularMLPRegressor"]

DEFAULT_TIMEOUT = 120.0  # seconds a collective or the store waits for the other workers
_BINS = 1024  # histogram bins per exact-quantile pass
_GATHER = 1 << 16  # at most this many values are gathered to settle a quantile
_STORES = {}  # fit id -> the TCPStore rank 0 opened (lives in the worker process)


class CollectiveError(RuntimeError):
    """A collective with the other workers failed (one of them left or failed)."""


# ================================================================ partitions
class _Block:
    """One partition, validated on its worker: numeric columns, the partition
    as given (only when it has categorical columns), targets, weights."""

    def __init__(self, X, raw, y, w):
        self.X, self.raw, self.y, self.w = X, raw, y, w

    @property
    def n(self):
        return 0 if self.y is None else len(self.y)

    def weights(self):
        return np.ones(self.n) if self.w is None else self.w


def _delayed_parts(collection, name):
    """The partitions of a dask collection as a list of Delayed (rows only)."""
    if isinstance(collection, da.Array):
        if collection.ndim == 2 and len(collection.chunks[1]) > 1:
            collection = collection.rechunk({1: -1})
        parts = collection.to_delayed()
        return list(np.asarray(parts).reshape(len(collection.chunks[0]), -1)[:, 0])
    if hasattr(collection, "to_delayed") and hasattr(collection, "npartitions"):
        return list(collection.to_delayed())
    raise TypeError(f"{name} must be a dask array or a dask DataFrame/Series (got "
                    f"{type(collection).__name__}); for data in memory use the skmlp "
                    "estimator's fit, or dask.array.from_array / dask.dataframe.from_pandas.")


def _head(collection, rows):
    """The first rows of a dask collection (of its first partition), computed."""
    if isinstance(collection, da.Array):
        return collection[: min(rows, collection.chunks[0][0])]
    return collection.partitions[0]


def _sample(X, y, rows=50):
    """The first rows of X and y, computed (for the checks that fix the columns)."""
    xs, ys = dask.compute(_head(X, rows), _head(y, rows))
    return xs[:rows] if not hasattr(xs, "iloc") else xs.iloc[:rows], np.asarray(ys)[:rows]


# ============================================================ reductions
def _run(client, fn, blocks, *args):
    """``fn(block, *args)`` on every block, where it lives; the results in order."""
    futures = [client.submit(fn, b, *args, pure=False) for b in blocks]
    return client.gather(futures)


def _summary(block, mask, classifier):
    """Pass 1: counts, weights, categories, labels, column ranges of one block."""
    w = block.weights()
    pos = w > 0
    out = {"n": block.n, "weight": float(w.sum())}
    if mask.any():
        from ._columns import ColumnLayout

        out["categories"] = ColumnLayout(mask.copy()).fit_categories(block.raw, w).categories
    X = block.X
    cols = []
    for j in range(X.shape[1]):
        x = X[:, j].astype(np.float64)
        nan = np.isnan(x)
        valid = ~nan & pos
        xv = x[valid]
        cols.append({"nan": bool(np.any(nan & pos)), "count": int(valid.sum()),
                     "weight": float(w[valid].sum()),
                     # every row's, weight 0 too: dtype="auto" keeps float64 beyond float32
                     "absmax": float(np.abs(x[~nan]).max()) if (~nan).any() else 0.0,
                     "min": float(xv.min()) if xv.size else math.inf,
                     "max": float(xv.max()) if xv.size else -math.inf})
    out["columns"] = cols
    out["pos_count"] = int(pos.sum())
    y = block.y
    if classifier:
        out["multilabel"] = y.ndim == 2
        if y.ndim == 1:  # every label (as fit's classes_), counted by weight
            labels, codes = np.unique(y, return_inverse=True)
            out["labels"] = (labels, np.bincount(codes.reshape(-1), weights=w,
                                                 minlength=len(labels)))
    else:
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        out["y_sum"] = (w[:, None] * Y).sum(axis=0)
    return out


def _values(block, j, fill):
    """Column j's values that count for a quantile, with their weights:
    positive weight, NaN dropped (``fill`` None) or replaced by ``fill``."""
    w = block.weights()
    x = block.X[:, j].astype(np.float64)
    if fill is None:
        keep = ~np.isnan(x) & (w > 0)
    else:
        x = np.where(np.isnan(x), fill, x)
        keep = w > 0
    return x[keep], w[keep]


def _bin(x, lo, hi):
    """The histogram bin of x in [lo, hi]: monotone in x, the same formula everywhere."""
    return np.clip(np.floor((x - lo) * (_BINS / (hi - lo))), 0, _BINS - 1).astype(np.int64)


def _quantile_pass(block, specs):
    """Per query: the histogram of, or the values inside, its current range."""
    out = []
    for j, fill, chain, mode in specs:
        x, w = _values(block, j, fill)
        for lo, hi, b in chain:  # inside every bin chosen so far
            keep = _bin(x, lo, hi) == b
            x, w = x[keep], w[keep]
        if mode == "gather":
            out.append((x, w))
        else:
            lo, hi = mode
            idx = _bin(x, lo, hi)
            out.append((np.bincount(idx, w, _BINS), np.bincount(idx, minlength=_BINS),
                        x.min() if x.size else math.inf, x.max() if x.size else -math.inf))
    return out


def _exact_quantiles(client, blocks, queries):
    """Weighted quantiles over all blocks, as ``_columns.weighted_quantile``
    gives on the rows together: the smallest value whose cumulative weight
    reaches ``q`` times the total.

    ``queries``: (column, q, fill, total weight, count, min, max). Each pass
    histograms the open queries' ranges in every block (``_BINS`` bins); the
    bin where the cumulative weight reaches the target becomes the next
    range, until it holds at most ``_GATHER`` values (or one value), which are
    gathered and settled. Exact; the only difference from one machine is the
    order in which the weight sums are added (it matters only when the target
    falls on a cumulative weight to the last bit, never for unit weights).
    """
    state = []
    for j, q, fill, total, count, lo, hi in queries:
        state.append({"j": j, "fill": fill, "target": q * total, "below": 0.0, "chain": [],
                      "count": count, "lo": lo, "hi": hi,
                      "value": 0.0 if count == 0 else (lo if lo == hi else None)})
    while True:
        open_ = [s for s in state if s["value"] is None]
        if not open_:
            return [s["value"] for s in state]
        specs = [(s["j"], s["fill"], list(s["chain"]),
                  "gather" if s["count"] <= _GATHER else (s["lo"], s["hi"])) for s in open_]
        results = _run(client, _quantile_pass, blocks, specs)
        for k, s in enumerate(open_):
            parts = [r[k] for r in results]
            if specs[k][3] == "gather":
                x = np.concatenate([p[0] for p in parts])
                w = np.concatenate([p[1] for p in parts])
                order = np.argsort(x, kind="stable")
                x, cw = x[order], s["below"] + np.cumsum(w[order])
                s["value"] = float(x[min(np.searchsorted(cw, s["target"], side="left"),
                                         x.size - 1)])
                continue
            low, high = min(p[2] for p in parts), max(p[3] for p in parts)
            if low == high:  # one value left in the range
                s["value"] = float(low)
                continue
            weight = np.sum([p[0] for p in parts], axis=0)
            counts = np.sum([p[1] for p in parts], axis=0)
            cum = s["below"] + np.cumsum(weight)
            b = int(min(np.searchsorted(cum, s["target"], side="left"), _BINS - 1))
            while counts[b] == 0 and b > 0:  # rounding past the last value: step back
                b -= 1
            s["below"] = float(cum[b] - weight[b])
            s["chain"].append((s["lo"], s["hi"], b))
            width = (s["hi"] - s["lo"]) / _BINS
            s["lo"], s["hi"] = s["lo"] + b * width, s["lo"] + (b + 1) * width
            s["count"] = int(counts[b])
            if s["count"] <= 1 or not s["hi"] > s["lo"]:
                s["count"] = min(s["count"], _GATHER)  # settle by gathering next pass


def _filled_moments(block, fill, center):
    """Weighted sums of the NaN-filled columns and of their squares about ``center``."""
    w = block.weights()
    X = block.X.astype(np.float64)
    X = np.where(np.isnan(X), fill, X)
    return (w[:, None] * X).sum(axis=0), (w[:, None] * (X - center) ** 2).sum(axis=0)


def _column_statistics(client, blocks, summaries, scaling, missing, bins=0):
    """``_columns.numeric_statistics`` over all blocks: medians, quartiles and
    the piecewise embedding's bin edges exact (``_exact_quantiles``), means
    and standard deviations as sums (equal to float rounding)."""
    cols = [s["columns"] for s in summaries]
    d = len(cols[0])
    total = sum(s["weight"] for s in summaries)
    nan_cols = np.array([any(c[j]["nan"] for c in cols) for j in range(d)])

    def column(j, key, how):
        return how(c[j][key] for c in cols)

    queries = [(j, 0.5, None, column(j, "weight", sum), column(j, "count", sum),
                column(j, "min", min), column(j, "max", max)) for j in range(d)]
    fill = np.array(_exact_quantiles(client, blocks, queries))
    # the filled column: the NaN rows (of positive weight) take the median
    pos_count = sum(s["pos_count"] for s in summaries)
    lo = np.array([min(column(j, "min", min), fill[j]) if nan_cols[j] else column(j, "min", min)
                   for j in range(d)])
    hi = np.array([max(column(j, "max", max), fill[j]) if nan_cols[j] else column(j, "max", max)
                   for j in range(d)])
    sums, around_fill = (np.sum(p, axis=0) for p in zip(*_run(
        client, _filled_moments, blocks, fill, fill)))
    shift, scale = np.zeros(d), np.ones(d)
    if scaling == "standard":
        mean = sums / total
        _, around_mean = (np.sum(p, axis=0) for p in zip(*_run(
            client, _filled_moments, blocks, fill, mean)))
        std = np.sqrt(around_mean / total)
        shift, scale = mean, np.where(std > 0, std, 1.0)
    elif scaling == "robust":
        queries = [(j, q, fill[j], total_pos, pos_count, lo[j], hi[j])
                   for j in range(d) for q in (0.25, 0.75)
                   for total_pos in [sum(s["weight"] for s in summaries)]]
        quartiles = np.array(_exact_quantiles(client, blocks, queries)).reshape(d, 2)
        spread = quartiles[:, 1] - quartiles[:, 0]
        fallback = np.sqrt(around_fill / total)
        spread = np.where(spread <= 0, fallback, spread)
        shift, scale = fill, np.where(spread > 0, spread, 1.0)
    edges = []
    if bins:  # as _columns.bin_edges: the distinct quantiles of the filled column
        qs = np.linspace(0.0, 1.0, bins + 1)
        queries = [(j, q, fill[j], total, pos_count, lo[j], hi[j]) for j in range(d) for q in qs]
        values = np.array(_exact_quantiles(client, blocks, queries)).reshape(d, bins + 1)
        edges = [np.unique(v) for v in values]
    indicator = nan_cols if missing == "indicator" else np.zeros(d, dtype=bool)
    return {"fill": fill, "shift": shift, "scale": scale, "indicator": indicator,
            "bins": edges}


def _y_moments(block, mean):
    Y = np.asarray(block.y, dtype=np.float64).reshape(block.n, -1)
    return (block.weights()[:, None] * (Y - mean) ** 2).sum(axis=0)


# ============================================================ collectives
class _AllReduce:
    """``fit_loop``'s ``sync`` over a gloo process group (see ``_training.fit_loop``)."""

    def __init__(self, group, module, steps):
        self.group, self.steps, self.seconds, self.calls = group, steps, 0.0, 0
        self.params = list(module.parameters())
        self.buffers = [b for b in module.buffers() if b.is_floating_point()]
        size = sum(p.numel() for p in self.params) + sum(b.numel() for b in self.buffers)
        dtype = self.params[0].dtype if self.params else torch.float64
        self.flat = torch.zeros(size + 1, dtype=dtype)
        self.world = group.size()

    def _reduce(self, tensor):
        if self.world == 1:  # alone: the sums are the values
            return tensor
        tic = time.perf_counter()
        try:
            self.group.allreduce([tensor]).wait()
        except RuntimeError as exc:
            raise CollectiveError(f"an all-reduce with the other workers failed (one of "
                                  f"them left the cluster, failed or timed out): {exc}") from exc
        self.seconds += time.perf_counter() - tic
        self.calls += 1
        return tensor

    def batches(self, n):
        """``steps`` batches of near-equal size (every worker takes the same number)."""
        edges = [n * i // self.steps for i in range(self.steps + 1)]
        return list(zip(edges[:-1], edges[1:]))

    @torch.no_grad()
    def grads(self, module, weight):
        if self.world == 1:
            return
        flat, start = self.flat, 0
        for p in self.params:
            k = p.numel()
            if p.grad is None:
                flat[start:start + k].zero_()
            else:
                flat[start:start + k].copy_(p.grad.reshape(-1)).mul_(weight)
            start += k
        for b in self.buffers:  # BatchNorm's running statistics: averaged
            flat[start:start + b.numel()].copy_(b.reshape(-1)).div_(self.world)
            start += b.numel()
        flat[-1] = weight
        self._reduce(flat)
        total = flat[-1].clamp_min(torch.finfo(flat.dtype).tiny)
        start = 0
        for p in self.params:
            k = p.numel()
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(flat[start:start + k].view_as(p)).div_(total)
            start += k
        for b in self.buffers:
            b.copy_(flat[start:start + b.numel()].view_as(b))
            start += b.numel()

    def mean(self, total, weight):
        t = torch.tensor([float(total), float(weight)], dtype=torch.float64)
        self._reduce(t)
        return t[0] / t[1] if t[1] > 0 else torch.tensor(0.0, dtype=torch.float64)

    def sum(self, value):
        t = torch.tensor([float(value)], dtype=torch.float64)
        return float(self._reduce(t)[0])

    def all(self, flag):
        return self.sum(0.0 if flag else 1.0) == 0.0


def _open_store(fit_id, world, timeout):
    """On rank 0's worker: a TCPStore on a port the system picks; returns (host, port)."""
    host = urlparse(get_worker().address).hostname
    store = dist.TCPStore(host, 0, world, True, timeout=datetime.timedelta(seconds=timeout),
                          wait_for_workers=False)
    _STORES[fit_id] = store
    return host, store.port


def _close_store(fit_id):
    _STORES.pop(fit_id, None)


# ================================================================ the recipe
class _Recipe:
    """The steps of ``fit`` split between the driver and the workers (the only
    place that calls the estimators' private helpers)."""

    @staticmethod
    def template(local, X_sample, y_sample):
        """Validate parameters and the columns on a sample; the categorical mask."""
        validate_params(local)
        if local.optimizer == "lbfgs":
            raise ValueError("optimizer='lbfgs' steps over all rows at once; the Dask "
                             "estimators train with minibatches: use 'adam' or 'sgd'.")
        if isinstance(local.early_stopping, str) and local.early_stopping in (
                "refit", "bagging", "finetune"):
            raise ValueError(
                f"early_stopping={local.early_stopping!r} is not supported by the Dask "
                "estimators (it would train again over the cluster); use True, "
                "False or 'auto' (which holds nothing out below "
                f"{AUTO_EARLY_STOPPING_ROWS} rows there).")
        if local.warm_start is True or local.warm_start is np.True_:
            raise ValueError("warm_start is not supported by the Dask estimators: continue a "
                             "fitted model with to_local() and its partial_fit.")
        if local.scoring is not None and not (isinstance(local.scoring, str)
                                              and local.scoring == "loss"):
            raise ValueError(f"scoring={local.scoring!r}: the Dask estimators monitor "
                             "score's metric (None) or the validation loss ('loss'), which "
                             "the workers reduce; a scikit-learn scorer would need the "
                             "held-out rows in one process.")
        if local.device not in ("cpu", "auto"):
            raise ValueError(f"device={local.device!r}: the Dask estimators train on the "
                             "workers' CPUs (gloo); use device='cpu'.")
        (X_num, raw, mask), _ = local._check_data(X_sample, y_sample, reset=True)
        if hasattr(X_num, "tocsr"):
            raise TypeError("skmlp.dask trains on dense data; densify sparse chunks first.")
        from ._columns import ColumnLayout

        local._layout = ColumnLayout(mask.copy(), missing=local.missing)
        return X_num, mask

    @staticmethod
    def prepare(template, index, X, y, w):
        """On a worker: partition ``index`` validated by the template's own checks."""
        if len(X) != len(y) or (w is not None and len(w) != len(X)):
            raise ValueError(f"partition {index}: X has {len(X)} rows, y {len(y)}"
                             + ("" if w is None else f", sample_weight {len(w)}")
                             + ": X, y and sample_weight need the same partitions (e.g. "
                             "y = df['target'] of the same DataFrame, or rechunk alike).")
        if len(X) == 0:
            return _Block(None, None, None, None)
        (X_num, raw, mask), y = template._check_data(X, np.asarray(y), reset=False)
        if hasattr(X_num, "tocsr"):
            raise TypeError("skmlp.dask trains on dense partitions; densify sparse chunks "
                            "first (X.map_blocks(lambda b: b.toarray())).")
        # a partition may weigh nothing; the driver checks that the whole data does not
        w = template._sample_weight(None if w is None else np.asarray(w), X_num,
                                    all_zero_ok=True)
        return _Block(np.asarray(X_num), raw if mask.any() else None, y, w)

    @staticmethod
    def fit_columns(local, X_num, mask, categories, stats):
        """The layout from the union of every block's categories (through the
        estimator's own ``_fit_columns``, which also checks declared
        categories), then the numeric statistics of all blocks."""
        d = len(mask)
        union = [_sorted_union(c) for c in zip(*categories)] if mask.any() else []
        rows = max([len(u) for u in union] + [1])
        table = np.zeros((rows, d), dtype=object)
        for j, values in zip(np.flatnonzero(mask), union):
            table[:, j] = [*values, *([None] * (rows - len(values)))]
        local._fit_columns(np.zeros((rows, X_num.shape[1])), table, mask, None)
        if local._numeric_stats is not None:
            local._numeric_stats = stats

    @staticmethod
    def targets(local, summaries, y_sample, client, blocks):
        """Classes and class weights, or target scaling, over all blocks; the head."""
        if isinstance(local, MLPTorchClassifier):
            if summaries[0]["multilabel"]:
                return local._encode_targets(y_sample, reset=True)[0], None
            labels = np.unique(np.concatenate([s["labels"][0] for s in summaries]))
            counts = np.zeros(len(labels))
            for s in summaries:
                counts[np.searchsorted(labels, s["labels"][0])] += s["labels"][1]
            class_weight = None
            if isinstance(local.class_weight, str):  # "balanced", as fit computes it
                class_weight = dict(zip(labels, balanced_class_weight(counts)))
            elif local.class_weight is not None:
                class_weight = local.class_weight
            saved, local.class_weight = local.class_weight, None
            try:
                head = local._encode_targets(labels, reset=True, classes=labels)[0]
            finally:
                local.class_weight = saved
            return head, class_weight
        total = sum(s["weight"] for s in summaries)
        mean = np.sum([s["y_sum"] for s in summaries], axis=0) / total
        std = np.sqrt(np.sum(_run(client, _y_moments, blocks, mean), axis=0) / total)
        # Two rows whose weighted mean and standard deviation are those of all
        # targets: the head turns them into its (shift, scale) as in fit.
        two = np.stack([mean - std, mean + std])
        two = two[:, 0] if y_sample.ndim == 1 else two
        return local._encode_targets(two, reset=True, sample_weight=np.ones(2))[0], None

    @staticmethod
    def start(local, X_num, head_name, n_rows, fits_float32):
        from ._base import resolve_early_stopping
        from ._data import resolve_device

        local._start(X_num, head_name, resolve_device("cpu"), n_rows=n_rows,
                     fits_float32=fits_float32)
        # "auto" bags 60-999 rows in memory; over a cluster it holds nothing out there.
        local._validating = resolve_early_stopping(local.early_stopping, n_rows) is True

    @staticmethod
    def train(est, blocks, class_weight, sync, rank, nthreads):
        """On a worker: encode its blocks, train with the others, return the stats."""
        from ._data import resolve_device

        if class_weight is not None:
            est.class_weight = class_weight  # the classes' weights over all blocks
        blocks = [b for b in blocks if b.n]
        X = np.concatenate([b.X for b in blocks])
        y = np.concatenate([b.y for b in blocks])
        w = None if all(b.w is None for b in blocks) else np.concatenate(
            [b.weights() for b in blocks])
        codes = None
        if est._layout.categorical.any():
            codes = np.concatenate([est._layout.encode(b.raw) for b in blocks])
        _, Y, target_weights = est._encode_targets(y, reset=False, sample_weight=w)
        weights = w if target_weights is None else (
            target_weights if w is None else w * target_weights)
        device = resolve_device("cpu")
        dtype = est._spec.torch_dtype
        generator = torch.Generator().set_state(est._rng_state)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        local_gen = torch.Generator().manual_seed((seed + 1_000_003 * rank) % 2**62)
        train, val = est._split((X, Y, weights, codes), w, local_gen, est._validating)
        data = est._tensors(*train, dtype, device)
        val_data = est._tensors(*val[:4], dtype, device) if est._validating else None
        config = est._config(data[1].shape[0], early=est._validating)
        n_local = data[1].shape[0]
        n_total = int(sync.sum(n_local))
        batch = min(200 if est.batch_size == "auto" else est.batch_size, n_total)
        steps = math.ceil(n_total / batch)
        need = steps * (2 if has_batch_norm(est.module_) else 1)
        if not sync.all(n_local >= need):
            raise ValueError(
                f"a worker holds {n_local} training rows, fewer than the {need} an epoch "
                f"needs ({steps} steps of batch_size={batch}"
                + (", 2 rows per step for batch_norm" if need > steps else "")
                + "): rebalance the partitions (client.rebalance, repartition) or raise "
                "batch_size.")
        sync.steps = steps
        config.batch_size = math.ceil(n_local / steps)
        state = est._state
        val_score = None
        if val_data is not None:
            n_val = val_data[1].shape[0]
            w_val = float(n_val if val_data[2] is None else val_data[2].sum())

            measure = est._head.score if est.scoring is None else est._negative_loss

            def val_score(module):
                local = est._outputs_score(module, val_data, measure) if n_val else 0.0
                return float(sync.mean(local * w_val, w_val))
        callback = est._callback()
        if callback is not None:
            user = callback

            def callback(epoch, logs):  # a stop asked anywhere stops every worker
                return not sync.all(not user(epoch, logs))
        set_dropout_generator(est.module_, local_gen)
        tic, cpu = time.perf_counter(), time.process_time()
        try:
            # The worker's own count: no idle-core measurement, so that every worker
            # and every run computes alike (SKMLP_NUM_THREADS still applies).
            with torch_threads(nthreads, measure=False):
                run = fit_loop(est.module_, est._training_loss(), data, config, local_gen,
                               state, epochs=config.max_iter, val_score=val_score,
                               callback=callback, monitor=True, sync=sync)
        finally:
            set_dropout_generator(est.module_, None)
        seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
        if codes is not None:  # what no worker's training rows hold is unknown, as in fit
            cards = est.module_.input.cardinalities
            seen = seen_codes(cards, _trained_codes(train))
            union = sync._reduce(torch.cat(seen).to(torch.float64)) > 0
            forget_unseen(est.module_, None, seen=list(union.split(list(cards))))
        run.samples = len(run.losses) * n_total  # t_ counts the rows of every worker
        est._rng_state = generator.get_state()
        # calibration: every worker runs the same search over the reduced loss
        est._calibrate(val_data if run.reason != "diverged" else None,
                       total=sync.sum)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est._finish(run, False)
        state = est._state
        caught = [(w.category, str(w.message)) for w in caught]
        digest = hashlib.sha256()
        for t in est.module_.state_dict().values():
            digest.update(t.detach().cpu().numpy().tobytes())
        stats = {"rank": rank, "rows": n_local, "seconds": seconds, "cpu_seconds": cpu,
                 "allreduce_seconds": sync.seconds, "allreduce_calls": sync.calls,
                 "steps_per_epoch": steps, "epochs": state.n_iter,
                 "weights": digest.hexdigest()}
        return stats, caught


def _sorted_union(lists):
    """The sorted union of every block's categories of one column (``_columns``' order)."""
    from ._columns import _sorted

    return _sorted(set().union(*map(set, lists)))


def _peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_worker(est, blocks, class_weight, fit_id, rank, world, host, port, timeout):
    """The training task of one worker (rank ``rank`` of ``world``)."""
    delta = datetime.timedelta(seconds=timeout)
    if rank == 0:
        store = _STORES.pop(fit_id)
    else:
        store = dist.TCPStore(host, port, world, False, timeout=delta)
    try:
        group = dist.ProcessGroupGloo(store, rank, world, delta)
    except RuntimeError as exc:
        raise CollectiveError(f"joining the process group of the fit failed: {exc}") from exc
    nthreads = get_worker().state.nthreads
    sync = _AllReduce(group, est.module_, 1)
    try:
        stats, caught = _Recipe.train(est, blocks, class_weight, sync, rank, nthreads)
    except BaseException as exc:
        # Drop every reference to the group (the traceback's frames keep the
        # closures that hold ``sync``), so that its connections close and the
        # other workers' collectives fail at once instead of after timeout.
        sync.group = None
        traceback.clear_frames(exc.__traceback__)
        del group
        gc.collect()
        raise
    sync.group = None
    stats["peak_rss_mib"] = _peak_rss_mib()
    stats["worker"] = get_worker().address
    del group
    return (est if rank == 0 else None), stats, (caught if rank == 0 else [])


# ================================================================ the driver
def _scheduler_workers(dask_scheduler=None):
    return list(dask_scheduler.workers)


def _live_workers(client):
    """The addresses of the workers the scheduler knows now, asked of the
    scheduler itself: ``client.scheduler_info()`` returns the client's cached
    identity, which its periodic refresh can leave without per-worker entries
    at any moment (every worker would then look gone)."""
    return set(client.run_on_scheduler(_scheduler_workers))


def _gone(client, workers):
    alive = _live_workers(client)
    return [w for w in workers if w not in alive]


def _left(gone):
    return RuntimeError(
        f"Dask worker(s) {gone} left the cluster during fit: the fit was abandoned (the "
        "estimator is unchanged); the other workers' training tasks end when their "
        "collectives fail. Fit again once the cluster is whole.")


def _wait(client, futures, workers):
    """The results of ``futures``; a worker leaving or a task failing raises
    at once (the first error that is not a broken collective)."""
    while True:
        status = [f.status for f in futures]
        if all(s == "finished" for s in status):
            return client.gather(futures)
        if any(s in ("error", "cancelled", "lost") for s in status):
            time.sleep(0.5)  # let the root cause arrive before the broken collectives
            errors = [f.exception() for f in futures if f.status == "error"]
            for f in futures:
                f.cancel()
            first = next((e for e in errors if not isinstance(e, CollectiveError)), None)
            if first is not None:
                raise first
            gone = _gone(client, workers)
            if gone:
                raise _left(gone) from (errors[0] if errors else None)
            if errors:
                raise errors[0]
            raise RuntimeError("a training task of the fit was cancelled or lost.")
        gone = _gone(client, workers)
        if gone:
            for f in futures:
                f.cancel()
            raise _left(gone)
        time.sleep(0.1)


class _DaskMixin:
    """fit / predict / to_local over dask collections (see the module docstring)."""

    _local_class = None
    _dask_params = ("client", "timeout")

    def _local_params(self):
        return {k: v for k, v in self.get_params(deep=False).items()
                if k not in self._dask_params}

    def _client(self):
        return self.client if self.client is not None else default_client()

    def fit(self, X, y, sample_weight=None):
        """Fit one model data-parallel over the Dask workers that hold X's partitions.

        Parameters
        ----------
        X : dask array of shape (n_samples, n_features) or dask DataFrame
            The input data, partitioned by rows.
        y : dask array or dask Series/DataFrame
            The targets, partitioned as X.
        sample_weight : dask array or dask Series, default=None
            Per-sample weights, partitioned as X.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        client = self._client()
        timeout = float(self.timeout)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got "
                             f"{self.timeout!r}.")
        local = self._local_class(**self._local_params())
        x_parts = _delayed_parts(X, "X")
        y_parts = _delayed_parts(y, "y")
        w_parts = [None] * len(x_parts) if sample_weight is None else _delayed_parts(
            sample_weight, "sample_weight")
        if not len(x_parts) == len(y_parts) == len(w_parts):
            raise ValueError(f"X has {len(x_parts)} partitions, y {len(y_parts)}"
                             + ("" if sample_weight is None else f", sample_weight {len(w_parts)}")
                             + ": partition them alike.")
        X_sample, y_sample = _sample(X, y)
        X_num, mask = _Recipe.template(local, X_sample, y_sample)
        prepare = dask.delayed(_Recipe.prepare, pure=False)
        futures = client.compute([
            prepare(local, i, xp, yp, wp)
            for i, (xp, yp, wp) in enumerate(zip(x_parts, y_parts, w_parts))])
        try:
            from distributed import wait

            wait(futures)
            for i, f in enumerate(futures):
                if f.status == "error":
                    exc = f.exception()
                    message = f"partition {i} of the fit's data failed: {exc}"
                    try:
                        error = type(exc)(message)
                    except Exception:  # an exception type with other arguments
                        error = RuntimeError(message)
                    raise error from exc
            self._fit_blocks(client, local, futures, mask, X_num, y_sample, timeout)
        finally:
            for f in futures:
                f.release()
        return self

    def _fit_blocks(self, client, local, blocks, mask, X_num, y_sample, timeout):
        classifier = isinstance(local, MLPTorchClassifier)
        summaries = _run(client, _summary, blocks, mask, classifier)
        keep = [s["n"] > 0 for s in summaries]
        blocks = [b for b, k in zip(blocks, keep) if k]
        summaries = [s for s, k in zip(summaries, keep) if k]
        if not blocks:
            raise ValueError("Found array with 0 sample(s) in every partition; at least one "
                             "is required.")
        if not any(s["weight"] > 0 for s in summaries):
            raise ValueError("sample_weight must not be all zero: nothing would be learned.")
        stats = None
        bins = PIECEWISE_BINS if needs_bins(local.numeric_embedding) else 0
        if local.scaling is not None or local.missing == "indicator" or bins:
            stats = _column_statistics(client, blocks, summaries, local.scaling, local.missing,
                                       bins)
        _Recipe.fit_columns(local, X_num, mask,
                            [s["categories"] for s in summaries] if mask.any() else [], stats)
        head_name, class_weight = _Recipe.targets(local, summaries, y_sample, client, blocks)
        n_rows = sum(s["n"] for s in summaries)
        top = float(np.finfo(np.float32).max)
        fits_float32 = all(c["absmax"] <= top for s in summaries for c in s["columns"])
        _Recipe.start(local, X_num, head_name, n_rows, fits_float32)

        # one process group over the workers that hold blocks
        who_has = client.who_has(blocks)
        by_worker = {}
        for b in blocks:
            by_worker.setdefault(next(iter(who_has[b.key])), []).append(b)
        workers = sorted(by_worker)
        world = len(workers)
        fit_id = uuid.uuid4().hex
        host, port = client.submit(_open_store, fit_id, world, timeout, workers=[workers[0]],
                                   allow_other_workers=False, pure=False).result()
        try:
            futures = [client.submit(_train_worker, local, by_worker[w], class_weight, fit_id,
                                     rank, world, host, port, timeout, workers=[w],
                                     allow_other_workers=False, pure=False, retries=0)
                       for rank, w in enumerate(workers)]
            results = _wait(client, futures, workers)
        finally:
            if workers[0] in _live_workers(client):
                client.submit(_close_store, fit_id, workers=[workers[0]],
                              allow_other_workers=False, pure=False)
        fitted, _, caught = results[0]
        for category, message in caught:
            warnings.warn(message, category, stacklevel=3)
        state = {k: v for k, v in fitted.__dict__.items() if k not in local.get_params()}
        for k in [k for k in self.__dict__ if k.endswith("_") and not k.startswith("__")]:
            del self.__dict__[k]
        self.__dict__.update(state)
        self.dask_stats_ = [r[1] for r in results]

    # ------------------------------------------------------------- results
    def to_local(self):
        """The fitted model as a plain skmlp estimator (pickle, ONNX, ... as usual).

        Returns
        -------
        estimator : the skmlp estimator this class extends
            A copy (e.g. a ``MLPTorchClassifier`` for ``DaskMLPClassifier``) with
            the same parameters, without ``client`` and ``timeout``, and the
            fitted state.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "module_")
        local = self._local_class(**self._local_params())
        params = set(self.get_params(deep=False))
        local.__dict__.update(copy.deepcopy(
            {k: v for k, v in self.__dict__.items() if k not in params and k != "dask_stats_"}))
        return local

    def _map(self, X, method):
        """``method`` of the local estimator over X's partitions, where they live."""
        if not (isinstance(X, da.Array) or hasattr(X, "npartitions")):
            return getattr(self.to_local(), method)(X)
        local = self.to_local()
        (sample,) = dask.compute(_head(X, 2))
        out = getattr(local, method)(sample[:2] if not hasattr(sample, "iloc")
                                     else sample.iloc[:2])
        parts = _delayed_parts(X, "X")
        model = dask.delayed(local, pure=True)
        apply = dask.delayed(_apply, pure=True)
        sizes = (X.chunks[0] if isinstance(X, da.Array) else [np.nan] * len(parts))
        arrays = [da.from_delayed(apply(model, method, p, out.shape[1:]),
                                  shape=(n,) + out.shape[1:], dtype=out.dtype)
                  for p, n in zip(parts, sizes)]
        return da.concatenate(arrays)

    def predict(self, X):
        """Predictions for X, a dask array computed where X's partitions live.

        Parameters
        ----------
        X : dask array or dask DataFrame (or an in-memory input: a NumPy result)

        Returns
        -------
        y : dask array of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._map(X, "predict")

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Not supported: use ``to_local().partial_fit`` or dask-ml's ``Incremental``."""
        raise NotImplementedError("The Dask estimators fit over all partitions at once; for "
                                  "streaming, use to_local().partial_fit or "
                                  "dask_ml.wrappers.Incremental with the skmlp estimator.")

    def score(self, X, y, sample_weight=None):
        """The local estimator's ``score`` on computed X and y (in memory)."""
        X, y = dask.compute(X, y)
        if sample_weight is not None:
            (sample_weight,) = dask.compute(sample_weight)
        return self.to_local().score(X, y, sample_weight=sample_weight)


def _apply(model, method, part, trailing):
    if len(part) == 0:
        return np.empty((0,) + trailing)
    return np.asarray(getattr(model, method)(part))


class _DaskClassifierMixin(_DaskMixin):
    def predict_proba(self, X):
        """Class probabilities for X, a dask array computed where X's partitions live.

        Parameters
        ----------
        X : dask array or dask DataFrame

        Returns
        -------
        proba : dask array of shape (n_samples, n_classes)
        """
        return self._map(X, "predict_proba")


def _dask_class(name, base, mixin, doc):
    """A Dask estimator: ``base``'s parameters plus ``client`` and ``timeout``."""
    kinds = inspect.Parameter
    signature = inspect.signature(base.__init__)
    params = list(signature.parameters.values()) + [
        kinds("client", kinds.KEYWORD_ONLY, default=None),
        kinds("timeout", kinds.KEYWORD_ONLY, default=DEFAULT_TIMEOUT)]
    signature = signature.replace(parameters=params)

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for key, value in list(bound.arguments.items())[1:]:
            setattr(self, key, value)

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{name}.__init__"
    __init__.__module__ = __name__
    cls = type(name, (mixin, base), {"__init__": __init__, "__doc__": doc,
                                      "__module__": __name__, "_local_class": base})
    return cls


_EXTRA_PARAMS = """
    client : distributed.Client, default=None
        The Dask client; None: the default client.
    timeout : float, default={timeout}
        Seconds a collective (or joining the fit's process group) waits for
        the other workers before the fit fails."""

_EXTRA_ATTRIBUTES = """
    dask_stats_ : list of dict
        Per worker: its rank, address, training rows, seconds training (wall
        and CPU time of its process), seconds and calls in the all-reduce, steps per epoch, epochs, a digest
        of its final weights and its peak resident memory (MiB)."""


def _doc(base):
    """``base``'s docstring for its Dask estimator: a new summary, the
    parameters plus ``client`` and ``timeout``, the attributes plus
    ``dask_stats_``, no examples."""
    doc = base.__doc__
    body = doc[doc.index("    Parameters\n"):]
    params_end = body.index("\n\n    Attributes\n")
    body = (body[:params_end] + _EXTRA_PARAMS.format(timeout=DEFAULT_TIMEOUT)
            + body[params_end:])
    attrs_end = body.index("\n\n    See Also\n")
    body = body[:attrs_end] + _EXTRA_ATTRIBUTES + body[attrs_end:]
    body = body[:body.index("\n\n    Examples\n")] if "\n\n    Examples\n" in body else body
    return (f"{base.__name__} trained data-parallel over the Dask workers that hold the "
            f"data.\n\n    ``batch_size`` is the global batch: each worker takes its share of "
            f"every step's rows,\n    and ``lr`` reads as in ``fit``. ``to_local()`` returns "
            f"the fitted\n    :class:`~skmlp.{base.__name__}`. See :mod:`skmlp.dask`.\n\n"
            + body + "\n    ")


DaskMLPClassifier = _dask_class("DaskMLPClassifier", MLPTorchClassifier, _DaskClassifierMixin,
                                _doc(MLPTorchClassifier))
DaskMLPRegressor = _dask_class("DaskMLPRegressor", MLPTorchRegressor, _DaskMixin,
                               _doc(MLPTorchRegressor))
DaskTabularMLPClassifier = _dask_class("DaskTabularMLPClassifier", TabularMLPClassifier,
                                       _DaskClassifierMixin, _doc(TabularMLPClassifier))
DaskTabularMLPRegressor = _dask_class("DaskTabularMLPRegressor", TabularMLPRegressor,
                                      _DaskMixin, _doc(TabularMLPRegressor))
