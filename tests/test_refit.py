"""early_stopping="refit": a held-out run chooses the number of epochs and the
temperature; then all rows train again from the start weights. And
early_stopping="finetune": the held-out run's best weights then train a few more
epochs on all rows."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skmlp import MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier
from skmlp._base import AUTO_EARLY_STOPPING_ROWS, FINETUNE_EPOCHS, resolve_early_stopping

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clf(n=300, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.7 * rng.randn(n) > 0).astype(int)
    return X, y


def _kw(**extra):
    return {**dict(hidden_dims=(16,), max_iter=40, n_iter_no_change=5, lr=0.01,
                   random_state=0), **extra}


def test_refit_runs_the_best_epoch_count_on_all_rows():
    X, y = _clf()
    best = MLPTorchClassifier(**_kw(early_stopping=True, scoring="loss")).fit(X, y)
    refit = MLPTorchClassifier(**_kw(early_stopping="refit", scoring="loss")).fit(X, y)
    # The held-out run is the one early_stopping=True makes; its record is kept.
    assert refit.validation_scores_ == best.validation_scores_
    assert refit.best_validation_score_ == best.best_validation_score_
    k = int(np.argmax(best.validation_scores_)) + 1
    assert k < best.n_iter_  # the held-out run stopped after its best epoch
    # The weights held went through k epochs of all rows.
    assert refit.n_iter_ == k == len(refit.loss_curve_) == len(refit.history_)
    assert refit.t_ == k * X.shape[0]
    assert best.t_ == best.n_iter_ * (X.shape[0] - round(0.1 * X.shape[0]))
    assert all(h["val_score"] is None for h in refit.history_)
    assert not np.allclose(refit.predict_proba(X), best.predict_proba(X))


def test_refit_is_repeatable_and_leaves_no_convergence_warning():
    X, y = _clf()
    a = MLPTorchClassifier(**_kw(early_stopping="refit")).fit(X, y)
    b = MLPTorchClassifier(**_kw(early_stopping="refit")).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # The second run stops where it was told to: not "max_iter not reached".
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MLPTorchClassifier(**_kw(early_stopping="refit")).fit(X, y)


@pytest.mark.parametrize("mode", ["refit", "finetune"])
def test_the_run_on_all_rows_keeps_the_held_out_temperature(mode):
    X, y = _clf()
    kw = _kw(early_stopping=mode, scoring="loss", calibration="temperature",
             label_smoothing=0.2, max_iter=60)
    best = MLPTorchClassifier(**{**kw, "early_stopping": True}).fit(X, y)
    assert best.n_iter_ + FINETUNE_EPOCHS <= 60
    with warnings.catch_warnings():  # it ran the epochs it was asked for
        warnings.simplefilter("error", ConvergenceWarning)
        est = MLPTorchClassifier(**kw).fit(X, y)
    assert est.temperature_ == best.temperature_ != 1.0
    plain = MLPTorchClassifier(**{**kw, "calibration": None}).fit(X, y)
    np.testing.assert_allclose(est.decision_function(X) * est.temperature_,
                               plain.decision_function(X), rtol=1e-6, atol=1e-9)


def test_refit_regressor_and_callbacks_see_both_runs():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 4)
    y = X[:, 0] - X[:, 1] + 0.3 * rng.randn(200)
    seen = []
    reg = MLPTorchRegressor(**_kw(early_stopping="refit"),
                            callbacks=[lambda est, epoch, logs: seen.append(logs["val_score"])]
                            ).fit(X, y)
    held_out = len(reg.validation_scores_)
    assert seen[:held_out] == reg.validation_scores_
    assert seen[held_out:] == [None] * reg.n_iter_


def test_a_callback_that_stops_the_held_out_run_ends_the_fit_there():
    X, y = _clf()
    kw = _kw(early_stopping="refit")
    best = MLPTorchClassifier(**{**kw, "early_stopping": True},
                              callbacks=[lambda est, epoch, logs: epoch >= 8]).fit(X, y)
    est = MLPTorchClassifier(**kw, callbacks=[lambda est, epoch, logs: epoch >= 8]).fit(X, y)
    assert est.n_iter_ == 8 and len(est.validation_scores_) == 8
    np.testing.assert_array_equal(est.predict_proba(X), best.predict_proba(X))


@pytest.mark.parametrize("mode", ["refit", "finetune"])
def test_a_run_on_all_rows_that_raises_leaves_the_fitted_estimator_as_it_was(mode):
    X, y = _clf()
    est = MLPTorchClassifier(**_kw(early_stopping=mode, warm_start=True, max_iter=60)).fit(X, y)
    before = est.predict_proba(X)
    attrs = {k: v for k, v in vars(est).items() if k.endswith("_") and k != "module_"}
    n_curve = len(est.loss_curve_)

    def fail_on_all_rows(estimator, epoch, logs):
        if logs["val_score"] is None:  # after an epoch of the run on all rows
            raise RuntimeError("stop")

    est.set_params(callbacks=[fail_on_all_rows])
    with pytest.raises(RuntimeError, match="stop"):
        est.fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X), before)
    for key, value in attrs.items():
        assert getattr(est, key) is value, key
    assert len(est.loss_curve_) == n_curve


def test_auto_resolves_by_training_rows():
    assert resolve_early_stopping("auto", AUTO_EARLY_STOPPING_ROWS - 1) is False
    assert resolve_early_stopping("auto", AUTO_EARLY_STOPPING_ROWS) is True
    assert resolve_early_stopping("auto", np.int64(AUTO_EARLY_STOPPING_ROWS)) is True
    assert resolve_early_stopping(np.True_, 5) is True
    assert resolve_early_stopping(np.False_, 5) is False
    assert resolve_early_stopping("refit", 5) == "refit"
    X, y = _clf(300)
    kw = dict(max_iter=3, random_state=0)
    none = TabularMLPClassifier(n_ensemble=1, **kw).fit(X, y)  # nothing to bag: nothing held out
    assert none.validation_scores_ is None
    mid = TabularMLPClassifier(early_stopping="refit", **kw).fit(X, y)
    assert mid.validation_scores_ is not None and mid.history_[0]["val_score"] is None
    assert mid.t_ == mid.n_iter_ * 300


def test_partial_fit_and_lbfgs_hold_nothing_out():
    X, y = _clf()
    est = MLPTorchClassifier(**_kw(early_stopping="refit")).partial_fit(X, y, classes=[0, 1])
    assert est.validation_scores_ is None and est.t_ == X.shape[0]
    est = MLPTorchClassifier(**_kw(early_stopping="refit", optimizer="lbfgs")).fit(X, y)
    assert est.validation_scores_ is None


def test_refit_is_validated():
    X, y = _clf(50)
    with pytest.raises(ValueError, match="'auto', 'refit', 'bagging' or 'finetune'"):
        MLPTorchClassifier(early_stopping="refitt").fit(X, y)


@pytest.mark.parametrize("Est", [MLPTorchClassifier, MLPTorchRegressor])
def test_finetune_trains_the_best_epoch_further_on_all_rows(Est):
    X, y = _clf()
    if Est is MLPTorchRegressor:
        y = X[:, 0] - X[:, 1] + 0.3 * np.random.RandomState(1).randn(len(y))
    kw = _kw(scoring="loss", max_iter=60, tol=1e-3)
    best = Est(**kw, early_stopping=True).fit(X, y)
    tuned = Est(**kw, early_stopping="finetune").fit(X, y)
    assert best.n_iter_ + FINETUNE_EPOCHS <= 60  # room for all of them
    # The held-out run is early_stopping=True's, and its record stays.
    assert tuned.validation_scores_ == best.validation_scores_
    assert tuned.best_validation_score_ == best.best_validation_score_
    assert tuned.loss_curve_[:best.n_iter_] == best.loss_curve_
    # Then FINETUNE_EPOCHS epochs over every row, without validation.
    assert tuned.n_iter_ == best.n_iter_ + FINETUNE_EPOCHS == len(tuned.history_)
    assert tuned.t_ == best.t_ + FINETUNE_EPOCHS * X.shape[0]
    assert [h["val_score"] for h in tuned.history_[best.n_iter_:]] == [None] * FINETUNE_EPOCHS
    assert not np.allclose(tuned.predict(X), best.predict(X))
    again = Est(**kw, early_stopping="finetune").fit(X, y)
    np.testing.assert_array_equal(again.predict(X), tuned.predict(X))


def test_finetune_stays_within_max_iter():
    X, y = _clf()
    best = MLPTorchClassifier(**_kw(early_stopping=True, max_iter=60)).fit(X, y)
    assert best.n_iter_ < 60
    # a held-out run that stops 3 epochs before max_iter leaves room for 3
    kw = _kw(early_stopping="finetune", max_iter=best.n_iter_ + 3)
    assert MLPTorchClassifier(**kw).fit(X, y).n_iter_ == best.n_iter_ + 3
    # one that runs to max_iter leaves none: the fit is early_stopping=True's
    kw = _kw(max_iter=best.n_iter_ - 2)
    capped = MLPTorchClassifier(**kw, early_stopping="finetune").fit(X, y)
    plain = MLPTorchClassifier(**kw, early_stopping=True).fit(X, y)
    assert capped.n_iter_ == plain.n_iter_ == best.n_iter_ - 2
    np.testing.assert_array_equal(capped.predict_proba(X), plain.predict_proba(X))
