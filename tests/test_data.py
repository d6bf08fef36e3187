"""Input types: pandas (incl. nullable dtypes), polars, sparse by batch, memmaps."""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import polars as pl
import torch
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from skmlp import MLPTorchClassifier, MLPTorchRegressor

rng = np.random.RandomState(0)
X_NUM = rng.randn(60, 3)
Y_BIN = (X_NUM[:, 0] + 0.3 * X_NUM[:, 1] > 0).astype(int)


def clf(**kw):
    return MLPTorchClassifier((5,), max_iter=3, random_state=0, **kw)


def frame(nullable=False):
    """float, int and bool columns; nullable extension dtypes on request."""
    a, b, c = X_NUM[:, 0], np.round(X_NUM[:, 1] * 3).astype(np.int64), X_NUM[:, 2] > 0
    if nullable:
        return pd.DataFrame({"a": pd.array(a, dtype="Float64"), "b": pd.array(b, dtype="Int64"),
                             "c": pd.array(c, dtype="boolean")})
    return pd.DataFrame({"a": a, "b": b, "c": c})


def as_numpy(df):
    return df.to_numpy(dtype=np.float64)


@pytest.mark.parametrize("nullable", [False, True])
def test_pandas_numeric_and_nullable_columns_match_numpy(nullable):
    df = frame(nullable)
    before = df.copy()
    ref = clf().fit(as_numpy(frame()), Y_BIN).predict_proba(as_numpy(frame()))
    est = clf().fit(df, pd.Series(Y_BIN))
    assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    assert_allclose(est.predict_proba(df), ref)
    pd.testing.assert_frame_equal(df, before)  # input untouched


def test_nullable_missing_value_is_rejected():
    df = frame(nullable=True)
    df.loc[3, "b"] = pd.NA
    with pytest.raises(ValueError, match="NaN"):
        clf().fit(df, Y_BIN)


def test_feature_name_checks_at_predict():
    est = clf().fit(frame(), Y_BIN)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(as_numpy(frame()))
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame().rename(columns={"a": "z"}))
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame()[["b", "a", "c"]])
    plain = clf().fit(as_numpy(frame()), Y_BIN)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(frame())


@pytest.mark.parametrize(
    "y, expected_classes",
    [
        (pd.Series(np.where(Y_BIN, "yes", "no")), ["no", "yes"]),
        (pd.Series(np.where(Y_BIN, "yes", "no"), dtype="category"), ["no", "yes"]),
        (pd.Series(Y_BIN.astype(bool)), [False, True]),
        (pd.Series(np.where(Y_BIN, "yes", "no"), dtype="string"), ["no", "yes"]),
    ],
    ids=["str", "category", "bool", "string"],
)
def test_pandas_targets(y, expected_classes):
    est = clf().fit(frame(), y)
    assert list(est.classes_) == expected_classes
    pred = est.predict(frame())
    assert set(pred) <= set(expected_classes)
    ref = clf().fit(frame(), Y_BIN)
    assert_allclose(est.predict_proba(frame()), ref.predict_proba(frame()))


def test_pandas_regression_targets():
    y = pd.Series(X_NUM[:, 0] * 2.0)
    reg = MLPTorchRegressor((5,), max_iter=3, random_state=0).fit(frame(), y)
    assert reg.predict(frame()).shape == (60,)
    Y2 = pd.DataFrame({"u": X_NUM[:, 0], "v": X_NUM[:, 1]})
    reg2 = MLPTorchRegressor((5,), max_iter=3, random_state=0).fit(frame(), Y2)
    assert reg2.predict(frame()).shape == (60, 2)


def test_polars_dataframe_matches_pandas():
    df = frame()
    pdf = pl.from_pandas(df)
    est = clf().fit(pdf, pl.Series(Y_BIN))
    assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    assert_allclose(est.predict_proba(pdf), clf().fit(df, Y_BIN).predict_proba(df))
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(pdf.rename({"a": "z"}))


