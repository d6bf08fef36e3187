"""Pickle, joblib and skops round trips; device mapping on load."""

import io
import pickle
import re
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
import torch
from numpy.testing import assert_array_equal

from skmlp import MLPTorchClassifier, MLPTorchRegressor
from skmlp._base import BaseMLPTorch

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.RandomState(0)
X = rng.randn(80, 4)
Y = rng.randint(0, 3, 80)

# What skops reports as unknown in a fitted skmlp estimator (docs/persistence.rst).
SKOPS_TRUSTED = {
    "skmlp._classifier.MLPTorchClassifier",
    "skmlp._regressor.MLPTorchRegressor",
    "skmlp._training.TrainState",
}

FITTED = {
    "multiclass": lambda: MLPTorchClassifier((6,), max_iter=3, random_state=0,
                                             dropout=0.2, batch_norm=True).fit(X, Y),
    "binary-float32": lambda: MLPTorchClassifier((6,), max_iter=3, random_state=0,
                                                 dtype="float32").fit(X, Y > 0),
    "poisson-sgd": lambda: MLPTorchRegressor((6,), max_iter=3, random_state=0, loss="poisson",
                                             optimizer="sgd").fit(X, Y),
    "lbfgs": lambda: MLPTorchRegressor((), max_iter=5, optimizer="lbfgs").fit(X, X[:, :2]),
}


def outputs(est, X_=X):
    return est.predict_proba(X_) if hasattr(est, "predict_proba") else est.predict(X_)


def pickle_roundtrip(est):
    return pickle.loads(pickle.dumps(est))


def joblib_roundtrip(est):
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    return joblib.load(buf)


@pytest.mark.parametrize("roundtrip", [pickle_roundtrip, joblib_roundtrip])
@pytest.mark.parametrize("name", FITTED)
def test_roundtrip_identical_outputs(name, roundtrip):
    est = FITTED[name]()
    loaded = roundtrip(est)
    assert_array_equal(outputs(loaded), outputs(est))
    assert outputs(loaded).dtype == outputs(est).dtype
    assert loaded.get_params() == est.get_params()
    assert loaded.loss_curve_ == est.loss_curve_ and loaded.n_iter_ == est.n_iter_


def test_pickled_state_holds_numpy_copies_not_tensors():
    est = FITTED["multiclass"]()
    state = est.__getstate__()
    assert "module_" not in state and state["_module_device"] == "cpu"
    assert all(isinstance(v, np.ndarray) for v in state["_module_state"].values())

    def tensors(obj):
        if isinstance(obj, torch.Tensor):
            return 1
        if isinstance(obj, dict):
            return sum(tensors(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(tensors(v) for v in obj)
        return tensors(vars(obj)) if hasattr(obj, "__dataclass_fields__") else 0

    assert tensors(state) == 0
    assert hasattr(est, "module_")  # pickling did not strip the live estimator


def test_partial_fit_continues_identically_after_unpickling():
    # Optimizer state, RNG state and counters survive the round trip.
    est = MLPTorchClassifier((6,), random_state=0, dropout=0.2)
    est.partial_fit(X, Y, classes=[0, 1, 2])
    copy = pickle_roundtrip(est)
    est.partial_fit(X, Y)
    copy.partial_fit(X, Y)
    assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    assert copy.t_ == est.t_ == 160


def test_model_saved_on_cuda_loads_on_this_machine(monkeypatch):
    """A pickle whose network was on cuda:0 loads where cuda exists, else on the CPU."""
    est = FITTED["multiclass"]()
    original = BaseMLPTorch.__getstate__

    def as_if_on_cuda(self):
        state = original(self)
        state["_module_device"] = "cuda:0"
        return state

    monkeypatch.setattr(BaseMLPTorch, "__getstate__", as_if_on_cuda)
    blob = pickle.dumps(est)
    monkeypatch.undo()
    loaded = pickle.loads(blob)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(loaded.module_.parameters()).device.type == expected
    np.testing.assert_allclose(outputs(loaded), outputs(est), rtol=1e-6, atol=1e-7)


def test_tensor_state_from_older_pickles_still_loads():
    est = FITTED["multiclass"]()
    state = est.__getstate__()
    state["_module_state"] = {k: torch.from_numpy(v) for k, v in state["_module_state"].items()}
    state["_rng_state"] = torch.from_numpy(state["_rng_state"])
    fresh = MLPTorchClassifier.__new__(MLPTorchClassifier)
    fresh.__setstate__(state)
    assert_array_equal(outputs(fresh), outputs(est))


@pytest.mark.parametrize("name", FITTED)
def test_skops_roundtrip(name, tmp_path):
    est = FITTED[name]()
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    untrusted = set(sio.get_untrusted_types(file=path))
    assert untrusted <= SKOPS_TRUSTED, untrusted - SKOPS_TRUSTED
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)
    loaded = sio.load(path, trusted=sorted(untrusted))
    assert_array_equal(outputs(loaded), outputs(est))


def test_no_unsafe_torch_load_in_package():
    """Pickles are trusted input only; torch.load is only ever used with weights_only=True."""
    root = Path(__file__).resolve().parents[1] / "skmlp"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start(): text.find(")", match.start()) + 1]
            assert "weights_only=True" in call, f"{path.name}: {call}"


def test_skops_recipe_of_the_docs_accepts_every_exported_estimator(tmp_path):
    """docs/persistence.rst trusts the classes skmlp exports, Tabular ones included."""
    import pandas as pd

    import skmlp
    from skmlp import TabularMLPClassifier, TabularMLPRegressor

    expected = {f"{cls.__module__}.{cls.__qualname__}"
                for cls in (getattr(skmlp, name) for name in skmlp.__all__)
                if isinstance(cls, type)}
    df = pd.DataFrame({"x": X[:, 0], "city": rng.choice(["Oslo", "Rome", None], 80)})
    for est in (TabularMLPClassifier(max_iter=2, random_state=0).fit(df, Y),
                TabularMLPRegressor(max_iter=2, random_state=0).fit(df, X[:, 1])):
        path = tmp_path / "model.skops"
        sio.dump(est, path)
        untrusted = sio.get_untrusted_types(file=path)
        assert set(untrusted) <= expected, set(untrusted) - expected
        loaded = sio.load(path, trusted=untrusted)
        assert_array_equal(outputs(loaded, df), outputs(est, df))
        assert [list(c) for c in loaded.categories_] == [list(c) for c in est.categories_]
