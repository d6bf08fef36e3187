"""Ablation rows for the Tabular* defaults, on the tuning part of benchmarks/tables.py only.

    python benchmarks/tabular_ablation.py [--row "label_smoothing=0"] [--row "n_ensemble=1"]
                                          [--tables tuning] [--seeds 1] [--threads 1]
                                          [--max-train 10000] [--json PATH] [--resume]
                                          [--catboost benchmarks/tables_split_results.json]
    python benchmarks/tabular_ablation.py --summary-from PATH [--catboost JSON]
    python benchmarks/tabular_ablation.py --legacy [--variants]   # the first ablation (below)

Each row is ``TabularMLPClassifier`` / ``TabularMLPRegressor`` at its defaults with the
parameters the row names changed; ``defaults`` (no change) always runs and is the
reference. A row is written ``--row "param=value; param=value"`` (values are Python
literals: ``0``, ``None``, ``"loss"``, ``(256, 256)``; a bare word is a string), or
``--row "NAME: param=value; ..."`` to name it. Parameters pass to the estimator as given
(``set_params``), so any parameter the estimators have can be ablated, ``scoring``
included once it exists; a parameter one of the two estimators does not have (e.g.
``label_smoothing`` on a regressor) leaves that estimator at its defaults, and a row equal
to the defaults for a table is not fitted twice (its numbers are the defaults' ones).

One pseudo-parameter, ``early_stopping_rows=N``, sets ``early_stopping`` to whether the
table's training split has at least N rows: the threshold of ``early_stopping="auto"``
(1000 in skmlp today) moved without touching the package. ``early_stopping_rows=0`` is
``early_stopping=True``; a number above every split's size is ``False``.

Only tables of the tuning part run (``tables.PART``): the confirmation part is kept for
judging the defaults chosen here, never for choosing them. Splits, seeds and metrics are
tables.py's (same ``--max-train``/``--max-test`` -> same rows), so ``--catboost JSON`` can
add CatBoost's numbers from a tables.py run on the same splits.

Printed per row: geometric means over tables and seeds of error, log loss (classification
tables) and fit time relative to ``defaults``, the same over only the fits the row changed
(a classifier-only parameter changes no regression fit), how many tables it wins/loses on
error, and with ``--catboost`` the error and log loss relative to CatBoost's.

DEFAULT_ROWS (no ``--row``) are the questions issue 19 asks of the defaults: label
smoothing, early stopping (always, never, threshold 1000 vs 3000), the ensemble, the
numeric embedding.

``--legacy`` runs the first ablation, which chose today's defaults on 6 of the first 12
tables: ``MLPTorchClassifier``/``MLPTorchRegressor`` with each step added to the previous
one (``--variants``: whole configurations side by side), relative to skmlp's MLP at
scikit-learn's defaults in a ColumnTransformer pipeline (benchmarks/tabular_ablation_results.json).
"""

import argparse
import ast
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables as T  # noqa: E402

warnings.simplefilter("ignore")

DEFAULT_ROWS = [
    "label_smoothing=0",
    "early_stopping=True",
    "early_stopping=False",
    "early_stopping_rows=3000",
    "n_ensemble=1",
    "numeric_embedding=None",
]
PSEUDO = ("early_stopping_rows",)


def parse_row(text):
    """``"[NAME:] p=v; p=v"`` -> (name, {p: v}); values are Python literals or bare strings."""
    name, sep, body = text.partition(":")
    if not sep or "=" in name:
        name, body = None, text
    params = {}
    for part in body.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"expected param=value in {text!r}, got {part!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    if not params:
        raise argparse.ArgumentTypeError(f"row {text!r} changes no parameter")
    return (name.strip() if name else "; ".join(f"{k}={v!r}" for k, v in params.items()),
            params)


