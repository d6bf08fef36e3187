"""Data conversion: inputs -> validated arrays -> tensors on the device.

Dense training input becomes one tensor (no copy when the array already has the
compute dtype and is writable). Sparse input stays sparse and is densified one
batch of rows at a time, in training and in prediction. The loops see every
kind through one ``_Rows`` interface (``as_rows``).
"""

import sys
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_array, check_X_y
from sklearn.utils import validation as sk_validation
from sklearn.utils.validation import validate_data

from ._columns import _library, column_names, is_dataframe, numeric_part
from ._training import tensor_abs_max

PREDICT_BATCH_ELEMENTS = 1 << 21  # ~16 MB of float64 input per predict batch
SPARSE_CHUNK_ELEMENTS = 1 << 20  # sparse rows are densified ~8 MB at a time in full passes


NUMERIC_HINT = (
    "skmlp encodes categorical columns itself: pass a pandas or polars DataFrame whose "
    "text columns have a category, string or object dtype (categorical_features="
    "'from_dtype', the default), or name the columns in categorical_features. Other "
    "columns must be numeric (and the regressor's target too)."
)
DATE_HINT = ("skmlp does not encode dates and durations itself: turn each into numbers "
             "(e.g. df[col].dt.year, df[col].dt.dayofweek, or (df[col] - df[col].min()).dt.days) "
             "or into a category (df[col].astype(str), or list it in categorical_features).")
NAN_HINT = ("for missing values in X's numeric columns set missing=\"indicator\" (median fill "
            "plus one 0/1 input per column) or impute them.")
INF_HINT = "replace or clip infinite values in X (e.g. np.nan_to_num)"
Y_HINT = ("drop the rows whose target is missing or infinite, e.g. keep = np.isfinite(y) "
          "(for labels: keep = pd.notna(y)); X, y = X[keep], y[keep].")


def _bad_value(values):
    """"NaN" or "infinity" for the first missing (None, NaN, NA, NaT) or
    infinite element of the object array ``values``, else None."""
    pd = sys.modules.get("pandas")  # loaded whenever y came from pandas
    if pd is not None:
        if pd.isna(values).any():
            return "NaN"
    else:
        for v in values.ravel():
            if v is None or type(v).__name__ in ("NAType", "NaTType") or (
                    isinstance(v, (float, np.floating)) and v != v):
                return "NaN"
    if ((values == np.inf) | (values == -np.inf)).any():
        return "infinity"
    return None


def check_target_values(y):
    """A ``ValueError`` saying what to do when ``y`` holds a missing value
    (None, NaN, ``pd.NA``, a polars null) or infinity where scikit-learn's
    finiteness check does not look: in object, string and categorical targets
    (numpy object arrays, pandas and polars Series or frames). Numeric
    targets are left to that check, which says the same."""
    if sp.issparse(y) or isinstance(y, (str, bytes)) or y is None:
        return
    if _library(y) in ("pandas", "polars"):
        values = y.to_numpy()
    elif isinstance(y, np.ndarray):
        values = y
    elif isinstance(y, (list, tuple)):
        values = np.asarray(y, dtype=object)
    else:
        return  # other array-likes: scikit-learn's validation converts and checks them
    if values.dtype != object or values.size == 0:
        return
    bad = _bad_value(values)
    if bad is not None:
        raise ValueError(f"Input y contains {bad}.\n{Y_HINT}")


def _missing_hint(text, allow_nan):
    """What to do about NaN / inf, for the input (X or y) and the settings at hand."""
    if "Input y contains" in text or "y contains" in text.split(".")[0]:
        return Y_HINT
    if "infinity" in text:
        if allow_nan:
            return INF_HINT + ', or set them to NaN, which missing="indicator" fills.'
        return INF_HINT + '; for missing values (NaN) set missing="indicator".'
    return NAN_HINT


