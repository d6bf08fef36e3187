"""Tables as they are: categorical columns, missing values and scaling (SPEC section)."""

import pickle

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skmlp import MLPTorchClassifier, MLPTorchRegressor
from skmlp._columns import bin_edges, numeric_statistics, weighted_quantile

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
N = 120
LEVELS = list("abcdefghijkl")  # 12 levels: embedded; "color" has 3: one-hot


def table(n=N, seed=0):
    r = np.random.RandomState(seed)
    return pd.DataFrame({
        "x": r.randn(n),
        "color": pd.Series(r.choice(["red", "green", "blue"], n), dtype="category"),
        "city": pd.Series(r.choice(LEVELS, n), dtype="string"),
        "z": r.randn(n),
    })


def target(df):
    return ((df["x"] > 0) ^ (df["color"] == "red")).astype(int).to_numpy()


def clf(**kw):
    return MLPTorchClassifier(**{"hidden_dims": (8,), "max_iter": 5, "random_state": 0, **kw})


def reg(**kw):
    return MLPTorchRegressor(**{"hidden_dims": (8,), "max_iter": 5, "random_state": 0, **kw})


# ---------------------------------------------------------- which columns
def test_from_dtype_picks_category_string_and_object_columns():
    df = table().assign(obj=lambda d: d["city"].astype(object))
    est = clf().fit(df, target(df))
    assert_array_equal(est.is_categorical_, [False, True, True, False, True])
    assert est.n_features_in_ == 5 and list(est.feature_names_in_) == list(df.columns)
    # one-hot for 3 levels (+ missing), 8-d embeddings for 12 levels
    assert est.module_.input.width == 2 + 4 + 8 + 8


@pytest.mark.parametrize("spec", [["color", "city"], [1, 2], [False, True, True, False]])
def test_names_indices_and_masks_agree(spec):
    df = table()
    base = clf().fit(df, target(df))
    est = clf(categorical_features=spec).fit(df, target(df))
    assert_array_equal(est.is_categorical_, base.is_categorical_)
    assert_allclose(est.predict_proba(df), base.predict_proba(df))


def test_numeric_columns_can_be_declared_categorical_on_numpy_input():
    X = np.column_stack([RNG.randn(N), RNG.randint(0, 4, N)])
    y = (X[:, 1] == 2).astype(int)
    est = clf(categorical_features=[1], max_iter=60, lr=1e-2).fit(X, y)
    assert_array_equal(est.is_categorical_, [False, True])
    assert est.score(X, y) == 1.0  # code 2 is learned exactly through its one-hot


@pytest.mark.parametrize("value, exc, match", [
    (["nope"], ValueError, r"does not have: \['nope'\]"),
    ([7], ValueError, "outside the 4 columns"),
    ([True, False], ValueError, "one entry per column"),
    (["x", 1], TypeError, "mixes kinds"),
    ("auto", ValueError, "categorical_features"),
])
def test_bad_categorical_features(value, exc, match):
    df = table()
    with pytest.raises(exc, match=match):
        clf(categorical_features=value).fit(df, target(df))


def test_names_without_column_names_are_an_error():
    with pytest.raises(ValueError, match="no column names"):
        clf(categorical_features=["a"]).fit(RNG.randn(10, 2), np.arange(10) % 2)


def test_sparse_input_with_categorical_columns_is_refused_clearly():
    X = sp.csr_matrix(RNG.randn(10, 3))
    with pytest.raises(ValueError, match="categorical columns need dense input"):
        clf(categorical_features=[0]).fit(X, np.arange(10) % 2)


# ----------------------------------------------------------- categories
def test_categories_are_sorted_values_whatever_the_dtype_order():
    df = table()
    shuffled = df.assign(color=df["color"].cat.reorder_categories(["red", "blue", "green"]))
    a, b = clf().fit(df, target(df)), clf().fit(shuffled, target(df))
    assert a._layout.categories[0] == ["blue", "green", "red"]
    assert_array_equal(a.predict_proba(df), b.predict_proba(shuffled))