def build(task, params, seed, n_train):
    """The Tabular estimator of ``task`` with ``params`` applied; (estimator, applied)."""
    from skmlp import TabularMLPClassifier, TabularMLPRegressor

    est = (TabularMLPClassifier if task == "clf" else TabularMLPRegressor)(random_state=seed)
    known = est.get_params()
    applied = {}
    for key, value in params.items():
        if key == "early_stopping_rows":
            applied["early_stopping"] = bool(n_train >= value)
        elif key in known:
            applied[key] = value
    # An explicit early_stopping beats the pseudo-parameter's.
    applied.update({k: params[k] for k in ("early_stopping",) if k in params})
    # Only what differs from the defaults counts, so equal rows share one fit
    # (early_stopping=True on a split that "auto" already stops early on is the default).
    if known.get("early_stopping") == "auto" and "early_stopping" in applied:
        from skmlp._base import resolve_early_stopping

        members = int(applied.get("n_ensemble", known.get("n_ensemble", 1)))
        auto = resolve_early_stopping("auto", n_train, members)
        if resolve_early_stopping(applied["early_stopping"], n_train, members) == auto:
            del applied["early_stopping"]
    applied = {k: v for k, v in applied.items() if not _same(known.get(k), v)}
    return est.set_params(**applied), applied


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - arrays and the like: treat as different
        return False


def _tuning_tables(names):
    out = []
    for name in names:
        group = [t for t in T.TABLES if T.PART[t] == name] if name in ("tuning", "all") else [name]
        for t in group:
            if t not in T.TABLES:
                sys.exit(f"unknown table {t!r}; tables: {', '.join(T.TABLES)}")
            if T.PART[t] != "tuning":
                sys.exit(f"{t} is in the confirmation part: defaults are chosen on the tuning "
                         "part only (tables.PART)")
            out.append(t)
    return list(dict.fromkeys(out))


def run(args):
    rows = [("defaults", {})] + [parse_row(r) for r in (args.row or DEFAULT_ROWS)]
    names = [n for n, _ in rows]
    if len(set(names)) != len(names):
        sys.exit(f"two rows share a name: {names}")
    tables = _tuning_tables(args.tables.split(","))
    payload = {"meta": {"argv": sys.argv[1:], "versions": T.versions(), "threads": args.threads,
                        "max_train": args.max_train, "max_test": args.max_test,
                        "seeds": list(range(args.seeds)), "tables": tables,
                        "rows": {n: {k: repr(v) for k, v in p.items()} for n, p in rows},
                        "metric": T.METRIC, "started": time.strftime("%Y-%m-%d %H:%M:%S")},
               "results": []}
    done = {}
    if args.resume and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        payload["results"] = [r for r in old["results"] if "failed" not in r]
        payload["meta"]["rows"] = {**old["meta"].get("rows", {}), **payload["meta"]["rows"]}
        for r in payload["results"]:
            if "same_as" not in r:
                done.setdefault((r["table"], r["seed"], json.dumps(r["applied"],
                                                                    sort_keys=True)), r)
        print(f"resuming: {len(payload['results'])} fits from {args.json}", flush=True)
    have = {(r["table"], r["seed"], r["row"]) for r in payload["results"]}
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            _loop(args, payload, tables, rows, done, have)
    finally:
        torch.set_num_threads(torch_threads)
    return payload


def _loop(args, payload, tables, rows, done, have):
    t_start = time.perf_counter()
    for seed in range(args.seeds):
        for table in tables:
            task, load, _ = T.TABLES[table]
            X, y = load()
            X_tr, X_te, y_tr, y_te = T.split(X, y, task, seed, args.max_train, args.max_test)
            for name, params in rows:
                if (table, seed, name) in have:  # resumed
                    continue
                est, applied = build(task, params, seed, len(X_tr))
                key = (table, seed, json.dumps({k: repr(v) for k, v in applied.items()},
                                               sort_keys=True))
                rec = {"table": table, "task": task, "seed": seed, "row": name,
                       "applied": {k: repr(v) for k, v in applied.items()},
                       "n_train": len(X_tr), "n_test": len(X_te)}
                if key in done:  # the same fit under another row name
                    prev = done[key]
                    rec.update({m: prev.get(m) for m in T.METRICS}, same_as=prev["row"])
                    msg = f"= {prev['row']}"
                else:
                    try:
                        rec.update(T.evaluate(est, task, X_tr, y_tr, X_te, y_te))
                        done[key] = rec
                        msg = f"err {rec['error']:.4f} fit {rec['fit_s']:7.2f}s"
                        if rec.get("log_loss") is not None:
                            msg += f" logloss {rec['log_loss']:.4f}"
                    except Exception as exc:  # a failing row must not end the run
                        rec["failed"] = f"{type(exc).__name__}: {exc}"
                        msg = "FAILED " + rec["failed"]
                payload["results"].append(rec)
                print(f"[{time.perf_counter() - t_start:6.0f}s] seed {seed} {table:13s} "
                      f"{name:28s} {msg}", flush=True)
                T.write_json(args.json, payload)


