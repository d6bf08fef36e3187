"""Validation / test score curves with and without early stopping.

Digits (scaled X, classifier) and diabetes (scaled X, scaled y, regressor),
default hyperparameters otherwise. A 25% test split is held out first; a
callback records the test score every epoch, and with ``early_stopping=True``
the estimator's own validation score (10% of the training part). Prints the
scores every 10 epochs, ``n_iter_``, ``best_validation_score_`` and the final
test score (after early stopping restored its best weights).

Run: ``python benchmarks/early_stopping_curves.py``
"""

import warnings

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skmlp import MLPTorchClassifier, MLPTorchRegressor


def _data(name):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        parts = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    else:
        X, y = load_diabetes(return_X_y=True)
        parts = train_test_split(X, y, test_size=0.25, random_state=0)
    X_tr, X_te, y_tr, y_te = parts
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    if name == "diabetes":
        y_scaler = StandardScaler().fit(y_tr[:, None])
        y_tr = y_scaler.transform(y_tr[:, None]).ravel()
        y_te = y_scaler.transform(y_te[:, None]).ravel()
    return X_tr, X_te, y_tr, y_te


def run(name, early_stopping, seed=0):
    X_tr, X_te, y_tr, y_te = _data(name)
    test_curve = []

    def record(est, epoch, logs):
        test_curve.append(est.score(X_te, y_te))

    cls = MLPTorchClassifier if name == "digits" else MLPTorchRegressor
    est = cls(early_stopping=early_stopping, random_state=seed, callbacks=[record])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_tr, y_tr)
    val_curve = est.validation_scores_ or [None] * est.n_iter_
    print(f"\n{name}, early_stopping={early_stopping}: n_iter_={est.n_iter_}, "
          f"best_validation_score_={_fmt(est.best_validation_score_)}, "
          f"final test score={est.score(X_te, y_te):.4f}")
    print("  epoch   val_score   test_score   train_loss")
    for epoch in sorted(set(range(10, est.n_iter_ + 1, 10)) | {1, est.n_iter_}):
        print(f"  {epoch:5d}   {_fmt(val_curve[epoch - 1]):>9}   "
              f"{test_curve[epoch - 1]:10.4f}   {est.loss_curve_[epoch - 1]:.5f}")


def _fmt(value):
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    n_threads = torch.get_num_threads()
    for dataset in ("digits", "diabetes"):
        for es in (False, True):
            run(dataset, es)
    assert torch.get_num_threads() == n_threads