def test_pandas_and_polars_give_the_same_model():
    df = table()
    pdf = pl.from_pandas(df)  # category -> Categorical, string -> String
    a, b = clf().fit(df, target(df)), clf().fit(pdf, target(df))
    assert_array_equal(b.is_categorical_, a.is_categorical_)
    assert_allclose(b.predict_proba(pdf), a.predict_proba(df))
    enum = pdf.with_columns(pl.col("color").cast(pl.Enum(["red", "green", "blue"])))
    assert_allclose(clf().fit(enum, target(df)).predict_proba(enum), a.predict_proba(df))


def test_unknown_categories_predict_finite_without_error():
    df = table()
    est = clf().fit(df, target(df))
    new = df.head(4).assign(city=pd.Series(["zzz", "a", "yyy", "b"], dtype="string"))
    proba = est.predict_proba(new)
    assert np.all(np.isfinite(proba))
    codes = est._layout.encode(new)
    assert codes[0, 1] == codes[2, 1] == len(LEVELS) + 1  # the "unknown" code


def test_declared_categories_fix_the_encoding_whatever_the_first_block_holds():
    df = table()
    declared = {"city": LEVELS[::-1] + ["never-seen"], "color": ["red", "green", "blue"]}
    first = df[df["city"].isin(["a", "b"]).to_numpy()]  # a block with 2 of the 12 cities
    est = clf(categories=declared).partial_fit(first, target(first), classes=[0, 1])
    assert est._layout.categories == [["blue", "green", "red"], sorted(declared["city"])]
    learned = clf().partial_fit(first, target(first), classes=[0, 1])
    assert learned._layout.categories[1] == ["a", "b"]
    # A later block: cities beyond the first block get their own codes when declared,
    # and the "unknown" code otherwise.
    codes, unknown = est._layout.encode(df)[:, 1], len(declared["city"]) + 1
    assert unknown not in codes
    assert set(learned._layout.encode(df)[:, 1]) == {0, 1, 2 + 1}
    est.partial_fit(df, target(df))
    assert np.all(np.isfinite(est.predict_proba(df)))
    # Indices work for input without names; undeclared columns are learned.
    X = df[["x", "city"]].to_numpy(dtype=object)
    by_index = clf(categorical_features=[1], categories={-1: declared["city"]}).fit(X, target(df))
    assert by_index._layout.categories == [sorted(declared["city"])]


def test_declared_categories_map_other_values_to_unknown_in_fit_too():
    df = table()
    est = clf(categories={"city": ["a", "b"]}).fit(df, target(df))
    codes = est._layout.encode(df)[:, 1]
    assert_array_equal(codes == 3, ~df["city"].isin(["a", "b"]).to_numpy())  # 3: unknown
    assert pickle.loads(pickle.dumps(est))._layout.categories[1] == ["a", "b"]


@pytest.mark.parametrize("categories, error, match", [
    ({"x": [1.0]}, ValueError, "not categorical"),
    ({"nope": ["a"]}, ValueError, "does not have"),
    ({9: ["a"]}, ValueError, "outside"),
    ({"city": []}, ValueError, "empty"),
    ({"city": ["a", "a"]}, ValueError, "twice"),
    ({"city": ["a", None]}, ValueError, "missing value"),
    ({"city": [1, 2]}, ValueError, "type"),
    ({"city": "abc"}, TypeError, "list of categories"),
    ({2.5: ["a"]}, TypeError, "names or indices"),
    ("learn", ValueError, "categories"),
])
def test_bad_declared_categories_are_refused_with_what_to_do(categories, error, match):
    df = table()
    fitted = clf().fit(df, target(df))
    before = fitted.predict_proba(df)
    with pytest.raises(error, match=match):
        fitted.set_params(categories=categories).fit(df, target(df))
    assert_array_equal(fitted.predict_proba(df), before)


def test_declared_categories_by_name_need_column_names():
    X = table()[["x", "city"]].to_numpy(dtype=object)
    with pytest.raises(ValueError, match="no column names"):
        clf(categorical_features=[1], categories={"city": ["a"]}).fit(X, np.arange(N) % 2)


