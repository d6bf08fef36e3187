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
    """Cumulative training state: what continues across ``partial_fit`` calls
    and ``warm_start`` fits. Only a call that succeeds adds to it
    (``absorb``), and that addition can be undone, so a call that raises
    leaves it as it was."""

    n_iter: int = 0
    t: int = 0
    loss_curve: list = field(default_factory=list)
    history: list = field(default_factory=list)
    optimizer_state: dict = None  # ``_optim`` state: {"kind", "step", "buffers"}
    schedule_start: int = 0  # n_iter when the current fit began (cosine restarts there)
    best_loss: float = None  # min(loss_curve), kept so that no call scans the curve

    def absorb(self, run):
        """``(state, undo)``: this state followed by the epochs of ``run`` (a
        ``FitRun``), and a function that takes them back. The curves grow in
        place (a call costs its own epochs, not all the epochs before it:
        thousands of ``partial_fit`` calls stay linear), so the new state
        shares them with this one until ``undo`` truncates them again."""
        n_losses, n_history = len(self.loss_curve), len(self.history)
        self.loss_curve.extend(run.losses)
        self.history.extend(run.history)
        best = min([b for b in (self.best_loss, min(run.losses, default=None))
                    if b is not None], default=None)
        state = TrainState(
            n_iter=self.n_iter + len(run.losses), t=self.t + run.samples,
            loss_curve=self.loss_curve, history=self.history,
            optimizer_state=run.optimizer_state, schedule_start=run.schedule_start,
            best_loss=best)

        def undo():
            del self.loss_curve[n_losses:]
            del self.history[n_history:]

        return state, undo


@dataclass
class FitRun:
    """One ``fit`` / ``partial_fit`` call's bookkeeping; a new one every call.

    ``losses``, ``validation_scores`` and ``history`` hold this call's epochs;
    ``best_score`` / ``best_epoch`` describe the weights kept with early
    stopping; ``start_weights`` (when asked for) are the weights before the
    call, for a caller that must undo it.
    """

    start_iter: int = 0
    schedule_start: int = 0
    losses: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    history: list = field(default_factory=list)
    samples: int = 0
    best_loss: float = math.inf
    best_score: float = -math.inf
    best_epoch: int = None
    best_weights: list = None
    no_improvement: int = 0
    lr_scale: float = 1.0  # the plateau schedule's division of lr (1 / 5^k)
    optimizer_state: dict = None
    start_weights: list = None
    reason: str = None

    @property
    def n_iter(self):
        return self.start_iter + len(self.losses)


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


def _epoch_lr(config, run):
    """The epoch's learning rate: ``config.lr`` (the live parameter, so a
    changed ``lr`` applies from the next call under every schedule) times
    the schedule's factor."""
    if config.lr_schedule == "cosine":
        epoch = min(run.n_iter - run.schedule_start, config.max_iter)
        return 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.max_iter))
    return config.lr * run.lr_scale


def _update_monitor(config, run, loss, score, module):
    """sklearn's no-improvement bookkeeping; returns a stop reason or None."""
    if config.early_stopping:
        improved = score >= run.best_score + config.tol
        if score > run.best_score:
            run.best_score = score
            run.best_epoch = run.n_iter
            run.best_weights = snapshot(module)
    else:
        improved = loss <= run.best_loss - config.tol
    run.best_loss = min(run.best_loss, loss)
    run.no_improvement = 0 if improved else run.no_improvement + 1
    if run.no_improvement < config.n_iter_no_change:
        return None
    if config.lr_schedule != "plateau":
        return "converged"
    run.lr_scale /= PLATEAU_FACTOR
    run.no_improvement = 0
    return "converged" if config.lr * run.lr_scale < MIN_LR else None


