"""Acceptance audit 2: SPEC behaviour as a new user would check it.

Each test asserts a sentence of the contract (SPEC.md) or the user guide.
Tests under "Findings" failed on the code as audited (their docstrings say
what happened then; fixed in the commit after the audit); the others pin
behaviour the audit verified that no earlier test covered.
"""

import io
import warnings
from contextlib import redirect_stdout

import joblib
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skmlp import MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier, TabularMLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
N = 40
X = RNG.randn(N, 3)
Y_BIN = (X[:, 0] > 0).astype(int)
Y_REG = RNG.randn(N)
TINY = dict(hidden_dims=(4,), max_iter=3, random_state=0)
REGRESSORS = [MLPTorchRegressor, TabularMLPRegressor]
CLASSIFIERS = [MLPTorchClassifier, TabularMLPClassifier]

# The project's advice for a missing or infinite target (tests/test_validation.py: BAD_Y).
BAD_Y = r"drop the rows whose target is missing or infinite"


def _object_target(first, rest):
    y = np.empty(len(rest) + 1, dtype=object)
    y[0] = first
    y[1:] = list(rest)
    return y


# =================================================================== Findings
# SPEC, Inputs: "NaN or inf in X or y ... raise ValueError with a message that
# says what to do".
@pytest.mark.parametrize("Est", REGRESSORS)
@pytest.mark.parametrize("bad", [None, np.inf], ids=["None", "inf"])
@pytest.mark.parametrize("kind", ["ndarray", "Series"])
def test_regressor_object_target_with_none_or_inf_is_refused(Est, bad, kind):
    """Found: no error. The object target passes scikit-learn's finiteness
    check (it skips object arrays for None and inf) and is only then cast to
    float, so fit trains on NaN, warns "Training diverged after 0 epoch(s)"
    and returns a fitted model (TabularMLPRegressor's then predicts NaN)."""
    y = _object_target(bad, Y_REG[1:])
    if kind == "Series":
        y = pd.Series(y, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=BAD_Y):
            Est(**TINY).fit(X, y)


@pytest.mark.parametrize("make", [
    lambda: MLPTorchRegressor(**TINY).fit(X, _object_target(np.nan, Y_REG[1:])),
    lambda: MLPTorchClassifier(**TINY).fit(X, _object_target(np.nan, ["a", "b"] * 19 + ["a"])),
    lambda: MLPTorchClassifier(**TINY).fit(
        X, pd.Series(pd.Categorical([None] + ["a", "b"] * 19 + ["a"]))),
], ids=["regressor-object-nan", "classifier-object-nan", "classifier-categorical-nan"])
def test_nan_in_an_object_or_categorical_target_is_not_blamed_on_x(make):
    """Found: ValueError "Input contains NaN" followed by the advice for X
    ('for missing values in X's numeric columns set missing="indicator" ...'):
    scikit-learn's message names no input here, and ``_data._missing_hint``
    takes any message without "y" for X's."""
    with pytest.raises(ValueError, match=BAD_Y):
        make()


@pytest.mark.parametrize("y", [
    _object_target(None, ["a", "b"] * 19 + ["a"]),
    pl.Series([None] + ["a", "b"] * 19 + ["a"]),
    pd.Series(["a", "b"] * 20, dtype="string").where(lambda s: s.index > 0),
], ids=["object-None", "polars-null", "pandas-string-NA"])
def test_a_missing_class_label_is_a_value_error_saying_to_drop_the_row(y):
    """Found: None (numpy object / polars String null) gives ValueError "Unknown
    label type: unknown" with the advice "For a continuous target use
    MLPTorchRegressor, or bin it into classes" (the label is missing, not
    continuous); pandas' pd.NA in a string target gives TypeError "boolean
    value of NA is ambiguous" (not a ValueError, no advice)."""
    with pytest.raises(ValueError, match=BAD_Y):
        MLPTorchClassifier(**TINY).fit(X, y)


@pytest.mark.parametrize("Est", [MLPTorchClassifier, TabularMLPClassifier])
def test_a_frame_with_rows_but_no_columns_is_refused_clearly(Est):
    """SPEC, Inputs: empty data raise ValueError with a message that says what
    to do. Found: ValueError 'at least one array or dtype is required' (numpy's
    text from inside scikit-learn), which names neither X nor its columns; a
    numpy (n, 0) array gets 'Found array with 0 feature(s) ...'."""
    with pytest.raises(ValueError, match="feature|column"):
        Est(**TINY).fit(pd.DataFrame(index=range(N)), Y_BIN)


