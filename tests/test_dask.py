"""GridSearchCV on a real Dask cluster (two worker processes) through joblib."""

import logging
import time

import numpy as np
import pytest
from dask import distributed
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from skmlp import MLPTorchClassifier

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    "ignore::DeprecationWarning",
    "ignore::ResourceWarning",
)


def test_grid_search_on_local_dask_cluster_matches_local_run():
    X, y = make_classification(n_samples=90, n_features=5, random_state=0)
    grid = {"hidden_dims": [(2,), (16,)], "lr": [1e-4, 3e-2]}

    def search():
        est = MLPTorchClassifier(max_iter=15, random_state=0)
        return GridSearchCV(est, grid, cv=3, error_score="raise").fit(X, y)

    tic = time.perf_counter()
    local = search()
    print(f"local search: {time.perf_counter() - tic:.1f}s")
    tic = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        print(f"cluster start: {time.perf_counter() - tic:.1f}s")
        with distributed.get_task_stream(client) as tasks, parallel_config(backend="dask"):
            remote = search()
        workers = set(client.scheduler_info()["workers"])
        print(f"dask search: {time.perf_counter() - tic:.1f}s")
    # The cross-validation fits ran on the cluster's worker processes.
    assert len(tasks.data) >= 1
    assert len(workers) == 2 and {t["worker"] for t in tasks.data} <= workers
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])
