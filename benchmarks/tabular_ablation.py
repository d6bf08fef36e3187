"""Ablation behind the Tabular* defaults: each step added to the previous one, on real tables.

    python benchmarks/tabular_ablation.py [--tables credit,chile] [--seeds 1] [--threads 1]
                                          [--steps base,periodic] [--json PATH]

Every step is ``MLPTorchClassifier``/``MLPTorchRegressor`` on the raw DataFrame (the
tables of ``benchmarks/tables.py``, loaded from packages on disk) with the parameters of all
steps up to it; the reference is skmlp's MLP at scikit-learn's defaults in the usual
ColumnTransformer pipeline (``skmlp_mlp`` in tables.py). Prints, per step, the geometric
mean over tables and seeds of the test error relative to the reference, and of the fit
time, so each addition is shown to pay (or not) on its own.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables as T  # noqa: E402

warnings.simplefilter("ignore")

# (name, parameters added by this step); each step keeps those before it.
STEPS = [
    ("raw frame, robust scaling", dict(missing="indicator", scaling="robust")),
    ("best epoch on 20% held out", dict(early_stopping="auto", validation_fraction=0.2,
                                        n_iter_no_change=20)),
    ("periodic numeric embeddings", dict(numeric_embedding="periodic")),
    ("label smoothing 0.1 / target scaling", dict(label_smoothing=0.1, target_scaling=True)),
    ("ensemble of 4", dict(n_ensemble=4)),
    ("width 256x256, AdamW, cosine, 100 epochs", dict(
        hidden_dims=(256, 256), optimizer="adamw", weight_decay=1e-2, batch_size=256,
        max_iter=100, lr_schedule="cosine")),
]

# Whole configurations compared side by side (--variants): the ablation's best prefix
# ("best epoch") with the later steps added one at a time and together.
_BEST_EPOCH = dict(missing="indicator", scaling="robust", early_stopping="auto",
                   validation_fraction=0.2, n_iter_no_change=20)
VARIANTS = [
    ("best epoch + ensemble of 4", dict(_BEST_EPOCH, n_ensemble=4)),
    ("best epoch + ensemble of 4 + label smoothing / target scaling",
     dict(_BEST_EPOCH, n_ensemble=4, label_smoothing=0.1, target_scaling=True)),
    ("best epoch + ensemble of 4 + periodic", dict(_BEST_EPOCH, n_ensemble=4,
                                                   numeric_embedding="periodic")),
]


def model(task, params, seed):
    from skmlp import MLPTorchClassifier, MLPTorchRegressor

    params = dict(params)
    if task == "clf":
        params.pop("target_scaling", None)
        return MLPTorchClassifier(random_state=seed, **params)
    params.pop("label_smoothing", None)
    est = MLPTorchRegressor(random_state=seed, **params)
    if not params.get("target_scaling"):  # the reference standardises targets too
        return T._std_target(est, task)
    return est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="credit,chile,hmda,attrition,saratoga,diabetes")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-train", type=int, default=5000)
    parser.add_argument("--steps", default=None, help="comma-separated step numbers to run")
    parser.add_argument("--variants", action="store_true",
                        help="compare the whole configurations of VARIANTS instead of STEPS")
    parser.add_argument("--json", default="benchmarks/results/tabular_ablation.json")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    cumulative, configs = {}, []
    for name, params in STEPS:
        cumulative = {**cumulative, **params}
        configs.append((name, dict(cumulative)))
    if args.variants:
        configs = [(name, dict(params)) for name, params in VARIANTS]
    chosen = (range(len(configs)) if args.steps is None
              else [int(s) for s in args.steps.split(",")])
    rows = []
    for seed in range(args.seeds):
        for table in args.tables.split(","):
            task, load = T.TABLES[table]
            X, y = load()
            X_tr, X_te, y_tr, y_te = T.split(X, y, task, seed, args.max_train, 5000)
            runs = [("reference", T.make_skmlp_mlp(task, X_tr, seed))]
            runs += [(configs[i][0], model(task, configs[i][1], seed)) for i in chosen]
            for name, est in runs:
                tic = time.perf_counter()
                est.fit(X_tr, y_tr)
                fit_s = time.perf_counter() - tic
                err = T.error(task, y_te, est.predict(X_te))
                rows.append({"seed": seed, "table": table, "step": name, "error": err,
                             "fit_s": fit_s})
                print(f"seed {seed} {table:10s} {name:42s} err {err:.4f} fit {fit_s:7.2f}s",
                      flush=True)
    ref = {(r["seed"], r["table"]): r for r in rows if r["step"] == "reference"}
    print("\n| step | rel. error (gmean) | fit s (gmean) |\n|---|---|---|")
    for name in ["reference"] + [configs[i][0] for i in chosen]:
        mine = [r for r in rows if r["step"] == name]
        rel = [max(r["error"], T.ERROR_FLOOR) / max(ref[(r["seed"], r["table"])]["error"],
                                                      T.ERROR_FLOOR) for r in mine]
        print(f"| {name} | {np.exp(np.mean(np.log(rel))):.3f} | "
              f"{np.exp(np.mean(np.log([r['fit_s'] for r in mine]))):.2f} |")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"steps": [[n, {k: str(v) for k, v in p.items()}] for n, p in configs],
                   "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
