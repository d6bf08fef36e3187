"""Prototype (not in skmlp): cross-fitted target encodings of many-level columns.

For a row with ``te=N``, every categorical column with more than ``N`` levels
gets extra numeric columns beside it: scikit-learn's ``TargetEncoder``
(out-of-fold means for the training rows, shrunk towards the prior; one column
per class for a multiclass target), the column itself kept as it is. A
``fit``/``predict`` wrapper around the Tabular estimator, as a user would do it::

    python benchmarks/prototypes/target_encoding.py --seeds 2 \\
        --tables mlc_churn,ames,hotel,covid,mpg_class,occupation,loans \\
        --row "te10: te=10" --row "te2: te=2" --json te.json

Result: ``benchmarks/tabular_ablation_target_encoding_results.json``.
"""

import numpy as np
import pandas as pd
from _ablation import run
from sklearn.preprocessing import TargetEncoder


class TargetEncoded:
    def __init__(self, est, task, min_levels, seed):
        self.est, self.task, self.min_levels, self.seed = est, task, int(min_levels), seed

    @staticmethod
    def _strings(X):
        return X.astype(object).where(X.notna(), "__missing__").astype(str)

    def _with_codes(self, X, Z):
        Z = pd.DataFrame(np.asarray(Z, dtype=np.float64), index=X.index,
                         columns=[f"__te{i}" for i in range(np.shape(Z)[1])])
        return pd.concat([X, Z], axis=1)

    def fit(self, X, y):
        X = pd.DataFrame(X)
        self.columns = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)
                        and len(X[c].cat.categories) > self.min_levels]
        if self.columns:
            self.encoder = TargetEncoder(
                target_type="continuous" if self.task == "reg" else "auto",
                random_state=self.seed)
            X = self._with_codes(X, self.encoder.fit_transform(self._strings(X[self.columns]), y))
        self.est.fit(X, y)
        self.classes_ = getattr(self.est, "classes_", None)
        return self

    def _encode(self, X):
        X = pd.DataFrame(X)
        if not self.columns:
            return X
        return self._with_codes(X, self.encoder.transform(self._strings(X[self.columns])))

    def predict(self, X):
        return self.est.predict(self._encode(X))

    def predict_proba(self, X):
        return self.est.predict_proba(self._encode(X))


if __name__ == "__main__":
    run("te", TargetEncoded)