# (substrings of scikit-learn's message, what to do): the first match is appended.
HINTS = (
    (("Complex data",), "skmlp needs real numbers in X and y: pass the real and imaginary parts "
     "as separate features, e.g. np.column_stack([X.real, X.imag])."),
    (("could not convert", "Unable to convert", "dtype='numeric'",
      "must be a string or a real number", "must be a string or a number", "Cannot cast"),
     NUMERIC_HINT),
    (("contains infinity", "contains NaN"), _missing_hint),
    # scikit-learn 1.9 says "dim <= 2 is required", 1.6 "expected <= 2"
    (("dim <= 2 is required", "expected <= 2"), "X must be 2-d (n_samples, n_features) and y "
     "1-d or 2-d: reshape, e.g. X.reshape(len(X), -1)."),
    (("features, but",), "Pass the same columns, in the same order, as during fit."),
)


def with_hint(exc, allow_nan=False):
    """``exc`` (ValueError/TypeError) with a line saying what to do, if one fits."""
    text = str(exc)
    for keys, hint in HINTS:
        if any(key in text for key in keys):
            if keys[0] == "Complex data":
                text = "Complex data not supported."  # scikit-learn's text prints the array
            if callable(hint):
                hint = hint(text, allow_nan)
            return type(exc)(f"{text}\n{hint}")
    return exc


def check_frame(X):
    """X itself, or a clear error for inputs that are no table yet (a polars
    LazyFrame must be collected first)."""
    if type(X).__name__ == "LazyFrame" and type(X).__module__.split(".")[0] == "polars":
        raise TypeError("X is a polars LazyFrame, which holds a query, not data: call "
                        "X.collect() and pass the DataFrame.")
    return X


def _is_date_dtype(dt):
    text = str(dt).lower()
    return any(k in text for k in ("datetime", "timedelta", "period", "date", "duration",
                                   "time"))


def _non_numeric_error(X, bad):
    shown = ", ".join(bad[:10]) + (", ..." if len(bad) > 10 else "")
    dates = [b for b in bad if _is_date_dtype(b.rsplit("(", 1)[-1])]
    hint = DATE_HINT if dates and len(dates) == len(bad) else (
        NUMERIC_HINT + (" " + DATE_HINT if dates else ""))
    return ValueError(f"X has {len(bad)} non-numeric column(s): {shown}. {hint}")


def _text_in_numeric_columns(X):
    """``'name' (e.g. 'value')`` for each pandas / polars column that numpy cannot
    turn into floats (text in a column that is not categorical)."""
    module = type(X).__module__.split(".")[0]
    found = []
    if module == "pandas" and hasattr(X, "columns"):
        for name in X.columns:
            col = X[name]
            if col.dtype != object:
                continue
            for value in col.to_numpy(dtype=object):
                try:
                    float(value)
                except (TypeError, ValueError):
                    if value is not None:
                        found.append(f"{name!r} (e.g. {value!r})")
                        break
    return found


def non_numeric_columns(X):
    """Names of the non-numeric, non-bool columns of a pandas or polars DataFrame.

    pandas ``object`` columns are left to ``validate_data``: they may hold
    numbers, which scikit-learn converts (text in them fails there, with the
    same hint).
    """
    module = type(X).__module__.split(".")[0]
    if module == "pandas" and hasattr(X, "columns"):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        return [f"{name!r} ({dt})" for name, dt in X.dtypes.items()
                if not (is_numeric_dtype(dt) or is_bool_dtype(dt) or dt == object)]
    if module == "polars" and hasattr(X, "schema"):
        return [f"{name!r} ({dt})" for name, dt in X.schema.items()
                if not (dt.is_numeric() or str(dt) == "Boolean")]
    return []


def _all_float32_polars(X):
    """A polars DataFrame of Float32 columns (scikit-learn would make it float64)."""
    if type(X).__module__.split(".")[0] != "polars" or not hasattr(X, "schema"):
        return False
    return len(X.schema) > 0 and all(str(dt) == "Float32" for dt in X.schema.values())