@pytest.mark.parametrize("column", [
    pd.Series(["b", None, "a", np.nan, "zz", pd.NA, 1, 2.5, "a"] * 3, dtype=object),
    pd.Series(["b", None, "a", "zz", "a", "c"] * 3, dtype="string"),
    pd.Series(pd.Categorical(["b", None, "a", "zz", "a"] * 3, categories=["zz", "a", "b", "q"])),
    pd.Series(pd.Categorical([3, 1, None, 7, 1] * 3)),
])
def test_pandas_encoding_equals_the_lookup_per_value(column):
    from skmlp._columns import ColumnLayout, _codes

    df = pd.DataFrame({"x": np.arange(len(column), dtype=float), "c": column})
    layout = ColumnLayout(np.array([False, True]))
    layout.fit_categories(df.iloc[:2], None)  # later rows hold unknown values
    fast = layout.encode(df)[:, 0]
    assert_array_equal(fast, _codes(df, 1, layout.categories[0]))
    k = len(layout.categories[0])
    assert set(fast[column.isna().to_numpy()]) == {k} and (fast == k + 1).any()


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_missing_categorical_values_are_a_category_of_their_own(missing):
    df = table().astype({"city": object})
    df.loc[::5, "city"] = missing
    est = clf().fit(df, target(df))
    codes = est._layout.encode(df)
    assert set(codes[::5, 1]) == {len(LEVELS)}  # the "missing" code, not "unknown"
    assert np.all(np.isfinite(est.predict_proba(df)))


def test_weight_zero_rows_contribute_nothing_not_even_a_category():
    df = table()
    df.loc[:9, "city"] = "only-in-zero-weight-rows"
    df.loc[:9, "x"] = 1e6
    w = np.ones(N)
    w[:10] = 0
    est = reg(scaling="standard").fit(df, df["z"].to_numpy(), sample_weight=w)
    assert "only-in-zero-weight-rows" not in est._layout.categories[1]
    kept = reg(scaling="standard").fit(df.iloc[10:], df["z"].to_numpy()[10:])
    assert_allclose(est._spec.shift, kept._spec.shift)
    assert_allclose(est._spec.scale, kept._spec.scale)


def test_the_input_frame_is_not_modified():
    df = table()
    df.loc[::7, "x"] = np.nan
    before = df.copy()
    clf(missing="indicator", scaling="robust").fit(df, target(df)).predict(df)
    pd.testing.assert_frame_equal(df, before)


# --------------------------------------------------------- missing values
def test_nan_is_an_error_naming_missing_indicator():
    df = table()
    df.loc[3, "x"] = np.nan
    with pytest.raises(ValueError, match='missing="indicator"'):
        clf().fit(df, target(df))


def test_indicator_fills_medians_and_adds_a_flag_per_column_with_missing():
    df = table()
    df.loc[::4, "x"] = np.nan
    est = clf(missing="indicator").fit(df, target(df))
    assert est._spec.indicator_columns == (0,)  # "x" among the numeric columns x, z
    assert est._spec.fill[0] == pytest.approx(np.nanmedian(df["x"]), abs=0.05)
    assert est.module_.input.width == 2 + 1 + 4 + 8
    assert est.__sklearn_tags__().input_tags.allow_nan
    assert not clf().__sklearn_tags__().input_tags.allow_nan
    # NaN at predict in a column that had none in fit: filled, no error
    late = df.assign(z=np.where(np.arange(N) % 3 == 0, np.nan, df["z"]))
    assert np.all(np.isfinite(est.predict_proba(late)))
    with pytest.raises(ValueError, match="infinity"):
        est.predict(df.assign(z=np.inf))


def test_indicator_on_numpy_input_and_nan_rows_are_learned():
    X = RNG.randn(200, 2)
    y = np.isnan(np.where(RNG.rand(200) < 0.5, np.nan, 0.0))
    X[y, 0] = np.nan  # missingness is the signal
    est = clf(missing="indicator", max_iter=80, lr=1e-2).fit(X, y)
    assert est.score(X, y) == 1.0


