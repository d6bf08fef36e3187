"""The training loop: pure torch, no scikit-learn.

``fit_loop`` -> ``run_single_epoch`` -> ``train_step``, after skorch, without
its callbacks machinery. X is a ``_data._Rows`` (its ``take(idx)`` and
``slice(start, stop)`` give batches on the training device, whatever the input
kind), targets and weights are tensors on that device;
every epoch draws a permutation from a local ``torch.Generator`` and slices
batches. Nothing here synchronises per batch: the epoch loss is accumulated on
the device and read once per epoch.
"""

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from ._fastpath import inference, output_bound, plan
from ._heads import Loss, safe_bound
from ._network import decay_groups
from ._optim import OPTIMIZERS

PLATEAU_FACTOR = 5.0
MIN_LR = 1e-6


@dataclass
class TrainConfig:
    """The hyperparameters the loop needs, already validated."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    batch_size: int = 200
    max_iter: int = 200
    lr_schedule: str = "constant"
    n_iter_no_change: int = 10
    tol: float = 1e-4
    shuffle: bool = True
    early_stopping: bool = False
    verbose: int = 0
    predict_rows: int = 1 << 14  # rows per chunk of a full forward pass


@dataclass
class TrainState:
    """What carries over between epochs and between ``partial_fit`` calls."""

    n_iter: int = 0
    t: int = 0
    lr: float = 1e-3
    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    history: list = field(default_factory=list)
    best_loss: float = math.inf
    best_score: float = -math.inf
    best_weights: list = None
    no_improvement: int = 0
    optimizer_state: dict = None
    schedule_start: int = 0  # n_iter when the current fit began (cosine restarts there)


def make_optimizer(module, config, lr):
    """The optimizer for ``config`` (weight decay on weight matrices only)."""
    factory = OPTIMIZERS.get(config.optimizer)
    if factory is None:
        raise ValueError(f"optimizer={config.optimizer!r} has no step rule: "
                         f"one of {[k for k, v in OPTIMIZERS.items() if v]} (lbfgs is "
                         "a full-batch solver, see _lbfgs.fit_lbfgs).")
    groups = decay_groups(module, config.weight_decay)
    decay = groups[0]["params"]
    no_decay = groups[1]["params"] if len(groups) > 1 else []
    return factory(decay, no_decay, lr=lr, momentum=config.momentum,
                   nesterov=config.nesterov, weight_decay=config.weight_decay)


def _live_tensors(module):
    return [*module.parameters(), *module.buffers()]


@torch.no_grad()
def snapshot(module):
    """Copies of every parameter and buffer (weights to restore later)."""
    return [t.detach().clone() for t in _live_tensors(module)]


@torch.no_grad()
def restore(module, weights):
    for target, saved in zip(_live_tensors(module), weights):
        target.copy_(saved)


def weight_sum(wb):
    """A batch's weight sum, kept above 0: a batch whose weights are all zero
    then has loss 0 and zero gradients (without a per-batch sync to skip it)."""
    return wb.sum().clamp_min(torch.finfo(wb.dtype).tiny)


def train_step(module, optimizer, loss_fn, xb, yb, wb, fast=None, sync=None):
    """One optimizer step on one batch; returns the (detached) batch loss.

    ``fast`` is ``_fastpath.plan``'s hand-written gradient step when the
    network allows it; otherwise autograd computes the gradients. ``sync``
    (data-parallel training, see ``fit_loop``) turns the batch's gradients into
    those of the batch of every worker together before the step.
    """
    if fast is not None:
        loss = fast(xb, yb, wb)
    else:
        per_sample = loss_fn(module(*xb), yb)
        loss = per_sample.mean() if wb is None else (per_sample * wb).sum() / weight_sum(wb)
        optimizer.zero_grad()
        loss.backward()
        loss = loss.detach()
    if sync is not None:
        sync.grads(module, yb.shape[0] if wb is None else weight_sum(wb))
    optimizer.step()
    return loss


def has_batch_norm(module):
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _batch_bounds(n, batch_size, module):
    """(start, stop) of every batch; BatchNorm never gets a lone last row."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1 and has_batch_norm(module):
        starts.pop()  # the last batch takes the lone row: BatchNorm needs 2 rows
    return zip(starts, starts[1:] + [n])


