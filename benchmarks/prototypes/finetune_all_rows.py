"""Prototype (not in skmlp): after the best epoch, a few epochs on every row.

From 1000 training rows the Tabular defaults hold out a fifth to choose the
best epoch (and the temperature), so those rows never train the network;
``early_stopping="refit"`` trains again on all rows for 1.6x the time. This
tries a cheap middle way: for a row with ``finetune="E,LR"``, the fitted model
continues (``warm_start=True``, ``early_stopping=False``) for ``E`` epochs at
learning rate ``LR`` on all rows, keeping the temperature fitted before. Splits
under 1000 rows (bagged by the defaults) are left as they are::

    python benchmarks/prototypes/finetune_all_rows.py --seeds 2 \\
        --row "ft5: finetune='5,1e-4'" --row "ft10: finetune='10,3e-4'" --json ft.json
"""

import warnings
from dataclasses import replace

from _ablation import A, run


class FineTuned:
    def __init__(self, est, epochs, lr):
        self.est, self.epochs, self.lr = est, epochs, lr

    def fit(self, X, y):
        est = self.est.fit(X, y)
        temperature = getattr(est, "temperature_", None)
        est.set_params(warm_start=True, early_stopping=False, max_iter=self.epochs, lr=self.lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        if temperature is not None:  # the held-out rows' temperature, as fitted before
            est._spec = replace(est._spec, temperature=temperature)
            est.temperature_ = temperature
        self.classes_ = getattr(est, "classes_", None)
        return self

    def predict(self, X):
        return self.est.predict(X)

    def predict_proba(self, X):
        return self.est.predict_proba(X)


def wrap(est, task, value, seed):
    return est  # replaced below, where the split's size is known


if __name__ == "__main__":
    built = A.build

    def build(task, params, seed, n_train):
        params = dict(params)
        value = params.pop("finetune", None)
        est, applied = built(task, params, seed, n_train)
        if value is None or n_train < 1000:
            return est, applied
        epochs, lr = value.split(",")
        return FineTuned(est, int(epochs), float(lr)), {**applied, "finetune": value}

    A.build = build
    run("unused", wrap)