def test_balanced_class_weight_ignores_rows_of_weight_zero():
    """SPEC, Tables: every statistic learned from the data is weighted by
    sample_weight; rows of weight zero contribute nothing. Found: the class
    frequencies behind class_weight="balanced" count rows of weight zero
    (``compute_class_weight`` is called without ``sample_weight``, which
    scikit-learn's accepts), so adding such rows changes the fitted model
    (full-batch L-BFGS: predict_proba differs by up to 0.14 here; passing
    ``sample_weight`` to ``compute_class_weight`` makes the two equal)."""
    extra_X = RNG.randn(6, 3) * 100
    extra_y = np.ones(6, dtype=int)  # zero-weight rows, all of one class
    kw = dict(TINY, optimizer="lbfgs", class_weight="balanced", max_iter=5)
    plain = MLPTorchClassifier(**kw).fit(X, Y_BIN)
    padded = MLPTorchClassifier(**kw).fit(np.r_[X, extra_X], np.r_[Y_BIN, extra_y],
                                          sample_weight=np.r_[np.ones(N), np.zeros(6)])
    assert_allclose(padded.predict_proba(X), plain.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("Est", [MLPTorchClassifier, MLPTorchRegressor])
@pytest.mark.parametrize("kw", [{}, {"optimizer": "lbfgs"}], ids=["adam", "lbfgs"])
def test_a_declared_category_no_training_row_holds_acts_as_unknown(Est, kw):
    """docs/user_guide.rst: "A category that none of a network's training rows
    holds (e.g. one seen only in a held-out fold) is treated as unknown by that
    network." Found: only fits that hold rows out call ``forget_unseen``; a
    plain ``fit`` (or L-BFGS) keeps the randomly initialised weights of a
    category declared in ``categories`` but absent from the rows, so it
    predicts differently from an unknown value (classifier: 0.544 vs 0.460
    for class 0 here). With early_stopping=True the two agree."""
    r = np.random.RandomState(0)
    df = pd.DataFrame({"x": r.randn(60), "s": r.choice(["a", "b"], 60)})
    y = (df["x"] > 0).astype(int) if Est is MLPTorchClassifier else df["x"].to_numpy()
    est = Est(**TINY, **kw, categories={"s": ["a", "b", "declared"]}).fit(df, y)
    assert list(est.categories_[0]) == ["a", "b", "declared"]
    row = df.iloc[[0]]
    method = "predict_proba" if Est is MLPTorchClassifier else "predict"
    assert_allclose(getattr(est, method)(row.assign(s="declared")),
                    getattr(est, method)(row.assign(s="never-seen")))


def test_warm_start_with_balanced_class_weight_on_a_subset_of_the_classes():
    """Found: a warm-start fit whose y lacks one of ``classes_`` raises
    scikit-learn's bare ValueError "classes should have valid labels that are
    in y" (from ``compute_class_weight``), which names neither class_weight
    nor what to do; without class_weight the same fit continues. Either the
    fit continues, or the error names class_weight (house rule: a clear
    error that says what to do)."""
    y = np.arange(N) % 3
    est = MLPTorchClassifier(**TINY, class_weight="balanced", warm_start=True).fit(X, y)
    subset = y < 2
    try:
        est.fit(X[subset], y[subset])
    except ValueError as exc:
        assert "class_weight" in str(exc)
    else:
        assert est.n_iter_ == 6


@pytest.mark.parametrize("early_stopping", [True, "bagging"])
def test_a_scorer_callable_of_the_documented_signature_works_with_sample_weight(early_stopping):
    """SPEC, scoring: "any scikit-learn scorer name or callable is accepted";
    the parameter's docstring gives the signature ``scorer(estimator, X, y)``.
    Found: with ``sample_weight`` in fit the held-out rows' weights are passed
    as ``scorer(est, X, y, sample_weight=...)``, so such a callable fails
    mid-fit with TypeError "<lambda>() got an unexpected keyword argument
    'sample_weight'" (``_base._validation_scorer``). Passing the weights only
    to callables that take them, or a ValueError up front naming scoring, would
    both do."""
    X2, y2 = np.tile(X, (2, 1)), np.tile(Y_BIN, 2)  # 80 rows: bagging has 4 folds

    def accuracy(est, X_val, y_val):
        return float(np.mean(est.predict(X_val) == y_val))

    est = TabularMLPClassifier(**TINY, early_stopping=early_stopping, scoring=accuracy)
    try:
        est.fit(X2, y2, sample_weight=np.ones(len(y2)))
    except ValueError as exc:
        assert "scoring" in str(exc) and "sample_weight" in str(exc)
    else:
        assert all(0 <= s <= 1 for s in est.validation_scores_)


@pytest.mark.parametrize("method", ["fit", "predict"])
def test_an_empty_mixed_frame_is_described_as_given(method):
    """SPEC, Inputs: empty data raise ValueError with a message that says what
    to do; n_features_in_ counts the columns as given. Found (minor): for a
    frame with a categorical column the message describes the numeric part
    only and drops the estimator's name: "Found array with 0 sample(s)
    (shape=(0, 1)) while a minimum of 1 is required." for a (0, 2) frame
    (numpy input names its own shape and "... required by MLPTorchClassifier.")."""
    df = pd.DataFrame({"x": X[:, 0], "s": np.where(Y_BIN, "a", "b")})
    est = MLPTorchClassifier(**TINY)
    if method == "predict":
        est.fit(df, Y_BIN)
    with pytest.raises(ValueError, match=r"shape=\(0, 2\).*MLPTorchClassifier"):
        getattr(est, method)(*((df.iloc[:0], Y_BIN[:0]) if method == "fit" else (df.iloc[:0],)))


# ====================================================== verified behaviour
# ---- Inputs
@pytest.mark.parametrize("Est", CLASSIFIERS)
def test_polars_boolean_columns_are_numeric_and_null_is_missing(Est):
    df = pl.DataFrame({"x": X[:, 0], "flag": X[:, 1] > 0})
    est = Est(**TINY).fit(df, Y_BIN)
    assert_array_equal(est.is_categorical_, [False, False])
    as_float = df.with_columns(pl.col("flag").cast(pl.Float64))
    assert_allclose(est.predict_proba(df), Est(**TINY).fit(as_float, Y_BIN).predict_proba(as_float))
    with_null = df.with_columns(pl.Series("flag", [None] + (X[1:, 1] > 0).tolist(), dtype=pl.Boolean))
    with pytest.raises(ValueError, match='missing="indicator"'):
        MLPTorchClassifier(**TINY).fit(with_null, Y_BIN)
    filled = MLPTorchClassifier(**TINY, missing="indicator").fit(with_null, Y_BIN)
    assert np.isfinite(filled.predict_proba(with_null)).all()


@pytest.mark.parametrize("to_sparse", [sp.csc_array, sp.coo_array, sp.lil_array, sp.dok_array])
@pytest.mark.parametrize("Est", CLASSIFIERS + REGRESSORS)
def test_sparse_arrays_fit_predict_and_partial_fit_as_dense(Est, to_sparse):
    dense_X = np.where(np.abs(X) > 0.5, X, 0.0)
    y = Y_BIN if Est in CLASSIFIERS else Y_REG
    classes = {"classes": [0, 1]} if Est in CLASSIFIERS else {}
    dense = Est(**TINY).fit(dense_X, y)
    est = Est(**TINY).fit(to_sparse(dense_X), y)
    assert_allclose(est.predict(to_sparse(dense_X)), dense.predict(dense_X))
    first = Est(**TINY).partial_fit(to_sparse(dense_X), y, **classes)
    first.partial_fit(to_sparse(dense_X), y)
    assert first.n_iter_ == 2 and first.t_ == 2 * N


def test_tabular_defaults_give_the_same_model_from_pandas_and_polars_with_nulls():
    r = np.random.RandomState(1)
    n = 120  # the Tabular default bags from 60 rows
    num = r.randn(n)
    num[::9] = np.nan
    text = r.choice(["u", "v", "w"], n).astype(object)
    text[::7] = None
    cat = r.choice(["p", "q", "z"], n).astype(object)
    cat[::11] = None
    counts = pd.array(r.randint(0, 5, n), dtype="Int64")
    counts[::13] = pd.NA
    df = pd.DataFrame({"num": num, "text": pd.Series(text, dtype="string"),
                       "cat": pd.Categorical(cat, categories=["z", "q", "p"]),
                       "counts": counts, "flag": r.rand(n) > 0.5})
    pdf = pl.from_pandas(df)  # String, Categorical, Int64 / Float64 with nulls, Boolean
    y = r.randint(0, 2, n)
    a = TabularMLPClassifier(**TINY).fit(df, y)
    b = TabularMLPClassifier(**TINY).fit(pdf, y)
    assert [list(c) for c in a.categories_] == [["u", "v", "w"], ["p", "q", "z"]]
    assert [list(c) for c in b.categories_] == [list(c) for c in a.categories_]
    assert_array_equal(a.predict_proba(df), b.predict_proba(pdf))
    assert_array_equal(a.predict_proba(pdf), a.predict_proba(df))


@pytest.mark.parametrize("Est", REGRESSORS)
def test_indicator_fills_nan_at_predict_in_a_column_clean_in_fit_with_its_median(Est):
    Xn = X.copy()
    Xn[::5, 0] = np.nan  # column 0 has missing values in fit, column 1 none
    kw = {} if Est is TabularMLPRegressor else {"missing": "indicator"}
    est = Est(**TINY, **kw).fit(Xn, Y_REG)
    fill = est._numeric_stats["fill"]
    query = X[:5].copy()
    query[:, 1] = np.nan
    filled = X[:5].copy()
    filled[:, 1] = fill[1]
    assert_allclose(est.predict(query), est.predict(filled))
    assert_allclose(est.predict(sp.csr_matrix(query)), est.predict(query))


# ---- Regressor
@pytest.mark.parametrize("Est", REGRESSORS)
@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "huber", "poisson"])
def test_regressor_output_shape_follows_the_target_for_every_loss(Est, loss):
    y = np.abs(Y_REG) if loss == "poisson" else Y_REG
    for target, shape in ((y, (N,)), (y.reshape(-1, 1), (N, 1)),
                          (np.c_[y, 2 * y, y + 1], (N, 3))):
        pred = Est(**TINY, loss=loss).fit(X, target).predict(X)
        assert pred.shape == shape
        assert np.isfinite(pred).all()
        if loss == "poisson":
            assert (pred > 0).all()


