"""Property tests: any input is either fitted to finite, well-shaped outputs or
rejected with ValueError/TypeError; never NaN predictions, never a torch crash.

Bounded: ~30 examples per property, tiny shapes, 2-3 epochs, no deadline.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.exceptions import ConvergenceWarning

from skmlp import MLPTorchClassifier, MLPTorchRegressor

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]
MAGNITUDES = [1e-30, 1e-3, 1.0, 1e3, 1e15, 1e30]


@st.composite
def matrices(draw, n_rows, with_non_finite):
    """X of a random dtype whose values span tiny to huge magnitudes (within the dtype)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = (n_rows, draw(st.integers(1, 4)))
    if dtype.kind == "b":
        return draw(hnp.arrays(dtype, shape))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return draw(hnp.arrays(dtype, shape, elements=st.integers(int(info.min), int(info.max))))
    top = float(np.finfo(dtype).max) / 8
    values = st.floats(-1.0, 1.0).flatmap(
        lambda u: st.sampled_from(MAGNITUDES).map(lambda m: float(np.clip(u * m, -top, top))))
    if with_non_finite:
        values = st.one_of(values, st.sampled_from([np.nan, np.inf, -np.inf]))
    return draw(hnp.arrays(dtype, shape, elements=values))


def estimator_params(draw):
    return dict(
        hidden_dims=draw(st.sampled_from([(), (2,), (3, 2)])),
        optimizer=draw(st.sampled_from(["sgd", "adam", "lbfgs"])),
        lr=draw(st.sampled_from([1e-3, 0.5, 10.0])),
        activation=draw(st.sampled_from(["relu", "tanh", "identity", "sigmoid"])),
        batch_size=draw(st.sampled_from(["auto", 1, 3])),
        dtype=draw(st.sampled_from([None, "float32", "float64"])),
        batch_norm=draw(st.booleans()),
        max_iter=draw(st.integers(2, 3)),
        random_state=0,
    )


def _fit_or_reject(est, X, y):
    """Fit; True if fitted, False if rejected with ValueError/TypeError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow inside validation
        try:
            est.fit(X, y)
        except (ValueError, TypeError) as exc:
            assert str(exc), "an error needs a message"
            return False
    return True


@SETTINGS
@given(data=st.data())
def test_regressor_fits_finite_or_rejects(data):
    n = data.draw(st.integers(1, 10), label="n_samples")
    non_finite = data.draw(st.booleans(), label="non_finite")
    X = data.draw(matrices(n, non_finite), label="X")
    y = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-1, 1).flatmap(
        lambda u: st.sampled_from(MAGNITUDES).map(lambda m: u * m))), label="y")
    est = MLPTorchRegressor(**estimator_params(data.draw))
    X_before, y_before = X.copy(), y.copy()
    fitted = _fit_or_reject(est, X, y)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        assert not fitted, "non-finite X must be rejected"
    if not fitted:
        return
    pred = est.predict(X)
    assert pred.shape == (n,)
    assert np.isfinite(pred).all(), f"non-finite predictions {pred}"
    assert str(next(est.module_.parameters()).dtype) in ("torch.float32", "torch.float64")


@SETTINGS
@given(data=st.data())
def test_classifier_fits_finite_or_rejects(data):
    n = data.draw(st.integers(1, 10), label="n_samples")
    non_finite = data.draw(st.booleans(), label="non_finite")
    X = data.draw(matrices(n, non_finite), label="X")
    labels = data.draw(st.sampled_from([np.array([0, 1, 2]), np.array(["a", "b"])]))
    y = labels[data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, len(labels) - 1)))]
    est = MLPTorchClassifier(**estimator_params(data.draw))
    fitted = _fit_or_reject(est, X, y)
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        assert not fitted, "non-finite X must be rejected"
    if len(np.unique(y)) < 2:
        assert not fitted, "a single class must be rejected"
    if not fitted:
        return
    proba = est.predict_proba(X)
    assert proba.shape == (n, len(est.classes_))
    assert np.isfinite(proba).all(), f"non-finite probabilities {proba}"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-3)
    assert set(est.predict(X)) <= set(est.classes_)
    assert np.isfinite(est.decision_function(X)).all()


# ---------------------------------------------------------------- divergence
# Regressions found while writing the properties: an epoch's loss is measured
# before each step, so a single-batch epoch (or an epoch's last steps) could
# leave weights that are NaN or overflow on the data, and fit returned them
# silently (max_iter=1), or restored those same weights after a NaN epoch.
@pytest.mark.parametrize("max_iter", [1, 2, 3])
@pytest.mark.parametrize("case", ["float64 regressor", "float32 classifier"])
def test_diverging_fit_warns_and_keeps_finite_predictions(case, max_iter):
    rng = np.random.RandomState(0)
    if case == "float64 regressor":
        X, y = rng.randn(30, 3) * 1e150, rng.randn(30) * 1e150
        est = MLPTorchRegressor((4,), optimizer="sgd", lr=0.9, max_iter=max_iter, random_state=0)
    else:
        X, y = rng.randn(30, 3).astype(np.float32) * 1e18, np.arange(30) % 3
        est = MLPTorchClassifier((4,), optimizer="sgd", lr=0.9, max_iter=max_iter,
                                 random_state=0)
    with pytest.warns(ConvergenceWarning, match="diverged.*Lower `lr`"):
        est.fit(X, y)
    out = est.predict(X) if case == "float64 regressor" else est.predict_proba(X)
    assert np.isfinite(out).all()
    # partial_fit continues from the kept weights and stays finite too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.partial_fit(X, y)
    out = est.predict(X) if case == "float64 regressor" else est.predict_proba(X)
    assert np.isfinite(out).all()


def test_partial_fit_never_keeps_overflowing_weights():
    rng = np.random.RandomState(1)
    X, y = rng.randn(30, 3) * 1e150, rng.randn(30) * 1e150
    est = MLPTorchRegressor((4,), optimizer="sgd", lr=0.9, random_state=0)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est.partial_fit(X, y)
    assert np.isfinite(est.predict(X)).all()