def _catboost_runs(path):
    with open(path) as f:
        ref = json.load(f)
    return {(r["table"], r["seed"], ref["meta"]["max_train"], ref["meta"]["max_test"]): r
            for r in ref["results"] if r["contender"] == "catboost" and "failed" not in r}


def summarize(payload, catboost=None):
    ok = [r for r in payload["results"] if "failed" not in r]
    base = {(r["table"], r["seed"]): r for r in ok if r["row"] == "defaults"}
    meta = payload["meta"]
    out = {}
    for name in dict.fromkeys(r["row"] for r in ok):
        mine = [r for r in ok if r["row"] == name and (r["table"], r["seed"]) in base]
        rel = {"error": [], "log_loss": [], "fit_s": [], "applied_error": [],
               "applied_log_loss": []}
        cb = {"error": [], "log_loss": []}
        wins = losses = 0
        for r in mine:
            b = base[(r["table"], r["seed"])]
            floor = T.error_floor(r["task"], r["n_test"])
            rel["error"].append(max(r["error"], floor) / max(b["error"], floor))
            wins += r["error"] < b["error"]
            losses += r["error"] > b["error"]
            rel["fit_s"].append(r["fit_s"] / b["fit_s"])
            if r.get("log_loss") is not None:
                rel["log_loss"].append(max(r["log_loss"], T.LOG_LOSS_FLOOR)
                                       / max(b["log_loss"], T.LOG_LOSS_FLOOR))
            if r.get("same_as") != "defaults" and name != "defaults":  # the row changed a fit
                rel["applied_error"].append(rel["error"][-1])
                if r.get("log_loss") is not None:
                    rel["applied_log_loss"].append(rel["log_loss"][-1])
            c = (catboost or {}).get((r["table"], r["seed"], meta["max_train"], meta["max_test"]))
            if c:
                cb["error"].append(max(r["error"], floor) / max(c["error"], floor))
                if r.get("log_loss") is not None:
                    cb["log_loss"].append(max(r["log_loss"], T.LOG_LOSS_FLOOR)
                                          / max(c["log_loss"], T.LOG_LOSS_FLOOR))
        out[name] = {"params": meta["rows"].get(name, {}), "fits": len(mine),
                     "tables": len({r["table"] for r in mine}),
                     "rel_error": T._gmean(rel["error"]), "rel_log_loss": T._gmean(rel["log_loss"]),
                     "rel_fit": T._gmean(rel["fit_s"]),
                     "applied_fits": len(rel["applied_error"]),
                     "applied_rel_error": T._gmean(rel["applied_error"]),
                     "applied_rel_log_loss": T._gmean(rel["applied_log_loss"]),
                     "fit_s": T._gmean([r["fit_s"] for r in mine]),
                     "error_wins": int(wins), "error_losses": int(losses),
                     "catboost_rel_error": T._gmean(cb["error"]),
                     "catboost_rel_log_loss": T._gmean(cb["log_loss"]),
                     "catboost_pairs": len(cb["error"])}
    return out


