"""
Regression on the diabetes data
===============================

:class:`~skmlp.MLPTorchRegressor` on scikit-learn's diabetes data (442
patients, 10 features, a measure of disease progression one year later),
compared with a ridge regression baseline by 5-fold cross-validation.

On a data set this small, full-batch L-BFGS (``optimizer="lbfgs"``) is fast and
accurate, just as with scikit-learn's MLP. Scaling the *target* as well as the
features (with :class:`~sklearn.compose.TransformedTargetRegressor`) helps the
network: the raw target ranges from 25 to 346.
"""

# %%
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmlp import MLPTorchRegressor

X, y = load_diabetes(return_X_y=True)

mlp = TransformedTargetRegressor(
    regressor=make_pipeline(
        StandardScaler(),
        MLPTorchRegressor(hidden_dims=(16,), optimizer="lbfgs", max_iter=50,
                          weight_decay=1e-1, random_state=0),
    ),
    transformer=StandardScaler(),
)
ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=[0.1, 1, 10, 100]))

# %%
# Cross-validated R² of both models. A small network with a strong weight decay
# and few L-BFGS iterations is about as good as the linear baseline here: the
# diabetes data are close to linear and too few for a network to find more.
for name, model in [("MLPTorchRegressor", mlp), ("RidgeCV", ridge)]:
    cv = cross_validate(model, X, y, cv=5, scoring="r2")
    print(f"{name:<18} R² = {cv['test_score'].mean():.3f} ± {cv['test_score'].std():.3f}"
          f"   fit {cv['fit_time'].mean():.2f} s")

# %%
# Out-of-fold predictions against the truth.
import matplotlib.pyplot as plt

pred = cross_val_predict(mlp, X, y, cv=5)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(y, pred, s=10, alpha=0.6)
lims = [min(y.min(), pred.min()), max(y.max(), pred.max())]
ax.plot(lims, lims, color="gray", linestyle="--", linewidth=1)
ax.set(xlabel="true disease progression", ylabel="predicted (out of fold)",
       title="MLPTorchRegressor, 5-fold CV")
fig.tight_layout()
plt.show()
