"""Hyperparameter validation: one table, one message format.

Every check names the parameter, the value received and what is accepted, so
``fit`` fails before any torch code runs.
"""

import numbers

import numpy as np

from ._network import ACTIVATIONS

OPTIMIZERS = ("sgd", "adam", "adamw", "lbfgs")
SCHEDULES = ("constant", "cosine", "plateau")
REGRESSION_LOSSES = ("squared_error", "absolute_error", "huber", "poisson")
DTYPES = (None, "float32", "float64")


def _choice(options):
    def check(value):
        return isinstance(value, str) and value in options

    return check, "one of " + ", ".join(repr(o) for o in options)


def _real(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if not np.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        if high is not None and (value >= high if high_open else value > high):
            return False
        return True

    lo = "" if low is None else ("(" if low_open else "[") + str(low)
    hi = "" if high is None else str(high) + (")" if high_open else "]")
    return check, f"a real number in {lo or '(-inf'}, {hi or 'inf)'}"


def _int(low):
    def check(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low

    return check, f"an integer >= {low}"


def _bool():
    return (lambda v: isinstance(v, (bool, np.bool_))), "True or False"


def _hidden_dims(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0
    return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)


def _batch_size(value):
    return value == "auto" if isinstance(value, str) else _int(1)[0](value)


def _callbacks(value):
    return value is None or (
        isinstance(value, (list, tuple)) and all(callable(cb) for cb in value)
    )


def _class_weight(value):
    return value is None or value == "balanced" or isinstance(value, dict)


def _random_state(value):
    return value is None or isinstance(value, (numbers.Integral, np.random.RandomState)) and not isinstance(value, bool)


def _device(value):
    if not isinstance(value, str):
        return False
    head, _, index = value.partition(":")
    if head == "cuda" and index:
        return index.isdigit()
    return value in ("cpu", "cuda", "mps", "auto")


PARAMETERS = {
    "hidden_dims": (_hidden_dims, "a tuple of positive integers (layer sizes), e.g. (100,) or ()"),
    "activation": _choice(tuple(ACTIVATIONS)),
    "optimizer": _choice(OPTIMIZERS),
    "lr": _real(0, low_open=True),
    "momentum": _real(0, 1, high_open=True),
    "nesterov": _bool(),
    "weight_decay": _real(0),
    "batch_size": (_batch_size, "'auto' or an integer >= 1"),
    "max_iter": _int(1),
    "lr_schedule": _choice(SCHEDULES),
    "dropout": _real(0, 1, high_open=True),
    "batch_norm": _bool(),
    "early_stopping": _bool(),
    "validation_fraction": _real(0, 1, low_open=True, high_open=True),
    "n_iter_no_change": _int(1),
    "tol": _real(0),
    "shuffle": _bool(),
    "class_weight": (_class_weight, "None, 'balanced' or a dict {label: weight}"),
    "loss": _choice(REGRESSION_LOSSES),
    "device": (_device, "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"),
    "dtype": (lambda v: v in DTYPES and (v is None or isinstance(v, str)),
              "None, 'float32' or 'float64'"),
    "random_state": (_random_state, "None, an integer or a numpy RandomState"),
    "warm_start": _bool(),
    "verbose": (lambda v: _int(0)[0](v) or isinstance(v, (bool, np.bool_)), "0, 1 or 2"),
    "callbacks": (_callbacks, "None or a list of callables cb(estimator, epoch, logs)"),
}


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter has a wrong value or type (catch as either)."""


def validate_params(estimator):
    """Raise ``ValueError``/``TypeError`` naming the first invalid parameter."""
    name = type(estimator).__name__
    for param, value in estimator.get_params(deep=False).items():
        check, expected = PARAMETERS[param]
        if not check(value):
            raise InvalidParameterError(
                f"{name}: the {param!r} parameter must be {expected}; got {value!r}."
            )


def hidden_dims_tuple(value):
    """``hidden_dims`` as a tuple of ints (a bare int means one layer)."""
    if isinstance(value, numbers.Integral):
        return (int(value),)
    return tuple(int(v) for v in value)
