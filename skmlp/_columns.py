"""The table layer: the only module that knows pandas and polars dtypes.

It decides which columns are categorical (``categorical_features``, named and
defaulted as in ``HistGradientBoostingClassifier``), learns each categorical
column's categories and each numeric column's statistics (all weighted by
``sample_weight``: a row of weight zero contributes nothing, not even a
category), and turns a table into the network's two inputs:

* ``x_num``: the numeric columns as floats, NaN kept where ``missing=
  "indicator"`` allows it (the network's input layer fills and flags them);
* ``x_cat``: one integer code per categorical column: ``0 .. k-1`` for the
  ``k`` categories seen in ``fit`` (sorted by value), ``k`` for a missing value
  (NaN, None, ``pd.NA``), ``k + 1`` for a category not seen in ``fit``.

The fitted state (``ColumnLayout``) is plain data: lists, numpy arrays and
builtins, so it pickles, clones and stores with skops as it is.
"""

import numbers
from dataclasses import dataclass, field

import numpy as np

SLOTS = 2  # codes after the categories: missing, unknown
SPARSE_CATEGORICAL = ("categorical columns need dense input: pass a DataFrame or a dense "
                      "array, or set categorical_features=None for sparse input.")


def _library(X):
    return type(X).__module__.split(".")[0]


def is_dataframe(X):
    lib = _library(X)
    return (lib == "pandas" and hasattr(X, "columns") and hasattr(X, "dtypes")) or (
        lib == "polars" and hasattr(X, "schema"))


def column_names(X):
    """The column names of a DataFrame, else None."""
    if not is_dataframe(X):
        return None
    return [str(c) for c in X.columns]


def _categorical_dtype(X):
    """Per column of a DataFrame: is its dtype categorical (``"from_dtype"``)?"""
    if _library(X) == "pandas":
        import pandas as pd

        return np.array([isinstance(dt, pd.CategoricalDtype) or dt == object
                         or pd.api.types.is_string_dtype(dt) for dt in X.dtypes], dtype=bool)
    names = {"Categorical", "Enum", "String", "Utf8"}
    return np.array([type(dt).__name__ in names or str(dt).split("(")[0] in names
                     for dt in X.schema.values()], dtype=bool)


def categorical_mask(X, categorical_features, n_features):
    """A boolean mask over the columns from the ``categorical_features`` parameter."""
    value = categorical_features
    if value is None:
        return np.zeros(n_features, dtype=bool)
    if isinstance(value, str):
        if value != "from_dtype":
            raise ValueError(f"categorical_features={value!r}: use 'from_dtype', None, a list "
                             "of column names, a list of indices or a boolean mask.")
        if is_dataframe(X):
            return _categorical_dtype(X)
        return np.zeros(n_features, dtype=bool)
    values = list(value)
    mask = np.zeros(n_features, dtype=bool)
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        if len(values) != n_features:
            raise ValueError(f"categorical_features is a boolean mask of length {len(values)}, "
                             f"but X has {n_features} columns: give one entry per column.")
        return np.asarray(values, dtype=bool)
    if values and all(isinstance(v, str) for v in values):
        names = column_names(X)
        if names is None:
            raise ValueError("categorical_features holds column names, but X has no column "
                             "names: pass a pandas or polars DataFrame, or give column indices.")
        unknown = [v for v in values if v not in names]
        if unknown:
            raise ValueError(f"categorical_features names columns that X does not have: "
                             f"{unknown}. X's columns are {names}.")
        mask[[names.index(v) for v in values]] = True
        return mask
    if all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
           for v in values):
        bad = [v for v in values if not -n_features <= v < n_features]
        if bad:
            raise ValueError(f"categorical_features has indices {bad} outside the "
                             f"{n_features} columns of X.")
        mask[list(values)] = True
        return mask
    raise TypeError(f"categorical_features={value!r} mixes kinds: give 'from_dtype', None, "
                    "column names, column indices or a boolean mask.")


def _column(X, j):
    """Column ``j`` of X as a 1-d numpy object array (missing values kept)."""
    if _library(X) == "pandas" and hasattr(X, "iloc"):
        col = X.iloc[:, j]
        values = col.astype(object).to_numpy(dtype=object, na_value=None) \
            if hasattr(col, "to_numpy") else np.asarray(col, dtype=object)
        return values
    if _library(X) == "polars":
        return np.asarray(X.to_series(j).to_list(), dtype=object)
    if hasattr(X, "toarray"):
        raise ValueError(SPARSE_CATEGORICAL)
    return np.asarray(X)[:, j].astype(object)


def _is_missing(values):
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        out[i] = v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType"
    return out


def _sorted(values):
    try:
        return sorted(values)
    except TypeError:  # mixed kinds (e.g. 1 and "a"): by kind, then value
        return sorted(values, key=lambda v: (type(v).__name__, repr(v)))