# ---------------------------------------------------------------- scaling
def test_weighted_quantile_and_statistics():
    assert weighted_quantile(np.array([1.0, 2.0, 3.0, np.nan]), np.ones(4), 0.5) == 2.0
    assert weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1.0]), 0.5) == 3.0
    X = np.column_stack([np.arange(10.0), np.full(10, 5.0)])
    std = numeric_statistics(X, None, "standard", "error")
    assert_allclose(std["shift"], [4.5, 5.0])
    assert_allclose(std["scale"], [np.std(np.arange(10.0)), 1.0])  # constant: not 0
    rob = numeric_statistics(X, None, "robust", "error")
    assert rob["shift"][0] == 4.0 and rob["scale"][0] == 5.0 and rob["scale"][1] == 1.0


def test_bin_edges_are_weighted_quantiles_and_rows_of_weight_zero_add_none():
    x = np.arange(1.0, 101.0)
    assert_allclose(bin_edges(x, np.ones(100), 4), [1, 25, 50, 75, 100])
    assert_allclose(bin_edges(np.full(9, 2.0), np.ones(9), 16), [2.0])  # constant: one edge
    assert_allclose(bin_edges(np.array([0.0, 1.0] * 5), np.ones(10), 16), [0.0, 1.0])
    # integer weights are repeated rows; weight 0 rows (an outlier here) count for nothing
    X = np.column_stack([RNG.randn(N), RNG.randint(0, 3, N).astype(float)])
    w = RNG.randint(0, 3, N).astype(float)
    X_w = X.copy()
    X_w[w == 0, 0] = 1e6
    repeated = np.repeat(X, w.astype(int), axis=0)
    stats = numeric_statistics(X_w, w, "robust", "error", bins=8)
    expected = numeric_statistics(repeated, None, "robust", "error", bins=8)
    for ours, theirs in zip(stats["bins"], expected["bins"]):
        assert_array_equal(ours, theirs)
    assert len(stats["bins"][1]) == 3  # three distinct values, three edges
    assert numeric_statistics(X, None, "robust", "error")["bins"] == []  # not asked for


def test_piecewise_embedding_positions():
    import torch

    from skmlp._network import PiecewiseEmbedding

    layer = PiecewiseEmbedding(2, 3, 8, dtype=torch.float64).to_empty(device="cpu")
    layer.set_edges([torch.tensor([0.0, 1.0, 2.0, 4.0]), torch.tensor([5.0])])
    x = torch.tensor([[-1.0, 7.0], [0.5, 5.0], [3.0, 4.0], [6.0, 5.0]], dtype=torch.float64)
    got = layer.positions(x)  # (d, n, bins)
    # below the first edge the first bin goes negative, above the last the last passes 1,
    # both by the distance to the range (slope 1, not 1 / the bin's width: 6 is 2 above
    # the last edge, 4); a constant column has only these two: x - value below it in the
    # first slot, above it in the last, the padding between them 0
    assert_allclose(got[0].numpy(), [[-1, 0, 0], [0.5, 0, 0], [1, 1, 0.5], [1, 1, 3]])
    assert_allclose(got[1].numpy(), [[0, 0, 2], [0, 0, 0], [-1, 0, 0], [0, 0, 0]])
    # fewer bins than the widest column: the last bin at the last slot, padding before it
    layer.set_edges([torch.tensor([0.0, 1.0, 2.0, 4.0]), torch.tensor([5.0, 6.0, 8.0])])
    got = layer.positions(torch.tensor([[0.0, 5.5], [0.0, 7.0], [0.0, 9.0]], dtype=torch.float64))
    assert_allclose(got[1].numpy(), [[0.5, 0, 0], [1, 0, 0.5], [1, 0, 2]])
    # a narrow first bin: a value just below the range (float32 rounding at the edge, or
    # a value fit never saw) stays close to 0 instead of -distance / width
    layer.set_edges([torch.tensor([0.0, 1e-9, 1.0, 2.0]), torch.tensor([5.0])])
    low = layer.positions(torch.tensor([[-1e-7, 5.0], [-1.0, 5.0]], dtype=torch.float64))
    assert_allclose(low[0, :, 0].numpy(), [-1e-7, -1.0])


