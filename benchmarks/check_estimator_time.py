"""Wall time of scikit-learn's ``check_estimator`` on skmlp vs sklearn's MLPs.

    python benchmarks/check_estimator_time.py [--repeat N]

sklearn's MLPs are timed at ``max_iter=100`` (the setting sklearn's own test
suite uses for them) against ``MLPTorch*``, and at their defaults against the
``TabularMLP*`` estimators; skmlp always at its defaults, as the contract
requires. Rounds are interleaved. Prints a markdown table with the medians and
ratios.
"""

import argparse
import statistics
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.estimator_checks import check_estimator

from skmlp import (MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier,
                   TabularMLPRegressor)


def timed_once(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tic = time.perf_counter()
        check_estimator(estimator)
        return time.perf_counter() - tic


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    # Warm torch up once (first-use library initialisation is not per-fit cost).
    MLPTorchClassifier(max_iter=2).fit([[0.0], [1.0]], [0, 1])
    pairs = [
        ("classifier", MLPTorchClassifier(), MLPClassifier(max_iter=100)),
        ("regressor", MLPTorchRegressor(), MLPRegressor(max_iter=100)),
        ("tabular classifier", TabularMLPClassifier(), MLPClassifier()),
        ("tabular regressor", TabularMLPRegressor(), MLPRegressor()),
    ]
    times = {name: ([], []) for name, _, _ in pairs}
    for _ in range(args.repeat):
        for name, ours, theirs in pairs:
            times[name][0].append(timed_once(ours))
            times[name][1].append(timed_once(theirs))
    print("| estimator | skmlp (s) | sklearn (s) | ratio |")
    print("|---|---|---|---|")
    for name, (ours, theirs) in times.items():
        t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"| {name} | {t_ours:.2f} | {t_theirs:.2f} | {t_ours / t_theirs:.2f}x |")


if __name__ == "__main__":
    main()
