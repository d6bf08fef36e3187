"""Acceptance audit 2, skmlp.dask part: docs/scaling.rst says the Dask
estimators weight everything by ``sample_weight`` "as in fit"."""

import logging

import numpy as np
import pytest

from skmlp import MLPTorchRegressor

distributed = pytest.importorskip("distributed", reason="pip install 'skmlp[dask]'")
da = pytest.importorskip("dask.array")

from skmlp.dask import DaskMLPRegressor  # noqa: E402

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