def test_polars_names_read_by_skmlp_where_scikit_learn_cannot(monkeypatch):
    # scikit-learn < 1.9 reads column names through the dataframe interchange
    # protocol, which polars 2 dropped: skmlp then reads them itself. Simulated
    # here on any version by hiding polars frames from scikit-learn's reader.
    from sklearn.utils import validation

    real = validation._get_feature_names
    monkeypatch.setattr(validation, "_get_feature_names",
                        lambda X: None if isinstance(X, pl.DataFrame) else real(X))
    pdf = pl.from_pandas(frame())
    est = clf().fit(pdf, Y_BIN)
    assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        est.predict(pdf)
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(pdf.select(["b", "a", "c"]))
    with pytest.warns(UserWarning, match="fitted without feature names"):
        clf().fit(as_numpy(frame()), Y_BIN).predict(pdf)
    table = pdf.with_columns(s=pl.Series(["u", "v"] * 30))  # categorical: the table path
    tab = clf().fit(table, Y_BIN)
    assert_array_equal(tab.feature_names_in_, ["a", "b", "c", "s"])
    with pytest.raises(ValueError, match="feature names should match"):
        tab.predict(table.rename({"s": "t"}))
    monkeypatch.undo()
    assert_allclose(tab.predict_proba(table), clf().fit(table, Y_BIN).predict_proba(table))


def test_float32_polars_and_pandas_keep_float32():
    df = frame().astype("float32")
    for X in (df, pl.from_pandas(df)):
        est = clf().fit(X, Y_BIN)
        assert next(est.module_.parameters()).dtype == torch.float32
        assert est.predict_proba(X).dtype == np.float32
    mixed = pl.from_pandas(frame().astype({"a": "float32"}))  # float32 + float64: float64
    assert clf().fit(mixed, Y_BIN).predict_proba(mixed).dtype == np.float64


@pytest.mark.parametrize(
    "column, dtype_text",
    [
        (pd.Series(list("ab") * 30, dtype=object), "'s' (e.g. 'a') hold text"),
        (pd.Series(list("ab") * 30, dtype="category"), "'s' (category)"),
        (pd.Series(list("ab") * 30, dtype="string"), "'s' (string)"),
        (pd.Series([1, 2] * 30, dtype="category"), "'s' (category)"),
    ],
    ids=["object", "category", "string", "int-category"],
)
def test_non_numeric_pandas_columns_without_categorical_features(column, dtype_text):
    """categorical_features=None: a text column is an error that names the parameter;
    the default ("from_dtype") takes it as a categorical column."""
    df = frame().assign(s=column)
    for method in ("fit", "partial_fit"):
        with pytest.raises(ValueError, match="categorical_features") as info:
            if method == "fit":
                clf(categorical_features=None).fit(df, Y_BIN)
            else:
                clf(categorical_features=None).partial_fit(df, Y_BIN, classes=[0, 1])
        assert dtype_text in str(info.value)
    est = clf().fit(df, Y_BIN)
    assert_array_equal(est.is_categorical_, [False, False, False, True])
    fitted = clf().fit(frame(), Y_BIN)
    with pytest.raises(ValueError, match="categorical_features"):
        fitted.predict(frame().assign(a=column))  # same names, non-numeric "a"


def test_datetime_columns_are_neither_numeric_nor_categorical():
    df = frame().assign(s=pd.Series(pd.date_range("2020", periods=60)))
    with pytest.raises(ValueError, match=r"'s' \(datetime64.*categorical_features"):
        clf().fit(df, Y_BIN)


def test_non_numeric_polars_columns_are_categorical_by_default():
    pdf = pl.from_pandas(frame()).with_columns(s=pl.Series(["a", "b"] * 30))
    with pytest.raises(ValueError, match=r"'s' \(String\).*categorical_features"):
        clf(categorical_features=None).fit(pdf, Y_BIN)
    cat = pl.from_pandas(frame()).with_columns(s=pl.Series(["a", "b"] * 30, dtype=pl.Categorical))
    with pytest.raises(ValueError, match="categorical_features"):
        clf(categorical_features=None).fit(cat, Y_BIN)
    for X in (pdf, cat):
        assert_array_equal(clf().fit(X, Y_BIN).is_categorical_, [False, False, False, True])


