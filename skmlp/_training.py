"""The training loop: pure torch, no scikit-learn.

``fit_loop`` -> ``run_single_epoch`` -> ``train_step``, after skorch, without
its callbacks machinery. The data are tensors already on the training device
(or, for sparse input, an object whose ``take(idx)`` densifies a batch of rows);
every epoch draws a permutation from a local ``torch.Generator`` and slices
batches. Nothing here synchronises per batch: the epoch loss is accumulated on
the device and read once per epoch.
"""

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from ._network import decay_groups

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
    """The torch optimizer for ``config`` (weight decay on weights only)."""
    groups = decay_groups(module, config.weight_decay)
    fused = {"fused": True} if _fused_ok(module) else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            **fused,
        )
    betas = (config.momentum, 0.999)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **fused)
    return torch.optim.Adam(groups, lr=lr, betas=betas, **fused)


def _fused_ok(module):
    param = next(module.parameters())
    return param.device.type in ("cpu", "cuda") and param.dtype in (
        torch.float32,
        torch.float64,
    )


def snapshot(module):
    """Copies of every parameter and buffer (weights to restore later)."""
    return [t.detach().clone() for t in module.state_dict().values()]


@torch.no_grad()
def restore(module, weights):
    for target, saved in zip(module.state_dict().values(), weights):
        target.copy_(saved)


def take_rows(X, idx):
    """Rows ``idx`` of a dense tensor or of a sparse batch provider."""
    if isinstance(X, torch.Tensor):
        return X.index_select(0, idx)
    return X.take(idx)


def train_step(module, optimizer, loss_fn, xb, yb, wb):
    """One optimizer step on one batch; returns the (detached) batch loss."""
    per_sample = loss_fn(module(xb), yb)
    loss = per_sample.mean() if wb is None else (per_sample * wb).sum() / wb.sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def has_batch_norm(module):
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _batch_bounds(n, batch_size, module):
    """(start, stop) of every batch; BatchNorm never gets a lone last row."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1 and has_batch_norm(module):
        starts.pop()  # the last batch takes the lone row: BatchNorm needs 2 rows
    return zip(starts, starts[1:] + [n])


def run_single_epoch(module, optimizer, loss_fn, data, config, generator, progress=None):
    """One pass over the data; returns the epoch's mean training loss (tensor)."""
    X, Y, W = data
    n = Y.shape[0]
    module.train()
    if n <= config.batch_size and isinstance(X, torch.Tensor):
        # One batch: no permutation, no copies. A shuffle would only reorder
        # the sum inside the loss.
        loss = train_step(module, optimizer, loss_fn, X, Y, W)
        if progress is not None:
            progress.update(n)
        return loss
    if config.shuffle:
        order = torch.randperm(n, generator=generator).to(Y.device)
    else:
        order = torch.arange(n, device=Y.device)
    total = 0.0
    for start, stop in _batch_bounds(n, config.batch_size, module):
        idx = order[start:stop]
        wb = None if W is None else W.index_select(0, idx)
        loss = train_step(
            module, optimizer, loss_fn, take_rows(X, idx), Y.index_select(0, idx), wb
        )
        total += loss * (idx.shape[0] if wb is None else wb.sum())
        if progress is not None:
            progress.update(idx.shape[0])
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
             val_score=None, callback=None, monitor=True):
    """Train ``module`` for at most ``epochs`` epochs.

    Returns why it stopped: ``"max_iter"``, ``"converged"`` (no improvement,
    or the plateau schedule's lr fell below 1e-6), ``"callback"`` or
    ``"diverged"`` (the weights of the last finite epoch are restored).
    """
    n = data[1].shape[0]
    if n < 2 and has_batch_norm(module):
        raise ValueError("batch_norm=True needs at least 2 training samples per fit / "
                         "partial_fit call (BatchNorm normalises over the batch).")
    optimizer = make_optimizer(module, config, state.lr)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    # The last two epoch-end weights and the initial ones: on divergence the
    # newest whose outputs are finite is restored (the step that ends a finite
    # epoch can itself produce non-finite or overflowing weights).
    good = [snapshot(module)] * 3
    reason = "max_iter"
    for _ in range(epochs):
        tic = time.perf_counter()
        lr = _epoch_lr(config, state)
        for group in optimizer.param_groups:
            group["lr"] = lr
        progress = _progress_bar(n, state.n_iter + 1) if config.verbose >= 2 else None
        loss = float(run_single_epoch(module, optimizer, loss_fn, data, config,
                                      generator, progress))
        if progress is not None:
            progress.close()
        if not math.isfinite(loss):
            reason = "diverged"
            break
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
        good = [good[0], good[2], snapshot(module)]
    if reason == "diverged" or not _outputs_finite(module, data[0], config.batch_size):
        _restore_finite(module, good[::-1], data[0], config.batch_size)
        reason = "diverged"
    state.optimizer_state = optimizer.state_dict()
    module.eval()
    return reason


@torch.no_grad()
def _outputs_finite(module, X, rows):
    """Whether the parameters and the eval-mode outputs of the first rows are finite."""
    if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
        return False
    was_training = module.training
    module.eval()
    idx = torch.arange(min(rows, X.shape[0]))
    if isinstance(X, torch.Tensor):
        idx = idx.to(X.device)
    finite = bool(torch.isfinite(module(take_rows(X, idx))).all())
    module.train(was_training)
    return finite


def _restore_finite(module, candidates, X, rows):
    """Restore the first snapshot in ``candidates`` that gives finite outputs."""
    for weights in candidates:
        restore(module, weights)
        if _outputs_finite(module, X, rows):
            return


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