@pytest.mark.parametrize("embedding", ["piecewise", "periodic+piecewise"])
def test_piecewise_embedding_learns_a_step_and_travels(embedding):
    import pickle

    X = np.column_stack([RNG.exponential(size=N) * 1e3, RNG.randn(N)])
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    est = clf(scaling="robust", numeric_embedding=embedding, max_iter=60, lr=1e-2).fit(X, y)
    assert est.score(X, y) > 0.95
    assert len(est._spec.bins) == 2 and all(len(e) == 17 for e in est._spec.bins)
    assert est.module_.blocks[0].linear.in_features == 2 * 8  # 8 values per column in both
    again = pickle.loads(pickle.dumps(est))
    assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    # without scaling too: the bins are in the column's own units
    raw = clf(numeric_embedding="piecewise", max_iter=60, lr=1e-2).fit(X, y)
    assert raw._spec.bins[0][0] == X[:, 0].min() and raw.score(X, y) > 0.95


@pytest.mark.parametrize("scaling", ["standard", "robust"])
def test_scaling_inside_the_network(scaling):
    X = RNG.randn(N, 3) * [1, 100, 1e-3] + [0, 1e4, 0]
    X[:, 2] = 7.0  # constant
    y = (X[:, 1] > 1e4).astype(int)
    est = clf(scaling=scaling, max_iter=40, lr=1e-2).fit(X, y)
    first = est.module_.input(torch_tensor(X)).numpy()
    assert np.all(np.isfinite(first)) and np.abs(first).max() < (3 if scaling == "robust" else 10)
    assert est.score(X, y) > 0.9


def torch_tensor(X):
    import torch

    with torch.no_grad():
        return torch.from_numpy(np.asarray(X, dtype=np.float64))


@pytest.mark.parametrize("scaling", ["standard", "robust"])
def test_sparse_scaling_equals_dense_and_is_batched(scaling):
    X = np.where(RNG.rand(N, 4) < 0.3, RNG.randn(N, 4), 0.0)
    y = (X[:, 0] > 0).astype(int)
    dense = clf(scaling=scaling, batch_size=16).fit(X, y)
    sparse = clf(scaling=scaling, batch_size=16).fit(sp.csr_matrix(X), y)
    assert_allclose(sparse._spec.shift, dense._spec.shift)
    assert_allclose(sparse._spec.scale, dense._spec.scale)
    assert_allclose(sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X), atol=1e-10)
    kw = dict(scaling=scaling, numeric_embedding="piecewise", max_iter=2)
    dense_bins = clf(**kw).fit(X, y)._spec.bins
    sparse_bins = clf(**kw).fit(sp.csr_matrix(X), y)._spec.bins  # the implicit zeros count
    assert dense_bins == sparse_bins and all(0.0 in e for e in dense_bins)


def test_sparse_column_storing_every_row_has_no_implicit_zero():
    # every row stored, indices unsorted (valid scipy): the weights sum in another order,
    # and the rounding left a tiny "implicit zero" weight that made 0 the lowest bin edge
    for seed in range(20):  # the rounding goes either way: several draws
        rng = np.random.default_rng(seed)
        X = rng.uniform(1.0, 2.0, size=(1000, 1))
        w = rng.uniform(0.1, 3.0, size=1000)
        order = rng.permutation(1000)
        unsorted = sp.csc_matrix((X[order, 0], order, [0, 1000]), shape=(1000, 1))
        assert not unsorted.has_sorted_indices
        dense = numeric_statistics(X, w, "robust", "error", bins=16)
        sparse = numeric_statistics(unsorted, w, "robust", "error", bins=16)
        assert_array_equal(sparse["bins"][0], dense["bins"][0])
        assert sparse["fill"][0] == dense["fill"][0] and sparse["bins"][0][0] >= 1.0


# ------------------------------------------------- the fitted state travels
def test_pickle_clone_and_refit_keep_the_columns():
    df = table()
    df.loc[::6, "x"] = np.nan
    est = clf(missing="indicator", scaling="robust").fit(df, target(df))
    back = pickle.loads(pickle.dumps(est))
    assert_array_equal(back.predict_proba(df), est.predict_proba(df))
    assert back._layout.categories == est._layout.categories
    again = clone(est).fit(df, target(df))
    assert_array_equal(again.predict_proba(df), est.predict_proba(df))


