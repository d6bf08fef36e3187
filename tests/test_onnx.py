"""skmlp.to_onnx: onnxruntime reproduces predict_proba / predict."""

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from skmlp import (MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier,
                   TabularMLPRegressor, onnx_inputs, to_onnx)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.RandomState(0)
X = rng.randn(64, 5)
MAX_DEV = 1e-5

FITTED = {
    "binary": lambda: MLPTorchClassifier((8, 8), max_iter=5, random_state=0,
                                         batch_norm=True, dropout=0.1).fit(X, X[:, 0] > 0),
    "multiclass": lambda: MLPTorchClassifier((8,), max_iter=5, activation="tanh",
                                             random_state=0).fit(X, rng.randint(0, 4, 64)),
    "multilabel": lambda: MLPTorchClassifier((8,), max_iter=5, activation="gelu",
                                             random_state=0).fit(X, X[:, :3] > 0),
    "regression-1d": lambda: MLPTorchRegressor((8,), max_iter=5,
                                               random_state=0).fit(X, 3 * X[:, 0] + 5),
    "regression-2d": lambda: MLPTorchRegressor((8,), max_iter=5, activation="silu",
                                               random_state=0).fit(X, X[:, :2]),
    "poisson-float32": lambda: MLPTorchRegressor((8,), max_iter=5, loss="poisson", dtype="float32",
                                                 random_state=0).fit(X, rng.poisson(2, 64)),
    "ensemble-multiclass": lambda: MLPTorchClassifier((8,), max_iter=5, n_ensemble=3,
                                                      random_state=0).fit(X, rng.randint(0, 3, 64)),
    "table-options": lambda: MLPTorchRegressor(
        (8,), max_iter=5, random_state=0, missing="indicator", scaling="robust",
        numeric_embedding="periodic", target_scaling=True).fit(
            np.where(X > 1.5, np.nan, X), 100 * X[:, 0] + 5),
    "piecewise": lambda: MLPTorchClassifier(
        (8,), max_iter=5, random_state=0, missing="indicator", scaling="robust",
        numeric_embedding="periodic+piecewise", n_ensemble=2).fit(
            np.where(X > 1.5, np.nan, X), X[:, 0] > 0.2),
}


def run(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X.astype(np.float32)})


@pytest.mark.parametrize("name", FITTED)
def test_onnxruntime_matches_estimator(name):
    est = FITTED[name]()
    Xs = np.where(X > 1.5, np.nan, X) if name in ("table-options", "piecewise") else X
    model = to_onnx(est, Xs[:3])
    (out,) = run(model, Xs)
    expected = est.predict_proba(Xs) if hasattr(est, "predict_proba") else est.predict(Xs)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert [o.name for o in model.graph.output] == [
        "probabilities" if hasattr(est, "classes_") else "predictions"]
    deviation = np.max(np.abs(out - expected) / np.maximum(1.0, np.abs(expected)))
    assert deviation < MAX_DEV, deviation
    if name == "poisson-float32":
        assert np.all(out > 0)  # the exp link is in the graph
    # any batch size, including one row
    assert np.allclose(run(model, Xs[:1])[0], out[:1], atol=1e-6)


def test_saved_file_and_labels(tmp_path):
    est = FITTED["multiclass"]()
    path = tmp_path / "mlp.onnx"
    model = to_onnx(est, X[:1], path=path)  # a single sample row is enough
    loaded = onnx.load(path)
    assert loaded.SerializeToString() == model.SerializeToString()
    (proba,) = run(loaded, X)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(X))


def test_sparse_fitted_model_exports_and_is_fed():
    import scipy.sparse as sp

    Xs = sp.random(64, 5, density=0.3, random_state=0, format="csr")
    est = MLPTorchRegressor((8,), max_iter=5, random_state=0).fit(Xs, X[:, 0])
    model = to_onnx(est, Xs[:2])
    (out,) = session(model).run(None, onnx_inputs(model, Xs))
    np.testing.assert_allclose(out, est.predict(Xs), atol=MAX_DEV)


def test_bad_sample_and_unfitted():
    est = FITTED["regression-1d"]()
    with pytest.raises(ValueError, match=r"shape \(n_samples, 5\)"):
        to_onnx(est, X[:, :3])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        to_onnx(MLPTorchRegressor(), X)



