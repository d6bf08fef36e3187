"""The estimator template shared by the classifier and the regressor.

``fit`` is a template: validate parameters -> validate and convert data ->
encode targets and pick the head (subclass hook) -> the network spec -> the
module -> train -> fitted attributes. It is transactional: a ``fit`` or
``partial_fit`` that raises leaves the estimator exactly as it was. Subclasses
fill small hooks (``_check_data``, ``_encode_targets``) and decode outputs
through the head (``self._head``, from ``_heads``); the constructors and the
parameter docs come from the table in ``_params``.
"""

import inspect
import math
import numbers
import os
import sys
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.utils import _safe_indexing, check_array
from sklearn.utils.validation import check_is_fitted

from ._columns import (ColumnLayout, categorical_mask, categories_array, declared_categories,
                       is_dataframe, numeric_statistics)
from ._data import (as_rows, batch_rows, check_frame, check_table, check_target_values, check_X,
                    compute_dtype, iter_batches, n_columns, resolve_device, to_tensor)
from ._fastpath import inference
from ._lbfgs import fit_lbfgs
from ._network import PIECEWISE_BINS, forget_unseen, needs_bins, set_dropout_generator
from ._params import check_frozen, frozen_values, hidden_dims_tuple, validate_params
from ._persistence import pack, unpack
from ._spec import NetworkSpec
from ._threads import threads_for, torch_threads
from ._training import FitRun, TrainConfig, TrainState, fit_loop, restore, snapshot


# early_stopping="auto" holds out a validation split and keeps the best epoch from
# this many training rows on ("bagging" there: 0.7% less error, 2.3% less log loss
# for 1.74x the time; "finetune": about nothing on the confirmation tables for 1.13x
# the time; neither taken; benchmarks/tabular_ablation.py, docs: benchmarks page) ...
AUTO_EARLY_STOPPING_ROWS = 1000
# early_stopping="finetune": epochs on all rows after the best one (10 at the fit's lr
# gained what 20 did on the tuning tables for half the extra time; docs: benchmarks page)
FINETUNE_EPOCHS = 10
# ... and from this many rows up to that threshold it bags (an ensemble's members on
# their own folds), when there are members to bag (n_ensemble >= 2); below, nothing
# is held out. 60 is the smallest table size measured ("refit" there was measured and
# not taken).
AUTO_BAGGING_ROWS = 60


def resolve_early_stopping(value, n_rows, n_ensemble=1):
    """What ``early_stopping=value`` does with ``n_rows`` training rows:
    False (nothing held out), True (the best epoch's weights), ``"refit"``,
    ``"bagging"`` or ``"finetune"``."""
    if isinstance(value, str) and value == "auto":
        if n_rows >= AUTO_EARLY_STOPPING_ROWS:
            return True
        return "bagging" if n_rows >= AUTO_BAGGING_ROWS and n_ensemble >= 2 else False
    return value if isinstance(value, str) else bool(value)


def _check_weights(weights, name, hint, all_zero_ok=False):
    """Per-sample weights must be finite, non-negative and not all zero."""
    if np.any(weights < 0):
        raise ValueError(f"{name} must be non-negative; got negative values: {hint}")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} must be finite: {hint}")
    if not all_zero_ok and not np.any(weights > 0):
        raise ValueError(f"{name} must not be all zero: nothing would be learned; {hint}")


def _bagged_run(runs):
    """One ``FitRun`` for the members' runs ``[(run, fold weight), ...]`` of a
    bagged fit: per epoch the mean loss and time of the members still
    training, and as validation score that of the bagged model had it stopped
    there: every member's best score so far (a member that stopped keeps its
    best), averaged by fold weight (for accuracy and the loss: the score of
    every row by the member it was held out of) over the members with a
    finite one. The scores therefore never fall, and the best score, the one
    of the weights kept, is the last. The members' optimizer states are not
    kept: training that continues the ``Bag`` starts a new optimizer."""
    first = runs[0][0]
    run = FitRun(start_iter=first.start_iter, schedule_start=first.schedule_start)
    weights = np.array([w for _, w in runs], dtype=float)
    best = np.full(len(runs), -math.inf)  # each member's best score so far
    for epoch in range(max(len(r.losses) for r, _ in runs)):
        ran = [r for r, _ in runs if len(r.losses) > epoch]
        run.losses.append(float(np.mean([r.losses[epoch] for r in ran])))
        scores = [r.validation_scores[epoch] if len(r.validation_scores) > epoch else None
                  for r, _ in runs]
        for j, value in enumerate(scores):
            if value is not None and value > best[j]:  # as the members keep theirs
                best[j] = value
        score = _fold_mean(best, weights)
        if not math.isfinite(score):  # no member has validated finitely yet
            seen = [v for v in scores if v is not None]
            score = float(np.mean(seen)) if seen else None
        if score is not None:
            run.validation_scores.append(score)
        run.history.append({"epoch": run.n_iter, "loss": run.losses[-1], "val_score": score,
                            "lr": ran[0].history[epoch]["lr"],
                            "seconds": sum(r.history[epoch]["seconds"] for r in ran)})
    run.samples = sum(r.samples for r, _ in runs)
    final = _fold_mean(np.array([r.best_score for r, _ in runs], dtype=float), weights)
    run.best_score = run.validation_scores[-1] if math.isfinite(final) else -math.inf
    reasons = [r.reason for r, _ in runs]
    run.reason = next((why for why in ("diverged", "callback", "max_iter") if why in reasons),
                      "converged")
    return run


