"""Bad inputs: each raises a ValueError/TypeError whose message says what to do.

The table below is the contract: input -> exception type -> message pattern.
Every pattern includes the part of the message that tells the user what to do
(not only what went wrong).
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from skmlp import MLPTorchClassifier, MLPTorchRegressor

RNG = np.random.RandomState(0)
X = RNG.randn(20, 3)
Y_CLASS = np.arange(20) % 2
Y_REG = RNG.randn(20)
TINY = dict(hidden_dims=(3,), max_iter=2, random_state=0)


def _with(values, index, value):
    out = np.array(values, dtype=np.float64)
    out.flat[index] = value
    return out


def clf():
    return MLPTorchClassifier(**TINY)


def reg():
    return MLPTorchRegressor(**TINY)


def fitted_clf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf().fit(X, Y_CLASS)


# The advice fits the input and the settings: NaN in X -> missing="indicator";
# inf in X -> clip it; a missing or infinite target -> drop those rows.
NAN_X = r'set missing="indicator"'
INF_X = r"replace or clip infinite values in X \(e\.g\. np\.nan_to_num\)"
BAD_Y = r"drop the rows whose target is missing or infinite"
NUMERIC = r"encodes categorical columns itself.*categorical_features"
SW = r"sample_weight must hold one finite, non-negative number per sample"

# id -> (call, exception type, message pattern)
BAD_INPUTS = {
    "nan in X": (lambda: clf().fit(_with(X, 0, np.nan), Y_CLASS),
                 ValueError, r"Input X contains NaN.*" + NAN_X),
    "inf in X": (lambda: reg().fit(_with(X, 4, np.inf), Y_REG),
                 ValueError, r"Input X contains infinity.*" + INF_X),
    "-inf in X": (lambda: reg().fit(_with(X, 4, -np.inf), Y_REG),
                  ValueError, r"Input X contains infinity.*" + INF_X),
    "nan in y (regressor)": (lambda: reg().fit(X, _with(Y_REG, 3, np.nan)),
                             ValueError, r"Input y contains NaN.*" + BAD_Y),
    "inf in y (regressor)": (lambda: reg().fit(X, _with(Y_REG, 3, np.inf)),
                             ValueError, r"Input y contains infinity.*" + BAD_Y),
    "nan in y (classifier)": (lambda: clf().fit(X, _with(Y_CLASS, 3, np.nan)),
                              ValueError, r"Input y contains NaN.*" + BAD_Y),
    "nan in X at predict": (lambda: fitted_clf().predict(_with(X, 0, np.nan)),
                            ValueError, r"Input X contains NaN.*" + NAN_X),
    "pandas NA in X": (lambda: reg().fit(pd.DataFrame({
        "a": pd.array([1, None] * 10, dtype="Int64"), "b": np.arange(20.0)}), Y_REG),
        ValueError, r"Input X contains NaN.*" + NAN_X),
    "empty X (0 samples)": (lambda: clf().fit(np.empty((0, 3)), np.empty(0)),
                            ValueError, r"0 sample\(s\).*a minimum of 1 is required"),
    "empty X (0 features)": (lambda: clf().fit(np.empty((20, 0)), Y_CLASS),
                             ValueError, r"0 feature\(s\).*a minimum of 1 is required"),
    "empty X at predict": (lambda: fitted_clf().predict(np.empty((0, 3))),
                           ValueError, r"0 sample\(s\).*a minimum of 1 is required"),
    "1-d X": (lambda: clf().fit(X[:, 0], Y_CLASS),
              ValueError, r"Expected 2D array, got 1D array.*Reshape your data"),
    "scalar X": (lambda: clf().fit(3.0, Y_CLASS),
                 ValueError, r"Expected 2D array.*Reshape your data"),
    "3-d X": (lambda: clf().fit(X.reshape(20, 3, 1), Y_CLASS),
              ValueError, r"dim 3.*X must be 2-d \(n_samples, n_features\).*reshape"),
    "3-d y": (lambda: reg().fit(X, Y_REG.reshape(20, 1, 1)),
              ValueError, r"dim 3.*y 1-d or 2-d: reshape"),
    "wrong feature count at predict": (lambda: fitted_clf().predict(X[:, :2]),
                                       ValueError, r"X has 2 features, but .* expecting 3.*"
                                       r"Pass the same columns"),
    "X and y lengths differ": (lambda: clf().fit(X, Y_CLASS[:5]),
                               ValueError, r"inconsistent numbers of samples: \[20, 5\]"),
    "strings in X": (lambda: clf().fit(np.full((20, 3), "a"), Y_CLASS),
                     ValueError, r"could not convert string to float.*" + NUMERIC),
    "bytes in X": (lambda: clf().fit(np.full((20, 3), b"a"), Y_CLASS),
                   ValueError, r"could not convert.*" + NUMERIC),
    "string column in DataFrame": (lambda: MLPTorchRegressor(
        **TINY, categorical_features=None).fit(pd.DataFrame(
            {"a": ["x"] * 20, "b": np.arange(20.0)}), Y_REG),
        # pandas 3 gives text a str dtype; pandas 2 an object dtype, whose text skmlp names
        ValueError, r"(non-numeric column\(s\): 'a'|column\(s\) 'a' \(e\.g\. 'x'\) hold "
                    r"text).*"
        + NUMERIC),
    "objects in X": (lambda: clf().fit(np.array([[object()] * 3] * 20, dtype=object), Y_CLASS),
                     TypeError, r"not 'object'.*" + NUMERIC),
    "dicts in X": (lambda: clf().fit(np.array([[{}] * 3] * 20, dtype=object), Y_CLASS),
                   TypeError, r"not 'dict'.*" + NUMERIC),
    "complex X": (lambda: clf().fit(X + 1j, Y_CLASS),
                  ValueError, r"Complex data not supported.*real and imaginary parts"),
    "complex y": (lambda: reg().fit(X, Y_REG + 1j),
                  ValueError, r"Complex data not supported.*real and imaginary parts"),
    "complex X at predict": (lambda: fitted_clf().predict(X + 1j),
                             ValueError, r"Complex data not supported.*real and imaginary"),
    "continuous y to the classifier": (lambda: clf().fit(X, Y_REG), ValueError,
                                       r"Unknown label type: continuous.*MLPTorchRegressor"),
    "mixed label types (int among str)": (
        lambda: clf().fit(X, np.array(["a", 1] * 10, dtype=object)),
        TypeError, r"y mixes label types: fill or drop missing labels"),
    "missing label (None among str)": (
        lambda: clf().fit(X, np.array(["a", None] * 10, dtype=object)),
        ValueError, r"Input y contains NaN.*" + BAD_Y),
    "string y to the regressor": (lambda: reg().fit(X, np.full(20, "a")),
                                  ValueError, r"needs a numeric target.*MLPTorchClassifier"),
    "single class": (lambda: clf().fit(X, np.zeros(20)),
                     ValueError, r"at least 2 classes.*only one class"),
    "partial_fit without classes": (lambda: clf().partial_fit(X, Y_CLASS),
                                    ValueError, r"classes must be passed.*np\.unique"),
    "negative sample_weight": (lambda: clf().fit(X, Y_CLASS, sample_weight=-np.ones(20)),
                               ValueError, r"sample_weight must be non-negative"),
    "one negative sample_weight": (
        lambda: reg().fit(X, Y_REG, sample_weight=_with(np.ones(20), 5, -1)),
        ValueError, r"sample_weight must be non-negative"),
    "non-numeric sample_weight": (lambda: clf().fit(X, Y_CLASS, sample_weight=["a"] * 20),
                                  ValueError, r"could not convert.*" + SW),
    "all-zero sample_weight": (lambda: clf().fit(X, Y_CLASS, sample_weight=np.zeros(20)),
                               ValueError, r"must not be all zero: nothing would be learned"),
    "nan sample_weight": (lambda: clf().fit(X, Y_CLASS, sample_weight=np.full(20, np.nan)),
                          ValueError, r"sample_weight contains NaN.*" + SW),
    "inf sample_weight": (lambda: reg().fit(X, Y_REG, sample_weight=np.full(20, np.inf)),
                          ValueError, r"sample_weight contains infinity.*" + SW),
    "sample_weight of wrong length": (lambda: clf().fit(X, Y_CLASS, sample_weight=np.ones(3)),
                                      ValueError, r"expected \(20,\): one weight per sample"),
    "2-d sample_weight": (lambda: clf().fit(X, Y_CLASS, sample_weight=np.ones((20, 2))),
                          ValueError, r"expected \(20,\): one weight per sample"),
    "poisson loss with negative y": (lambda: MLPTorchRegressor(**TINY, loss="poisson").fit(
        X, Y_REG), ValueError, r"needs non-negative targets"),
    "unseen class in partial_fit": (
        lambda: clf().partial_fit(X, Y_CLASS, classes=[0, 1]).partial_fit(X, Y_CLASS + 5),
        ValueError, r"classes not in `self.classes_`"),
    "sparse X with inf": (lambda: reg().fit(sp.csr_matrix(_with(X, 0, np.inf)), Y_REG),
                          ValueError, r"infinity.*" + INF_X),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_clear_error(case):
    call, exc_type, pattern = BAD_INPUTS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the helpers' tiny fits
        with pytest.raises(exc_type) as info:
            call()
    assert re.search(pattern, str(info.value), flags=re.DOTALL), str(info.value)


def test_bad_input_does_not_change_a_fitted_model():
    model = fitted_clf()
    before = model.predict_proba(X)
    state = {k: v for k, v in model.__dict__.items() if k.endswith("_")}
    with pytest.raises(ValueError):
        model.fit(_with(X, 0, np.nan), Y_CLASS)
    with pytest.raises(ValueError):
        model.partial_fit(X, Y_CLASS, sample_weight=np.zeros(20))
    np.testing.assert_array_equal(model.predict_proba(X), before)
    assert model.n_iter_ == state["n_iter_"] and model.t_ == state["t_"]


def test_float16_and_integer_inputs_compute_in_float64():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for Xc in (X.astype(np.float16), (X * 10).astype(np.int32), X > 0):
            model = reg().fit(Xc, Y_REG)
            assert next(model.module_.parameters()).dtype.is_floating_point
            assert str(next(model.module_.parameters()).dtype) == "torch.float64"
            assert model.predict(Xc).dtype == np.float64


@pytest.mark.parametrize("Est", [MLPTorchClassifier, MLPTorchRegressor])
def test_a_scalar_sample_weight_weighs_every_row_alike(Est):
    # as scikit-learn's estimators accept it (MLPClassifier, LogisticRegression)
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 3), (rng.randn(60) > 0).astype(int)
    kw = dict(hidden_dims=(8,), max_iter=3, random_state=0)
    a = Est(**kw).fit(X, y, sample_weight=2.0)
    b = Est(**kw).fit(X, y, sample_weight=np.full(60, 2.0))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    with pytest.raises(ValueError, match="non-negative"):
        Est(**kw).fit(X, y, sample_weight=-1.0)
    with pytest.raises(ValueError, match="all zero"):
        Est(**kw).fit(X, y, sample_weight=0)


def test_a_sparse_multilabel_indicator_target_fits_as_the_dense_one():
    rng = np.random.RandomState(0)
    X, Y = rng.randn(80, 3), (rng.rand(80, 2) > 0.5).astype(int)
    kw = dict(hidden_dims=(8,), max_iter=3, random_state=0)
    dense = MLPTorchClassifier(**kw).fit(X, Y)
    for matrix in (sp.csr_matrix(Y), sp.csc_array(Y)):
        est = MLPTorchClassifier(**kw).fit(X, matrix)
        assert est.predict(X).shape == (80, 2)
        np.testing.assert_array_equal(est.predict_proba(X), dense.predict_proba(X))
        est.partial_fit(X, matrix)