def n_columns(X):
    """The number of columns of a 2-d input (0 when it is not 2-d: validation says so)."""
    shape = getattr(X, "shape", None)
    if shape is None:
        try:
            shape = np.shape(X)
        except (ValueError, TypeError):  # ragged lists, objects that refuse numpy
            return 0
    return int(shape[1]) if len(shape) == 2 else 0


def _hinted(call, X=None, allow_nan=False, fitted=False):
    try:
        return call()
    except (ValueError, TypeError) as exc:
        text = _text_in_numeric_columns(X) if X is not None else []
        if text and any(k in str(exc) for k in ("could not convert", "Unable to convert")):
            where = ("numeric in fit: pass numbers there, as in fit (to encode it as "
                     "categories, refit with it in categorical_features or with a category "
                     "or string dtype)" if fitted else
                     "not categorical. " + NUMERIC_HINT + " Or convert it with "
                     "pd.to_numeric(..., errors='coerce')")
            raise type(exc)(f"X's column(s) {', '.join(text)} hold text, but the column is "
                            f"{where}.") from exc
        hinted = with_hint(exc, allow_nan)
        if hinted is exc:
            raise
        raise hinted from exc


def canonical_sparse(X):
    """Sparse X with duplicate entries summed (on a copy; X is never modified):
    statistics read the stored values, which must each be one cell."""
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _names_sklearn_cannot_read(X):
    """The column names of a polars DataFrame when this scikit-learn does not
    read them, else None: scikit-learn before 1.9 reads them through the
    dataframe interchange protocol, which polars 2 dropped."""
    # scikit-learn's own reader (private; in 1.6 - 1.9), looked up at each call
    reader = getattr(sk_validation, "_get_feature_names", None)
    if _library(X) != "polars" or not is_dataframe(X) or reader is None:
        return None
    names = column_names(X)
    if not names:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polars 1 deprecates the interchange protocol
        read = reader(X)
    return None if read is not None else names


def validate_with_names(estimator, X, y="no_validation", *, reset, **kwargs):
    """``validate_data``, with polars column names handled here when
    scikit-learn cannot read them: set as ``feature_names_in_`` in ``fit``,
    compared with them afterwards, as scikit-learn does for pandas."""
    names = _names_sklearn_cannot_read(X)
    if names is None:
        return validate_data(estimator, X, y, reset=reset, **kwargs)
    fitted = getattr(estimator, "feature_names_in_", None)
    if not reset and fitted is not None and list(fitted) != names:
        raise ValueError(f"The feature names should match those that were passed during fit: "
                         f"X has columns {names}, the estimator was fitted on "
                         f"{list(fitted)}. Pass the same columns, in the same order.")
    with warnings.catch_warnings():  # the names are checked here
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        out = validate_data(estimator, X, y, reset=reset, **kwargs)
    if reset:
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    elif fitted is None:
        warnings.warn(f"X has feature names, but {type(estimator).__name__} was fitted "
                      "without feature names", UserWarning)
    return out


def check_X(estimator, X, *, reset, y="no_validation", allow_nan=False, **kwargs):
    """``validate_data`` with floats kept as they are, duplicate sparse entries
    summed, and clearer errors."""
    bad = non_numeric_columns(X)
    if bad:
        raise _non_numeric_error(X, bad)
    out = _validated(estimator, X, reset=reset, y=y, allow_nan=allow_nan, **kwargs)
    if isinstance(out, tuple):
        return canonical_sparse(out[0]), out[1]
    return canonical_sparse(out)


def _validated(estimator, X, *, reset, y, allow_nan, **kwargs):
    return _hinted(lambda: validate_with_names(
        estimator,
        X,
        y,
        reset=reset,
        accept_sparse=["csr", "csc"],
        dtype=np.float32 if _all_float32_polars(X) else (np.float64, np.float32),
        ensure_all_finite="allow-nan" if allow_nan else True,
        **kwargs,
    ), X, allow_nan, fitted=not reset)