def run_single_epoch(module, optimizer, loss_fn, data, config, generator, progress=None,
                     fast=None, sync=None):
    """One pass over the data; returns the epoch's mean training loss (tensor)."""
    X, Y, W = data
    n = Y.shape[0]
    if n <= config.batch_size:
        # One batch: no permutation, no copies (sparse X: densified in order).
        # A shuffle would only reorder the sum inside the loss.
        loss = train_step(module, optimizer, loss_fn, X.slice(0, n), Y, W, fast, sync)
        if progress is not None:
            progress.update(n)
        if sync is not None:
            weight = n if W is None else W.sum()
            return sync.mean(loss * weight, weight)
        return loss
    if config.shuffle:
        order = torch.randperm(n, generator=generator).to(Y.device)
    else:
        order = torch.arange(n, device=Y.device)
    total = 0.0
    bounds = _batch_bounds(n, config.batch_size, module) if sync is None else sync.batches(n)
    for start, stop in bounds:
        idx = order[start:stop]
        wb = None if W is None else W.index_select(0, idx)
        loss = train_step(
            module, optimizer, loss_fn, X.take(idx), Y.index_select(0, idx), wb, fast, sync
        )
        total += loss * (idx.shape[0] if wb is None else wb.sum())
        if progress is not None:
            progress.update(idx.shape[0])
    if sync is not None:
        return sync.mean(total, n if W is None else W.sum())
    return total / (n if W is None else W.sum())


def _epoch_lr(config, state):
    if config.lr_schedule == "cosine":
        epoch = min(state.n_iter - state.schedule_start, config.max_iter)
        return 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.max_iter))
    return state.lr


def _update_monitor(config, state, loss, score, module):
    """sklearn's no-improvement bookkeeping; returns a stop reason or None."""
    if config.early_stopping:
        state.validation_scores.append(score)
        improved = score >= state.best_score + config.tol
        if score > state.best_score:
            state.best_score = score
            state.best_weights = snapshot(module)
    else:
        improved = loss <= state.best_loss - config.tol
    state.best_loss = min(state.best_loss, loss)
    state.no_improvement = 0 if improved else state.no_improvement + 1
    if state.no_improvement < config.n_iter_no_change:
        return None
    if config.lr_schedule != "plateau":
        return "converged"
    state.lr /= PLATEAU_FACTOR
    state.no_improvement = 0
    return "converged" if state.lr < MIN_LR else None


def fit_loop(module, loss_fn, data, config, generator, state, *, epochs,
             val_score=None, callback=None, monitor=True, sync=None):
    """Train ``module`` for at most ``epochs`` epochs.

    Returns why it stopped: ``"max_iter"``, ``"converged"`` (no improvement,
    or the plateau schedule's lr fell below 1e-6), ``"callback"`` or
    ``"diverged"`` (the weights of the last finite epoch are restored).

    ``sync`` (default None: one process) makes this one of several processes
    training one model data-parallel, each on its own rows. It provides
    ``batches(n)``: the (start, stop) bounds of this process's batches (the
    same number in every process), ``grads(module, weight)``: called after the
    gradients of a batch of weight sum ``weight`` are written, before the
    step, it makes them the gradients of all processes' batches together;
    ``mean(total, weight)``: sum(total) / sum(weight) over the processes; and
    ``all(flag)``: whether ``flag`` holds in every process. The epoch loss is
    then the loss over all processes' rows, so every decision taken from it
    (and from ``val_score``, which must itself be reduced) is the same in all.
    """
    n = data[1].shape[0]
    if n < 2 and has_batch_norm(module):
        raise ValueError("batch_norm=True needs at least 2 training samples per fit / "
                         "partial_fit call (BatchNorm normalises over the batch).")
    optimizer = make_optimizer(module, config, state.lr)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    fast = plan(module, loss_fn)
    checkpoints = _Checkpoints(module)
    reason = "max_iter"
    module.train()
    for _ in range(epochs):
        checkpoints.start_epoch()
        tic = time.perf_counter()
        lr = _epoch_lr(config, state)
        optimizer.lr = lr
        progress = _progress_bar(n, state.n_iter + 1) if config.verbose >= 2 else None
        loss = float(run_single_epoch(module, optimizer, loss_fn, data, config,
                                      generator, progress, fast, sync))
        if progress is not None:
            progress.close()
        if not math.isfinite(loss):
            reason = "diverged"
            break
        checkpoints.epoch_was_finite()
        state.n_iter += 1
        state.t += n
        state.loss_curve.append(loss)
        score = val_score(module) if config.early_stopping and val_score else None
        stop = _update_monitor(config, state, loss, score, module) if monitor else None
        if not monitor:
            state.best_loss = min(state.best_loss, loss)
        logs = {"epoch": state.n_iter, "loss": loss, "val_score": score, "lr": lr,
                "seconds": time.perf_counter() - tic}
        state.history.append(logs)
        if config.verbose:
            _print_epoch(logs)
        if callback is not None and callback(state.n_iter, dict(logs)):
            reason = "callback"
            break
        if stop is not None:
            reason = stop
            break
    state.optimizer_state = optimizer.state_dict()
    module.eval()
    if checkpoints.start is None:
        return reason
    # Full pass for fit, one batch for partial_fit (a full pass per call costs too much).
    rows = n if monitor else min(n, config.batch_size)
    chunk = max(config.batch_size, config.predict_rows)

    def check():
        ok = outputs_finite(module, loss_fn, data, rows, chunk)
        return ok if sync is None else sync.all(ok)

    reason = _keep_finite(module, check, (checkpoints.start, checkpoints.good), reason)
    if reason == "diverged":
        state.optimizer_state = None
    return reason


