"""The table layer: the only module that knows pandas and polars dtypes.

It decides which columns are categorical (``categorical_features``, named and
defaulted as in ``HistGradientBoostingClassifier``), learns each categorical
column's categories and each numeric column's statistics (all weighted by
``sample_weight``: a row of weight zero contributes nothing, not even a
category), and turns a table into the network's two inputs:

* ``x_num``: the numeric columns as floats, NaN kept where ``missing=
  "indicator"`` allows it (the network's input layer fills and flags them);
* ``x_cat``: one integer code per categorical column: ``0 .. k-1`` for the
  ``k`` categories seen in ``fit`` or declared in ``categories`` (sorted by
  value), ``k`` for a missing value (NaN, None, ``pd.NA``), ``k + 1`` for any
  other value ("unknown").

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


def _label(X, j):
    names = column_names(X)
    return repr(names[j]) if names is not None else f"at index {j}"


def declared_categories(categories, names, mask):
    """The ``categories`` parameter as {column index: sorted list of values}.

    ``names``: the input's column names, or None. Keys are column names
    (input with names) or indices; each must be a
    categorical column under ``mask``; each value list holds distinct,
    non-missing values (a missing value always has a code of its own).
    """
    if isinstance(categories, str):  # "auto": all learned from the data
        return {}
    n = len(mask)
    declared = {}
    for key, values in categories.items():
        if isinstance(key, str):
            if names is None:
                raise ValueError(f"categories names column {key!r}, but X has no column "
                                 "names: pass a DataFrame, or key the dict by column index.")
            if key not in names:
                raise ValueError(f"categories names column {key!r}, which X does not "
                                 f"have. X's columns are {names}.")
            j = names.index(key)
        elif isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_)):
            if not -n <= key < n:
                raise ValueError(f"categories has column index {key} outside the {n} "
                                 "columns of X.")
            j = int(key) % n
        else:
            raise TypeError(f"categories keys are column names or indices; got {key!r}.")
        if not mask[j]:
            raise ValueError(f"categories names column {key!r}, which is not categorical: "
                             "add it to categorical_features (or give it a category or "
                             "string dtype).")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"categories[{key!r}] must be a list of categories; got "
                            f"{values!r}.")
        values = np.asarray(list(values), dtype=object)
        if values.size == 0:
            raise ValueError(f"categories[{key!r}] is empty: declare at least one category "
                             "or leave the column out to learn its categories.")
        if _is_missing(values).any():
            raise ValueError(f"categories[{key!r}] holds a missing value: missing values "
                             "always have a code of their own; remove it from the list.")
        values = [_python_value(v) for v in values]
        if len(set(values)) != len(values):
            raise ValueError(f"categories[{key!r}] lists a category twice: give each once.")
        if j in declared:
            raise ValueError(f"categories names column {key!r} twice (by name and index).")
        declared[j] = _sorted(values)
    return declared


def _codes(X, j, cats):
    """Column ``j``'s codes: its category's index in ``cats``, ``len(cats)``
    when missing, ``len(cats) + 1`` when not in ``cats`` (a lookup per value)."""
    values = _column(X, j)
    lookup = {v: i for i, v in enumerate(cats)}
    missing, unknown = len(cats), len(cats) + 1
    return [missing if m else lookup.get(_python_value(v), unknown)
            for v, m in zip(values, _is_missing(values))]


def _pandas_codes(X, j, cats):
    """``_codes`` for a pandas column, in pandas' hash tables: a category dtype
    maps its own categories once and then its integer codes; other columns
    look their values up in one ``get_indexer`` (missing as pandas' ``isna``,
    which is what ``_column`` turns into None)."""
    import pandas as pd

    col = X.iloc[:, j]
    missing, unknown = len(cats), len(cats) + 1
    index = pd.Index(cats, dtype=object)
    if isinstance(col.dtype, pd.CategoricalDtype):
        per_category = index.get_indexer(col.cat.categories.astype(object))
        per_category = np.append(np.where(per_category < 0, unknown, per_category), missing)
        return per_category[col.cat.codes.to_numpy()]  # code -1 (missing): the last entry
    found = index.get_indexer(col.to_numpy(dtype=object))
    found = np.where(found < 0, unknown, found)
    found[col.isna().to_numpy()] = missing
    return found


def categories_array(categories):
    """One column's categories as ``categories_`` shows them (as
    ``OneHotEncoder.categories_``): a numeric array when they are all numbers,
    else an object array; sorted as the codes are."""
    if categories and all(isinstance(v, numbers.Number) for v in categories):
        return np.asarray(categories)
    out = np.empty(len(categories), dtype=object)
    out[:] = categories
    return out


@dataclass
class ColumnLayout:
    """What was learned about the columns in ``fit`` (plain data)."""

    categorical: np.ndarray  # bool mask over the columns as given
    categories: list = field(default_factory=list)  # per categorical column, sorted values
    missing: str = "error"  # NaN in numeric columns: an error, or filled ("indicator")

    @property
    def cardinalities(self):
        """Codes per categorical column: the categories, then missing and unknown."""
        return tuple(len(c) + SLOTS for c in self.categories)

    def fit_categories(self, X, weights, declared=None):
        """Learn the categories of every categorical column (weight-0 rows
        excluded), except those ``declared`` ({column index: categories}, from
        ``declared_categories``) gives."""
        declared = declared or {}
        used = None if weights is None else np.asarray(weights) > 0
        self.categories = []
        for j in np.flatnonzero(self.categorical):
            values = _column(X, j)
            if used is not None:
                values = values[used]
            present = values[~_is_missing(values)]
            seen = {_python_value(v) for v in present.tolist()}
            if j in declared:
                cats = declared[j]
                if seen and seen.isdisjoint(cats):
                    raise ValueError(
                        f"None of the values of categorical column {_label(X, j)} is among "
                        f"the categories declared for it (e.g. {_sorted(seen)[0]!r} is not in "
                        f"{cats[:5]!r}): check their type (1 is not '1') and spelling.")
            else:
                cats = _sorted(seen)
            self.categories.append(cats)
        return self

    def encode(self, X):
        """The integer codes ``(n, n_categorical)`` of X's categorical columns."""
        index = np.flatnonzero(self.categorical)
        n = X.shape[0]
        codes = np.empty((n, len(index)), dtype=np.int64)
        pandas = _library(X) == "pandas" and hasattr(X, "iloc")
        for slot, (j, cats) in enumerate(zip(index, self.categories)):
            codes[:, slot] = (_pandas_codes if pandas else _codes)(X, j, cats)
        return codes

    def to_dict(self):
        return {"categorical": self.categorical.tolist(), "categories": self.categories,
                "missing": self.missing}

    @classmethod
    def from_dict(cls, state):
        return cls(np.asarray(state["categorical"], dtype=bool), list(state["categories"]),
                   state.get("missing", "error"))


