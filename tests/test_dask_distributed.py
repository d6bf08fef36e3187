"""skmlp.dask: one model trained data-parallel over two Dask worker processes.

One ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` serves
the module. Blocks are placed on chosen workers (``client.scatter``) where a
test needs to know which worker holds which rows. The test that kills a
worker comes last (the nanny starts a new one).
"""

import logging
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skmlp import MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier, TabularMLPRegressor

distributed = pytest.importorskip("distributed", reason="pip install 'skmlp[dask]'")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")
cloudpickle = pytest.importorskip("cloudpickle")

from skmlp.dask import (CollectiveError, DaskMLPClassifier, DaskMLPRegressor,  # noqa: E402
                        DaskTabularMLPClassifier, DaskTabularMLPRegressor, _live_workers)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    "ignore::DeprecationWarning",
    "ignore::ResourceWarning",
    "ignore::FutureWarning",
)

# The callbacks below run on the workers: pickle this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _warm():
    import skmlp.dask  # noqa: F401  (torch and skmlp imported once per worker, up front)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        client.run(_warm)
        yield client


def _workers(client):
    client.wait_for_workers(2)
    return sorted(_live_workers(client))


def _placed(client, blocks):
    """A dask array whose i-th block lives on worker i (of the sorted workers)."""
    workers = _workers(client)
    parts = []
    for block, worker in zip(blocks, workers):
        future = client.scatter(block, workers=[worker])
        parts.append(da.from_delayed(dask.delayed(future), shape=block.shape, dtype=block.dtype))
    return da.concatenate(parts)