# ------------------------------------------------------- categorical columns
N = 120


def table(seed=0):
    """A pandas table with every kind of column: numeric with NaN, text with
    None (one-hot), wide text (embedding), pandas category, integers, floats."""
    r = np.random.RandomState(seed)
    df = pd.DataFrame({
        "num": r.randn(N),
        "text": r.choice(["a", "b", "c"], N).astype(object),
        "wide": r.choice([f"v{i}" for i in range(15)], N),
        "cat": pd.Categorical(r.choice(["p", "q"], N)),
        "int": r.randint(0, 4, N),
        "flt": r.choice([0.5, 1.5, 2.5], N),
    })
    df.loc[::7, "num"] = np.nan
    df.loc[::5, "text"] = None
    return df


def unseen(df):
    """df with unseen categories and missing values in every categorical column."""
    t = df.copy()
    t["int"] = t["int"].astype(float)  # room for NaN
    t.loc[0:3, "text"] = "never seen"
    t.loc[4:6, "text"] = np.nan
    t.loc[7:9, "wide"] = None
    t.loc[10:12, "wide"] = "v99"
    t["cat"] = t["cat"].cat.add_categories(["r"])
    t.loc[13:15, "cat"] = "r"
    t.loc[16:18, "cat"] = None
    t.loc[19:21, "int"] = 9
    t.loc[22:24, "int"] = np.nan
    t.loc[25:27, "flt"] = 7.0
    t.loc[28:30, "flt"] = np.nan
    t.loc[31:33, "num"] = 1e4  # far outside: the robust clip
    return t


CATEGORICAL = ["text", "wide", "cat", "int", "flt"]


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def assert_matches(est, model, X):
    sess = session(model)
    (out,) = sess.run(None, onnx_inputs(sess, X))
    expected = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)
    assert out.shape == expected.shape
    deviation = np.max(np.abs(out - expected) / np.maximum(1.0, np.abs(expected)))
    assert deviation < MAX_DEV, deviation
    # one row at a time too, fed from the ModelProto instead of the session
    (one,) = sess.run(None, onnx_inputs(model, X[:1] if not hasattr(X, "iloc") else X.iloc[:1]))
    np.testing.assert_allclose(one, out[:1], atol=1e-6)
    return out


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_tabular_pandas_categorical_matches_predict(kind):
    df = table()
    y = np.random.RandomState(1).randint(0, 3, N)
    est = (TabularMLPClassifier(max_iter=5, random_state=0, categorical_features=CATEGORICAL)
           .fit(df, y) if kind == "classifier" else
           TabularMLPRegressor(max_iter=5, random_state=0, categorical_features=CATEGORICAL)
           .fit(df, y * 10.0 + 3))
    model = to_onnx(est, df.head(3))
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert types == {"num": onnx.TensorProto.FLOAT, "text": onnx.TensorProto.STRING,
                     "wide": onnx.TensorProto.STRING, "cat": onnx.TensorProto.STRING,
                     "int": onnx.TensorProto.INT64, "flt": onnx.TensorProto.DOUBLE}
    assert [i.name for i in model.graph.input] == list(df.columns)
    assert "LabelEncoder" in {n.op_type for n in model.graph.node}
    test = unseen(df)
    out = assert_matches(est, model, test)
    if kind == "classifier":  # the unseen rows do differ from the seen ones
        assert not np.allclose(out[:4], assert_matches(est, model, df)[:4])


def test_tabular_polars_categorical_matches_predict():
    pl = pytest.importorskip("polars")
    r = np.random.RandomState(2)
    df = pl.DataFrame({
        "num": [None if i % 6 == 0 else float(v) for i, v in enumerate(r.randn(N))],
        "text": [None if i % 5 == 0 else str(v) for i, v in enumerate(r.choice(list("abc"), N))],
        "enum": pl.Series(r.choice(["p", "q"], N)).cast(pl.Categorical),
        "int": [None if i % 4 == 0 else int(v) for i, v in enumerate(r.randint(0, 3, N))],
    })
    est = TabularMLPClassifier(max_iter=5, random_state=0,
                               categorical_features=["text", "enum", "int"]).fit(
        df, r.randint(0, 2, N))
    model = to_onnx(est, df)
    assert [i.name for i in model.graph.input] == ["num", "text", "enum", "int"]
    rows = pl.int_range(N, eager=True)
    test = df.with_columns(
        pl.when(rows < 8).then(pl.lit("new")).otherwise(pl.col("text")).alias("text"),
        pl.when((rows >= 8) & (rows < 12)).then(pl.lit(7)).otherwise(pl.col("int")).alias("int"),
    )
    assert_matches(est, model, test)