def numeric_part(X, mask):
    """X without its categorical columns (same kind of object as X)."""
    if not mask.any():
        return X
    if hasattr(X, "toarray"):
        raise ValueError(SPARSE_CATEGORICAL)
    keep = np.flatnonzero(~mask)
    if _library(X) == "pandas" and hasattr(X, "iloc"):
        return X.iloc[:, keep]
    if _library(X) == "polars":
        return X.select([X.columns[j] for j in keep])
    return np.asarray(X)[:, keep]


def _python_value(v):
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class ColumnLayout:
    """What was learned about the columns in ``fit`` (plain data)."""

    categorical: np.ndarray  # bool mask over the columns as given
    categories: list = field(default_factory=list)  # per categorical column, sorted values

    @property
    def cardinalities(self):
        """Codes per categorical column: the categories, then missing and unknown."""
        return tuple(len(c) + SLOTS for c in self.categories)

    def fit_categories(self, X, weights):
        """Learn the categories of every categorical column (weight-0 rows excluded)."""
        used = None if weights is None else np.asarray(weights) > 0
        self.categories = []
        for j in np.flatnonzero(self.categorical):
            values = _column(X, j)
            if used is not None:
                values = values[used]
            present = values[~_is_missing(values)]
            self.categories.append([_python_value(v) for v in _sorted(set(present.tolist()))])
        return self

    def encode(self, X):
        """The integer codes ``(n, n_categorical)`` of X's categorical columns."""
        index = np.flatnonzero(self.categorical)
        n = X.shape[0]
        codes = np.empty((n, len(index)), dtype=np.int64)
        for slot, (j, cats) in enumerate(zip(index, self.categories)):
            values = _column(X, j)
            lookup = {v: i for i, v in enumerate(cats)}
            missing, unknown = len(cats), len(cats) + 1
            is_missing = _is_missing(values)
            codes[:, slot] = [missing if m else lookup.get(_python_value(v), unknown)
                              for v, m in zip(values, is_missing)]
        return codes

    def to_dict(self):
        return {"categorical": self.categorical.tolist(), "categories": self.categories}

    @classmethod
    def from_dict(cls, state):
        return cls(np.asarray(state["categorical"], dtype=bool), list(state["categories"]))


# ---------------------------------------------------------- numeric statistics
def weighted_quantile(x, w, q):
    """The ``q``-quantile of ``x`` under weights ``w`` (NaN and weight-0 rows ignored)."""
    keep = ~np.isnan(x) & (w > 0)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return 0.0
    order = np.argsort(x, kind="stable")
    x, cw = x[order], np.cumsum(w[order])
    return float(x[min(np.searchsorted(cw, q * cw[-1], side="left"), x.size - 1)])


def _sparse_columns(X):
    """Per column of a sparse matrix: (stored values, their rows)."""
    X = X.tocsc()
    for j in range(X.shape[1]):
        lo, hi = X.indptr[j], X.indptr[j + 1]
        yield X.data[lo:hi].astype(np.float64), X.indices[lo:hi]


def _dense_columns(X):
    X = np.asarray(X)
    for j in range(X.shape[1]):
        yield X[:, j].astype(np.float64), None


def numeric_statistics(X, weights, scaling, missing):
    """Per numeric column: the fill value for NaN (the weighted median), which
    columns get an indicator (NaN in a row of positive weight), and the
    scaling's shift and scale (never 0).

    Sparse X is read a column at a time (stored values plus the weight of its
    implicit zeros), never densified whole.
    """
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    fill, shift, scale = np.zeros(d), np.zeros(d), np.ones(d)
    nan_cols = np.zeros(d, dtype=bool)
    sparse = hasattr(X, "tocsc")
    for j, (col, rows) in enumerate(_sparse_columns(X) if sparse else _dense_columns(X)):
        cw = w if rows is None else w[rows]
        if rows is not None:  # the implicit zeros as one value with their weight
            col, cw = np.append(col, 0.0), np.append(cw, total - cw.sum())
        nan = np.isnan(col)
        nan_cols[j] = bool(np.any(nan & (cw > 0)))
        fill[j] = weighted_quantile(col, cw, 0.5)
        filled = np.where(nan, fill[j], col)
        if scaling == "standard":
            mean = np.average(filled, weights=cw)
            std = np.sqrt(np.average((filled - mean) ** 2, weights=cw))
            shift[j], scale[j] = mean, (std if std > 0 else 1.0)
        elif scaling == "robust":
            q25, q75 = (weighted_quantile(filled, cw, q) for q in (0.25, 0.75))
            spread = q75 - q25
            if spread <= 0:  # more than half the rows share a value: their spread around it
                spread = np.sqrt(np.average((filled - fill[j]) ** 2, weights=cw))
            shift[j], scale[j] = fill[j], (spread if spread > 0 else 1.0)
    indicator = nan_cols if missing == "indicator" else np.zeros(d, dtype=bool)
    return {"fill": fill, "shift": shift, "scale": scale, "indicator": indicator}