@pytest.mark.parametrize("Est", REGRESSORS)
def test_poisson_target_scaling_divides_by_the_weighted_mean_only(Est):
    y = np.abs(Y_REG) * 3
    w = np.where(np.arange(N) < 10, 0.0, 1.0)
    est = Est(**TINY, loss="poisson", target_scaling=True).fit(X, y, sample_weight=w)
    shift, scale = est._target_affine
    assert_allclose(shift, [0.0])
    assert_allclose(scale, [y[10:].mean()])
    assert (est.predict(X) > 0).all()


# ---- Classifier
@pytest.mark.parametrize("n_ensemble", [1, 3])
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel"])
def test_decision_function_log_proba_and_predict_agree_with_the_averaged_proba(target,
                                                                               n_ensemble):
    y = {"binary": Y_BIN, "multiclass": RNG.randint(0, 3, N),
         "multilabel": (RNG.rand(N, 4) > 0.5).astype(int)}[target]
    est = MLPTorchClassifier(**TINY, n_ensemble=n_ensemble).fit(X, y)
    d, p = est.decision_function(X), est.predict_proba(X)
    assert_allclose(est.predict_log_proba(X), np.log(p), rtol=1e-10, atol=1e-12)
    if target == "binary":
        assert d.shape == (N,)
        assert_allclose(1 / (1 + np.exp(-d)), p[:, 1])
        assert_array_equal(est.predict(X), est.classes_[p.argmax(1)])
    elif target == "multiclass":
        assert d.shape == (N, 3)
        assert_allclose(np.exp(d) / np.exp(d).sum(1, keepdims=True), p)
        assert_array_equal(est.predict(X), est.classes_[p.argmax(1)])
    else:
        assert d.shape == p.shape == (N, 4)
        assert_allclose(1 / (1 + np.exp(-d)), p)
        assert_array_equal(est.predict(X), (p > 0.5).astype(int))


