"""Full-batch L-BFGS: scipy's L-BFGS-B (with its line search) driving torch.

As scikit-learn's MLP does: scipy proposes flat float64 parameter vectors,
torch computes the loss and its gradient. ``lr`` is ignored; ``max_iter`` bounds
the iterations and ``tol`` is the projected-gradient tolerance. Pure torch +
scipy (no scikit-learn).
"""

import math
import time

import numpy as np
import scipy.optimize
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ._network import decay_groups
from ._training import FitRun, restore, snapshot

MAX_FUN = 15000
CHUNK_ROWS = 65536


def _objective(module, loss_fn, data, params, decayed, weight_decay):
    """Weighted mean loss over all rows (+ L2 term); gradients accumulated."""
    X, Y, W = data
    n = Y.shape[0]
    total_weight = n if W is None else W.sum()
    for p in params:
        p.grad = None
    data_loss = 0.0
    chunk = X.chunk_rows(CHUNK_ROWS)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        per = loss_fn(module(*X.slice(start, stop)), Y[start:stop])
        if W is None:
            loss = per.sum() / total_weight
        else:
            loss = (per * W[start:stop]).sum() / total_weight
        loss.backward()
        data_loss += loss.detach()
    penalty = 0.0
    if weight_decay > 0:
        penalty = 0.5 * weight_decay * sum((w * w).sum() for w in decayed)
        penalty.backward()
    return data_loss, penalty


def fit_lbfgs(module, loss_fn, data, config, state, *, callback=None, keep_start=False):
    """Minimise the training loss with L-BFGS-B; returns a ``FitRun``.

    ``state`` is only read. If anything raises, the weights are put back as
    they were (the module is left in eval mode); ``keep_start`` also hands
    them to the caller (``run.start_weights``).
    """
    run = FitRun(start_iter=state.n_iter, schedule_start=state.n_iter)
    start = snapshot(module)
    try:
        run.reason = _minimise(module, loss_fn, data, config, run, start, callback)
    except BaseException:
        restore(module, start)
        module.eval()
        for p in module.parameters():
            p.grad = None
        raise
    if keep_start:
        run.start_weights = start
    return run


def _minimise(module, loss_fn, data, config, run, start, callback):
    module.train()
    params = list(module.parameters())
    decayed = decay_groups(module, config.weight_decay)[0]["params"]
    ref = params[0]
    n = data[1].shape[0]
    cache = {}

    def fun(theta):
        with torch.no_grad():
            vector_to_parameters(torch.from_numpy(theta).to(ref.device, ref.dtype), params)
        data_loss, penalty = _objective(module, loss_fn, data, params, decayed,
                                        config.weight_decay)
        value = float((data_loss + penalty).detach())
        grad = parameters_to_vector([p.grad for p in params]).double().cpu().numpy()
        cache["x"], cache["loss"] = theta.copy(), float(data_loss)
        if not math.isfinite(value):
            return np.inf, np.zeros_like(grad)
        return value, grad

    stopped = {"callback": False, "tic": time.perf_counter()}

    def on_iteration(intermediate_result):
        theta = intermediate_result.x
        if "x" not in cache or not np.array_equal(theta, cache["x"]):
            fun(theta)
        loss = cache["loss"]
        run.losses.append(loss)
        run.samples += n
        run.best_loss = min(run.best_loss, loss)
        logs = {"epoch": run.n_iter, "loss": loss, "val_score": None, "lr": None,
                "seconds": time.perf_counter() - stopped["tic"]}
        stopped["tic"] = time.perf_counter()
        run.history.append(logs)
        if config.verbose:
            print(f"Iteration {run.n_iter}: loss = {loss:.8f}")
        if callback is not None and callback(run.n_iter, dict(logs)):
            stopped["callback"] = True
            raise StopIteration

    x0 = parameters_to_vector(params).detach().double().cpu().numpy()
    result = scipy.optimize.minimize(
        fun, x0, method="L-BFGS-B", jac=True, callback=on_iteration,
        options={"maxiter": config.max_iter, "maxfun": MAX_FUN, "gtol": config.tol},
    )
    final = result.x if np.all(np.isfinite(result.x)) else None
    if final is not None:
        with torch.no_grad():
            vector_to_parameters(torch.from_numpy(final).to(ref.device, ref.dtype), params)
    module.eval()
    for p in params:
        p.grad = None
    if final is None or not math.isfinite(result.fun):
        restore(module, start)
        return "diverged"
    if stopped["callback"]:
        return "callback"
    return "max_iter" if result.status == 1 else "converged"