def test_object_column_of_numbers():
    """An object column is categorical by default (as the SPEC says); with
    categorical_features=None its numbers are used as numbers."""
    df = frame().astype({"b": object})
    assert_allclose(clf(categorical_features=None).fit(df, Y_BIN).predict_proba(df),
                    clf().fit(frame(), Y_BIN).predict_proba(frame()))
    assert_array_equal(clf().fit(df, Y_BIN).is_categorical_, [False, True, False])


@pytest.mark.parametrize(
    "to_sparse",
    [sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.csc_array, sp.coo_array],
)
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_sparse_inputs_match_dense(to_sparse, optimizer):
    X = np.where(np.abs(X_NUM) > 0.8, X_NUM, 0.0)
    kw = dict(batch_size=16, optimizer=optimizer)
    dense = clf(**kw).fit(X, Y_BIN)
    est = clf(**kw).fit(to_sparse(X), Y_BIN)
    assert_allclose(est.predict_proba(to_sparse(X)), dense.predict_proba(X), atol=1e-10)
    assert_allclose(est.predict_proba(X), dense.predict_proba(X), atol=1e-10)


def _sparse(n, d, to_sparse=sp.csr_matrix):
    """~2.5 nonzeros per row (sp.random would permute all n * d cells: slow)."""
    r = np.random.RandomState(1)
    nnz = n * 5 // 2
    X = sp.csr_matrix((r.rand(nnz).astype(np.float32),
                       (r.randint(n, size=nnz), r.randint(d, size=nnz))), shape=(n, d))
    return to_sparse(X), np.arange(n) % 2


SPARSE_FITS = [
    dict(batch_size=50, early_stopping=True, validation_fraction=0.25),
    dict(optimizer="lbfgs"),
]


def _fit_predict(X, y, kw):
    est = MLPTorchClassifier((2,), max_iter=1, random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est.predict_proba(X)


@pytest.mark.parametrize("kw", SPARSE_FITS, ids=["adam-early-stopping", "lbfgs"])
def test_sparse_rows_are_densified_in_batches(monkeypatch, kw):
    from skmlp._data import PREDICT_BATCH_ELEMENTS, SparseRows

    shapes = []
    for name in ("take", "slice"):
        original = getattr(SparseRows, name)

        def spy(self, *args, _original=original):
            out = _original(self, *args)
            shapes.append(tuple(out[0].shape))
            return out

        monkeypatch.setattr(SparseRows, name, spy)
    n, d = 3000, 2000
    X, y = _sparse(n, d)
    _fit_predict(X, y, kw)
    assert shapes, "sparse input should go through SparseRows"
    assert max(r for r, _ in shapes) * d <= max(PREDICT_BATCH_ELEMENTS, 50 * d) < n * d


@pytest.mark.parametrize("to_sparse", [sp.csr_matrix, sp.csr_array])
def test_sparse_never_allocates_dense_x(to_sparse):
    # Dense, X would take 200 MB (float32); fit (with an early-stopping split)
    # and predict may hold only a batch of rows. (Not 200k x 20k: every dense
    # element is still touched once per epoch, so that costs minutes, not a
    # fast test.)
    n, d = 2000, 25_000
    kw = SPARSE_FITS[0]
    _fit_predict(*_sparse(50, 100, to_sparse), kw)  # lazy torch imports, untraced
    X, y = _sparse(n, d, to_sparse)
    tracemalloc.start()
    try:
        proba = _fit_predict(X, y, kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert proba.shape == (n, 2) and proba.dtype == np.float32
    assert peak < n * d * 4 / 10, f"peak {peak / 1e6:.0f} MB"


def test_read_only_memmap(tmp_path):
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X_NUM.shape)
    mm[:] = X_NUM
    mm.flush()
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=X_NUM.shape)
    assert not ro.flags.writeable
    for est in (clf(), MLPTorchRegressor((5,), max_iter=3, random_state=0)):
        target = Y_BIN if isinstance(est, MLPTorchClassifier) else X_NUM[:, 0]
        ref = type(est)(**est.get_params()).fit(X_NUM, target).predict(X_NUM)
        assert_allclose(est.fit(ro, target).predict(ro), ref)
        est.partial_fit(ro, target)
    assert_array_equal(np.fromfile(path, dtype=np.float64).reshape(X_NUM.shape), X_NUM)