def test_array_input_names_and_float_categories():
    r = np.random.RandomState(3)
    Xc = r.randn(N, 3)
    Xc[:, 1] = r.randint(0, 12, N)  # 14 codes: embedded
    est = MLPTorchRegressor((8,), max_iter=5, random_state=0, categorical_features=[1],
                            missing="indicator").fit(Xc, Xc[:, [0, 2]])
    model = to_onnx(est, Xc[:2])
    assert [i.name for i in model.graph.input] == ["x0", "x1", "x2"]
    test = Xc.copy()
    test[:5, 1] = 99.0
    test[5:9, 1] = np.nan
    test[9:12, 0] = np.nan
    assert_matches(est, model, test)
    # fitted without names: a DataFrame's columns are taken by position
    by_position = onnx_inputs(model, pd.DataFrame(test, columns=["a", "b", "c"]))
    for name, values in onnx_inputs(model, test).items():
        np.testing.assert_array_equal(by_position[name], values)


def test_numeric_only_per_column_and_matrix_agree():
    df = table()[["num", "int"]]
    est = TabularMLPClassifier(max_iter=5, random_state=0).fit(df, df["int"] > 1)
    assert [i.name for i in to_onnx(est, df).graph.input] == ["X"]  # as before
    model = to_onnx(est, df, inputs="columns")
    assert [i.name for i in model.graph.input] == ["num", "int"]
    assert_matches(est, model, df)
    assert_matches(est, to_onnx(est, df), df)  # onnx_inputs feeds "X" too


def test_missing_string_and_bad_arguments():
    df = table()
    est = TabularMLPClassifier(max_iter=2, random_state=0,
                               categorical_features=CATEGORICAL).fit(df, df["int"] > 1)
    model = to_onnx(est, df, missing_string="<NA>")
    sess = session(model)
    feed = onnx_inputs(sess, unseen(df))
    assert feed["text"][4, 0] == "<NA>" and feed["int"][22, 0] == -(2**63)
    assert np.isnan(feed["flt"][28, 0]) and feed["num"].dtype == np.float32
    assert_matches(est, model, unseen(df))
    with pytest.raises(ValueError, match="missing_string='a' is a category of column 'text'"):
        to_onnx(est, df, missing_string="a")
    with pytest.raises(ValueError, match="inputs='rows'"):
        to_onnx(est, df, inputs="rows")
    with pytest.raises(ValueError, match="not the columns the model was fitted on"):
        to_onnx(est, df[df.columns[::-1]])
    with pytest.raises(ValueError, match="X has no column 'flt'"):
        onnx_inputs(model, df.drop(columns="flt"))
    with pytest.raises(TypeError, match="onnx.ModelProto"):
        onnx_inputs("model.onnx", df)


def test_mixed_category_types_refused():
    X = np.array([["a", 1.0], [2, 2.0], ["a", 3.0], [2, 4.0]], dtype=object)
    est = MLPTorchClassifier((4,), max_iter=2, random_state=0,
                             categorical_features=[0]).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="all strings or all numbers"):
        to_onnx(est, X)


def test_all_categorical_frame_exports():
    r = np.random.RandomState(3)
    df = pd.DataFrame({"a": r.choice(["x", "y", "z"], N),
                       "b": pd.Categorical(r.choice(["p", "q"], N))})
    est = TabularMLPClassifier(max_iter=3, random_state=0).fit(df, r.randint(0, 2, N))
    model = to_onnx(est, df.head(2))
    assert [i.name for i in model.graph.input] == ["a", "b"]
    assert_matches(est, model, df.head(6).assign(a=["x", "w", None, "y", "z", "x"]))