@pytest.mark.parametrize("y, classes", [
    (pl.Series(np.where(Y_BIN, "y", "n")), ["n", "y"]),
    (pl.Series(np.where(Y_BIN, "y", "n")).cast(pl.Categorical), ["n", "y"]),
    (pd.Series(pd.Categorical(np.where(Y_BIN, "b", "a"), categories=["b", "a"])), ["a", "b"]),
    (Y_BIN * 2 - 1, [-1, 1]),
], ids=["polars-str", "polars-categorical", "pandas-categorical-reversed", "minus-one-one"])
def test_label_types_polars_and_reordered_categoricals(y, classes):
    est = TabularMLPClassifier(**TINY).fit(X, y)
    assert list(est.classes_) == classes
    assert set(est.predict(X)) <= set(classes)


# ---- Training options
@pytest.mark.parametrize("Est", CLASSIFIERS + REGRESSORS)
def test_verbose_1_reports_validation_score_and_history_keys(Est):
    y = Y_BIN if Est in CLASSIFIERS else Y_REG
    out = io.StringIO()
    with redirect_stdout(out):
        est = Est(**TINY, verbose=1, early_stopping=True).fit(X, y)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("Epoch")]
    assert len(lines) == est.n_iter_
    assert all("loss" in ln and "validation score" in ln and ln.endswith("s") for ln in lines)
    assert [set(h) for h in est.history_] == [{"epoch", "loss", "val_score", "lr", "seconds"}] * 3
    assert est.best_loss_ == min(est.loss_curve_)


