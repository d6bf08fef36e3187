"""Hyperparameters: stored untouched, validated at ``fit`` with a message naming them."""

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skmlp import MLPTorchClassifier, MLPTorchRegressor

RNG = np.random.RandomState(0)
X = RNG.randn(24, 3)
Y_CLASS = np.arange(24) % 3
Y_REG = RNG.randn(24)

# (parameter, invalid value); checked on both estimators unless marked.
INVALID = [
    ("lr", -1e-3), ("lr", 0), ("lr", float("nan")), ("lr", float("inf")), ("lr", "0.1"),
    ("lr", None), ("activation", "softmax"), ("activation", None), ("activation", "RELU"),
    ("optimizer", "rmsprop"), ("optimizer", None),
    ("hidden_dims", (0,)), ("hidden_dims", (10, 0)), ("hidden_dims", (-5,)), ("hidden_dims", -5),
    ("hidden_dims", 0), ("hidden_dims", (2.5,)), ("hidden_dims", (10.0,)), ("hidden_dims", "10"),
    ("hidden_dims", None), ("hidden_dims", (True,)), ("hidden_dims", ("a",)),
    ("batch_size", 0), ("batch_size", -1), ("batch_size", 1.5), ("batch_size", "full"),
    ("validation_fraction", 0), ("validation_fraction", 1), ("validation_fraction", -0.1),
    ("validation_fraction", 1.5),
    ("momentum", 1), ("momentum", 1.5), ("momentum", -0.1),
    ("nesterov", "yes"), ("weight_decay", -1e-4),
    ("max_iter", 0), ("max_iter", -1), ("max_iter", 2.0),
    ("lr_schedule", "step"), ("dropout", 1.0), ("dropout", -0.5),
    ("batch_norm", 1), ("early_stopping", "no"), ("n_iter_no_change", 0), ("tol", -1.0),
    ("shuffle", None), ("device", "tpu"), ("device", "cuda:x"), ("device", "CPU"),
    ("device", None), ("dtype", "float16"), ("dtype", np.float32), ("random_state", "seed"),
    ("random_state", 1.5), ("warm_start", "no"), ("verbose", -1), ("callbacks", [1]),
    ("callbacks", print),
]
CLASSIFIER_ONLY = [("class_weight", "auto"), ("class_weight", [1, 2])]
REGRESSOR_ONLY = [("loss", "mse"), ("loss", "log_loss"), ("loss", None)]
CASES = ([(MLPTorchClassifier, p, v) for p, v in INVALID + CLASSIFIER_ONLY]
         + [(MLPTorchRegressor, p, v) for p, v in INVALID + REGRESSOR_ONLY])


def _data(cls):
    return (X, Y_CLASS) if cls is MLPTorchClassifier else (X, Y_REG)


@pytest.mark.parametrize("cls, param, value", CASES,
                         ids=[f"{c.__name__[8:]}-{p}={v!r}" for c, p, v in CASES])
def test_invalid_hyperparameter_rejected_at_fit(cls, param, value):
    est = cls(hidden_dims=(3,), max_iter=2)
    est.set_params(**{param: value})  # never raises: validation happens in fit
    assert est.get_params()[param] is value  # stored untouched
    Xd, yd = _data(cls)
    for method in ("fit", "partial_fit"):
        if method == "partial_fit" and param == "optimizer":
            continue  # partial_fit is only defined for stochastic optimizers
        kwargs = {"classes": [0, 1, 2]} if method == "partial_fit" and cls is MLPTorchClassifier else {}
        # Both ValueError and TypeError catch it (sklearn's InvalidParameterError convention).
        for exc_type in (ValueError, TypeError):
            with pytest.raises(exc_type) as info:
                getattr(est, method)(Xd, yd, **kwargs)
            message = str(info.value)
            assert f"'{param}' parameter must be" in message, message
            assert repr(value) in message, message
        assert not hasattr(est, "module_"), "nothing may be built before validation"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_unavailable_cuda_device_raises_naming_it(device):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index < count:
        pytest.skip(f"{device} exists on this machine; the test is about a missing device")
    est = MLPTorchRegressor(hidden_dims=(3,), max_iter=2, device=device)
    with pytest.raises(ValueError, match=re.escape(f"device={device!r} is not available")) as info:
        est.fit(X, Y_REG)
    assert "device='cpu'" in str(info.value)  # says what to use instead
    assert not hasattr(est, "module_")


def test_unavailable_mps_device_raises_naming_it():
    if torch.backends.mps.is_available():
        pytest.skip("MPS exists on this machine; the test is about a missing device")
    with pytest.raises(ValueError, match=r"device='mps' is not available.*device='cpu'"):
        MLPTorchClassifier(hidden_dims=(3,), max_iter=2, device="mps").fit(X, Y_CLASS)


VALID_EDGES = [
    ("hidden_dims", ()), ("hidden_dims", 4), ("hidden_dims", [4, 2]),
    ("hidden_dims", (np.int64(4),)), ("hidden_dims", np.array([3, 2])),
    ("lr", np.float32(0.01)), ("lr", 1), ("momentum", 0), ("momentum", 0.999),
    ("weight_decay", 0), ("batch_size", 1), ("batch_size", np.int64(1000)),
    ("validation_fraction", 0.5), ("dropout", 0.0), ("dropout", 0.99), ("tol", 0),
    ("activation", "logistic"), ("device", "auto"), ("device", "cpu"), ("dtype", "float32"),
    ("random_state", np.random.RandomState(0)), ("random_state", np.int64(3)),
    ("verbose", False), ("callbacks", []), ("max_iter", np.int32(1)),
]


@pytest.mark.parametrize("param, value", VALID_EDGES,
                         ids=[f"{p}={v!r}" for p, v in VALID_EDGES])
def test_edge_valid_hyperparameters_fit(param, value):
    params = {"hidden_dims": (3,), "max_iter": 1, "random_state": 0, param: value}
    if param == "validation_fraction":
        params["early_stopping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPTorchClassifier(**params).fit(X, Y_CLASS)
    assert np.isfinite(est.predict_proba(X)).all()
    assert est.get_params()[param] is value  # fit did not rewrite the parameter


def test_clone_keeps_invalid_values_until_fit():
    est = MLPTorchClassifier(lr=-1, activation="nope")
    twin = clone(est)
    assert twin.get_params()["lr"] == -1 and twin.get_params()["activation"] == "nope"
    with pytest.raises(ValueError, match="'activation' parameter"):
        twin.fit(X, Y_CLASS)


def test_refit_with_invalid_value_keeps_the_fitted_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPTorchRegressor(hidden_dims=(3,), max_iter=2, random_state=0).fit(X, Y_REG)
    before = est.predict(X)
    est.set_params(batch_size=0)
    with pytest.raises(ValueError, match="'batch_size' parameter"):
        est.fit(X, Y_REG)
    np.testing.assert_array_equal(est.predict(X), before)