def test_grid_search_in_parallel_on_a_raw_frame():
    df = table(240)
    grid = {"scaling": [None, "robust"], "hidden_dims": [(4,), (8,)]}
    gs = GridSearchCV(clf(), grid, cv=2, n_jobs=2).fit(df, target(df))
    seq = GridSearchCV(clf(), grid, cv=2, n_jobs=1).fit(df, target(df))
    assert_allclose(gs.cv_results_["mean_test_score"], seq.cv_results_["mean_test_score"])


def test_partial_fit_keeps_the_first_calls_encoding():
    df = table()
    est = clf().partial_fit(df.iloc[:60], target(df)[:60], classes=[0, 1])
    first = [list(c) for c in est._layout.categories]
    later = df.iloc[60:].assign(city=pd.Series(["new"] * 60, dtype="string"))
    est.partial_fit(later, target(df)[60:])
    assert est._layout.categories == first
    assert np.all(np.isfinite(est.predict_proba(later)))


def test_columns_at_predict_must_match_fit():
    df = table()
    est = clf().fit(df, target(df))
    with pytest.raises(ValueError, match="color"):
        est.predict(df.drop(columns="color"))
    with pytest.raises(ValueError, match="extra"):
        est.predict(df.assign(extra=1.0))


def test_regressor_on_a_mixed_frame_learns_the_categories():
    df = table(300)
    y = df["color"].map({"red": 3.0, "green": 0.0, "blue": -3.0}).to_numpy() + 0.1 * df["x"]
    est = reg(max_iter=100, lr=1e-2, scaling="standard").fit(df, y)
    assert est.score(df, y) > 0.95


