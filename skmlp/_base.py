"""The estimator template shared by the classifier and the regressor.

``fit`` is a template: validate parameters -> validate and convert data ->
encode targets (subclass hook) -> build the network -> train -> set fitted
attributes. Subclasses fill small hooks: ``_check_data``, ``_encode_targets``,
``_loss``, ``_validation_score`` and their own output decoding.
"""

import os
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ._data import (as_training_input, batch_rows, check_X, compute_dtype,
                    iter_batches, resolve_device, to_tensor)
from ._fastpath import inference
from ._lbfgs import fit_lbfgs
from ._network import build_mlp, set_dropout_generator
from ._params import hidden_dims_tuple, validate_params
from ._persistence import pack, unpack
from ._threads import macs, threads_for, torch_threads
from ._training import TrainConfig, TrainState, fit_loop, restore


def _check_weights(weights, name, hint):
    """Per-sample weights must be finite, non-negative and not all zero."""
    if np.any(weights < 0):
        raise ValueError(f"{name} must be non-negative; got negative values: {hint}")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} must be finite: {hint}")
    if not np.any(weights > 0):
        raise ValueError(f"{name} must not be all zero: nothing would be learned; {hint}")


def _seed_from(random_state):
    """A 63-bit seed; never draws from numpy's or torch's global RNG."""
    if random_state is None:
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    return int(random_state)