# ---------------------------------------------------------- numeric statistics
def weighted_quantile(x, w, q):
    """The ``q``-quantile of ``x`` under weights ``w`` (NaN and weight-0 rows
    ignored): the smallest value whose cumulative weight reaches ``q`` times
    the total. ``q`` may be an array (one sort for all of them)."""
    keep = ~np.isnan(x) & (w > 0)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return np.zeros(np.shape(q)) if np.ndim(q) else 0.0
    order = np.argsort(x, kind="stable")
    x, cw = x[order], np.cumsum(w[order])
    at = np.minimum(np.searchsorted(cw, np.asarray(q) * cw[-1], side="left"), x.size - 1)
    return x[at].astype(np.float64) if np.ndim(q) else float(x[at])


def bin_edges(x, w, bins):
    """Edges of ``bins`` quantile bins of ``x`` under weights ``w``: the
    distinct weighted quantiles at ``0, 1/bins, ..., 1`` (fewer where values
    repeat; one value for a constant column)."""
    return np.unique(weighted_quantile(x, w, np.linspace(0.0, 1.0, bins + 1)))


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


def numeric_statistics(X, weights, scaling, missing, bins=0):
    """Per numeric column: the fill value for NaN (the weighted median), which
    columns get an indicator (NaN in a row of positive weight), the
    scaling's shift and scale (never 0), and with ``bins`` the edges of that
    many quantile bins of the filled column (``bin_edges``; else ``()``).

    Sparse X is read a column at a time (stored values plus the weight of its
    implicit zeros), never densified whole.
    """
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    fill, shift, scale = np.zeros(d), np.zeros(d), np.ones(d)
    nan_cols = np.zeros(d, dtype=bool)
    edges = []
    sparse = hasattr(X, "tocsc")
    for j, (col, rows) in enumerate(_sparse_columns(X) if sparse else _dense_columns(X)):
        cw = w if rows is None else w[rows]
        if rows is not None and rows.size < n:  # the implicit zeros: one value, their weight
            col, cw = np.append(col, 0.0), np.append(cw, max(total - cw.sum(), 0.0))
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
        if bins:
            edges.append(bin_edges(filled, cw, bins))
    indicator = nan_cols if missing == "indicator" else np.zeros(d, dtype=bool)
    return {"fill": fill, "shift": shift, "scale": scale, "indicator": indicator,
            "bins": edges}