def check_table(estimator, X, mask, *, reset, y="no_validation", allow_nan=False, **kwargs):
    """For input with categorical columns (``mask``): names and counts checked
    on ``X`` as given, then its numeric columns (and y) validated as
    ``check_X`` would. Returns ``(X_num, y)`` (y None when not given)."""
    validate_with_names(estimator, X, reset=reset, skip_check_array=True)
    numeric = numeric_part(X, mask)
    bad = non_numeric_columns(numeric)
    if bad:
        raise _non_numeric_error(numeric, bad)
    options = dict(dtype=np.float32 if _all_float32_polars(numeric) else (np.float64, np.float32),
                   ensure_all_finite="allow-nan" if allow_nan else True,
                   ensure_min_features=0)
    if n_columns(numeric) == 0:  # every column is categorical
        numeric = np.empty((X.shape[0], 0), dtype=np.float64)
    if isinstance(y, str) and y == "no_validation":
        return _hinted(lambda: check_array(numeric, input_name="X", **options), numeric,
                       allow_nan, fitted=not reset), None
    return _hinted(lambda: check_X_y(numeric, y, **options, **kwargs), numeric, allow_nan,
                   fitted=not reset)


# dtype="auto" computes in float32 from this many training rows on (the Tabular
# default: 0.68x the fit time for 1.004x the error and 0.999x the log loss on the
# tuning tables; below it, as None, so that small fits stay exact enough for
# scikit-learn's sample-weight equivalence checks).
AUTO_FLOAT32_ROWS = 1000


def _fits_float32(X, chunk=65536):
    """Whether every value of ``X`` (dense or sparse) lies in float32's range
    (NaN ignored); read ``chunk`` rows at a time, never copied whole."""
    data = np.asarray(X.data if hasattr(X, "tocsr") else X)
    if data.dtype == np.float32 or not np.issubdtype(data.dtype, np.floating):
        return True
    top = float(np.finfo(np.float32).max)
    return not any(np.any(np.abs(data[i:i + chunk]) > top) for i in range(0, len(data), chunk))


def compute_dtype(param, X, n_rows=None, fits_float32=None):
    """The compute dtype name: ``param`` if set, else float32 only for float32
    X; ``"auto"``: float32 from ``AUTO_FLOAT32_ROWS`` training rows on
    (``n_rows``, default ``X``'s) unless a value of X lies beyond float32's
    range (about 3.4e38; it would become inf), else as None. ``n_rows`` and
    ``fits_float32`` describe all training rows when ``X`` is a sample of
    them (Dask)."""
    if param == "auto":
        rows = X.shape[0] if n_rows is None else n_rows
        fits = _fits_float32(X) if fits_float32 is None else fits_float32
        if rows >= AUTO_FLOAT32_ROWS and fits:
            return "float32"
        return compute_dtype(None, X)
    if param is not None:
        return param
    return "float32" if X.dtype == np.float32 else "float64"


