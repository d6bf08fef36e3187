"""skmlp.to_onnx: onnxruntime reproduces predict_proba / predict."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from skmlp import MLPTorchClassifier, MLPTorchRegressor, to_onnx

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.RandomState(0)
X = rng.randn(64, 5)
MAX_DEV = 1e-5

FITTED = {
    "binary": lambda: MLPTorchClassifier((8, 8), max_iter=5, random_state=0,
                                         batch_norm=True, dropout=0.1).fit(X, X[:, 0] > 0),
    "multiclass": lambda: MLPTorchClassifier((8,), max_iter=5, activation="tanh",
                                             random_state=0).fit(X, rng.randint(0, 4, 64)),
    "multilabel": lambda: MLPTorchClassifier((8,), max_iter=5, activation="gelu",
                                             random_state=0).fit(X, X[:, :3] > 0),
    "regression-1d": lambda: MLPTorchRegressor((8,), max_iter=5,
                                               random_state=0).fit(X, 3 * X[:, 0] + 5),
    "regression-2d": lambda: MLPTorchRegressor((8,), max_iter=5, activation="silu",
                                               random_state=0).fit(X, X[:, :2]),
    "poisson-float32": lambda: MLPTorchRegressor((8,), max_iter=5, loss="poisson", dtype="float32",
                                                 random_state=0).fit(X, rng.poisson(2, 64)),
    "ensemble-multiclass": lambda: MLPTorchClassifier((8,), max_iter=5, n_ensemble=3,
                                                      random_state=0).fit(X, rng.randint(0, 3, 64)),
    "table-options": lambda: MLPTorchRegressor(
        (8,), max_iter=5, random_state=0, missing="indicator", scaling="robust",
        numeric_embedding="periodic", target_scaling=True).fit(
            np.where(X > 1.5, np.nan, X), 100 * X[:, 0] + 5),
}


def run(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X.astype(np.float32)})


@pytest.mark.parametrize("name", FITTED)
def test_onnxruntime_matches_estimator(name):
    est = FITTED[name]()
    Xs = np.where(X > 1.5, np.nan, X) if name == "table-options" else X
    model = to_onnx(est, Xs[:3])
    (out,) = run(model, Xs)
    expected = est.predict_proba(Xs) if hasattr(est, "predict_proba") else est.predict(Xs)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert [o.name for o in model.graph.output] == [
        "probabilities" if hasattr(est, "classes_") else "predictions"]
    deviation = np.max(np.abs(out - expected) / np.maximum(1.0, np.abs(expected)))
    assert deviation < MAX_DEV, deviation
    if name == "poisson-float32":
        assert np.all(out > 0)  # the exp link is in the graph
    # any batch size, including one row
    assert np.allclose(run(model, Xs[:1])[0], out[:1], atol=1e-6)


def test_saved_file_and_labels(tmp_path):
    est = FITTED["multiclass"]()
    path = tmp_path / "mlp.onnx"
    model = to_onnx(est, X[:1], path=path)  # a single sample row is enough
    loaded = onnx.load(path)
    assert loaded.SerializeToString() == model.SerializeToString()
    (proba,) = run(loaded, X)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(X))


def test_bad_sample_and_unfitted():
    est = FITTED["regression-1d"]()
    with pytest.raises(ValueError, match=r"shape \(n_samples, 5\)"):
        to_onnx(est, X[:, :3])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        to_onnx(MLPTorchRegressor(), X)