@pytest.mark.parametrize("Est", [TabularMLPClassifier, TabularMLPRegressor])
def test_bagged_tabular_fit_continues_under_warm_start_and_partial_fit(Est):
    y = Y_BIN if Est is TabularMLPClassifier else Y_REG
    Xb = np.tile(X, (2, 1))  # 80 rows: "auto" bags
    yb = np.tile(y, 2)
    est = Est(**TINY).fit(Xb, yb)
    assert est._spec.bagged
    first_t = est.t_
    est.set_params(warm_start=True, lr=1e-2)  # a step-size parameter may change
    est.fit(Xb, yb)
    assert est.n_iter_ == 6 and est.t_ == 2 * first_t
    est.partial_fit(Xb, yb)
    assert est.n_iter_ == len(est.loss_curve_) == len(est.history_) == 7
    assert est.t_ == 2 * first_t + len(yb)
    assert np.isfinite(est.predict(Xb)).all()


# ---- Persistence
@pytest.mark.parametrize("Est", CLASSIFIERS + REGRESSORS)
def test_raw_frame_models_round_trip_with_joblib_and_clone_unfitted(Est, tmp_path):
    r = np.random.RandomState(2)
    num = r.randn(80)
    num[::7] = np.nan
    df = pd.DataFrame({"num": num, "text": r.choice(["u", "v", "w"], 80), "z": r.randn(80)})
    y = r.randint(0, 3, 80) if Est in CLASSIFIERS else r.randn(80)
    est = Est(**TINY, missing="indicator").fit(df, y)
    joblib.dump(est, tmp_path / "m.joblib")
    back = joblib.load(tmp_path / "m.joblib")
    method = "predict_proba" if Est in CLASSIFIERS else "predict"
    assert_array_equal(getattr(back, method)(df), getattr(est, method)(df))
    fresh = clone(est)
    assert not [k for k in vars(fresh) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        fresh.predict(df)


@pytest.mark.parametrize("Est", [TabularMLPClassifier, TabularMLPRegressor])
def test_tabular_defaults_on_read_only_memmaps_with_nan_and_weights(Est, tmp_path):
    """Read-only memmaps for X (with NaN: the Tabular default fills them),
    y and sample_weight; the files are left as they were."""
    Xn = X.copy()
    Xn[::6, 1] = np.nan
    y = Y_BIN if Est is TabularMLPClassifier else Y_REG
    w = np.where(np.arange(N) % 5 == 0, 0.0, 1.5)
    arrays = {}
    for name, a in (("X", Xn), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", a)
        arrays[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        assert not arrays[name].flags.writeable
    ref = Est(**TINY).fit(Xn, y, sample_weight=w).predict(Xn)
    est = Est(**TINY).fit(arrays["X"], arrays["y"], sample_weight=arrays["w"])
    assert_allclose(est.predict(arrays["X"]), ref)
    est.partial_fit(arrays["X"], arrays["y"], sample_weight=arrays["w"])
    for name, a in (("X", Xn), ("y", y), ("w", w)):
        assert_array_equal(np.load(tmp_path / f"{name}.npy"), a)