class BaseMLPTorch(BaseEstimator):
    """Common machinery; use ``MLPTorchClassifier`` or ``MLPTorchRegressor``."""

    def __init__(
        self,
        hidden_dims=(100,),
        *,
        activation="relu",
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        batch_size="auto",
        max_iter=200,
        lr_schedule="constant",
        dropout=0.0,
        batch_norm=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        device="cpu",
        dtype=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        callbacks=None,
    ):
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.lr_schedule = lr_schedule
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None):
        """Fit the network to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights; each batch's loss is normalised by its weight sum.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        validate_params(self)
        reset = not (hasattr(self, "module_") and (incremental or self.warm_start))
        X, y = self._check_data(X, y, reset=reset)
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s); at least one is required.")
        weights = val_weights = self._sample_weight(sample_weight, X)
        Y, target_weights = self._encode_targets(y, reset=reset, classes=classes)
        if target_weights is not None:
            weights = target_weights if weights is None else weights * target_weights
            _check_weights(weights, "class_weight (times sample_weight)",
                           f"got class_weight={self.class_weight!r}; use positive class "
                           "weights, e.g. 'balanced'.")
        device = resolve_device(self.device)
        if reset:
            self._start(X, device)
        else:
            self.module_.to(device)
        dtype = next(self.module_.parameters()).dtype
        generator = torch.Generator().set_state(self._rng_state)
        split = self.early_stopping and not incremental and self.optimizer != "lbfgs"
        train, val = self._split(X, Y, weights, generator, split, val_weights)
        data = self._tensors(*train, dtype, device)
        val_data = self._tensors(*val, dtype, device) if split else None
        config = self._config(data[1].shape[0])
        # L-BFGS steps over all rows at once; the others over one batch.
        rows = data[1].shape[0] if config.optimizer == "lbfgs" else config.batch_size
        with torch_threads(threads_for(3 * macs(self._arch, rows))):
            reason = self._train(config, data, val_data, generator, incremental=incremental)
        self._rng_state = generator.get_state()
        self._finish(reason, incremental)
        return self

    def _check_data(self, X, y, *, reset):
        raise NotImplementedError

    def _sample_weight(self, sample_weight, X):
        if sample_weight is None:
            return None
        try:
            sample_weight = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                                        input_name="sample_weight")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{exc}\nsample_weight must hold one finite, non-negative "
                            "number per sample, e.g. np.ones(n_samples).") from exc
        if sample_weight.ndim != 1 or sample_weight.shape[0] != X.shape[0]:
            raise ValueError(
                f"sample_weight.shape == {sample_weight.shape}, expected ({X.shape[0]},): "
                "one weight per sample."
            )
        _check_weights(sample_weight, "sample_weight", "e.g. np.ones(n_samples).")
        return sample_weight

    def _start(self, X, device):
        """A fresh network, generator and training state."""
        generator = torch.Generator().manual_seed(_seed_from(self.random_state))
        self._arch = dict(
            n_inputs=X.shape[1],
            hidden_dims=hidden_dims_tuple(self.hidden_dims),
            n_outputs=self.n_outputs_,
            activation=self.activation,
            dropout=float(self.dropout),
            batch_norm=bool(self.batch_norm),
            dtype=compute_dtype(self.dtype, X),
        )
        self.module_ = build_mlp(**self._arch, generator=generator).to(device)
        self._rng_state = generator.get_state()
        self._state = TrainState(lr=float(self.lr))

    def _split(self, X, Y, weights, generator, split, val_weights=None):
        """Train / validation parts; the validation part keeps only ``sample_weight``.

        The validation score is what ``score`` would give on the held-out rows,
        so class weights (folded into ``weights`` for training) do not enter it.
        """
        if not split:
            return (X, Y, weights), None
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        idx = np.arange(X.shape[0])
        stratify = self._stratify(Y)
        try:
            tr, va = train_test_split(idx, test_size=self.validation_fraction,
                                      random_state=seed, stratify=stratify)
        except ValueError:
            tr, va = train_test_split(idx, test_size=self.validation_fraction,
                                      random_state=seed)
        w_tr = None if weights is None else weights[tr]
        w_va = None if val_weights is None else val_weights[va]
        return (X[tr], Y[tr], w_tr), (X[va], Y[va], w_va)

    def _stratify(self, Y):
        return None

    def _tensors(self, X, Y, weights, dtype, device):
        Y_t = to_tensor(Y, torch.long if Y.dtype.kind in "iu" else dtype, device)
        W_t = None if weights is None else to_tensor(weights, dtype, device)
        return as_training_input(X, dtype, device), Y_t, W_t

    def _config(self, n_samples):
        batch = min(200 if self.batch_size == "auto" else self.batch_size, n_samples)
        return TrainConfig(
            optimizer=self.optimizer, lr=float(self.lr), momentum=float(self.momentum),
            nesterov=bool(self.nesterov), weight_decay=float(self.weight_decay),
            batch_size=batch, max_iter=self.max_iter, lr_schedule=self.lr_schedule,
            n_iter_no_change=self.n_iter_no_change, tol=float(self.tol),
            shuffle=bool(self.shuffle), early_stopping=bool(self.early_stopping),
            verbose=int(self.verbose),
        )

    def _train(self, config, data, val_data, generator, *, incremental):
        state = self._state
        if not incremental:
            # A new fit (also under warm_start) restarts stopping and the optimizer.
            state.no_improvement, state.best_score = 0, -np.inf
            state.best_weights, state.optimizer_state = None, None
            state.lr = config.lr
            state.best_loss = np.inf
            state.schedule_start = state.n_iter
        callback = self._callback()
        if config.optimizer == "lbfgs":
            return fit_lbfgs(self.module_, self._loss(), data, config, state,
                             callback=callback)
        val_score = None
        if val_data is not None:
            val_score = lambda module: self._validation_score(module, val_data)  # noqa: E731
        device = data[1].device
        dropout_gen = generator
        if device.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            dropout_gen = torch.Generator(device).manual_seed(seed)
        set_dropout_generator(self.module_, dropout_gen)
        try:
            return fit_loop(self.module_, self._loss(), data, config, generator, state,
                            epochs=1 if incremental else config.max_iter,
                            val_score=val_score, callback=callback,
                            monitor=not incremental)
        finally:
            set_dropout_generator(self.module_, None)

    def _callback(self):
        if not self.callbacks:
            return None

        def call(epoch, logs):
            stop = False
            for cb in self.callbacks:
                stop = bool(cb(self, epoch, logs)) or stop
            return stop

        return call

    def _widths(self):
        arch = self._arch
        return [arch["n_inputs"], *arch["hidden_dims"], arch["n_outputs"]]

    @torch.no_grad()
    def _validation_score(self, module, val_data):
        """The validation score, with the forward pass in predict-sized batches."""
        X, Y, W = val_data
        step = batch_rows(self._widths())
        module.eval()
        parts = []
        for start in range(0, Y.shape[0], step):
            stop = min(start + step, Y.shape[0])
            xb = X[start:stop] if isinstance(X, torch.Tensor) else X.slice(start, stop)
            parts.append(module(xb))
        module.train()
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return float(self._score_tensor(out, Y, W))

    def _finish(self, reason, incremental):
        state = self._state
        if self.early_stopping and not incremental and state.best_weights is not None:
            restore(self.module_, state.best_weights)
        state.best_weights = None
        self.n_iter_ = state.n_iter
        self.t_ = state.t
        self.loss_curve_ = list(state.loss_curve)
        self.best_loss_ = state.best_loss if state.loss_curve else None
        if self.early_stopping and state.validation_scores:
            self.validation_scores_ = list(state.validation_scores)
            self.best_validation_score_ = max(state.validation_scores)
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.history_ = [dict(h) for h in state.history]
        if reason == "diverged":
            warnings.warn(
                f"Training diverged after {state.n_iter} epoch(s): the loss or the "
                f"network's outputs became NaN or infinite. Earlier finite weights were "
                f"kept. Lower `lr` "
                f"(now {self.lr}) or scale the inputs (e.g. StandardScaler).",
                ConvergenceWarning,
            )
        elif reason == "max_iter" and not incremental:
            solver = "lbfgs" if self.optimizer == "lbfgs" else "Stochastic Optimizer"
            warnings.warn(
                f"{solver}: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet. Increase max_iter or scale the data.",
                ConvergenceWarning,
            )
        elif (incremental and self.lr_schedule == "cosine"
              and state.n_iter >= self.max_iter):
            warnings.warn(
                f"lr_schedule='cosine' reached lr=0 after max_iter={self.max_iter} "
                "partial_fit calls: further calls do not change the network. Raise "
                "max_iter or use lr_schedule='constant' for streaming.",
                UserWarning,
            )

    # -------------------------------------------------------------- predict
    def _forward(self, X, transform):
        """Raw network outputs of X, batch by batch, through ``transform``."""
        check_is_fitted(self, "module_")
        X = check_X(self, X, reset=False)
        module = self.module_
        param = next(module.parameters())
        out = None
        start = 0
        module.eval()
        rows = min(X.shape[0], batch_rows(self._widths()))
        with torch.inference_mode(), torch_threads(threads_for(macs(self._arch, rows))):
            forward = inference(module)
            for xb in iter_batches(X, param.dtype, param.device, rows):
                yb = transform(forward(xb)).cpu().numpy()
                if yb.shape[0] == X.shape[0]:
                    return yb  # one batch: no copy into a second output array
                if out is None:
                    out = np.empty((X.shape[0],) + yb.shape[1:], dtype=yb.dtype)
                out[start : start + yb.shape[0]] = yb
                start += yb.shape[0]
        return out

    # ------------------------------------------------------------- pickling
    def __getstate__(self):
        # object.__getstate__ returns __dict__ itself: copy before changing it.
        return pack(dict(super().__getstate__()))

    def __setstate__(self, state):
        state, module = unpack(state)
        super().__setstate__(state)
        if module is not None:
            self.module_ = module
