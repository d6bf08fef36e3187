"""A fitted model is one frozen thing (SPEC: "Fitted models are frozen").

Each test here reproduces a defect of main at 234deb2 (issue 18) and fails there:
set_params after fit, predictions inside callbacks, warm-start summaries,
weighted validation splits, structural changes under warm_start/partial_fit,
learning-rate changes, sparse duplicates, all-categorical frames, optimizer
switches, label-type messages, thread counts, messages that name the column,
``categories_``, ``scoring`` and warnings that fit the estimator.
"""

import math
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss

from skmlp import (MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier,
                   TabularMLPRegressor)

RNG = np.random.RandomState(0)
X = RNG.randn(300, 3)
Y = (X[:, 0] > 0).astype(int)
Y_REG = X @ np.array([1.0, -2.0, 0.5])


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _frame(n=200, seed=0):
    rng = np.random.RandomState(seed)
    return pd.DataFrame({
        "num": rng.randn(n),
        "city": pd.Series(rng.choice(["Oslo", "Rome", "Lima"], n), dtype="string"),
        "kind": pd.Categorical(rng.choice(["a", "b"], n)),
    })


# ------------------------------------------------------- 1. set_params after fit
@pytest.mark.parametrize("change", [dict(missing="indicator"), dict(categorical_features=None),
                                    dict(scaling="robust"), dict(dtype="float32"),
                                    dict(hidden_dims=(3, 3)), dict(label_smoothing=0.3)])
def test_set_params_after_fit_changes_no_prediction(change):
    clf = MLPTorchClassifier((8,), max_iter=20, random_state=0).fit(X, Y)
    proba, decision = clf.predict_proba(X), clf.decision_function(X)
    clf.set_params(**change)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    np.testing.assert_array_equal(clf.decision_function(X), decision)
    assert clf.score(X, Y) == pytest.approx(np.mean(clf.predict(X) == Y))