def fit_loop(module, loss_fn, data, config, generator, state, *, epochs,
             val_score=None, callback=None, monitor=True, restart_schedule=True,
             keep_start=False, sync=None):
    """Train ``module`` for at most ``epochs`` epochs; returns a ``FitRun``.

    ``state`` (a ``TrainState``) is only read: the epochs so far, the
    optimizer's state and where the cosine schedule started
    (``restart_schedule``: it starts again here, as every ``fit`` does).
    ``run.reason`` says why training stopped: ``"max_iter"``,
    ``"converged"`` (no improvement, or the plateau schedule's lr fell below
    1e-6), ``"callback"`` or ``"diverged"`` (the weights of the last finite
    epoch are restored). With early stopping the best epoch's weights are
    restored. ``keep_start`` (for calls that continue a fitted network) keeps
    a copy of the weights as they were: if anything raises they are put back,
    and the caller gets them (``run.start_weights``) to undo a call that fails
    later. The module is left in eval mode, also when something raises.

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
    run = FitRun(start_iter=state.n_iter,
                 schedule_start=state.n_iter if restart_schedule else state.schedule_start)
    optimizer = make_optimizer(module, config, config.lr)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    fast = plan(module, loss_fn)
    batches = data
    if fast is not None and fast.prepare is not None:
        # the table input's parameter-free part once for all rows, not per batch
        prepared = fast.prepare(data[0])
        if prepared is not None:
            batches = (prepared, *data[1:])
    checkpoints = _Checkpoints(module)
    run.reason = "max_iter"
    try:
        module.train()
        for epoch in range(epochs):
            checkpoints.start_epoch(pin=keep_start and epoch == 0)
            tic = time.perf_counter()
            lr = _epoch_lr(config, run)
            optimizer.lr = lr
            progress = _progress_bar(n, run.n_iter + 1) if config.verbose >= 2 else None
            loss = float(run_single_epoch(module, optimizer, loss_fn, batches, config,
                                          generator, progress, fast, sync))
            if progress is not None:
                progress.close()
            if not math.isfinite(loss):
                run.reason = "diverged"
                break
            checkpoints.epoch_was_finite()
            run.losses.append(loss)
            run.samples += n
            score = val_score(module) if config.early_stopping and val_score else None
            if score is not None:
                run.validation_scores.append(score)
            stop = _update_monitor(config, run, loss, score, module) if monitor else None
            if not monitor:
                run.best_loss = min(run.best_loss, loss)
            logs = {"epoch": run.n_iter, "loss": loss, "val_score": score, "lr": lr,
                    "seconds": time.perf_counter() - tic}
            run.history.append(logs)
            if config.verbose:
                _print_epoch(logs)
            if callback is not None and callback(run.n_iter, dict(logs)):
                run.reason = "callback"
                break
            if stop is not None:
                run.reason = stop
                break
        run.optimizer_state = optimizer.state_dict(copy=False)  # its last step is done
        module.eval()
        if checkpoints.start is not None:
            # Full pass for fit, one batch for partial_fit (a full pass per call costs too much).
            rows = n if monitor else min(n, config.batch_size)
            chunk = max(config.batch_size, config.predict_rows)

            def check():
                ok = outputs_finite(module, loss_fn, data, rows, chunk)
                return ok if sync is None else sync.all(ok)

            run.reason = _keep_finite(module, check, (checkpoints.start, checkpoints.good),
                                      run.reason)
        if run.reason == "diverged":
            run.optimizer_state = None
        if run.best_weights is not None:
            restore(module, run.best_weights)
            run.best_weights = None
    except BaseException:
        if checkpoints.first is not None:
            restore(module, checkpoints.first)
        module.eval()
        raise
    if keep_start:
        run.start_weights = checkpoints.first
    return run


class _Checkpoints:
    """The weights at the start of the call (``first``), of the current epoch
    (``start``) and of the last finite one (``good``).

    Preallocated buffers, filled with one ``_foreach_copy_`` per epoch and
    reused, instead of fresh clones every epoch. A one-epoch call (a
    ``partial_fit``) needs one buffer; longer calls two more.
    """

    def __init__(self, module):
        self.live = _live_tensors(module)
        self.buffers = []
        self.first = self.start = self.good = None

    @torch.no_grad()
    def start_epoch(self, pin=False):
        spare = next((b for b in self.buffers if b is not self.good and b is not self.first),
                     None)
        if spare is None:
            spare = [t.detach().clone() for t in self.live]
            self.buffers.append(spare)
        else:
            torch._foreach_copy_(spare, self.live)
        self.start = spare
        if pin:
            self.first = spare

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
