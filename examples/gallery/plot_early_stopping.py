"""
Early stopping and loss curves
==============================

With ``early_stopping=True`` the estimator holds out ``validation_fraction`` of
the training data, scores it after every epoch (accuracy for the classifier,
R² for the regressor), stops once the score has not improved by ``tol`` for
``n_iter_no_change`` epochs, and restores the weights of the best epoch.

After ``fit`` the curves are attributes: ``loss_curve_`` (mean training loss per
epoch), ``validation_scores_`` (validation score per epoch) and ``history_``
(one dict per epoch, with the learning rate and the time taken as well).
"""

# %%
# Fit with and without early stopping
# -----------------------------------
# A wide network without weight decay on few, noisy samples (15 % of the labels
# are flipped at random): the setting in which a network overfits, and in
# which early stopping helps.
import warnings

from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skmlp import MLPTorchClassifier

X, y = make_classification(n_samples=1500, n_features=20, n_informative=6,
                           flip_y=0.15, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=800, random_state=0)

params = dict(hidden_dims=(256,), lr=3e-3, weight_decay=0.0, batch_size=64,
              random_state=1)
early = MLPTorchClassifier(early_stopping=True, validation_fraction=0.25,
                           n_iter_no_change=15, max_iter=100, **params)
early.fit(X_train, y_train)

# Without early stopping the training loss keeps improving, so all 100 epochs
# run and fit warns that it has not converged; that is expected here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    full = MLPTorchClassifier(max_iter=100, **params).fit(X_train, y_train)

best_epoch = 1 + max(range(early.n_iter_), key=early.validation_scores_.__getitem__)
print(f"early stopping ran {early.n_iter_} epochs; the best validation accuracy "
      f"({early.best_validation_score_:.3f}) was at epoch {best_epoch}, whose weights "
      f"were restored")
print(f"test accuracy with early stopping:       {early.score(X_test, y_test):.3f}")
print(f"test accuracy after {full.n_iter_} epochs without it: "
      f"{full.score(X_test, y_test):.3f}")

# %%
# Plot the curves
# ---------------
# The training loss keeps falling while the validation accuracy stops improving
# after a few epochs: later epochs fit the noise in the training labels. The
# model trained for all 100 epochs drives its training loss far lower and does
# worse on the test set.
# The right-hand panel is the model trained for all epochs.
#
# :class:`skmlp.LossCurveDisplay` draws the training loss and, on a twin axis,
# the validation score of a fitted estimator.
import matplotlib.pyplot as plt

from skmlp import LossCurveDisplay

fig, (ax_early, ax_full) = plt.subplots(1, 2, figsize=(9, 3.6))
LossCurveDisplay.from_estimator(early, ax=ax_early)
ax_early.axvline(best_epoch, color="gray", linestyle="--", linewidth=1)
ax_early.set_title(f"early stopping (dashed: best epoch, {best_epoch})", fontsize=10)
LossCurveDisplay.from_estimator(full, ax=ax_full)
ax_full.set_title(f"no early stopping ({full.n_iter_} epochs)", fontsize=10)
fig.tight_layout()
plt.show()

# %%
# The same numbers, epoch by epoch
# --------------------------------
# ``history_`` holds everything that ``verbose=1`` prints, as data.
import pandas as pd

history = pd.DataFrame(early.history_).set_index("epoch")
print(history.drop(columns="seconds").round(4).tail(10).to_string())