def resolve_device(device):
    """``torch.device`` for the ``device`` parameter; unavailable -> ValueError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise ValueError(
                f"device={device!r} is not available on this machine "
                f"({count} CUDA device(s) found). Use device='cpu' or 'auto', or "
                "install a CUDA build of torch (see the README)."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} is not available on this machine. Use device='cpu' or 'auto'."
        )
    return dev


def to_tensor(array, dtype, device):
    """A dense numpy array as a tensor of ``dtype`` on ``device``.

    No copy on the CPU when the array already has the dtype, is C-contiguous
    and writable (read-only arrays such as memmaps are copied: torch cannot
    wrap them). The tensor is only ever read.
    """
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    array = np.asarray(array, dtype=np_dtype)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C", copy=True)
    return torch.from_numpy(array).to(device=device)


class _Rows:
    """Rows of X for the training and predict loops, whatever X is.

    The loops only ever ask for ``slice(start, stop)`` (contiguous rows),
    ``take(idx)`` (a batch of rows by index), ``abs_max()`` (for the
    end-of-fit bound) and ``chunk_rows(limit)`` (how many rows one full-data
    chunk may hold); each input kind answers in its own way, so no loop tests
    what X is. A batch is the tuple of the network's inputs, ``(x_num,)`` or
    ``(x_num, x_cat)``: the loops call ``module(*batch)``.
    """

    shape = (0, 0)

    def chunk_rows(self, limit):
        return limit


class TensorRows(_Rows):
    """A dense tensor already on the device (training data, converted once)."""

    def __init__(self, X, dtype, device):
        self.X = to_tensor(X, dtype, device)
        self.shape = tuple(self.X.shape)

    def take(self, idx):
        return (self.X.index_select(0, idx),)

    def slice(self, start, stop):
        return (self.X[start:stop],)

    def abs_max(self):
        return tensor_abs_max(self.X)


class ArrayRows(_Rows):
    """A dense host array converted one batch at a time (predict: slices only)."""

    def __init__(self, X, dtype, device):
        self.X, self.dtype, self.device = X, dtype, device
        self.shape = X.shape

    def slice(self, start, stop):
        return (to_tensor(self.X[start:stop], self.dtype, self.device),)


class SparseRows(_Rows):
    """A scipy sparse matrix whose rows are densified one batch at a time."""

    def __init__(self, X, dtype, device):
        self.X = sp.csr_matrix(X)
        self.shape = self.X.shape
        self.dtype = dtype
        self.device = device

    def take(self, idx):
        rows = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx
        return (to_tensor(self.X[rows].toarray(), self.dtype, self.device),)

    def slice(self, start, stop):
        return (to_tensor(self.X[start:stop].toarray(), self.dtype, self.device),)

    def abs_max(self):
        # abs() first, then max(): scipy sums duplicate entries (on a copy) as
        # toarray() will, and sum |duplicates| >= |their sum| keeps it a bound.
        return float(abs(self.X).max()) if self.X.nnz else 0.0

    def chunk_rows(self, limit):
        # Densified chunks of about SPARSE_CHUNK_ELEMENTS values (~8 MB in float64).
        return max(1, min(limit, SPARSE_CHUNK_ELEMENTS // max(1, self.shape[1])))


class TableRows(_Rows):
    """Numeric rows (any kind above) with the categorical codes beside them."""

    def __init__(self, numeric, codes, device):
        self.numeric = numeric
        self.codes = to_tensor(codes, torch.int64, device)
        self.shape = numeric.shape

    def take(self, idx):
        return self.numeric.take(idx) + (self.codes.index_select(0, idx.to(self.codes.device)),)

    def slice(self, start, stop):
        return self.numeric.slice(start, stop) + (self.codes[start:stop],)

    def abs_max(self):
        return self.numeric.abs_max()

    def chunk_rows(self, limit):
        return self.numeric.chunk_rows(limit)


def as_rows(X, dtype, device, *, resident=True, codes=None):
    """X as a ``_Rows``: sparse stays sparse; dense X is converted once to the
    device (``resident``, for training) or a batch at a time (predict);
    ``codes`` (categorical columns' integer codes) travel beside it."""
    if sp.issparse(X):
        rows = SparseRows(X, dtype, device)
    else:
        rows = TensorRows(X, dtype, device) if resident else ArrayRows(X, dtype, device)
    return rows if codes is None else TableRows(rows, codes, device)


def batch_rows(widths):
    """Rows per predict batch: about ``PREDICT_BATCH_ELEMENTS`` values in the
    widest layer (input, hidden or output), so memory does not grow with n."""
    return max(1, PREDICT_BATCH_ELEMENTS // max(1, *widths))


def iter_batches(rows, step):
    """Yield a ``_Rows`` as tensors of at most ``step`` rows, in order."""
    n = rows.shape[0]
    for start in range(0, n, step):
        yield rows.slice(start, min(start + step, n))