def report(payload, catboost=None):
    summary = summarize(payload, catboost)
    ok = [r for r in payload["results"] if "failed" not in r]
    rows = list(summary)
    tables = list(dict.fromkeys(r["table"] for r in ok))
    print("\nPer table (mean over seeds): error [log loss]\n")
    print("| table | task |" + "".join(f" {n} |" for n in rows))
    print("|---|---|" + "---|" * len(rows))
    for t in tables:
        cells = []
        for n in rows:
            rs = [r for r in ok if r["table"] == t and r["row"] == n]
            if not rs:
                cells.append(" - |")
                continue
            s = f" {np.mean([r['error'] for r in rs]):.4f}"
            if rs[0].get("log_loss") is not None:
                s += f" [{np.mean([r['log_loss'] for r in rs]):.3f}]"
            cells.append(s + " |")
        task = next(r["task"] for r in ok if r["table"] == t)
        print(f"| {t} | {task} |" + "".join(cells))
    print("\nGeometric means over tables and seeds, relative to `defaults` (and to CatBoost "
          "where --catboost gave its runs on the same splits)\n")
    print("| row | fits | rel. error | rel. log loss | changed fits: rel. error, log loss | "
          "error wins/losses | fit s | rel. fit | error / CatBoost | log loss / CatBoost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    f = T._f
    for n, s in summary.items():
        print(f"| {n} | {s['fits']} | {f(s['rel_error'], '.3f')} | {f(s['rel_log_loss'], '.3f')} | "
              f"{s['applied_fits']}: {f(s['applied_rel_error'], '.3f')}, "
              f"{f(s['applied_rel_log_loss'], '.3f')} | {s['error_wins']}/{s['error_losses']} | "
              f"{f(s['fit_s'], '.2f')} | "
              f"{f(s['rel_fit'], '.2f')}x | {f(s['catboost_rel_error'], '.3f')} | "
              f"{f(s['catboost_rel_log_loss'], '.3f')} |")
    for r in payload["results"]:
        if "failed" in r:
            print(f"failed: {r['row']} on {r['table']} seed {r['seed']}: {r['failed']}")
    return summary


# --------------------------------------------------------------------------- the first ablation

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
LEGACY_TABLES = "credit,chile,hmda,attrition,saratoga,diabetes"


def legacy_model(task, params, seed):
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


def legacy(args):
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
    tables = LEGACY_TABLES if args.tables == "tuning" else args.tables
    for seed in range(args.seeds):
        for table in _tuning_tables(tables.split(",")):
            task, load, _ = T.TABLES[table]
            X, y = load()
            X_tr, X_te, y_tr, y_te = T.split(X, y, task, seed, min(args.max_train, 5000), 5000)
            runs = [("reference", T.make_skmlp_mlp(task, X_tr, seed))]
            runs += [(configs[i][0], legacy_model(task, configs[i][1], seed)) for i in chosen]
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
    T.write_json(args.json, {"steps": [[n, {k: str(v) for k, v in p.items()}] for n, p in configs],
                             "rows": rows})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", default=None,
                        help='"[NAME:] param=value; param=value" (repeatable); default: '
                             + " | ".join(DEFAULT_ROWS))
    parser.add_argument("--tables", default="tuning",
                        help="comma-separated tuning-part tables, or 'tuning' (all of them)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-train", type=int, default=10000)
    parser.add_argument("--max-test", type=int, default=5000)
    parser.add_argument("--json", default=os.path.join(T.HERE, "results", "tabular_ablation.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the fits already in --json and run only the missing ones")
    parser.add_argument("--catboost", default=None,
                        help="a tables.py JSON whose CatBoost runs share these splits")
    parser.add_argument("--summary-from", default=None, help="report an existing JSON")
    parser.add_argument("--legacy", action="store_true",
                        help="the first ablation: cumulative MLPTorch steps (see above)")
    parser.add_argument("--steps", default=None, help="--legacy: step numbers to run")
    parser.add_argument("--variants", action="store_true", help="--legacy: VARIANTS")
    args = parser.parse_args(argv)
    if args.legacy:
        legacy(args)
        return
    if args.summary_from:
        with open(args.summary_from) as f:
            payload = json.load(f)
    else:
        payload = run(args)
    catboost = _catboost_runs(args.catboost) if args.catboost else None
    payload["summary"] = report(payload, catboost)
    if not args.summary_from:
        T.write_json(args.json, payload)


if __name__ == "__main__":
    main()