# ------------------------------------------------------ periodic embeddings
def test_periodic_embedding_learns_what_a_plain_mlp_cannot_in_the_same_epochs():
    r = np.random.RandomState(0)
    X = r.uniform(-3, 3, (400, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * X[:, 1]
    kw = dict(hidden_dims=(32,), scaling="standard", max_iter=100, lr=3e-3, random_state=0)
    plain = MLPTorchRegressor(**kw).fit(X, y)
    periodic = MLPTorchRegressor(numeric_embedding="periodic", **kw).fit(X, y)
    assert periodic.module_.input.width == 2 * 8
    assert periodic.score(X, y) > 0.95 > 0.7 > plain.score(X, y)


def test_table_input_gradients_equal_autograd():
    """The fast path runs the table input (embeddings, periodic features) under
    autograd and the blocks by hand: together they equal autograd."""
    import torch

    from skmlp._fastpath import plan
    from skmlp._spec import NetworkSpec

    spec = NetworkSpec(3, (6, 5), 2, "squared_error", dtype="float64",
                       cardinalities=(4, 15), missing="indicator", indicator_columns=(1,),
                       scaling="robust", fill=(0.0, 1.0, 2.0), shift=(0.1, 0.2, 0.3),
                       scale=(1.0, 2.0, 3.0), numeric_embedding="periodic")
    gen = torch.Generator().manual_seed(0)
    module = spec.build(gen)
    x_num = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    x_num[::3, 1] = float("nan")
    x_cat = torch.stack([torch.randint(0, 4, (9,), generator=gen),
                         torch.randint(0, 15, (9,), generator=gen)], dim=1)
    y = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    loss = spec.head.loss
    loss.value(module(x_num, x_cat), y).mean().backward()
    reference = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    plan(module, loss)((x_num, x_cat), y, None)
    for (name, p), ref in zip(module.named_parameters(), reference):
        torch.testing.assert_close(p.grad, ref, rtol=1e-9, atol=1e-12, msg=name)
    # the unknown code's embedding row stays zero and gets no gradient
    assert torch.equal(module.input.embeddings["1"].weight[14], torch.zeros(8, dtype=torch.float64))


# --------------------------------------------------- the tabular estimators
def test_tabular_estimators_take_a_raw_frame_and_leave_global_state_alone():
    import torch

    from skmlp import LossCurveDisplay, TabularMLPClassifier, TabularMLPRegressor

    df = table(200)
    df.loc[::9, "x"] = np.nan
    df.loc[::11, "city"] = None
    np.random.seed(0)
    torch.manual_seed(0)
    np_state, torch_state, threads = np.random.get_state(), torch.get_rng_state(), \
        torch.get_num_threads()
    clf = TabularMLPClassifier(max_iter=5, random_state=0).fit(df, target(df))
    reg = TabularMLPRegressor(max_iter=5, random_state=0).fit(df, df["z"].to_numpy() * 1e3)
    assert np.all(np.isfinite(clf.predict_proba(df))) and np.all(np.isfinite(reg.predict(df)))
    # 200 rows: "auto" bags the 4 members (separate networks, each on its folds)
    assert clf.module_.n_ensemble == 4 and clf._spec.bagged
    assert all(m.input.periodic is not None for m in clf.module_.members)
    assert reg._target_affine is not None and clf.get_params()["label_smoothing"] == 0.05
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.get_num_threads() == threads
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    display = LossCurveDisplay.from_estimator(clf)
    assert len(display.line_.get_xdata()) == clf.n_iter_


def test_dtype_auto_is_float32_from_1000_rows_and_the_tabular_default():
    import torch

    from skmlp import MLPTorchRegressor, TabularMLPRegressor
    from skmlp._data import AUTO_FLOAT32_ROWS, compute_dtype

    rng = np.random.RandomState(0)
    X = rng.randn(AUTO_FLOAT32_ROWS, 3)
    y = X[:, 0] + 0.1 * rng.randn(len(X))
    assert compute_dtype("auto", X) == "float32"
    assert compute_dtype("auto", X[:-1]) == "float64"
    assert compute_dtype("auto", X[:-1].astype(np.float32)) == "float32"  # as None below
    assert compute_dtype("auto", X[:10], n_rows=AUTO_FLOAT32_ROWS) == "float32"  # Dask: all rows
    assert TabularMLPRegressor().get_params()["dtype"] == "auto"
    big = TabularMLPRegressor(max_iter=2, random_state=0).fit(X, y)
    small = TabularMLPRegressor(max_iter=2, random_state=0).fit(X[:-1], y[:-1])
    assert big.predict(X).dtype == np.float32 and small.predict(X).dtype == np.float64
    # Frozen with the network: a warm start on fewer rows keeps float32.
    big.set_params(warm_start=True).fit(X[:50], y[:50])
    assert next(big.module_.parameters()).dtype == torch.float32
    assert MLPTorchRegressor(dtype="auto", max_iter=2).fit(X, y).predict(X).dtype == np.float32
    # a value beyond float32's range (it would turn into inf): float64, finite predictions
    X_far = X.copy()
    X_far[3, 1] = 1e300
    assert compute_dtype("auto", X_far) == "float64"
    assert compute_dtype("auto", sp.csr_matrix(X_far)) == "float64"
    far = TabularMLPRegressor(max_iter=2, random_state=0).fit(X_far, y)
    assert far.predict(X_far).dtype == np.float64 and np.all(np.isfinite(far.predict(X_far)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_robust_scaling_clips_far_outliers_to_3_not_to_the_median(dtype):
    # (x / 3) ** 2 overflowed for far outliers, and x / sqrt(inf) put them at 0
    X = np.column_stack([RNG.randn(200), RNG.randn(200)])
    y = (X[:, 0] > 0).astype(int)
    est = clf(scaling="robust", dtype=dtype, max_iter=2).fit(X, y)
    far = np.array([[1e30, 0.0], [-1e30, 0.0], [1e6, 0.0], [0.5, 0.0]])
    if dtype == "float64":
        far[0, 0] = 1e300
    import torch

    with torch.no_grad():
        x, _ = est.module_.input.numeric(torch.as_tensor(far, dtype=getattr(torch, dtype)))
    assert_allclose(x[:3, 0].numpy(), [3, -3, 3], rtol=1e-6)
    assert abs(float(x[3, 0])) < 3