class _Checkpoints:
    """The weights at the start of the current epoch and of the last finite one.

    Two preallocated buffers, filled with one ``_foreach_copy_`` per epoch and
    swapped, instead of fresh clones every epoch.
    """

    def __init__(self, module):
        self.live = _live_tensors(module)
        self.buffers = [None, None]
        self.start = self.good = None

    @torch.no_grad()
    def start_epoch(self):
        spare = 0 if self.buffers[0] is not self.good else 1
        if self.buffers[spare] is None:
            self.buffers[spare] = [t.detach().clone() for t in self.live]
        else:
            torch._foreach_copy_(self.buffers[spare], self.live)
        self.start = self.buffers[spare]

    def epoch_was_finite(self):
        self.good = self.start  # its first batch gave a finite loss


def _keep_finite(module, check, candidates, reason):
    """Never leave weights that give NaN/inf on the training data.

    A finite epoch loss is computed before each step, so the last steps can
    still leave NaN weights, or finite ones that overflow. Fall back to the
    start of the last epoch, then of the last finite one (restored even if it
    fails the check: the initial weights are the last resort).
    """
    if reason != "diverged" and check():
        return reason
    for weights in candidates:
        if weights is not None:
            restore(module, weights)
            if check():
                break
    return "diverged"




def tensor_abs_max(T):
    """max |t| over a tensor (0.0 when empty)."""
    if T.numel() == 0:
        return 0.0
    low, high = torch.aminmax(T)
    return max(-float(low), float(high))


def provably_finite(module, loss_fn, data):
    """True when a bound through the weights shows that every training row
    gives a finite output and loss (see ``_fastpath.output_bound``), so no pass
    over the data is needed. False means "not shown", not "non-finite"."""
    X, Y, _ = data
    params = list(module.parameters())
    if not isinstance(loss_fn, Loss) or not params:
        return False
    dtype = params[0].dtype
    bound = output_bound(module, X.abs_max())
    y_bound = tensor_abs_max(Y) if Y.is_floating_point() else 0.0
    return (bound is not None and bound <= loss_fn.safe_output_bound(dtype)
            and y_bound <= safe_bound(dtype))


@torch.no_grad()
def outputs_finite(module, loss_fn, data, rows, chunk):
    """Whether the per-sample loss of the first ``rows`` rows is finite (eval mode).

    A bound through the weights settles it for nets whose outputs are far from
    overflow; otherwise a forward pass over the rows, ``chunk`` rows at a time
    (as large as ``predict``'s batches), as contiguous slices.
    """
    if provably_finite(module, loss_fn, data):
        return True
    X, Y, _ = data
    step = X.chunk_rows(chunk)
    forward = inference(module)
    ok = torch.ones((), dtype=torch.bool, device=Y.device)
    for begin in range(0, rows, step):
        stop = min(begin + step, rows)
        ok &= torch.isfinite(loss_fn(forward(*X.slice(begin, stop)), Y[begin:stop])).all()
    return bool(ok)


def _print_epoch(logs):
    val = "" if logs["val_score"] is None else f", validation score = {logs['val_score']:.6f}"
    print(
        f"Epoch {logs['epoch']}: loss = {logs['loss']:.8f}{val}, lr = {logs['lr']:.3g}, "
        f"{logs['seconds']:.3f}s",
        file=sys.stdout,
    )


def _progress_bar(total, epoch):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}", unit="sample", leave=False)
