"""Prototype (not in skmlp): target-aware bins for the piecewise embedding.

Gorishniy et al. (2022, "On Embeddings for Numerical Features") also build the
piecewise-linear bins from a decision tree fitted per column on the target
("T-LR") instead of quantiles. Here, for a row with ``bins='tree'``, every
numeric column's edges become its tree's thresholds plus the column's range
(``max_leaf_nodes=16``, as many bins as the quantile rule;
``min_samples_leaf=min(64, n/8)``, ``min_impurity_decrease=1e-4`` on the
standardised target), fitted on all rows given to ``fit`` (the held-out fifth
included: a prototype's shortcut; the test rows never)::

    python benchmarks/prototypes/tree_bins.py --seeds 2 --row "tree: bins='tree'" \\
        --json tree.json --catboost benchmarks/tables_split_results.json

Result: ``benchmarks/tabular_ablation_tree_bins_results.json`` (docs: benchmarks page).
"""

import numpy as np
from _ablation import run
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import skmlp._base as B
from skmlp._network import PIECEWISE_BINS

_fit_steps, _fit_columns = B.BaseMLPTorch._fit_steps, B.BaseMLPTorch._fit_columns


def fit_steps(self, X, y, sample_weight, **kw):
    self.__dict__["_target"] = y  # what the patched _fit_columns reads
    try:
        return _fit_steps(self, X, y, sample_weight, **kw)
    finally:
        self.__dict__.pop("_target", None)


def tree_edges(col, y, w, regression, lo, hi):
    Tree = DecisionTreeRegressor if regression else DecisionTreeClassifier
    tree = Tree(max_leaf_nodes=PIECEWISE_BINS, min_samples_leaf=min(64, max(1, len(col) // 8)),
                min_impurity_decrease=1e-4, random_state=0)
    tree.fit(col[:, None], y, sample_weight=w)
    thresholds = tree.tree_.threshold[tree.tree_.feature >= 0]
    return np.unique(np.concatenate([[lo, hi], thresholds]))


def fit_columns(self, X, raw, mask, weights):
    _fit_columns(self, X, raw, mask, weights)
    stats = self._numeric_stats
    if not self.__dict__.get("_tree_bins") or not stats or not stats.get("bins"):
        return
    y = np.asarray(self.__dict__["_target"])
    regression = not hasattr(self, "predict_proba")
    if regression:
        y = y.astype(np.float64)
        y = (y - y.mean(axis=0)) / np.maximum(y.std(axis=0), 1e-12)
    X = np.asarray(X, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    stats["bins"] = [
        tree_edges(np.where(np.isnan(X[:, j]), stats["fill"][j], X[:, j]), y, w, regression,
                   q[0], q[-1])
        for j, q in enumerate(stats["bins"])]


def wrap(est, task, value, seed):
    if value != "tree":
        raise ValueError(f"bins={value!r}: only 'tree'")
    est.__dict__["_tree_bins"] = True
    return est


if __name__ == "__main__":
    B.BaseMLPTorch._fit_steps = fit_steps
    B.BaseMLPTorch._fit_columns = fit_columns
    run("bins", wrap)
