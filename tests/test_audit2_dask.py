"""Acceptance audit 2, skmlp.dask part: docs/scaling.rst says the Dask
estimators learn what ``fit`` learns (``sample_weight`` "as in fit");
both tests failed on the audited code (fixed since)."""

import logging

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skmlp import MLPTorchRegressor

distributed = pytest.importorskip("distributed", reason="pip install 'skmlp[dask]'")
da = pytest.importorskip("dask.array")

from skmlp.dask import DaskMLPClassifier, DaskMLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    "ignore::DeprecationWarning",
    "ignore::ResourceWarning",
    "ignore::FutureWarning",
)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_a_partition_whose_rows_all_weigh_zero_does_not_fail_the_fit(client):
    """Found: ValueError "partition 1 of the fit's data failed: sample_weight
    must not be all zero: nothing would be learned" although three of the
    four partitions carry weight; ``_Recipe.prepare`` applies fit's whole-data
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
    stopping. Found: the Dask fit does not; the category's first-layer weights
    stay as initialised (never trained: weight_decay=0 leaves them bit-equal to
    the initial ones) and its probabilities differ from the unknown code's
    (0.362 vs 0.288 here)."""
    import pandas as pd

    dd = pytest.importorskip("dask.dataframe")
    from skmlp import MLPTorchClassifier

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
