"""
skmlp vs scikit-learn's MLP: accuracy and time
==============================================

:class:`~skmlp.MLPTorchClassifier` and scikit-learn's
:class:`~sklearn.neural_network.MLPClassifier` side by side on the digits data,
with the same architecture, optimizer and number of epochs, by 3-fold
cross-validation.

The timings are those of the machine that built this page, with the thread
count printed below, on a small problem; they say little about large data or
GPUs. See :doc:`/benchmarks` for measured comparisons.
"""

# %%
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmlp import MLPTorchClassifier

X, y = load_digits(return_X_y=True)
print(f"torch threads: {torch.get_num_threads()}")

# Both models: one hidden layer of 64 ReLU units, Adam with lr=1e-3, batches of
# 200, 40 epochs. weight_decay = alpha / batch_size gives the same L2 penalty
# (see the user guide). 40 epochs stop short of convergence (for speed), so
# both warn; we silence that.
epochs = 40
models = {
    "skmlp\n(float64)": MLPTorchClassifier((64,), max_iter=epochs, weight_decay=1e-4 / 200,
                                           random_state=0),
    "skmlp\n(float32)": MLPTorchClassifier((64,), max_iter=epochs, weight_decay=1e-4 / 200,
                                           dtype="float32", random_state=0),
    "scikit-learn\nMLPClassifier": MLPClassifier((64,), max_iter=epochs, alpha=1e-4,
                                                 random_state=0),
}

results = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, model in models.items():
        tic = time.perf_counter()
        cv = cross_validate(make_pipeline(StandardScaler(), model), X, y, cv=3)
        results[name] = (cv["test_score"], cv["fit_time"])
        label = name.replace("\n", " ")
        print(f"{label:<28} accuracy {cv['test_score'].mean():.3f} "
              f"± {cv['test_score'].std():.3f}   fit {cv['fit_time'].mean():.3f} s")

# %%
# The same numbers as bar charts (mean over the folds; the whiskers are one
# standard deviation).
import matplotlib.pyplot as plt

names = list(results)
acc = np.array([results[n][0] for n in names])
fit = np.array([results[n][1] for n in names])
fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(8.5, 3.4))
colors = ["tab:blue", "tab:cyan", "tab:gray"]
ax_acc.bar(names, acc.mean(axis=1), yerr=acc.std(axis=1), color=colors, capsize=4)
ax_acc.set(ylabel="accuracy (3-fold CV)", ylim=(0.8, 1.0), title="accuracy")
ax_time.bar(names, fit.mean(axis=1), yerr=fit.std(axis=1), color=colors, capsize=4)
ax_time.set(ylabel="seconds per fit", title=f"fit time ({epochs} epochs)")
for ax in (ax_acc, ax_time):
    ax.tick_params(axis="x", labelsize=8)
fig.tight_layout()
plt.show()
