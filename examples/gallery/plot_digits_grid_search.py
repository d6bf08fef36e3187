"""
Digits classification with GridSearchCV
=======================================

:class:`~skmlp.MLPTorchClassifier` is a plain scikit-learn estimator, so it
works inside a :class:`~sklearn.pipeline.Pipeline` and is tuned with
:class:`~sklearn.model_selection.GridSearchCV` like any other. Here we tune the
width of the hidden layer and the weight decay on the 8x8 digits images.

The grid and the number of epochs are kept tiny so that this example runs in a
few seconds; on your own data, search wider and train longer.
"""

# %%
# Load the data and hold out a test set.
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmlp import MLPTorchClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(f"{X_train.shape[0]} training images, {X_test.shape[0]} test images")

# %%
# A scaler and the network in one pipeline: the scaler is refitted on every
# training fold, so nothing leaks from the validation folds. Parameters of the
# network are addressed as ``mlptorchclassifier__<name>``.
#
# ``max_iter=30`` epochs is short of convergence on purpose (speed), so we
# silence the :class:`~sklearn.exceptions.ConvergenceWarning` it triggers.
import warnings

from sklearn.exceptions import ConvergenceWarning

warnings.filterwarnings("ignore", category=ConvergenceWarning)

pipe = make_pipeline(
    StandardScaler(),
    MLPTorchClassifier(max_iter=30, random_state=0),
)
param_grid = {
    "mlptorchclassifier__hidden_dims": [(32,), (128,)],
    "mlptorchclassifier__weight_decay": [1e-4, 1e-2],
}
search = GridSearchCV(pipe, param_grid, cv=3)
search.fit(X_train, y_train)

# %%
# The cross-validated accuracy of every candidate, best first.
import pandas as pd

results = pd.DataFrame(search.cv_results_)
columns = ["param_mlptorchclassifier__hidden_dims",
           "param_mlptorchclassifier__weight_decay",
           "mean_test_score", "std_test_score", "mean_fit_time"]
print(results[columns].sort_values("mean_test_score", ascending=False).to_string(index=False))

# %%
# The best pipeline was refitted on the whole training set; score it on the
# held-out test set.
print("best parameters:", search.best_params_)
print(f"test accuracy: {search.score(X_test, y_test):.3f}")

# %%
# Test images the model got wrong (up to 12), with predicted and true labels.
import matplotlib.pyplot as plt

pred = search.predict(X_test)
wrong = (pred != y_test).nonzero()[0][:12]
fig, axes = plt.subplots(2, 6, figsize=(7, 2.8))
for ax in axes.ravel():
    ax.set_axis_off()
for ax, i in zip(axes.ravel(), wrong):
    ax.imshow(X_test[i].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"pred {pred[i]}, true {y_test[i]}", fontsize=8)
fig.suptitle(f"{(pred != y_test).sum()} of {len(y_test)} test images misclassified")
fig.tight_layout()
plt.show()
