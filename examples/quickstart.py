"""Quickstart: skmlp vs scikit-learn's MLP on the digits data set.

Cross-validates ``StandardScaler -> MLPTorchClassifier`` and the same pipeline
with ``sklearn.neural_network.MLPClassifier`` (5 folds, same defaults), prints
accuracy and fit time side by side, and saves the training loss curves of both
to ``quickstart_loss_curve.png``.
"""

import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import cross_validate  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skmlp import MLPTorchClassifier  # noqa: E402

OUTPUT = "quickstart_loss_curve.png"


def main():
    X, y = load_digits(return_X_y=True)
    print(f"digits: {X.shape[0]} images of {X.shape[1]} pixels, {len(set(y))} classes\n")
    models = {
        "skmlp MLPTorchClassifier": MLPTorchClassifier(random_state=0),
        "sklearn MLPClassifier": MLPClassifier(random_state=0),
    }
    print(f"{'model':<28}{'accuracy (5-fold)':>20}{'fit s/fold':>12}")
    fitted = {}
    for name, model in models.items():
        pipe = make_pipeline(StandardScaler(), model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            tic = time.perf_counter()
            cv = cross_validate(pipe, X, y, cv=5, return_estimator=True)
            elapsed = time.perf_counter() - tic
        acc = cv["test_score"]
        print(f"{name:<28}{acc.mean():>13.4f} ± {acc.std():.4f}{cv['fit_time'].mean():>12.2f}")
        fitted[name] = cv["estimator"][0][-1]
        print(f"{'':<28}{'(total ' + format(elapsed, '.1f') + ' s)':>20}")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, est in fitted.items():
        ax.plot(range(1, len(est.loss_curve_) + 1), est.loss_curve_, label=name)
    ax.set(xlabel="epoch", ylabel="training loss (log-loss)", yscale="log",
           title="digits, first CV fold")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=120)
    print(f"\nloss curves saved to {OUTPUT}")


if __name__ == "__main__":
    main()