def test_missing_set_after_fit_does_not_let_nan_through():
    clf = MLPTorchClassifier((8,), max_iter=20, random_state=0).fit(X, Y)
    clf.set_params(missing="indicator")
    X_nan = X.copy()
    X_nan[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(X_nan)
    # The next cold fit takes the new value.
    clf.fit(X_nan, Y)
    assert np.isfinite(clf.predict_proba(X_nan)).all()


# --------------------------------------------- 2. predicting inside a callback
@pytest.mark.parametrize("Est,y", [(MLPTorchClassifier, Y), (MLPTorchRegressor, Y_REG)])
def test_callback_that_predicts_leaves_training_unchanged(Est, y):
    params = dict(hidden_dims=(16,), batch_norm=True, dropout=0.2, max_iter=6,
                  batch_size=32, random_state=0)
    modes = []

    def scorer(est, epoch, logs):
        est.score(X, y)
        est.predict(X[:5])
        modes.append(est.module_.training)  # still training after the predictions

    plain = Est(**params).fit(X, y)
    watched = Est(**params, callbacks=[scorer]).fit(X, y)
    assert modes and all(modes)
    assert watched.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(watched.predict(X), plain.predict(X))
    assert not watched.module_.training


def test_predict_from_another_thread_during_training_changes_nothing():
    import threading

    params = dict(hidden_dims=(16,), batch_norm=True, dropout=0.2, max_iter=5, batch_size=32,
                  random_state=0)

    def other_thread(est, epoch, logs):
        worker = threading.Thread(target=lambda: est.predict_proba(X))
        worker.start()
        worker.join()

    plain = MLPTorchClassifier(**params).fit(X, Y)
    watched = MLPTorchClassifier(**params, callbacks=[other_thread]).fit(X, Y)
    assert watched.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(watched.predict_proba(X), plain.predict_proba(X))


def test_predict_in_callback_keeps_the_fit_thread_count():
    outer = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        def cb(est, epoch, logs):
            before = torch.get_num_threads()
            est.predict(np.repeat(X, 200, axis=0))  # a large predict: no size limit
            seen.append((before, torch.get_num_threads()))

        MLPTorchClassifier((4,), max_iter=3, random_state=0, callbacks=[cb]).fit(X, Y)
        assert seen and all(before == after for before, after in seen), seen
        assert seen[0][0] == 1  # the small fit runs on one thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


# --------------------------------------------------- 3. warm-start summaries
def test_warm_start_summaries_describe_the_kept_weights():
    y_flip = 1 - Y
    clf = MLPTorchClassifier((16,), max_iter=30, early_stopping=True, random_state=0,
                             lr=1e-2).fit(X, Y)
    assert clf.best_validation_score_ > 0.9
    clf.set_params(warm_start=True, max_iter=15)
    clf.fit(X, y_flip)  # the labels flipped: the kept weights now fit y_flip
    assert len(clf.validation_scores_) <= 15
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert len(clf.loss_curve_) == len(clf.history_) == clf.n_iter_
    # Without validation, the warm fit's weights were not validated.
    clf.set_params(early_stopping=False, max_iter=2)
    clf.fit(X, y_flip)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.best_loss_ == min(clf.loss_curve_)


# ------------------------------------------- 4. weighted validation splits
def test_validation_split_holds_out_only_weighted_rows():
    X4, y4 = RNG.randn(400, 3), RNG.randint(0, 2, 400)
    w = np.zeros(400)
    w[:6] = 1.0
    y4[:6] = [0, 1, 0, 1, 0, 1]
    for seed in range(8):  # an unweighted 10% split misses all 6 rows for most seeds
        clf = MLPTorchClassifier((8,), max_iter=3, early_stopping=True, n_iter_no_change=50,
                                 random_state=seed).fit(X4, y4, sample_weight=w)
        assert len(clf.validation_scores_) == 3
        assert np.isfinite(clf.validation_scores_).all()


def test_validation_split_needs_two_weighted_rows():
    w = np.zeros(len(X))
    w[0] = 1.0
    with pytest.raises(ValueError, match="early_stopping needs at least 2 samples"):
        MLPTorchClassifier((4,), early_stopping=True).fit(X, Y, sample_weight=w)


# ----------------------------------- 5. structural changes when continuing
STRUCTURAL = [("hidden_dims", (5,)), ("n_ensemble", 2), ("dtype", "float32"),
              ("scaling", "standard"), ("activation", "tanh"), ("missing", "indicator"),
              ("numeric_embedding", "periodic"), ("batch_norm", True),
              ("categorical_features", [0])]


@pytest.mark.parametrize("name,value", STRUCTURAL)
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_continuing_with_a_changed_structure_raises(name, value, how):
    clf = MLPTorchClassifier((4,), max_iter=3, random_state=0)
    if how == "warm_start":
        clf.fit(X, Y)
    else:
        clf.partial_fit(X, Y, classes=[0, 1])
    before = clf.predict_proba(X)
    clf.set_params(warm_start=True, **{name: value})
    with pytest.raises(ValueError, match=rf"{name}=.*differs.*Refit"):
        clf.fit(X, Y) if how == "warm_start" else clf.partial_fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    # A cold fit takes the new value.
    clf.set_params(warm_start=False).fit(X, Y)
    assert clf.get_params()[name] == value


@pytest.mark.parametrize("name,value", [("loss", "huber"), ("target_scaling", True)])
def test_regressor_continuing_with_changed_loss_raises(name, value):
    reg = MLPTorchRegressor((4,), max_iter=3, random_state=0).fit(X, Y_REG)
    reg.set_params(warm_start=True, **{name: value})
    with pytest.raises(ValueError, match=rf"{name}=.*differs"):
        reg.fit(X, Y_REG)


def test_step_size_parameters_may_change_when_continuing():
    clf = MLPTorchClassifier((4,), max_iter=3, random_state=0).fit(X, Y)
    clf.set_params(warm_start=True, lr=1e-2, momentum=0.8, weight_decay=0.0, max_iter=2,
                   batch_size=50, label_smoothing=0.1, early_stopping=True)
    clf.fit(X, Y)
    assert clf.n_iter_ == 5


# --------------------------------------------------- 6. lr under every schedule
@pytest.mark.parametrize("schedule", ["constant", "plateau", "cosine"])
def test_partial_fit_takes_a_changed_lr_under_every_schedule(schedule):
    clf = MLPTorchClassifier((4,), lr=1e-3, lr_schedule=schedule, max_iter=10,
                             random_state=0)
    clf.partial_fit(X, Y, classes=[0, 1])
    clf.set_params(lr=1e-2)
    clf.partial_fit(X, Y)
    factor = 0.5 * (1 + math.cos(math.pi * 1 / 10)) if schedule == "cosine" else 1.0
    assert clf.history_[-1]["lr"] == pytest.approx(1e-2 * factor)


# ------------------------------------------------------ 7. sparse duplicates
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_duplicates_give_the_dense_statistics(fmt):
    dense = np.abs(RNG.randn(40, 3)) + 1
    # Every entry stored twice, as halves: the same matrix, not in canonical format.
    n, d = dense.shape
    if fmt == "csr":
        indices = np.repeat(np.tile(np.arange(d), n), 2)
        data = np.repeat(dense.ravel(), 2) / 2
        dup = sp.csr_matrix((data, indices, np.arange(0, 2 * n * d + 1, 2 * d)), shape=(n, d))
    else:
        indices = np.repeat(np.tile(np.arange(n), d), 2)
        data = np.repeat(dense.T.ravel(), 2) / 2
        dup = sp.csc_matrix((data, indices, np.arange(0, 2 * n * d + 1, 2 * n)), shape=(n, d))
    dup.has_canonical_format = False
    data_before = dup.data.copy()
    y = (dense[:, 0] > 1.5).astype(int)
    params = dict(hidden_dims=(4,), max_iter=3, scaling="standard", random_state=0)
    a = MLPTorchClassifier(**params).fit(dense, y)
    b = MLPTorchClassifier(**params).fit(dup, y)
    assert a._spec.shift == pytest.approx(b._spec.shift)
    assert a._spec.scale == pytest.approx(b._spec.scale)
    np.testing.assert_allclose(a.predict_proba(dense), b.predict_proba(dup), rtol=1e-10)
    np.testing.assert_array_equal(dup.data, data_before)  # the input is not modified


# ------------------------------------------------- 8. all-categorical frames
@pytest.mark.parametrize("Est", [MLPTorchClassifier, TabularMLPClassifier, TabularMLPRegressor])
@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_all_categorical_frames_fit_and_predict(Est, lib):
    df = _frame()[["city", "kind"]]
    y = ((df["city"] == "Oslo") ^ (df["kind"] == "a")).astype(int).to_numpy()
    if Est is TabularMLPRegressor:
        y = y.astype(float)
    X_ = pl.from_pandas(df) if lib == "polars" else df
    est = Est(max_iter=60, lr=1e-2, random_state=0).fit(X_, y)
    assert est.is_categorical_.tolist() == [True, True]
    out = est.predict(X_)
    assert out.shape == (len(df),) and np.isfinite(out.astype(float)).all()
    if Est is not TabularMLPRegressor:
        assert est.score(X_, y) > 0.9


# --------------------------------------------------- 9. optimizer switches
@pytest.mark.parametrize("first,second", [("sgd", "adam"), ("adam", "sgd"), ("adam", "adamw")])
def test_switching_optimizer_between_partial_fits_raises(first, second):
    clf = MLPTorchClassifier((4,), optimizer=first, random_state=0)
    clf.partial_fit(X, Y, classes=[0, 1])
    clf.set_params(optimizer=second)
    with pytest.raises(ValueError, match="optimizer=.*differs"):
        clf.partial_fit(X, Y)


def test_optimizer_state_of_another_rule_is_refused():
    from skmlp._optim import OPTIMIZERS

    w = torch.nn.Parameter(torch.ones(3, 2))
    w.grad = torch.ones(3, 2)
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    adam = OPTIMIZERS["adam"]([w], [], **kw)
    adam.step()
    sgd = OPTIMIZERS["sgd"]([w], [], **kw)
    with pytest.raises(ValueError, match="made by 'adam', not 'sgd'"):
        sgd.load_state_dict(adam.state_dict())


# ---------------------------------------------------- 10. label-type messages
@pytest.mark.parametrize("y", [RNG.randint(0, 3, (len(X), 2)),
                               np.where(RNG.rand(len(X), 2) > 0.5, "yes", "no")],
                         ids=["three-classes", "two-strings"])
def test_multiclass_multioutput_message_is_short_and_says_what_to_do(y):
    # two string labels per column are multiclass-multioutput too (not 0/1):
    # the message must not claim more than two classes
    with pytest.raises(ValueError, match="MultiOutputClassifier") as info:
        MLPTorchClassifier((4,), max_iter=2).fit(X, y)
    assert len(str(info.value)) < 400 and "[[" not in str(info.value)
    assert "not all 0/1" in str(info.value)


# ------------------------------------------- 12. messages that fit the case
def test_datetime_column_is_named():
    df = _frame().assign(when=pd.date_range("2020-01-01", periods=200),
                         other=pd.timedelta_range("1D", periods=200))
    with pytest.raises(ValueError, match=r"'when' \(datetime64.*'other' \(timedelta.*dt\.year"):
        TabularMLPClassifier(max_iter=2).fit(df, np.arange(200) % 2)
    with pytest.raises(ValueError, match=r"'when' \(datetime64"):
        MLPTorchRegressor(max_iter=2).fit(df[["num", "when"]], np.arange(200.0))


def test_text_in_a_numeric_column_is_named():
    df = _frame()
    est = TabularMLPClassifier(max_iter=2, random_state=0).fit(df, np.arange(200) % 2)
    bad = df.assign(num=df["num"].astype(object))
    bad.loc[3, "num"] = "12 kg"
    with pytest.raises(ValueError, match=r"'num' \(e\.g\. '12 kg'\).*numeric in fit"):
        est.predict(bad)
    with pytest.raises(ValueError, match=r"'num' \(e\.g\. '12 kg'\).*categorical_features"):
        MLPTorchClassifier(max_iter=2, categorical_features=["city", "kind"]).fit(
            bad, np.arange(200) % 2)


def test_inf_advice_fits_the_missing_setting():
    df = _frame()
    est = TabularMLPClassifier(max_iter=2, random_state=0).fit(df, np.arange(200) % 2)
    with pytest.raises(ValueError, match="infinity") as info:
        est.predict(df.assign(num=np.inf))
    assert 'set missing="indicator"' not in str(info.value)
    assert "nan_to_num" in str(info.value)


def test_missing_target_advice_is_about_y():
    y = Y_REG.copy()
    y[4] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN") as info:
        MLPTorchRegressor(max_iter=2).fit(X, y)
    assert "drop the rows whose target is missing" in str(info.value)
    assert 'missing="indicator"' not in str(info.value)


def test_polars_lazyframe_says_collect():
    lazy = pl.from_pandas(_frame()).lazy()
    with pytest.raises(TypeError, match=r"LazyFrame.*collect\(\)"):
        TabularMLPClassifier(max_iter=2).fit(lazy, np.arange(200) % 2)


# -------------------------------------------------------------- categories_
def test_categories_are_public_and_sorted():
    df = _frame()
    df["code"] = pd.Categorical(RNG.choice([30, 10, 20], 200), categories=[30, 20, 10])
    est = TabularMLPClassifier(max_iter=2, random_state=0).fit(df, np.arange(200) % 2)
    cats = est.categories_
    assert [c.tolist() for c in cats] == [["Lima", "Oslo", "Rome"], ["a", "b"], [10, 20, 30]]
    assert cats[0].dtype == object and cats[2].dtype.kind == "i"
    assert est.is_categorical_.tolist() == [False, True, True, True]
    assert MLPTorchClassifier(max_iter=2).fit(X, Y).categories_ == []


# --------------------------------------------------------------- warnings
def test_no_scale_the_data_advice_from_an_estimator_that_scales():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TabularMLPClassifier(max_iter=2, random_state=0).fit(_frame(), np.arange(200) % 2)
        MLPTorchClassifier((4,), max_iter=2, random_state=0).fit(X, Y)
    texts = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(texts) == 2
    assert "scale the data" not in texts[0] and "Increase max_iter" in texts[0]
    assert "scale the data" in texts[1]


# ------------------------------------------------------ failing continuations
def test_a_continuing_fit_that_raises_changes_nothing():
    def stop(est, epoch, logs):
        if epoch == 5:
            raise RuntimeError("interrupted")

    clf = MLPTorchClassifier((8,), max_iter=3, batch_norm=True, random_state=0).fit(X, Y)
    before = clf.predict_proba(X)
    attrs = {k: v for k, v in vars(clf).items() if k.endswith("_") and k != "module_"}
    clf.set_params(warm_start=True, callbacks=[stop], max_iter=5)
    with pytest.raises(RuntimeError, match="interrupted"):
        clf.fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert not clf.module_.training
    for key, value in attrs.items():
        assert str(getattr(clf, key)) == str(value), key
    # ... and partial_fit after it continues from the same state as without the failure.
    clf.set_params(callbacks=None)
    other = MLPTorchClassifier((8,), max_iter=3, batch_norm=True, random_state=0).fit(X, Y)
    other.set_params(warm_start=True, max_iter=5)
    np.testing.assert_array_equal(clf.fit(X, Y).predict_proba(X),
                                  other.fit(X, Y).predict_proba(X))


# ------------------------------------------------------------------ scoring
def test_scoring_loss_is_the_negated_validation_log_loss():
    params = dict(hidden_dims=(8,), max_iter=4, early_stopping=True, n_iter_no_change=50,
                  random_state=0)
    own = MLPTorchClassifier(**params, scoring="loss").fit(X, Y)
    sk = MLPTorchClassifier(**params, scoring="neg_log_loss").fit(X, Y)
    assert all(s < 0 for s in own.validation_scores_)
    np.testing.assert_allclose(own.validation_scores_, sk.validation_scores_, rtol=1e-6)
    assert own.best_validation_score_ == max(own.validation_scores_)


def test_scoring_loss_ignores_label_smoothing():
    params = dict(hidden_dims=(8,), max_iter=3, early_stopping=True, n_iter_no_change=50,
                  random_state=0, label_smoothing=0.2)
    own = MLPTorchClassifier(**params, scoring="loss").fit(X, Y)
    sk = MLPTorchClassifier(**params, scoring="neg_log_loss").fit(X, Y)
    np.testing.assert_allclose(own.validation_scores_, sk.validation_scores_, rtol=1e-6)


def test_scoring_names_and_callables_on_frames():
    df = _frame(400)
    y = ((df["city"] == "Oslo") | (df["num"] > 1)).astype(int).to_numpy()
    seen = []

    def scorer(est, X_val, y_val):
        seen.append((type(X_val), len(X_val)))
        return -np.mean(np.abs(est.predict_proba(X_val)[:, 1] - y_val))

    est = TabularMLPClassifier(max_iter=3, early_stopping=True, n_iter_no_change=50,
                               random_state=0, scoring=scorer).fit(df, y)
    assert seen[0] == (pd.DataFrame, 80) and len(est.validation_scores_) == 3
    est = TabularMLPClassifier(max_iter=3, early_stopping=True, random_state=0,
                               scoring="roc_auc").fit(df, y)
    assert all(0 <= s <= 1 for s in est.validation_scores_)
    reg = TabularMLPRegressor(max_iter=3, early_stopping=True, random_state=0,
                              scoring="loss").fit(df, df["num"].to_numpy() * 2)
    assert all(s <= 0 for s in reg.validation_scores_)


def test_scoring_rejects_unknown_names():
    with pytest.raises(ValueError, match="'scoring' parameter must be"):
        MLPTorchClassifier(scoring="accurracy").fit(X, Y)


def test_validation_loss_matches_log_loss_of_predict_proba():
    # The validation loss is the log loss of what predict_proba gives (ensemble averaged).
    seen = []

    def cb(est, epoch, logs):
        seen.append(logs["val_score"])

    clf = MLPTorchClassifier((8,), max_iter=2, n_ensemble=3, early_stopping=True,
                             validation_fraction=0.5, n_iter_no_change=50, random_state=0,
                             scoring="loss", callbacks=[cb])
    clf.fit(X, Y)
    ref = MLPTorchClassifier((8,), max_iter=2, n_ensemble=3, early_stopping=True,
                             validation_fraction=0.5, n_iter_no_change=50, random_state=0,
                             scoring="neg_log_loss").fit(X, Y)
    np.testing.assert_allclose(seen, ref.validation_scores_, rtol=1e-6)


# ------------------------------------------------------ subclass parameters
def test_subclass_may_add_a_parameter():
    class Named(MLPTorchClassifier):
        def __init__(self, hidden_dims=(4,), *, tag="x", max_iter=2):
            super().__init__(hidden_dims, max_iter=max_iter)
            self.tag = tag

    est = Named(tag="y").fit(X, Y)
    assert est.get_params()["tag"] == "y"
    assert clone(est).tag == "y"


def test_a_warning_raised_as_error_after_training_takes_the_epochs_back():
    # the curves grow in place (linear in the number of partial_fit calls); a
    # call that fails after they grew shortens them again
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 3), rng.randint(0, 2, 40)
    est = MLPTorchClassifier((4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        for _ in range(3):
            est.partial_fit(X, y)
    curve, history, n_iter, best = list(est.loss_curve_), list(est.history_), est.n_iter_, \
        est.best_loss_
    proba = est.predict_proba(X)
    est.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            est.fit(X, y)  # max_iter reached: the warning comes after training
    assert est.loss_curve_ == curve and est.history_ == history
    assert est.n_iter_ == n_iter == 6 and est.best_loss_ == best == min(curve)
    np.testing.assert_array_equal(est.predict_proba(X), proba)
    est.partial_fit(X, y)
    assert est.loss_curve_[:6] == curve and len(est.loss_curve_) == 7
    assert est.best_loss_ == min(est.loss_curve_)