def _fold_mean(scores, weights):
    """``scores`` averaged by ``weights`` over the finite ones (-inf: none)."""
    ok = np.isfinite(scores)
    return float(np.sum(scores[ok] * weights[ok]) / weights[ok].sum()) if ok.any() else -math.inf


def _trained_codes(train):
    """The categorical codes of the rows that trained (positive weight) in
    ``train = (X, Y, weights, codes)``; None without categorical columns."""
    codes, weights = train[3], train[2]
    if codes is None or weights is None:
        return codes
    return codes[weights > 0]


def _takes_sample_weight(scorer):
    """Whether the callable ``scorer`` accepts a ``sample_weight`` keyword."""
    try:
        params = inspect.signature(scorer).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False
    return any(p.name == "sample_weight" or p.kind is p.VAR_KEYWORD for p in params)


def _seed_from(random_state):
    """A 63-bit seed; never draws from numpy's or torch's global RNG."""
    if random_state is None:
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    return int(random_state)


class BaseMLPTorch(BaseEstimator):
    """Common machinery; use ``MLPTorchClassifier`` or ``MLPTorchRegressor``.

    Subclasses get their ``__init__`` from ``_params.estimator``.
    """

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
        # Transactional: a call that raises leaves the estimator as it was.
        # Attributes are restored by reference (a fit replaces them, it does
        # not change them in place); what training changes in place (the
        # weights, the device) is undone by the actions ``_fit_steps`` records.
        saved = dict(self.__dict__)
        undo = []
        try:
            self._fit_steps(X, y, sample_weight, incremental=incremental, classes=classes,
                            undo=undo)
        except BaseException:
            for action in reversed(undo):
                action()
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return self

    def _continuing(self, incremental):
        """Whether this call continues the fitted network (partial_fit, warm_start)."""
        return hasattr(self, "module_") and (
            incremental or any(self.warm_start is v for v in (True, np.True_)))

    def _fit_steps(self, X, y, sample_weight, *, incremental, classes, undo):
        validate_params(self)
        reset = not self._continuing(incremental)
        if not reset:
            check_frozen(self, self._frozen_params)
        X_given = X
        (X, raw, mask), y = self._check_data(X, y, reset=reset)
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s); at least one is required.")
        weights = val_weights = self._sample_weight(sample_weight, X)
        if reset:
            self._fit_columns(X, raw, mask, val_weights)
        codes = self._layout.encode(raw) if mask.any() else None
        head_name, Y, target_weights = self._encode_targets(y, reset=reset, classes=classes,
                                                            sample_weight=val_weights)
        if target_weights is not None:
            weights = target_weights if weights is None else weights * target_weights
            _check_weights(weights, "class_weight (times sample_weight)",
                           f"got class_weight={self.class_weight!r}; use positive class "
                           "weights, e.g. 'balanced'.")
        device = resolve_device(self.device)
        # "auto" (early stopping, dtype) counts the rows that carry weight
        n_rows = X.shape[0] if val_weights is None else int(np.count_nonzero(val_weights > 0))
        mode = self._hold_out(n_rows, reset) if not incremental else None
        if reset:
            self._start(X, head_name, device, bagged=mode == "bagging", n_rows=n_rows)
        else:
            module = self.module_
            before = next(module.parameters()).device
            if before != device:
                module.to(device)
                undo.append(lambda: module.to(before))
        dtype = self._spec.torch_dtype
        generator = torch.Generator().set_state(self._rng_state)
        rows = (X, Y, weights, codes)
        if mode == "bagging":
            batch = self._config(X.shape[0], early=True).batch_size
            macs = replace(self._spec, n_ensemble=1).macs(batch)  # one member trains at a time
            with torch_threads(threads_for(3 * macs)) as threads:
                run = self._fit_bagged(rows, val_weights, X_given, y, generator,
                                       keep_start=not reset, on_epoch=threads.recheck,
                                       undo=undo)
            self._rng_state = generator.get_state()
            self._finish(run, incremental, undo)
            return
        train, val = self._split(rows, val_weights, generator, mode is not None)
        data = self._tensors(*train, dtype, device)
        val_score = val_data = None
        if mode is not None:
            val_data = self._tensors(*val[:4], dtype, device)
            val_score = self._validation_scorer(val_data, X_given, y, val[4])
        config = self._config(data[1].shape[0], early=mode is not None)
        # L-BFGS steps over all rows at once; the others over one batch.
        n_rows = data[1].shape[0] if config.optimizer == "lbfgs" else config.batch_size
        with torch_threads(threads_for(3 * self._spec.macs(n_rows))) as threads:
            start = snapshot(self.module_) if mode == "refit" else None
            run = self._train(config, data, val_score, generator, incremental=incremental,
                              keep_start=not reset, on_epoch=threads.recheck)
            if run.start_weights is not None:
                module, weights_before = self.module_, run.start_weights
                undo.append(lambda: restore(module, weights_before))
                run.start_weights = None
            if reset and mode != "refit":  # what its training rows lack is unknown to it
                forget_unseen(self.module_, _trained_codes(train))
            self._calibrate(val_data if run.reason != "diverged" else None)
            # A callback that stops the held-out run (a time budget) ends the fit there.
            if mode == "refit" and run.reason not in ("diverged", "callback"):
                data = val_data = val_score = None  # free the split before all rows are copied
                run = self._refit(run, start, rows, generator, threads.recheck)
                if reset:
                    forget_unseen(self.module_, _trained_codes(rows))
            elif mode == "finetune" and run.reason not in ("diverged", "callback"):
                data = val_data = val_score = None
                run = self._finetune(run, rows, generator, threads.recheck, undo)
        self._rng_state = generator.get_state()
        self._finish(run, incremental, undo)

    def _hold_out(self, n_rows, reset=True):
        """How this fit uses a validation split: None (it holds none out),
        ``"best"`` (early stopping keeps the best epoch's weights),
        ``"refit"`` (the best epoch's number; then all rows train again),
        ``"bagging"`` (each member of the ensemble on its own fold) or
        ``"finetune"`` (the best epoch's weights, then a few epochs on all rows).
        ``reset``: a cold fit (a warm start keeps the network it has)."""
        value = resolve_early_stopping(self.early_stopping, n_rows, int(self.n_ensemble))
        if self.optimizer == "lbfgs" or value is False:
            return None
        if value == "bagging":
            explicit = isinstance(self.early_stopping, str) and self.early_stopping == "bagging"
            if int(self.n_ensemble) < 2:
                raise ValueError(
                    "early_stopping='bagging' trains each of the n_ensemble members on the "
                    f"rows of all folds but its own; it needs n_ensemble >= 2, got "
                    f"{self.n_ensemble}. Set n_ensemble=4, or early_stopping=True.")
            if not reset and self._spec.bagged and self._spec.n_ensemble < 2:
                if explicit:
                    raise ValueError(
                        "This bagged model has one member (a callback stopped its fit after "
                        "the first): early_stopping='bagging' cannot continue it. Refit with "
                        "warm_start=False, or continue with early_stopping=True or False.")
                return None
            if not reset and not self._spec.bagged:
                if explicit:
                    raise ValueError(
                        "early_stopping='bagging' cannot continue a network fitted without "
                        "it (warm_start=True): its members share weights. Refit with "
                        "warm_start=False.")
                return None  # "auto" keeps what the fitted network is: nothing held out
            return "bagging"
        return value if value in ("refit", "finetune") else "best"

    def _refit(self, selection, start, rows, generator, on_epoch):
        """``early_stopping="refit"``: train from the ``start`` weights on all
        ``rows`` for the number of epochs the held-out run ``selection`` kept.
        Its validation scores stay the record of that choice."""
        epochs = max(1, selection.best_epoch - selection.start_iter
                     if selection.best_epoch is not None else len(selection.losses))
        restore(self.module_, start)
        data = self._tensors(*rows, self._spec.torch_dtype, start[0].device)
        config = self._config(data[1].shape[0], early=False)
        run = self._train(config, data, None, generator, incremental=False, keep_start=False,
                          on_epoch=on_epoch, epochs=epochs, monitor=False)
        run.validation_scores = selection.validation_scores
        run.best_score = selection.best_score
        if run.reason == "max_iter" and selection.reason != "max_iter":
            run.reason = "refit"  # it ran the epochs it was asked for
        return run

    def _finetune(self, selection, rows, generator, on_epoch, undo):
        """``early_stopping="finetune"``: the best epoch's weights, which the
        held-out run ``selection`` kept, train ``FINETUNE_EPOCHS`` more epochs
        (fewer where ``max_iter`` ends the fit first) on all ``rows``, at
        ``lr`` with a fresh optimizer and no stopping rule. The held-out run's
        epochs stay in the record (``loss_curve_``, ``n_iter_``), and its
        validation scores and the temperature stay those of the choice."""
        epochs = min(FINETUNE_EPOCHS, self.max_iter - len(selection.losses))
        if epochs < 1:
            return selection
        self._state, shorten = self._state.absorb(selection)
        undo.append(shorten)
        device = next(self.module_.parameters()).device
        data = self._tensors(*rows, self._spec.torch_dtype, device)
        config = self._config(data[1].shape[0], early=False)
        run = self._train(config, data, None, generator, incremental=False, keep_start=False,
                          on_epoch=on_epoch, epochs=epochs, monitor=False)
        run.validation_scores = selection.validation_scores
        run.best_score = selection.best_score
        if run.reason == "max_iter":
            run.reason = "finetune"  # it ran the epochs it was asked for
        return run

    def _calibrate(self, val_data, total=None, outputs=None):
        """After training: adjust the fitted outputs on the held-out rows
        ``val_data`` (None: none were held out). Classifiers' temperature."""

    def _fit_bagged(self, rows, val_weights, X_given, y, generator, *, keep_start, on_epoch,
                    undo):
        """``early_stopping="bagging"``: member ``j`` of the ``Bag`` trains on
        every fold but the ``j``-th and keeps its best epoch on that one; the
        classifier's temperature comes from every row's output by the member
        it was held out of. Returns one ``FitRun`` for all members (see
        ``_bagged_run``). While a member trains, ``module_`` is that member
        (a callback that predicts sees the network being trained)."""
        whole, spec, state = self.module_, self._spec, self._state
        members = list(whole.members)
        member_spec = replace(spec, n_ensemble=1, bagged=False)
        dtype, device = spec.torch_dtype, next(whole.parameters()).device
        # The folds of the cold fit, kept: a warm start on the same rows must not
        # validate a member on rows it trained on.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if not keep_start or not hasattr(self, "_bag_seed"):
            self._bag_seed = seed
        runs, held_out, epochs = [], [], 0
        try:
            for j, (train, val) in enumerate(self._folds(rows, val_weights, self._bag_seed,
                                                         len(members))):
                # callbacks see one count of epochs, on from the previous member's
                self._state = replace(state, n_iter=state.n_iter + epochs)
                data = self._tensors(*train, dtype, device)
                val_data = self._tensors(*val[:4], dtype, device)
                self.module_, self._spec = members[j], member_spec
                if self.verbose:
                    print(f"Member {j + 1} of {len(members)}: trains on {data[1].shape[0]} "
                          f"rows, validates on {val_data[1].shape[0]}", file=sys.stdout)
                val_score = self._validation_scorer(val_data, X_given, y, val[4])
                config = self._config(data[1].shape[0], early=True)
                run = self._train(config, data, val_score, generator, incremental=False,
                                  keep_start=keep_start, on_epoch=on_epoch)
                epochs += len(run.losses)
                run.start_iter = state.n_iter  # the fit's epochs, as the other members'
                if run.start_weights is not None:
                    member, before = members[j], run.start_weights
                    undo.append(lambda m=member, w=before: restore(m, w))
                    run.start_weights = None
                else:  # a cold fit: what its training rows lack is unknown to it
                    forget_unseen(members[j], _trained_codes(train))
                runs.append((run, val_data[1].shape[0] if val_data[2] is None
                             else float(val_data[2].sum())))
                if run.reason != "diverged":
                    held_out.append((self._outputs(members[j], val_data[0], combine=False),
                                     val_data[1], val_data[2]))
                if run.reason == "callback":  # a time budget: end with the members trained
                    break
        finally:
            self.module_, self._spec, self._state = whole, spec, state
        if len(runs) < len(members) and not keep_start:
            # A cold fit keeps the members it trained; a warm start keeps them all
            # (those not reached as they were).
            self.module_ = type(whole)(members[:len(runs)])
            self._spec = replace(spec, n_ensemble=len(runs))
        if held_out:
            z, Y, W = (torch.cat(parts) if parts[0] is not None else None
                       for parts in zip(*held_out))
            self._calibrate((None, Y, W), outputs=z)
        else:
            self._calibrate(None)
        return _bagged_run(runs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "indicator"
        return tags

    @property
    def _head(self):
        """The fitted head: loss, link and decoding of the outputs."""
        return self._spec.head

    def _training_loss(self):
        return self._head.loss

    def _check_X(self, X, *, reset, y="no_validation", **kwargs):
        """Validated input as ``((X_num, X, mask), y)``: the numeric columns
        (float array or sparse), the input as given (for the categorical
        columns' codes) and the mask of categorical columns.

        A fitted model (``reset=False``) reads only its fitted configuration:
        which columns are categorical, and whether NaN is filled."""
        X = check_frame(X)
        no_y = isinstance(y, str) and y == "no_validation"
        if not no_y:
            check_target_values(y)
        if reset:
            allow_nan = self.missing == "indicator"
            mask = categorical_mask(X, self.categorical_features, n_columns(X))
        else:
            allow_nan = self._layout.missing == "indicator"
            mask = self._layout.categorical
        if is_dataframe(X) and (n_columns(X) == 0 or (mask.any() and len(X) == 0)):
            # scikit-learn's own words for an array, with the frame's shape (its
            # checks would see no dtype, or only the numeric part's shape)
            what = "feature(s)" if n_columns(X) == 0 else "sample(s)"
            raise ValueError(f"Found array with 0 {what} (shape=({len(X)}, {n_columns(X)})) "
                             f"while a minimum of 1 is required by {type(self).__name__}.")
        if not mask.any():
            out = check_X(self, X, y=y, reset=reset, allow_nan=allow_nan, **kwargs)
            X_num, y = (out, None) if no_y else out
            return (X_num, None, mask), y
        X_num, y = check_table(self, X, mask, y=y, reset=reset, allow_nan=allow_nan, **kwargs)
        return (X_num, X, mask), y

    def _fit_columns(self, X, raw, mask, weights):
        """Learn the categories and numeric statistics (weighted by ``sample_weight``)."""
        if not mask.any():  # X validated: its width is known now
            mask = np.zeros(X.shape[1], dtype=bool)
        layout = ColumnLayout(mask.copy(), missing=self.missing)
        names = getattr(self, "feature_names_in_", None)
        declared = declared_categories(self.categories, None if names is None else list(names),
                                       mask)
        if mask.any():
            layout.fit_categories(raw, weights, declared)
        self._layout = layout
        self.is_categorical_ = mask.copy()
        self.categories_ = [categories_array(c) for c in layout.categories]
        self._numeric_stats = None
        bins = PIECEWISE_BINS if needs_bins(self.numeric_embedding) else 0
        if self.scaling is not None or self.missing == "indicator" or bins:
            self._numeric_stats = numeric_statistics(X, weights, self.scaling, self.missing,
                                                     bins)

    def _check_data(self, X, y, *, reset):
        raise NotImplementedError

    def _sample_weight(self, sample_weight, X, *, all_zero_ok=False):
        """``sample_weight`` as a float64 array (None stays None), checked:
        one finite, non-negative weight per row, not all zero (unless
        ``all_zero_ok``: a Dask partition, whose fit checks all of them)."""
        if sample_weight is None:
            return None
        if isinstance(sample_weight, numbers.Real):  # a Python or numpy scalar
            # one weight for every row, as scikit-learn's estimators accept
            sample_weight = np.full(X.shape[0], float(sample_weight))
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
        _check_weights(sample_weight, "sample_weight", "e.g. np.ones(n_samples).",
                       all_zero_ok=all_zero_ok)
        return sample_weight

    def _start(self, X, head_name, device, bagged=False, n_rows=None, fits_float32=None):
        """A fresh spec, network, generator and training state; the frozen
        parameters recorded (continued training checks them). ``n_rows``,
        ``fits_float32``: the number of training rows, and whether all of their
        values lie in float32's range, when ``X`` is only a sample of them
        (Dask)."""
        generator = torch.Generator().manual_seed(_seed_from(self.random_state))
        stats = self._numeric_stats or {}
        table = {"numeric_embedding": self.numeric_embedding}
        if stats:
            indicators = tuple(int(j) for j in np.flatnonzero(stats["indicator"]))
            values = {k: tuple(float(v) for v in stats[k]) for k in ("fill", "shift", "scale")}
            values["bins"] = tuple(tuple(float(v) for v in e) for e in stats.get("bins", ()))
            table.update(missing=self.missing, scaling=self.scaling, indicator_columns=indicators,
                         **values)
        self._spec = NetworkSpec(
            cardinalities=self._layout.cardinalities,
            **table,
            n_inputs=X.shape[1],
            hidden_dims=hidden_dims_tuple(self.hidden_dims),
            n_outputs=self.n_outputs_,
            head_name=head_name,
            activation=self.activation,
            dropout=float(self.dropout),
            batch_norm=bool(self.batch_norm),
            dtype=compute_dtype(self.dtype, X, n_rows, fits_float32),
            n_ensemble=int(self.n_ensemble),
            bagged=bool(bagged),
        )
        self._frozen_params = frozen_values(self)
        self.module_ = self._spec.build(generator).to(device)
        self._rng_state = generator.get_state()
        self._state = TrainState()

    def _split(self, rows, val_weights, generator, split):
        """Train / validation parts of ``rows`` = (X, Y, weights, codes).

        The validation part keeps only ``sample_weight`` (the score is what
        ``score`` would give on the held-out rows, so class weights, folded
        into ``weights`` for training, do not enter it) and its row indices.
        Only rows of positive ``sample_weight`` are held out: a row of weight
        zero carries no information about the score, so it stays in training
        (where it contributes nothing), and the split of the others is the
        one they would get without it.
        """
        if not split:
            return rows, None
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        X, Y, weights, codes = rows
        idx = np.arange(X.shape[0])
        if val_weights is not None:
            idx = idx[val_weights > 0]
        if idx.shape[0] < 2:
            raise ValueError(
                f"early_stopping needs at least 2 samples of positive sample_weight to hold "
                f"out a validation part; got {idx.shape[0]}. Set early_stopping=False.")
        stratify = self._head.stratify(Y[idx])
        try:
            tr, va = train_test_split(idx, test_size=self.validation_fraction,
                                      random_state=seed, stratify=stratify)
        except ValueError:
            tr, va = train_test_split(idx, test_size=self.validation_fraction,
                                      random_state=seed)
        return self._parts(rows, val_weights, tr, va)

    def _folds(self, rows, val_weights, seed, k):
        """``k`` (train, validation) pairs of ``rows``, as ``_split`` makes one:
        the rows of positive ``sample_weight`` in ``k`` folds (stratified for
        single-label classifiers, unless every class has fewer than ``k``
        rows), each validating once; rows of weight zero always train. The folds are
        drawn now (from ``seed``); each pair's copies are made when it is
        reached."""
        X, Y, weights, codes = rows
        idx = np.arange(X.shape[0])
        if val_weights is not None:
            idx = idx[val_weights > 0]
        if idx.shape[0] < k:
            raise ValueError(
                f"early_stopping='bagging' holds out one of n_ensemble={k} folds per member; "
                f"it needs at least {k} samples of positive sample_weight, got "
                f"{idx.shape[0]}. Set early_stopping=False.")
        stratify = self._head.stratify(Y[idx])
        if stratify is not None and np.unique(stratify, return_counts=True)[1].max() >= k:
            with warnings.catch_warnings():  # "the least populated class has only ..."
                warnings.simplefilter("ignore", UserWarning)
                splits = list(StratifiedKFold(k, shuffle=True, random_state=seed)
                              .split(idx, stratify))
        else:
            splits = list(KFold(k, shuffle=True, random_state=seed).split(idx))
        return (self._parts(rows, val_weights, idx[tr], idx[va]) for tr, va in splits)

    def _parts(self, rows, val_weights, tr, va):
        """(train, validation) parts of ``rows`` for the row indices ``tr`` /
        ``va`` (rows of weight zero join training; validation keeps only
        ``sample_weight`` and its row indices)."""
        X, Y, weights, codes = rows
        if val_weights is not None:  # the rows of weight zero train (contributing nothing)
            tr = np.sort(np.concatenate([tr, np.flatnonzero(val_weights <= 0)]))
        w_tr = None if weights is None else weights[tr]
        w_va = None if val_weights is None else val_weights[va]
        c_tr, c_va = (None, None) if codes is None else (codes[tr], codes[va])
        return (X[tr], Y[tr], w_tr, c_tr), (X[va], Y[va], w_va, c_va, va)

    def _tensors(self, X, Y, weights, codes, dtype, device):
        Y_t = to_tensor(Y, torch.long if Y.dtype.kind in "iu" else dtype, device)
        W_t = None if weights is None else to_tensor(weights, dtype, device)
        return as_rows(X, dtype, device, codes=codes), Y_t, W_t

    def _config(self, n_samples, *, early):
        batch = min(200 if self.batch_size == "auto" else self.batch_size, n_samples)
        return TrainConfig(
            optimizer=self.optimizer, lr=float(self.lr), momentum=float(self.momentum),
            nesterov=bool(self.nesterov), weight_decay=float(self.weight_decay),
            batch_size=batch, max_iter=self.max_iter, lr_schedule=self.lr_schedule,
            n_iter_no_change=self.n_iter_no_change, tol=float(self.tol),
            shuffle=bool(self.shuffle), early_stopping=early,
            verbose=int(self.verbose), predict_rows=batch_rows(self._spec.widths()),
        )

    def _train(self, config, data, val_score, generator, *, incremental, keep_start,
               on_epoch=None, epochs=None, monitor=None):
        state = self._state
        if not incremental:
            # A new fit (also under warm_start) starts a new optimizer, as scikit-learn's.
            state = replace(state, optimizer_state=None)
        callback = self._callback(on_epoch)
        loss = self._training_loss()
        device = data[1].device
        dropout_gen = generator
        if device.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            dropout_gen = torch.Generator(device).manual_seed(seed)
        # Dropout masks come from the fit's own generator, for every optimizer.
        set_dropout_generator(self.module_, dropout_gen)
        try:
            if config.optimizer == "lbfgs":
                return fit_lbfgs(self.module_, loss, data, config, state, callback=callback,
                                 keep_start=keep_start)
            return fit_loop(self.module_, loss, data, config, generator, state,
                            epochs=epochs or (1 if incremental else config.max_iter),
                            val_score=val_score, callback=callback,
                            monitor=not incremental if monitor is None else monitor,
                            restart_schedule=not incremental,
                            keep_start=keep_start)
        finally:
            set_dropout_generator(self.module_, None)

    def _callback(self, on_epoch=None):
        """The per-epoch call of the training loop: ``on_epoch()`` (the thread
        count's recheck), then the user's callbacks (None: nothing to call)."""
        if not self.callbacks and on_epoch is None:
            return None

        def call(epoch, logs):
            if on_epoch is not None:
                on_epoch()
            stop = False
            for cb in self.callbacks or ():
                stop = bool(cb(self, epoch, logs)) or stop
            return stop

        return call

    def _validation_scorer(self, val_data, X_given, y, val_rows):
        """``score(module) -> float`` on the held-out rows, higher is better:
        ``score``'s metric (``scoring=None``), the negated validation loss
        (``"loss"``), or a scikit-learn scorer on the rows as given."""
        scoring = self.scoring
        if scoring is None or (isinstance(scoring, str) and scoring == "loss"):
            measure = self._head.score if scoring is None else self._negative_loss
            return lambda module: self._outputs_score(module, val_data, measure)
        scorer = check_scoring(self, scoring=scoring)
        X_val, y_val = _safe_indexing(X_given, val_rows), y[val_rows]
        W = val_data[2]
        # the held-out rows' weights go to a scorer that takes them (scikit-learn's
        # do); a plain callable scorer(estimator, X, y) scores them unweighted
        kwargs = {} if W is None or not _takes_sample_weight(scorer) else {
            "sample_weight": W.cpu().numpy()}

        def score(module):
            try:
                return float(scorer(self, X_val, y_val, **kwargs))
            except ValueError as exc:
                raise ValueError(
                    f"{exc}\nscoring={scoring!r} failed on the {len(y_val)} held-out rows "
                    "(a class with few rows may be missing from them). Use scoring='loss', "
                    "which knows every class, hold out more rows, or set "
                    "early_stopping=False.") from exc

        return score

    def _negative_loss(self, out, Y, W):
        per_sample = self._head.loss(out, Y)
        if per_sample.ndim > 1:
            per_sample = per_sample.sum(dim=tuple(range(1, per_sample.ndim)))
        total = per_sample.sum() if W is None else (per_sample * W).sum()
        return -total / (per_sample.shape[0] if W is None else W.sum())

    @torch.no_grad()
    def _outputs(self, module, X, combine=True):
        """The network's outputs on the tensors ``X`` in predict-sized batches
        (eval-mode semantics, without touching the module's mode); the members'
        own ``(n, k, o)`` when ``combine`` is False."""
        forward = inference(module)
        finish = self._head.combine if combine else (lambda z: z)
        rows = max(1, X.shape[0])  # no rows (a Dask worker's empty share): one empty batch
        parts = [finish(forward(*xb))
                 for xb in iter_batches(X, min(rows, batch_rows(self._spec.widths())))]
        if not parts:
            parts = [finish(forward(*X.slice(0, 0)))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _outputs_score(self, module, val_data, measure):
        """``measure(outputs, Y, W)`` of the held-out rows ``val_data = (X, Y, W)``."""
        X, Y, W = val_data
        return float(measure(self._outputs(module, X), Y, W))

    def _finish(self, run, incremental, undo=None):
        """Fitted attributes from the cumulative state and this call's run.

        ``loss_curve_``, ``history_``, ``n_iter_`` and ``t_`` cover every
        epoch the weights went through; ``validation_scores_`` and
        ``best_validation_score_`` the fit that chose the weights held now
        (None when the last call did not validate them). ``loss_curve_`` and
        ``history_`` are the state's own growing lists (as scikit-learn's MLP
        appends to its ``loss_curve_``); ``undo`` (the fit's list of undo
        actions) gets the one that shortens them again.
        """
        self._state, shorten = self._state.absorb(run)
        if undo is not None:
            undo.append(shorten)
        state = self._state
        self.n_iter_ = state.n_iter
        self.t_ = state.t
        self.loss_curve_ = state.loss_curve
        self.best_loss_ = state.best_loss
        if run.validation_scores:
            self.validation_scores_ = list(run.validation_scores)
            self.best_validation_score_ = run.best_score
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.history_ = state.history
        scaled = self._spec.scaling is not None
        if run.reason == "diverged":
            advice = "" if scaled else " or scale the inputs (e.g. scaling='standard')"
            warnings.warn(
                f"Training diverged after {state.n_iter} epoch(s): the loss or the "
                f"network's outputs became NaN or infinite. Earlier finite weights were "
                f"kept. Lower `lr` (now {self.lr}){advice}.",
                ConvergenceWarning,
            )
        elif run.reason == "max_iter" and not incremental:
            solver = "lbfgs" if self.optimizer == "lbfgs" else "Stochastic Optimizer"
            advice = "Increase max_iter." if scaled else "Increase max_iter or scale the data."
            warnings.warn(
                f"{solver}: Maximum iterations ({self.max_iter}) reached and the "
                f"optimization hasn't converged yet. {advice}",
                ConvergenceWarning,
            )
        elif (incremental and self.lr_schedule == "cosine"
              and state.n_iter - state.schedule_start >= self.max_iter):
            warnings.warn(
                f"lr_schedule='cosine' reached lr=0 after max_iter={self.max_iter} "
                "partial_fit calls: further calls do not change the network. Raise "
                "max_iter or use lr_schedule='constant' for streaming.",
                UserWarning,
            )

    # -------------------------------------------------------------- predict
    def _forward(self, X, transform):
        """Raw network outputs of X, batch by batch, through ``transform``.

        Reads only the fitted state, and never changes the module (its mode
        included) or the calling thread's torch settings, so a callback or
        another thread may predict while the network trains."""
        check_is_fitted(self, "module_")
        (X, raw, mask), _ = self._check_X(X, reset=False)
        codes = self._layout.encode(raw) if mask.any() else None
        module = self.module_
        param = next(module.parameters())
        out = None
        start = 0
        rows = min(X.shape[0], batch_rows(self._spec.widths()))
        inputs = as_rows(X, param.dtype, param.device, resident=False, codes=codes)
        threads = torch_threads(threads_for(self._spec.macs(rows)), measure=False)
        with torch.inference_mode(), threads:
            forward = inference(module)
            for xb in iter_batches(inputs, max(rows, 1)):
                yb = transform(self._head.combine(forward(*xb))).cpu().numpy()
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