def _interleave(a, b, per_a, per_b):
    """The rows in the order one process sees them when each step takes
    ``per_a`` rows of a and ``per_b`` rows of b."""
    out = []
    for i in range(len(a) // per_a):
        out += [a[i * per_a:(i + 1) * per_a], b[i * per_b:(i + 1) * per_b]]
    return np.concatenate(out)


# ------------------------------------------------------------------ exactness
def _use_fast_path(use):
    """Turn the hand-written gradient step off (autograd) or back on, here."""
    from skmlp import _fastpath, _training

    _training.plan = _fastpath.plan if use else (lambda module, loss: None)


def _plan_name():
    from skmlp import _training

    return _training.plan.__name__


@pytest.fixture(params=["fastpath", "autograd"])
def gradients(request, client):
    """Which gradient path trains, in this process and on the workers."""
    use = request.param == "fastpath"
    _use_fast_path(use)
    client.run(_use_fast_path, use)
    assert set(client.run(_plan_name).values()) == {"plan" if use else "<lambda>"}
    yield request.param
    _use_fast_path(True)
    client.run(_use_fast_path, True)


@pytest.mark.parametrize("rows_b", [400, 200], ids=["even", "uneven"])
def test_two_workers_give_the_weights_of_one_process_on_the_whole_batch(client, rows_b,
                                                                         gradients):
    # Plain SGD, no shuffle: each step takes 400/steps rows of worker A and
    # rows_b/steps of worker B; one process sees those rows as one batch.
    hidden = (16, 8)
    rng = np.random.default_rng(0)
    steps, rows_a = 4, 400
    Xa, Xb = rng.normal(size=(rows_a, 6)), rng.normal(size=(rows_b, 6))
    ya, yb = (Xa[:, 0] + Xa[:, 1] > 0).astype(int), (Xb[:, 0] + Xb[:, 1] > 0).astype(int)
    params = dict(hidden_dims=hidden, optimizer="sgd", momentum=0.0, lr=0.1, shuffle=False,
                  early_stopping=False, weight_decay=0.0, max_iter=3, tol=0.0,
                  batch_size=(rows_a + rows_b) // steps, random_state=0)
    X = _interleave(Xa, Xb, rows_a // steps, rows_b // steps)
    y = _interleave(ya, yb, rows_a // steps, rows_b // steps)
    one = MLPTorchClassifier(**params).fit(X, y)
    two = DaskMLPClassifier(**params, client=client).fit(_placed(client, [Xa, Xb]),
                                                         _placed(client, [ya, yb]))
    assert len(two.dask_stats_) == 2  # two workers trained
    assert {s["rows"] for s in two.dask_stats_} == {rows_a, rows_b}
    # every worker ended with the very same weights
    assert len({s["weights"] for s in two.dask_stats_}) == 1
    for p1, p2 in zip(one.module_.parameters(), two.module_.parameters()):
        assert_allclose(p2.detach().numpy(), p1.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert_allclose(two.loss_curve_, one.loss_curve_, rtol=1e-9)
    assert two.n_iter_ == one.n_iter_ == 3
    assert two.t_ == one.t_ == 3 * (rows_a + rows_b)


# ------------------------------------------------------------------ accuracy
def test_accuracy_on_digits_matches_in_memory_fit(client):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y)
    params = dict(hidden_dims=(64,), max_iter=30, batch_size=64, random_state=0)
    memory = MLPTorchClassifier(**params).fit(X_tr, y_tr).score(X_te, y_te)
    est = DaskMLPClassifier(**params, client=client).fit(
        da.from_array(X_tr, chunks=400), da.from_array(y_tr, chunks=400))
    pred = est.predict(da.from_array(X_te, chunks=100))
    assert isinstance(pred, da.Array)
    accuracy = float((pred.compute() == y_te).mean())
    assert accuracy > 0.9 and abs(accuracy - memory) < 0.03, (accuracy, memory)
    proba = est.predict_proba(da.from_array(X_te, chunks=100)).compute()
    local = est.to_local()
    assert type(local) is MLPTorchClassifier and not hasattr(local, "client")
    assert_allclose(proba, local.predict_proba(X_te), rtol=1e-6)
    assert est.n_iter_ == len(est.loss_curve_) == len(est.history_)


def test_regressor_with_early_stopping_on_diabetes(client):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    params = dict(hidden_dims=(32,), max_iter=200, lr=3e-3, early_stopping=True,
                  n_iter_no_change=5, random_state=0, target_scaling=True)
    memory = MLPTorchRegressor(**params).fit(X[:350], y[:350])
    est = DaskMLPRegressor(**params, client=client).fit(
        da.from_array(X[:350], chunks=175), da.from_array(y[:350], chunks=175))
    # the target scaling is that of all rows; the stop decision was shared
    assert_allclose(est._target_affine[0], memory._target_affine[0], rtol=1e-12)
    assert_allclose(est._target_affine[1], memory._target_affine[1], rtol=1e-12)
    assert est.n_iter_ < 200 and len(est.validation_scores_) == est.n_iter_
    assert len({s["epochs"] for s in est.dask_stats_}) == 1
    r2_memory = memory.score(X[350:], y[350:])
    r2 = est.to_local().score(X[350:], y[350:])
    assert r2 > 0.3 and abs(r2 - r2_memory) < 0.1, (r2, r2_memory)


# ------------------------------------------------------------ column statistics
def test_dtype_auto_sees_a_far_value_in_any_partition(client):
    # the driver builds the network from a sample of rows; the column ranges of every
    # block decide float32 or float64, so a value beyond float32's range anywhere keeps
    # float64 (in float32 it would be inf, and the predictions NaN)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 2))
    X[1100, 1] = 1e39
    y = (X[:, 0] > 0).astype(int)
    params = dict(hidden_dims=(4,), max_iter=2, dtype="auto", random_state=0)
    est = DaskMLPClassifier(**params, client=client).fit(
        da.from_array(X, chunks=400), da.from_array(y, chunks=400))
    memory = MLPTorchClassifier(**params).fit(X, y)
    assert est._spec.dtype == memory._spec.dtype == "float64"
    assert np.all(np.isfinite(est.to_local().predict_proba(X)))
    near = DaskMLPClassifier(**params, client=client).fit(
        da.from_array(X[:1000], chunks=400), da.from_array(y[:1000], chunks=400))
    assert near._spec.dtype == "float32"  # 1000 rows in range: float32


@pytest.mark.parametrize("scaling", ["robust", "standard"])
def test_column_statistics_equal_the_in_memory_ones(client, scaling):
    rng = np.random.default_rng(3)
    n = 3000
    X = rng.normal(size=(n, 4)) * [1, 10, 0.1, 1] + [0, 5, 0, 0]
    X[:, 3] = rng.integers(0, 3, n)  # ties: quantiles land inside runs of equal values
    X[rng.random(n) < 0.1, 1] = np.nan
    y = (X[:, 0] > 0).astype(int)
    w = rng.integers(0, 4, n).astype(float)  # zeros too
    params = dict(hidden_dims=(4,), max_iter=1, scaling=scaling, missing="indicator",
                  numeric_embedding="piecewise", random_state=0)
    memory = MLPTorchClassifier(**params).fit(X, y, sample_weight=w)
    est = DaskMLPClassifier(**params, client=client).fit(
        da.from_array(X, chunks=700), da.from_array(y, chunks=700),
        sample_weight=da.from_array(w, chunks=700))
    ours, theirs = est._numeric_stats, memory._numeric_stats
    assert_array_equal(ours["fill"], theirs["fill"])  # medians: exact
    assert_array_equal(ours["indicator"], theirs["indicator"])
    if scaling == "robust":
        assert_array_equal(ours["scale"], theirs["scale"])  # quartiles: exact
    assert_allclose(ours["shift"], theirs["shift"], rtol=1e-12, atol=1e-12)
    assert_allclose(ours["scale"], theirs["scale"], rtol=1e-12)
    for a, b in zip(ours["bins"], theirs["bins"]):  # the piecewise embedding's bins: exact
        assert_array_equal(a, b)
    assert len(ours["bins"]) == 4 and len(ours["bins"][3]) == 3


def test_exact_quantiles_on_many_values(client, monkeypatch):
    # More values than one gather: the histogram passes narrow the range.
    from skmlp import dask as skdask

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_cauchy(20000), rng.integers(0, 5, 20000)])
    y = (rng.random(20000) > 0.5).astype(int)
    params = dict(hidden_dims=(2,), max_iter=1, scaling="robust", random_state=0)
    monkeypatch.setattr(skdask, "_GATHER", 500)
    est = DaskMLPClassifier(**params, client=client).fit(da.from_array(X, chunks=5000),
                                                         da.from_array(y, chunks=5000))
    memory = MLPTorchClassifier(**params).fit(X, y)
    assert_array_equal(est._numeric_stats["fill"], memory._numeric_stats["fill"])
    assert_array_equal(est._numeric_stats["scale"], memory._numeric_stats["scale"])


# ------------------------------------------------------------ tabular frames
def _frame(n, seed):
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue", None], size=n)
    size = pd.Categorical(rng.choice(["S", "M", "L"], size=n), categories=["S", "M", "L", "XL"])
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    df = pd.DataFrame({"color": pd.Series(color, dtype=object), "size": size, "x": x,
                       "z": rng.normal(size=n)})
    target = ((df["color"] == "red").to_numpy() ^ (np.nan_to_num(x) > 0)).astype(int)
    return df, pd.Series(target, name="y"), 2 * np.nan_to_num(x) + df["z"].to_numpy()


def test_tabular_classifier_on_categorical_frames_end_to_end(client):
    df, y, _ = _frame(1600, 0)
    test, y_test, _ = _frame(400, 1)
    params = dict(max_iter=15, random_state=0, hidden_dims=(32, 32))
    ddf, dy = dd.from_pandas(df, npartitions=4), dd.from_pandas(y, npartitions=4)
    est = DaskTabularMLPClassifier(**params, client=client).fit(ddf, dy)
    memory = TabularMLPClassifier(**params).fit(df, y)
    assert est._layout.categories == memory._layout.categories
    assert_array_equal(est.is_categorical_, memory.is_categorical_)
    assert_array_equal(est.feature_names_in_, memory.feature_names_in_)
    for key in ("fill", "shift", "scale", "indicator"):
        assert_allclose(est._numeric_stats[key], memory._numeric_stats[key], rtol=1e-12)
    pred = est.predict(dd.from_pandas(test, npartitions=2))
    assert isinstance(pred, da.Array)
    pred = pred.compute()
    local = est.to_local()
    assert type(local) is TabularMLPClassifier
    assert_array_equal(pred, local.predict(test))
    # calibration="temperature" (the default) on the held-out rows of every
    # worker, through the reduced log loss: a temperature, kept by to_local()
    assert est.validation_scores_ is not None
    assert est.temperature_ != 1.0 and local.temperature_ == est.temperature_
    # float32 (dtype="auto", 1600 rows): two partitions and one batch round differently
    assert_allclose(est.predict_proba(dd.from_pandas(test, npartitions=2)).compute(),
                    local.predict_proba(test), rtol=1e-6)
    accuracy = float((pred == y_test.to_numpy()).mean())
    assert accuracy > 0.75 and abs(accuracy - memory.score(test, y_test)) < 0.06, (
        accuracy, memory.score(test, y_test))


def test_tabular_regressor_on_frames(client):
    df, _, target = _frame(1200, 2)
    params = dict(max_iter=10, random_state=0, hidden_dims=(16,))
    est = DaskTabularMLPRegressor(**params, client=client).fit(
        dd.from_pandas(df, npartitions=3), dd.from_pandas(pd.Series(target), npartitions=3))
    memory = TabularMLPRegressor(**params).fit(df, target)
    assert_allclose(est._target_affine[0], memory._target_affine[0], rtol=1e-10)
    assert_allclose(est._target_affine[1], memory._target_affine[1], rtol=1e-10)
    # 10 epochs of a 16-unit network: learning (the target's variance is 5, R^2 of a
    # constant 0) and as far as the same fit in memory
    r2, r2_memory = est.to_local().score(df, target), memory.score(df, target)
    assert r2 > 0.3 and abs(r2 - r2_memory) < 0.1, (r2, r2_memory)


# ------------------------------------------------------------------- faults
def _bad_block(shape):
    raise OSError("disk read failed")


def test_a_failing_partition_ends_the_fit_with_its_error(client):
    good = da.ones((100, 3), chunks=(100, 3))
    bad = da.from_delayed(dask.delayed(_bad_block)((100, 3)), shape=(100, 3), dtype=float)
    y = da.from_array(np.arange(200) % 2, chunks=100)
    est = DaskMLPClassifier(max_iter=2, client=client)
    with pytest.raises(OSError, match="partition 1 .*disk read failed"):
        est.fit(da.concatenate([good, bad]), y)
    assert not hasattr(est, "module_")


def test_mismatched_partitions_and_in_memory_input_are_refused(client):
    X = da.ones((100, 3), chunks=50)
    with pytest.raises(ValueError, match="partitions"):
        DaskMLPClassifier(client=client).fit(X, da.ones(100, chunks=25))
    with pytest.raises(TypeError, match="dask array"):
        DaskMLPClassifier(client=client).fit(np.ones((10, 3)), np.arange(10) % 2)
    with pytest.raises(ValueError, match="lbfgs"):
        DaskMLPClassifier(client=client, optimizer="lbfgs").fit(X, da.ones(100, chunks=50))
    for value in ("refit", "bagging", "finetune"):
        with pytest.raises(ValueError, match=f"'{value}' is not supported"):
            DaskMLPClassifier(client=client, early_stopping=value).fit(X, da.ones(100, chunks=50))


def _fail_on(address, epoch, fail):
    """A callback that calls ``fail()`` at ``epoch`` on the worker at ``address``."""
    def callback(est, e, logs):
        if e == epoch and distributed.get_worker().address == address:
            fail()
        return False
    return callback


def _rows():
    X = np.random.default_rng(0).normal(size=(400, 4))
    return X, (X[:, 0] > 0).astype(int)


def _split_rows(client, X, y):
    """Half of the rows on each worker: (X, y) as dask arrays."""
    return _placed(client, [X[:200], X[200:]]), _placed(client, [y[:200], y[200:]])


def _raise(exc):
    raise exc


def test_an_error_on_one_worker_is_raised_not_the_broken_collective(client):
    workers = _workers(client)
    boom = _fail_on(workers[1], 2, lambda: _raise(ValueError("boom on worker")))
    est = DaskMLPClassifier(max_iter=5, client=client, timeout=20, callbacks=[boom])
    tic = time.perf_counter()
    with pytest.raises(ValueError, match="boom on worker"):
        est.fit(*_split_rows(client, *_rows()))
    assert time.perf_counter() - tic < 15
    assert not hasattr(est, "module_")
    # The failing worker closed its connections: the other one's collective
    # failed at once (not after timeout=20 s), so that worker is free now.
    tic = time.perf_counter()
    client.submit(int, 1, workers=[workers[0]], pure=False).result(timeout=15)
    assert time.perf_counter() - tic < 5


def test_a_partition_whose_rows_all_weigh_zero_does_not_fail_the_fit(client):
    """docs/scaling.rst: sample_weight weighs the rows "as in fit". Found by an
    audit (fixed): ValueError "partition 1 of the fit's data failed: sample_weight
    must not be all zero: nothing would be learned" although three of the
    four partitions carry weight; ``_Recipe.prepare`` applied fit's whole-data
    check (``_sample_weight``) to each partition. In memory the same rows fit."""
    r = np.random.RandomState(0)
    X, y = r.randn(400, 3), r.randn(400)
    w = np.ones(400)
    w[100:200] = 0.0  # exactly the second partition
    kw = dict(hidden_dims=(4,), max_iter=2, random_state=0)
    MLPTorchRegressor(**kw).fit(X, y, sample_weight=w)  # fine in memory
    est = DaskMLPRegressor(**kw, client=client).fit(
        da.from_array(X, chunks=100), da.from_array(y, chunks=100),
        sample_weight=da.from_array(w, chunks=100))
    assert est.n_iter_ == 2
    assert np.isfinite(est.predict(da.from_array(X, chunks=100)).compute()).all()


def test_a_category_only_in_held_out_rows_acts_as_unknown_as_in_memory(client):
    """docs/user_guide.rst: "A category that none of a network's training rows
    holds (e.g. one seen only in a held-out fold) is treated as unknown by that
    network." In memory, ``_fit_steps`` calls ``forget_unseen`` after early
    stopping. Found by an audit (fixed): the Dask fit did not; the category's
    first-layer weights stayed as initialised (never trained: weight_decay=0
    leaves them bit-equal to the initial ones) and its probabilities differed
    from the unknown code's (0.362 vs 0.288 here)."""
    r = np.random.RandomState(0)
    levels = r.choice(["a", "b"], 200).astype(object)
    levels[7] = "rare"  # one row; validation_fraction=0.9 holds it out
    df = pd.DataFrame({"x": r.randn(200), "s": pd.Categorical(levels)})
    y = pd.Series((df["x"] > 0).astype(int), name="y")
    kw = dict(hidden_dims=(4,), max_iter=3, random_state=1, weight_decay=0.0,
              early_stopping=True, validation_fraction=0.9)
    rare = df.iloc[[7]]
    unknown = rare.assign(s=pd.Categorical(["never-seen"]))
    in_memory = MLPTorchClassifier(**kw).fit(df, y)
    assert_allclose(in_memory.predict_proba(rare), in_memory.predict_proba(unknown))
    est = DaskMLPClassifier(**kw, client=client).fit(dd.from_pandas(df, npartitions=2),
                                                      dd.from_pandas(y, npartitions=2))
    local = est.to_local()
    assert_allclose(local.predict_proba(rare), local.predict_proba(unknown))


def test_a_worker_lost_mid_fit_ends_the_fit_in_bounded_time(client):
    # Last in the module: one of the cluster's worker processes dies mid-fit
    # (its nanny starts a new one). It starts from fresh worker processes: the
    # fault tests before it can leave a worker being replaced, and rows
    # scattered to it then are lost before the fit starts (seen once in CI as
    # "lost dependencies" in the driver's sampling, not in the fit).
    client.restart()
    client.run(_warm)
    workers = _workers(client)
    X, y = _rows()
    die = _fail_on(workers[1], 2, lambda: os._exit(1))  # the worker process dies mid-fit
    est = DaskMLPClassifier(max_iter=50, client=client, timeout=10, callbacks=[die])
    tic = time.perf_counter()
    with pytest.raises(RuntimeError, match="left the cluster"):
        est.fit(*_split_rows(client, X, y))
    assert time.perf_counter() - tic < 20
    assert not hasattr(est, "module_")
    # the survivor is free again: a new fit runs (on whichever workers are up)
    est = DaskMLPClassifier(max_iter=2, client=client, timeout=10).fit(
        da.from_array(X, chunks=200), da.from_array(y, chunks=200))
    assert est.n_iter_ == 2
