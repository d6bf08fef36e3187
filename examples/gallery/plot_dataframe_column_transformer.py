"""
A mixed-type DataFrame through a ColumnTransformer
==================================================

Real tables mix numbers, categories, booleans and missing values. The network
needs a numeric matrix without missing values, so the preprocessing goes into
the pipeline with a :class:`~sklearn.compose.ColumnTransformer`: it is then
fitted on training data only, cross-validates correctly and travels with the
model when it is saved.

The data here are synthetic (generated below, so the example needs no
download): a customer table with a churn label.
"""

# %%
# A small synthetic table
# -----------------------
import numpy as np
import pandas as pd

rng = np.random.default_rng(0)
n = 1500
df = pd.DataFrame({
    "age": rng.integers(18, 80, n).astype(float),
    "monthly_fee": rng.gamma(4.0, 12.0, n).round(2),
    "support_calls": rng.poisson(1.5, n),
    "plan": pd.Categorical(rng.choice(["basic", "plus", "premium"], n, p=[0.5, 0.3, 0.2])),
    "region": rng.choice(["north", "south", "east", "west"], n),
    "autopay": rng.random(n) < 0.6,
})
# Missing values in two columns, as real data have.
df.loc[rng.random(n) < 0.08, "age"] = np.nan
df.loc[rng.random(n) < 0.05, "region"] = None

# Churn is more likely with many support calls, a high fee on the basic plan,
# and without autopay.
logit = (1.2 * (df["support_calls"] - 1.5)
         + 0.08 * (df["monthly_fee"] - 48) * (df["plan"] == "basic")
         - 1.5 * df["autopay"] + 0.2)
y = pd.Series(np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "churn", "stay"),
              name="status")
print(df.dtypes, "\n")
print(df.head())
print("\nlabels:", y.value_counts().to_dict())

# %%
# The pipeline
# ------------
# Numeric columns: impute the median, then standardise. Categorical and text
# columns: impute the most frequent value, then one-hot encode (unknown
# categories at prediction time become all-zero rows). The boolean column is
# passed through as 0/1. ``set_output(transform="pandas")`` keeps the column
# names, so the network records them in ``feature_names_in_``.
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmlp import MLPTorchClassifier

preprocess = ColumnTransformer([
    ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
     ["age", "monthly_fee", "support_calls"]),
    ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                          OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
     ["plan", "region"]),
    ("bool", "passthrough", ["autopay"]),
]).set_output(transform="pandas")

model = make_pipeline(
    preprocess,
    MLPTorchClassifier(hidden_dims=(32,), lr=1e-2, early_stopping=True, max_iter=60,
                       n_iter_no_change=8, random_state=0),
)

# %%
# Cross-validation and a held-out test set
# ----------------------------------------
from sklearn.model_selection import cross_val_score, train_test_split

X_train, X_test, y_train, y_test = train_test_split(df, y, stratify=y, random_state=0)
scores = cross_val_score(model, X_train, y_train, cv=3)
print(f"3-fold accuracy: {scores.mean():.3f} ± {scores.std():.3f}")

model.fit(X_train, y_train)
mlp = model[-1]
print(f"test accuracy:   {model.score(X_test, y_test):.3f}")
print(f"stopped after {mlp.n_iter_} epochs")
print("classes:", mlp.classes_)
print("features the network saw:", list(mlp.feature_names_in_))

# %%
# Predictions come back as the original string labels; ``predict_proba`` has
# one column per entry of ``classes_``.
print(pd.DataFrame(model.predict_proba(X_test.head()), columns=mlp.classes_,
                   index=X_test.head().index).assign(predicted=model.predict(X_test.head())))

# %%
# Which inputs matter? Permutation importance works on the raw DataFrame
# columns, because the preprocessing is part of the model.
import matplotlib.pyplot as plt
from sklearn.inspection import permutation_importance

imp = permutation_importance(model, X_test, y_test, n_repeats=5, random_state=0)
order = imp.importances_mean.argsort()
fig, ax = plt.subplots(figsize=(5, 3))
ax.barh(X_test.columns[order], imp.importances_mean[order],
        xerr=imp.importances_std[order], color="tab:blue")
ax.set(xlabel="drop in accuracy when the column is shuffled",
       title="Permutation importance (test set)")
fig.tight_layout()
plt.show()
