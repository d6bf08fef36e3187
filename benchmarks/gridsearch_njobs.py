"""GridSearchCV wall time at n_jobs=1 vs n_jobs=2 on 200-row fits.

Run from the repository root::

    python benchmarks/gridsearch_njobs.py [--repeats 3] [--backend loky]

Each configuration is timed ``--repeats`` times after one untimed warm-up
search (which starts the loky workers and imports torch in them); the median
is reported. Inside the workers skmlp limits torch to its share of the cores
(see ``skmlp/_threads.py``), so two parallel fits do not fight over them.
The speed-up is bounded by the number of otherwise idle cores: on a shared
machine it measures the load as much as skmlp.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from skmlp import MLPTorchClassifier


def search(X, y, n_jobs, max_iter):
    grid = {"hidden_dims": [(32,), (64,)], "lr": [1e-3, 3e-3], "weight_decay": [1e-4, 1e-3]}
    est = MLPTorchClassifier(max_iter=max_iter, tol=0.0, random_state=0)
    return GridSearchCV(est, grid, cv=3, n_jobs=n_jobs).fit(X, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--backend", default="loky")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ConvergenceWarning of the short fits
    X, y = make_classification(n_samples=300, n_features=20, random_state=0)  # 200-row fits
    X = X.astype(np.float32)
    times = {}
    with parallel_config(backend=args.backend):
        for n_jobs in (1, 2):
            search(X, y, n_jobs, 2)  # warm-up: workers started, torch imported
            runs = []
            for _ in range(args.repeats):
                tic = time.perf_counter()
                gs = search(X, y, n_jobs, args.max_iter)
                runs.append(time.perf_counter() - tic)
            times[n_jobs] = statistics.median(runs)
            print(f"n_jobs={n_jobs}: median {times[n_jobs]:.2f}s over {runs} "
                  f"(best {gs.best_params_})")
    print(f"speed-up n_jobs=2 vs 1: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
