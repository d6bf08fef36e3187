"""GPU check: skmlp's CUDA path measured on one accelerator, in one command.

    python benchmarks/gpu_check.py [--json PATH] [--device cuda] [--quick]
                                   [--steps tests,pickle,syncs,determinism,search,speed]
                                   [--rows N] [--budget SECONDS] [--skorch-budget SECONDS]

Writes a JSON (default ``benchmarks/results/gpu_check.json``; rewritten after
every step, so a run cut short keeps what it measured) and a markdown table
(printed, and saved next to the JSON with the suffix ``.md``). Every step is
guarded: one that fails records its error and the others still run.

Steps, in the order they run
----------------------------
tests        ``pytest -m cuda`` over the test files that use the ``cuda`` marker
             (tests/test_cuda.py), in a subprocess; outcomes from its junit XML.
pickle       a classifier and a regressor fitted on the device, pickled and
             joblib-dumped, then loaded and used in a subprocess with
             ``CUDA_VISIBLE_DEVICES=""``; also loaded in this process.
syncs        host synchronisations of training, with
             ``torch.cuda.set_sync_debug_mode("warn")``: counted per call site and
             per phase (setup + epoch 1, steady epochs, end of fit) for a dozen
             configurations; ``partial_fit`` on 8 and 32 batches (the difference
             is what grows per batch); the minimal torch loop as reference; one
             steady epoch under ``"error"`` mode; a positive control.
determinism  same seed twice on the device (max |difference|), and device vs
             CPU with the same seed (float32 / float64; Adam / SGD).
search       ``GridSearchCV(n_jobs=1)`` over 8 candidates on the device (and on
             the CPU for comparison, when the time budget allows): wall time.
speed        W2's shape at 1M rows: ``make_classification(n, 100,
             n_informative=40, n_classes=5)``, scaled, float32, hidden (256, 128),
             Adam lr 1e-3, no weight decay, batch 256 and 4096: skmlp on the
             device, the minimal torch loop on the device, skorch on the device,
             skmlp on the CPU. Steady-state epoch seconds (epoch 2 on the device;
             the CPU and skorch run 1 epoch), samples/s, peak GPU memory, and
             predict on the 1M rows (from the batch-4096 model).

``--quick`` shrinks every size (10k rows, 1-2 epochs, small budgets);
``--quick --device cpu`` is the dry run for a machine without a GPU: it runs
every step end to end in well under a minute (the sync counts are then empty:
only CUDA reports synchronisations).

Running it on the device machine
--------------------------------
The device has Python 3.12 with a CUDA build of torch, scikit-learn, scipy,
pandas and numpy, and no network. skmlp is imported from this checkout (the
script puts the repository root first on ``sys.path``; no install needed).
pytest (step ``tests``) and skorch (a contender of step ``speed``) travel as
wheels: on a machine with network, from the repository root::

    pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \\
        pytest pluggy iniconfig packaging pygments skorch==1.4.0 tabulate tqdm

(all pure-Python wheels, about 2 MB; ``.whl/`` is git-ignored, so name it in
``carry``). Then run, with ``carry=[".whl"]`` and ``timeout_s`` 540::

    python -m pip install -q --no-index --find-links .whl pytest skorch; \\
        python benchmarks/gpu_check.py --json $OUT/gpu_check.json

(``python -m pip``: the same interpreter that runs the script.) ``$OUT`` then
holds ``gpu_check.json`` and ``gpu_check.md``, both rewritten after every step.

Without the wheels the ``tests`` step and the skorch rows are recorded as
skipped and the rest runs. The full run is sized to finish in about 6-8
minutes on one H200 (``--budget``, default 420 s, guards the slow parts; the
data generation alone is ~10 s, skorch is capped at ``--skorch-budget`` s per
fit and its epoch time extrapolated from the batches it ran). Reruns of a
part: ``--steps syncs,speed``.
"""

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # contenders/
sys.path.insert(0, str(ROOT))  # this checkout's skmlp, before any installed one

import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from contenders import minimal_loop, skorch_model  # noqa: E402
from skmlp import MLPTorchClassifier, MLPTorchRegressor  # noqa: E402

STEPS = ("tests", "pickle", "syncs", "determinism", "search", "speed")
SYNC_MESSAGE = "synchronizing CUDA operation"  # torch's text for set_sync_debug_mode
HIDDEN = (256, 128)  # W2
BATCHES = (256, 4096)
MB = 1 << 20
# Where a sync's call site is looked for (not ROOT: a .venv inside it holds torch).
OWN_DIRS = tuple(str(ROOT / d) + os.sep for d in ("skmlp", "benchmarks", "tests"))


# ----------------------------------------------------------------- plumbing
def jsonable(obj):
    """numpy scalars/arrays, tuples and paths as JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


class Report:
    """The JSON document, rewritten (atomically) whenever a step records."""

    def __init__(self, path, meta):
        self.path = Path(path)
        self.doc = {"meta": meta, "steps": {}}

    def record(self, key, result):
        self.doc["steps"][key] = result
        self.write()

    def write(self):
        """The JSON and, next to it, the markdown (``.md``), each replaced atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = markdown(self.doc)
        except Exception:  # noqa: BLE001 - the JSON matters more than the table
            table = "markdown failed:\n\n" + traceback.format_exc()
        for path, text in ((self.path, json.dumps(jsonable(self.doc), indent=1)),
                           (self.path.with_suffix(".md"), table)):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


class Context:
    """What every step gets: the device, sizes, the clock and a way to save."""

    def __init__(self, args, report):
        self.args = args
        self.device = args.device
        self.cuda = torch.device(args.device).type == "cuda"
        self.quick = args.quick
        self.report = report
        self.start = time.perf_counter()
        self.budget = args.budget

    def left(self):
        """Seconds of the whole run's budget still left."""
        return self.budget - (time.perf_counter() - self.start)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()


def run_step(ctx, key, fn):
    """Run ``fn(ctx, out, save)``; ``out`` is recorded even when fn fails."""
    out = {"status": "running"}
    save = lambda: ctx.report.record(key, dict(out))  # noqa: E731
    save()
    print(f"\n== {key} ==", flush=True)
    tic = time.perf_counter()
    try:
        fn(ctx, out, save)
        out["status"] = out.get("status_override", "ok")
        out.pop("status_override", None)
    except Exception as exc:  # noqa: BLE001 - a failing step must not stop the others
        out["status"] = "failed"
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        out["traceback"] = traceback.format_exc()[-4000:]
        print(out["traceback"], flush=True)
    finally:
        with contextlib.suppress(Exception):
            torch.cuda.set_sync_debug_mode(0) if ctx.cuda else None
    out["seconds"] = round(time.perf_counter() - tic, 2)
    save()
    print(f"-- {key}: {out['status']} in {out['seconds']} s", flush=True)


def guarded(rows, entry, fn, save):
    """Run one sub-measurement; a failure is recorded in ``entry``, not raised."""
    rows.append(entry)
    try:
        entry.update(fn())
    except Exception as exc:  # noqa: BLE001
        entry["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        entry["traceback"] = traceback.format_exc()[-2000:]
        print(entry["traceback"], flush=True)
    save()
    return entry


def free_device_memory(ctx):
    gc.collect()
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def w2_data(rows, seed=0):
    """W2's data (benchmarks/run.py) at ``rows`` rows, scaled, float32."""
    X, y = make_classification(rows, 100, n_informative=40, n_classes=5, random_state=seed)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X, y


def small_data(rows=2048, features=20, seed=0, classes=3):
    rng = np.random.RandomState(seed)
    X = rng.randn(rows, features).astype(np.float32)
    score = X[:, :classes] + 0.5 * rng.randn(rows, classes)
    y = score.argmax(axis=1)
    y_reg = X[:, :5].sum(axis=1) + 0.1 * rng.randn(rows)
    return X, y, y_reg


# ------------------------------------------------------------ step: tests
def cuda_test_files():
    """Test files that use the ``cuda`` marker (collecting every test file would
    need every test dependency, which the device machine does not have)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


def parse_junit(path):
    """Counts and one row per test case from a pytest junit XML file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    cases = []
    for case in suite.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or node.text or "")[:600]
                break
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name')}",
                      "outcome": outcome, "seconds": float(case.get("time", 0) or 0),
                      "message": message})
    return counts, cases


def step_tests(ctx, out, save):
    files = cuda_test_files()
    out["files"] = files
    if importlib.util.find_spec("pytest") is None:
        out["status_override"] = "skipped"
        out["reason"] = "pytest is not installed here (carry its wheels: see the docstring)"
        return
    if not files:
        raise RuntimeError("no test file uses the cuda marker")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", *files, "-q", "-rs",
               "-p", "no:cacheprovider", "-o", "addopts=", f"--junitxml={xml}"]
        out["command"] = " ".join(cmd[1:])
        timeout = max(30, min(240 if not ctx.quick else 60, ctx.left()))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out["status_override"] = "failed"
            out["reason"] = f"pytest ran past {timeout:.0f} s"
            out["output_tail"] = ((exc.stdout or b"").decode(errors="replace")
                                  if isinstance(exc.stdout, bytes) else (exc.stdout or ""))[-3000:]
            return
        out["returncode"] = proc.returncode
        out["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
        if xml.exists():
            out["counts"], out["cases"] = parse_junit(xml)
    counts = out.get("counts", {})
    if proc.returncode != 0:
        out["status_override"] = "failed"
    elif ctx.cuda and counts.get("tests") and counts.get("skipped") == counts.get("tests"):
        out["status_override"] = "failed"
        out["reason"] = "every test was skipped although this process sees CUDA"
    print(out["output_tail"][-1500:], flush=True)


# ----------------------------------------------------------- step: pickle
CHILD = r"""
import json, pickle, sys
import joblib, numpy as np, torch
d = sys.argv[1]
res = {"cuda_available": torch.cuda.is_available(),
       "CUDA_VISIBLE_DEVICES": __import__("os").environ.get("CUDA_VISIBLE_DEVICES")}
X, y = np.load(d + "/X.npy"), np.load(d + "/y.npy")
with open(d + "/clf.pkl", "rb") as fh:
    clf = pickle.load(fh)
reg = joblib.load(d + "/reg.joblib")
res["clf_module_device"] = str(next(clf.module_.parameters()).device)
res["reg_module_device"] = str(next(reg.module_.parameters()).device)
proba = clf.predict_proba(X)
res["clf_proba_max_abs_diff"] = float(np.max(np.abs(proba - np.load(d + "/proba.npy"))))
res["clf_label_mismatches"] = int((clf.predict(X) != np.load(d + "/labels.npy")).sum())
res["reg_max_abs_diff"] = float(np.max(np.abs(reg.predict(X) - np.load(d + "/reg.npy"))))
res["outputs_are_numpy"] = isinstance(proba, np.ndarray)
try:
    clf.partial_fit(X[:64], y[:64])
    res["partial_fit_with_device_param_kept"] = "no error"
except ValueError as exc:
    res["partial_fit_with_device_param_kept"] = "ValueError: " + str(exc)[:200]
clf.set_params(device="cpu").partial_fit(X, y)
res["partial_fit_after_set_params_cpu"] = "ok, n_iter_=%d" % clf.n_iter_
print("RESULT " + json.dumps(res))
"""


def step_pickle(ctx, out, save):
    import joblib

    X, y, y_reg = small_data(rows=4000, features=20)
    dev = ctx.device
    clf = MLPTorchClassifier((64, 32), max_iter=5, random_state=0, device=dev, dropout=0.1,
                             batch_norm=True, batch_size=256).fit(X, y)
    reg = MLPTorchRegressor((64,), max_iter=5, random_state=0, device=dev, optimizer="adamw",
                            batch_size=256).fit(X, y_reg)
    out["fitted_on"] = str(next(clf.module_.parameters()).device)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with open(d / "clf.pkl", "wb") as fh:
            pickle.dump(clf, fh)
        joblib.dump(reg, d / "reg.joblib")
        out["pickle_bytes"] = (d / "clf.pkl").stat().st_size
        np.save(d / "X.npy", X)
        np.save(d / "y.npy", y)
        np.save(d / "proba.npy", clf.predict_proba(X))
        np.save(d / "labels.npy", clf.predict(X))
        np.save(d / "reg.npy", reg.predict(X))
        # The same machine: the network comes back on its saved device.
        back = pickle.loads(pickle.dumps(clf))
        out["in_process"] = {
            "module_device": str(next(back.module_.parameters()).device),
            "proba_identical": bool(np.array_equal(back.predict_proba(X), clf.predict_proba(X))),
        }
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(
            [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(d)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        out["status_override"] = "failed"
        out["child_output"] = (proc.stdout + proc.stderr)[-3000:]
        return
    child = json.loads(lines[-1][len("RESULT "):])
    out["subprocess"] = child
    ok = (not child["cuda_available"] and child["clf_module_device"] == "cpu"
          and child["clf_proba_max_abs_diff"] <= 1e-4 and child["reg_max_abs_diff"] <= 1e-3
          and out["in_process"]["proba_identical"])
    out["verdict"] = "ok" if ok else "check the numbers"
    print(json.dumps(out, indent=1), flush=True)


# ------------------------------------------------------------ step: syncs
def call_site(stack):
    """The innermost frame of ``stack`` in this repository (skmlp/, benchmarks/),
    as 'path:line function: code'; else the innermost frame outside torch."""
    mine = [f for f in stack if os.path.abspath(f.filename).startswith(OWN_DIRS)
            and os.path.abspath(f.filename) != os.path.abspath(__file__)]
    pick = mine[-1] if mine else next((f for f in reversed(stack)
                                       if "torch" not in f.filename), stack[-1])
    path = os.path.abspath(pick.filename)
    with contextlib.suppress(ValueError):
        path = Path(path).relative_to(ROOT).as_posix()
    return f"{path}:{pick.lineno} {pick.name}: {(pick.line or '').strip()}"


class SyncRecorder:
    """Counts the host synchronisations torch reports under
    ``torch.cuda.set_sync_debug_mode("warn")``, by phase and call site.

    ``phase`` is the number of epochs finished when the sync happened; the
    ``callback`` (an skmlp callback) and ``on_epoch`` (the minimal loop's hook)
    advance it. ``enabled=False`` (no CUDA) records only warnings raised
    explicitly with torch's message, which is how the tests drive it on a CPU.
    """

    def __init__(self, enabled, active_from=0):
        self.enabled = enabled
        self.events = []  # (epochs finished, call site)
        self.epochs = 0
        self.active_from = active_from  # record from this many finished epochs on

    def __enter__(self):
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.filterwarnings("always", message=".*" + SYNC_MESSAGE)
        self._previous = warnings.showwarning
        warnings.showwarning = self._show
        self._set_mode("warn" if self.active_from == 0 else 0)
        return self

    def __exit__(self, *exc):
        self._set_mode(0)
        self._catch.__exit__(*exc)
        return False

    def _set_mode(self, mode):
        if self.enabled:
            torch.cuda.set_sync_debug_mode(mode)

    def _show(self, message, category, filename, lineno, file=None, line=None):
        if SYNC_MESSAGE in str(message):
            self.events.append((self.epochs, call_site(traceback.extract_stack()[:-1])))
        else:
            self._previous(message, category, filename, lineno, file, line)

    def epoch_done(self):
        self.epochs += 1
        if self.epochs == self.active_from:
            self._set_mode("warn")

    def callback(self, estimator, epoch, logs):
        self.epoch_done()

    def on_epoch(self, epoch):
        self.epoch_done()

    def summary(self, n_epochs, n_batches):
        """Counts per phase and site; the steady epochs' per-epoch counts; the
        sites that sync about once per batch or more (``per_batch_sites``)."""
        def label(k):
            if k >= n_epochs:
                return "end of fit"
            return "setup + epoch 1" if k == 0 else f"epoch {k + 1}"

        phases = {}
        for k, site in self.events:
            phases.setdefault(label(k), {}).setdefault(site, 0)
            phases[label(k)][site] += 1
        steady = range(max(1, self.active_from), n_epochs)
        per_epoch = {}
        for k, site in self.events:
            if k in steady:
                per_epoch[site] = per_epoch.get(site, 0) + 1 / max(1, len(steady))
        per_batch = sorted(s for s, c in per_epoch.items() if n_batches and c >= n_batches / 2)
        return {
            "n_epochs": n_epochs, "batches_per_epoch": n_batches,
            "steady_epochs": len(steady),
            "syncs_per_steady_epoch": round(sum(per_epoch.values()), 2) if len(steady) else None,
            "steady_sites": {s: round(c, 2) for s, c in sorted(per_epoch.items())},
            "per_batch_sites": per_batch,
            "phases": phases,
            "total": len(self.events),
        }


def _sync_configs(X, y, y_reg):
    """name -> (estimator class, params, fit X, fit y, fit kwargs)."""
    n = X.shape[0]
    w = np.random.RandomState(1).uniform(0.5, 2.0, n)
    Xs = sp.random(n, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
    C, R = MLPTorchClassifier, MLPTorchRegressor
    return {
        "adam (fast path)": (C, {}, X, y, {}),
        "sgd": (C, {"optimizer": "sgd"}, X, y, {}),
        "adamw": (C, {"optimizer": "adamw"}, X, y, {}),
        "dropout": (C, {"dropout": 0.2}, X, y, {}),
        "batch_norm (autograd)": (C, {"batch_norm": True}, X, y, {}),
        "sample_weight": (C, {}, X, y, {"sample_weight": w}),
        "class_weight='balanced'": (C, {"class_weight": "balanced"}, X, y, {}),
        "early_stopping": (C, {"early_stopping": True, "validation_fraction": 0.2}, X, y, {}),
        "binary": (C, {}, X, y > 0, {}),
        "regressor": (R, {}, X, y_reg, {}),
        "float64": (C, {"dtype": "float64"}, X, y, {}),
        "sparse input": (C, {}, Xs, y, {}),
        "lbfgs (host-driven by design)": (C, {"optimizer": "lbfgs"}, X, y, {}),
    }


def step_syncs(ctx, out, save):
    dev, epochs = ctx.device, 3
    batch, n_batches, hidden = (32, 16, (16,)) if ctx.quick else (64, 32, (64, 32))
    X, y, y_reg = small_data(rows=batch * n_batches, features=20)
    out["setup"] = {"rows": X.shape[0], "batch_size": batch, "epochs": epochs,
                    "hidden_dims": hidden, "how": "torch.cuda.set_sync_debug_mode('warn'); "
                    "phase = epochs finished (skmlp callbacks / minimal loop hook)"}
    if not ctx.cuda:
        out["note"] = ("no CUDA device: the recorder ran, but only CUDA reports "
                       "synchronisations, so every count is 0")
    # Positive control: a known sync must be seen, or the counts mean nothing.
    rec = SyncRecorder(ctx.cuda)
    with rec:
        float(torch.ones((), device=dev))
    out["positive_control"] = {"float(tensor on device) syncs seen": len(rec.events),
                               "detector works": len(rec.events) >= 1 if ctx.cuda else None}
    save()
    # Warm-up (CUDA context, cuBLAS handles) outside the recorder.
    MLPTorchClassifier(hidden, max_iter=1, device=dev, random_state=0).fit(X[:256], y[:256])

    rows = out["configs"] = []
    for name, (cls, params, Xc, yc, fit_kw) in _sync_configs(X, y, y_reg).items():
        def one(cls=cls, params=params, Xc=Xc, yc=yc, fit_kw=fit_kw):
            rec = SyncRecorder(ctx.cuda)
            est = cls(hidden, max_iter=epochs, batch_size=batch, device=dev, random_state=0,
                      callbacks=[rec.callback], **params)
            with rec:
                est.fit(Xc, yc, **fit_kw)
            n_train = Xc.shape[0] * (0.8 if params.get("early_stopping") else 1)
            n_batches = 0 if params.get("optimizer") == "lbfgs" else math.ceil(n_train / batch)
            s = rec.summary(est.n_iter_, n_batches)
            s["verdict"] = ("host-driven (scipy)" if not n_batches else
                            "syncs per batch" if s["per_batch_sites"] else "no per-batch sync")
            return s
        guarded(rows, {"config": name}, one, save)

    # partial_fit: what grows with the number of batches (a quarter vs all of them).
    few, many = n_batches // 4, n_batches
    pf = out["partial_fit"] = []
    for name, Xc in (("dense", X), ("sparse", _sync_configs(X, y, y_reg)["sparse input"][2])):
        def slope(Xc=Xc):
            est = MLPTorchClassifier(hidden, batch_size=batch, device=dev, random_state=0)
            est.partial_fit(Xc, y, classes=np.unique(y))  # warm: optimizer state exists
            counts = {}
            for n_b in (few, many):
                rec = SyncRecorder(ctx.cuda)
                with rec:
                    est.partial_fit(Xc[: n_b * batch], y[: n_b * batch])
                counts[n_b] = {}
                for _, site in rec.events:
                    counts[n_b][site] = counts[n_b].get(site, 0) + 1
            sites = sorted(set(counts[few]) | set(counts[many]))
            per_site = {s: {f"{few} batches": counts[few].get(s, 0),
                            f"{many} batches": counts[many].get(s, 0),
                            "per extra batch": round((counts[many].get(s, 0)
                                                      - counts[few].get(s, 0)) / (many - few), 3)}
                        for s in sites}
            total = sum(v["per extra batch"] for v in per_site.values())
            return {"sites": per_site, "syncs per extra batch": round(total, 3),
                    "batches": [few, many],
                    "verdict": "no per-batch sync" if total < 0.5 else "syncs per batch"}
        guarded(pf, {"input": name}, slope, save)

    # Reference: the minimal torch loop, epochs 2-3 recorded (CUDA only: without
    # it nothing is counted, and torch.optim's first import costs seconds).
    def minimal():
        if not ctx.cuda:
            return {"verdict": "not run (no CUDA)"}
        rec = SyncRecorder(ctx.cuda, active_from=1)
        with rec:
            minimal_loop.fit("clf", X, y, hidden, batch, epochs, dev, on_epoch=rec.on_epoch)
        return rec.summary(epochs, math.ceil(X.shape[0] / batch))
    out["minimal_loop"] = guarded([], {"config": "minimal torch loop"}, minimal, save)

    # The check the issue names: one steady epoch (epoch 2) under "error" mode.
    out["error_mode"] = [guarded([], {"config": name}, lambda m=m: _error_mode_epoch(ctx, X, y, m),
                                 save)
                         for name, m in (("skmlp adam, dense", "skmlp"),
                                         ("minimal torch loop", "minimal"))]
    bad = [r["config"] for r in rows if r.get("verdict") == "syncs per batch"]
    out["summary"] = ("no per-batch sync in any dense configuration" if not
                      [b for b in bad if b != "sparse input"] else f"per-batch syncs: {bad}")
    print(json.dumps({k: out[k] for k in ("positive_control", "summary")}, indent=1), flush=True)


def _error_mode_epoch(ctx, X, y, who):
    """Epoch 2 of a 2-epoch fit under set_sync_debug_mode("error")."""
    if not ctx.cuda:
        return {"result": "not run (no CUDA)"}
    def toggle(epoch):
        torch.cuda.set_sync_debug_mode("error" if epoch == 1 else 0)
    try:
        if who == "skmlp":
            MLPTorchClassifier((64, 32), max_iter=2, batch_size=64, device=ctx.device,
                               random_state=0,
                               callbacks=[lambda est, epoch, logs: toggle(epoch)]).fit(X, y)
        else:
            minimal_loop.fit("clf", X, y, (64, 32), 64, 2, ctx.device, on_epoch=toggle)
        return {"result": "clean: epoch 2 ran without a synchronising call"}
    except RuntimeError as exc:
        if SYNC_MESSAGE not in str(exc):
            raise
        site = call_site(traceback.extract_tb(exc.__traceback__))
        return {"result": "raised", "first_sync_at": site}
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ------------------------------------------------------ step: determinism
def step_determinism(ctx, out, save):
    X, y, _ = small_data(rows=4000, features=20)
    rows = out["rows"] = []
    configs = {
        "adam float32": dict(dtype="float32"),
        "adam float64": dict(dtype="float64"),
        "sgd float32": dict(dtype="float32", optimizer="sgd", lr=0.01),
        "sgd float64": dict(dtype="float64", optimizer="sgd", lr=0.01),
        "dropout+batch_norm+early_stopping float32": dict(dtype="float32", dropout=0.2,
                                                          batch_norm=True, early_stopping=True),
    }
    for name, params in configs.items():
        def one(params=params):
            def fit(device):
                return MLPTorchClassifier((64, 32), max_iter=10, batch_size=128, random_state=0,
                                          device=device, **params).fit(X, y).predict_proba(X)
            a, b = fit(ctx.device), fit(ctx.device)
            res = {"same seed twice on device: max |diff|": float(np.max(np.abs(a - b))),
                   "identical": bool(np.array_equal(a, b))}
            if ctx.cuda:
                c = fit("cpu")
                res["device vs cpu: max |diff| proba"] = float(np.max(np.abs(a - c)))
                res["device vs cpu: label mismatches"] = int((a.argmax(1) != c.argmax(1)).sum())
                res["note"] = ("dropout masks come from a CUDA generator: not comparable to "
                               "the CPU" if params.get("dropout") else "")
            return res
        guarded(rows, {"config": name}, one, save)


# ----------------------------------------------------------- step: search
def step_search(ctx, out, save):
    from sklearn.model_selection import GridSearchCV

    rows_n = 1500 if ctx.quick else 60_000
    epochs = 2 if ctx.quick else 5
    X, y = w2_data(rows_n, seed=1)
    grid = {"hidden_dims": [(64,), (256, 128)], "lr": [1e-3, 3e-3], "batch_size": [256, 1024]}
    out["setup"] = {"rows": rows_n, "features": 100, "cv": 3, "max_iter": epochs,
                    "grid": grid, "n_candidates": 8, "n_jobs": 1}
    runs = out["runs"] = []
    devices = [ctx.device] + (["cpu"] if ctx.device != "cpu" else [])
    for device in devices:
        if device == "cpu" and ctx.cuda and ctx.left() < 150:
            runs.append({"device": "cpu", "skipped": f"time budget ({ctx.left():.0f} s left)"})
            save()
            continue

        def one(device=device):
            est = MLPTorchClassifier(max_iter=epochs, random_state=0, device=device, tol=0.0,
                                     n_iter_no_change=epochs + 1)
            search = GridSearchCV(est, grid, cv=3, n_jobs=1)
            tic = time.perf_counter()
            search.fit(X, y)
            wall = time.perf_counter() - tic
            return {"wall_s": round(wall, 2), "n_fits": 8 * 3 + 1,
                    "mean_fit_s": round(float(np.mean(search.cv_results_["mean_fit_time"])), 3),
                    "best_params": search.best_params_,
                    "best_score": round(float(search.best_score_), 4),
                    "threads": torch.get_num_threads()}
        print(f"  GridSearchCV on {device} ...", flush=True)
        guarded(runs, {"device": device}, one, save)
        free_device_memory(ctx)


# ------------------------------------------------------------ step: speed
class _Timer:
    """Epoch timestamps for the minimal loop (synchronising first)."""

    def __init__(self, ctx):
        self.ctx, self.stamps = ctx, [time.perf_counter()]

    def on_epoch(self, epoch):
        self.ctx.sync()
        self.stamps.append(time.perf_counter())

    def epochs(self):
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def _skorch_budget_callback(seconds, record):
    """A skorch callback timing epochs; stops the fit (skorch catches
    KeyboardInterrupt) once an epoch has run ``seconds``."""
    from skorch.callbacks import Callback

    class Budget(Callback):
        def on_epoch_begin(self, net, **kwargs):
            record["t0"] = time.perf_counter()
            record["batches"] = 0

        def on_batch_end(self, net, batch=None, training=None, **kwargs):
            if not training:
                return
            record["batches"] += 1
            if time.perf_counter() - record["t0"] > seconds:
                record["stopped_after"] = time.perf_counter() - record["t0"]
                raise KeyboardInterrupt

        def on_epoch_end(self, net, **kwargs):
            record.setdefault("epochs", []).append(time.perf_counter() - record["t0"])

    return Budget()


def _peak(ctx):
    return round(torch.cuda.max_memory_allocated() / MB, 1) if ctx.cuda else None


def _reset_peak(ctx):
    free_device_memory(ctx)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
        return round(torch.cuda.memory_allocated() / MB, 1)
    return None


def _fit_contender(ctx, who, device, X, y, batch, epochs, skorch_budget):
    """Fit once; returns (model, predict fn, measurements)."""
    n = X.shape[0]
    res = {"epochs_run": epochs}
    tic = time.perf_counter()
    if who == "skmlp":
        est = MLPTorchClassifier(HIDDEN, batch_size=batch, max_iter=epochs, weight_decay=0.0,
                                 tol=0.0, n_iter_no_change=epochs + 1, random_state=0,
                                 device=device).fit(X, y)
        ctx.sync()
        times = [h["seconds"] for h in est.history_]
        model, predict = est, est.predict
    elif who == "minimal torch":
        timer = _Timer(ctx)
        model = minimal_loop.fit("clf", X, y, HIDDEN, batch, epochs, device,
                                 on_epoch=timer.on_epoch)
        times = timer.epochs()
        predict = lambda Z: minimal_loop.predict(model, Z)  # noqa: E731
    else:  # skorch
        record = {}
        model = skorch_model.fit("clf", X, y, HIDDEN, batch, epochs, device,
                                 callbacks=[_skorch_budget_callback(skorch_budget, record)])
        ctx.sync()
        times = list(record.get("epochs", []))
        if "stopped_after" in record:
            total = math.ceil(n / batch)
            times.append(record["stopped_after"] / record["batches"] * total)
            res["note"] = (f"epoch extrapolated from {record['batches']} of {total} batches "
                           f"({record['stopped_after']:.0f} s)")
        predict = model.predict
    res["fit_wall_s"] = round(time.perf_counter() - tic, 3)
    res["epoch_s_all"] = [round(t, 4) for t in times]
    res["epoch_s"] = round(times[-1], 4)  # the last (steady) epoch
    res["samples_per_s"] = round(n / times[-1])
    return model, predict, res


def step_speed(ctx, out, save):
    rows = ctx.args.rows or (10_000 if ctx.quick else 1_000_000)
    dev = ctx.device
    tic = time.perf_counter()
    X, y = w2_data(rows)
    out["setup"] = {"rows": rows, "features": 100, "classes": 5, "hidden_dims": HIDDEN,
                    "dtype": "float32", "optimizer": "adam lr 1e-3, no weight decay",
                    "batch_sizes": BATCHES, "data_s": round(time.perf_counter() - tic, 1),
                    "cpu_threads": torch.get_num_threads(), "os_cpus": os.cpu_count()}
    print(f"  data: {rows} x 100 in {out['setup']['data_s']} s", flush=True)
    save()
    contenders = [("skmlp", dev), ("minimal torch", dev)]
    if dev != "cpu":
        contenders.append(("skmlp", "cpu"))
    contenders.append(("skorch", dev))
    table = out["rows"] = []
    skorch_budget = ctx.args.skorch_budget or (3.0 if ctx.quick else 45.0)
    for who, device in contenders:
        if who == "skorch" and not skorch_model.available():
            table.append({"contender": who, "device": device,
                          "skipped": "skorch is not installed (carry its wheel)"})
            save()
            continue
        on_gpu = torch.device(device).type == "cuda"
        epochs = 2 if on_gpu and who != "skorch" else 1
        # Warm-up: CUDA context, cuBLAS handles, library imports.
        with contextlib.suppress(Exception):
            _fit_contender(ctx, who, device, X[:4096], y[:4096], 256, 1, 2.0)
        model = predict = None
        for batch in BATCHES:
            need = 3 * skorch_budget if who == "skorch" else 20
            if ctx.left() < need:
                table.append({"contender": who, "device": device, "batch": batch,
                              "skipped": f"time budget ({ctx.left():.0f} s left)"})
                save()
                continue
            model = predict = None
            entry = {"contender": who, "device": device, "batch": batch}
            base = _reset_peak(ctx)

            def fit(who=who, device=device, batch=batch, epochs=epochs, base=base):
                nonlocal model, predict
                model, predict, res = _fit_contender(ctx, who, device, X, y, batch, epochs,
                                                     skorch_budget)
                res["gpu_mb_before"] = base
                res["peak_gpu_mb_fit"] = _peak(ctx)
                return res
            print(f"  {who} on {device}, batch {batch} ...", flush=True)
            guarded(table, entry, fit, save)
            print(f"    {entry.get('epoch_s', entry.get('error'))} s/epoch", flush=True)
        predict_needs = 2 if ctx.quick else 60 if who == "skorch" else 10
        if predict is not None and ctx.left() > predict_needs:
            def pred(predict=predict, who=who):
                _reset_peak(ctx)
                calls = 1 if who == "skorch" else 2
                times, labels = [], None
                for _ in range(calls):
                    t0 = time.perf_counter()
                    labels = np.asarray(predict(X))
                    ctx.sync()
                    times.append(time.perf_counter() - t0)
                return {"predict_rows": rows, "predict_s": round(min(times), 3),
                        "peak_gpu_mb_predict": _peak(ctx),
                        "train_accuracy": round(float(np.mean(labels == y)), 4)}
            guarded([], entry, pred, save)
        elif predict is not None:
            entry["predict_skipped"] = f"time budget ({ctx.left():.0f} s left)"
            save()
        model = predict = None
        free_device_memory(ctx)


# ------------------------------------------------------------------ table
def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def markdown(doc):
    """The results as markdown: one section per step."""
    meta, steps = doc["meta"], doc["steps"]
    lines = [f"# skmlp GPU check ({meta.get('device_name', meta.get('device'))})", "",
             f"torch {meta.get('torch')} (CUDA {meta.get('torch_cuda')}), Python "
             f"{meta.get('python')}, {meta.get('cpus')} CPUs, device `{meta.get('device')}`"
             f"{', quick' if meta.get('quick') else ''}; "
             f"total {meta.get('total_s', '?')} s.", ""]
    lines += ["| step | status | seconds | result |", "|---|---|---|---|"]
    for key in STEPS:
        if key in steps:
            s = steps[key]
            lines.append(f"| {key} | {s.get('status')} | {s.get('seconds', '-')} | "
                         f"{_step_line(key, s)} |")
    if "tests" in steps and steps["tests"].get("cases"):
        bad = [c for c in steps["tests"]["cases"] if c["outcome"] in ("failed", "error")]
        if bad:
            lines += ["", "## Failed tests", ""]
            lines += [f"- `{c['test']}`: {c['message'][:200]}" for c in bad]
    if "syncs" in steps and steps["syncs"].get("configs"):
        lines += ["", "## Host synchronisations (set_sync_debug_mode('warn'))", "",
                  "| configuration | batches/epoch | syncs per steady epoch | sites in a steady "
                  "epoch | verdict |", "|---|---|---|---|---|"]
        s = steps["syncs"]
        rows = list(s["configs"]) + ([s["minimal_loop"]] if s.get("minimal_loop") else [])
        for r in rows:
            sites = "; ".join(f"{k} (x{v:g})" for k, v in r.get("steady_sites", {}).items())
            lines.append(f"| {r['config']} | {r.get('batches_per_epoch', '-')} | "
                         f"{_fmt(r.get('syncs_per_steady_epoch'))} | {sites or '-'} | "
                         f"{r.get('verdict', r.get('error', '-'))} |")
        for r in s.get("partial_fit", []):
            few_many = " vs ".join(map(str, r.get("batches", [])[::-1]))
            lines.append(f"| partial_fit {r['input']} ({few_many} batches) | - | "
                         f"{_fmt(r.get('syncs per extra batch'))} per extra batch | - | "
                         f"{r.get('verdict', r.get('error', '-'))} |")
        for r in s.get("error_mode", []):
            lines.append(f"| error mode, epoch 2: {r['config']} | - | - | "
                         f"{r.get('first_sync_at', '-')} | {r.get('result', r.get('error'))} |")
    if "determinism" in steps and steps["determinism"].get("rows"):
        lines += ["", "## Determinism", "",
                  "| configuration | same seed twice: max diff | device vs CPU: max diff | "
                  "label mismatches |", "|---|---|---|---|"]
        for r in steps["determinism"]["rows"]:
            lines.append(f"| {r['config']} | "
                         f"{_fmt(r.get('same seed twice on device: max |diff|'))} | "
                         f"{_fmt(r.get('device vs cpu: max |diff| proba'))} | "
                         f"{_fmt(r.get('device vs cpu: label mismatches'))} |")
    if "search" in steps and steps["search"].get("runs"):
        lines += ["", "## GridSearchCV(n_jobs=1), 8 candidates x 3 folds", "",
                  "| device | wall s | mean fit s | best score | best params |",
                  "|---|---|---|---|---|"]
        for r in steps["search"]["runs"]:
            lines.append(f"| {r['device']} | {_fmt(r.get('wall_s'))} | "
                         f"{_fmt(r.get('mean_fit_s'))} | {_fmt(r.get('best_score'))} | "
                         f"{r.get('best_params', r.get('skipped', r.get('error', '-')))} |")
    if "speed" in steps and steps["speed"].get("rows"):
        setup = steps["speed"].get("setup", {})
        lines += ["", f"## Speed: W2 shape, {_fmt(setup.get('rows'))} rows x 100, hidden "
                  f"(256, 128), float32", "",
                  "| contender | device | batch | epoch s | samples/s | peak GPU MB (fit) | "
                  "predict s | peak GPU MB (predict) | train acc | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in steps["speed"]["rows"]:
            note = "; ".join(filter(None, [r.get("skipped"), r.get("error"), r.get("note"),
                                           r.get("predict_skipped") and "predict: "
                                           + r["predict_skipped"]]))
            lines.append(
                f"| {r['contender']} | {r['device']} | {r.get('batch', '-')} | "
                f"{_fmt(r.get('epoch_s'))} | {_fmt(r.get('samples_per_s'))} | "
                f"{_fmt(r.get('peak_gpu_mb_fit'))} | {_fmt(r.get('predict_s'))} | "
                f"{_fmt(r.get('peak_gpu_mb_predict'))} | {_fmt(r.get('train_accuracy'))} | "
                f"{note[:120]} |")
    return "\n".join(lines) + "\n"


def _step_line(key, s):
    if s.get("status") == "failed" and s.get("error"):
        return s["error"][:160].replace("|", "/").replace("\n", " ")
    if key == "tests":
        c = s.get("counts")
        return (f"{c['passed']} passed, {c['failures']} failed, {c['errors']} errors, "
                f"{c['skipped']} skipped" if c else s.get("reason", "-"))
    if key == "pickle":
        sub = s.get("subprocess", {})
        return (f"CUDA_VISIBLE_DEVICES='': module on {sub.get('clf_module_device')}, proba max "
                f"diff {_fmt(sub.get('clf_proba_max_abs_diff'))}; same machine: "
                f"{s.get('in_process', {}).get('module_device')}" if sub else "-")
    if key == "syncs":
        return s.get("summary", s.get("note", "-"))
    if key == "determinism":
        rows = s.get("rows", [])
        same = all(r.get("identical") for r in rows if "identical" in r)
        return f"same seed twice identical: {same} ({len(rows)} configurations)"
    if key == "search":
        return "; ".join(f"{r['device']}: {_fmt(r.get('wall_s'))} s"
                         for r in s.get("runs", []) if "wall_s" in r) or "-"
    if key == "speed":
        return f"{len([r for r in s.get('rows', []) if 'epoch_s' in r])} measurements"
    return "-"


# ------------------------------------------------------------------- main
def metadata(args):
    meta = {"python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": args.device,
            "quick": args.quick, "argv": sys.argv[1:], "started": time.strftime("%F %T %z"),
            "cuda_available": torch.cuda.is_available()}
    import sklearn
    meta["sklearn"] = sklearn.__version__
    if skorch_model.available():
        import skorch
        meta["skorch"] = skorch.__version__
    with contextlib.suppress(Exception):
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                                            capture_output=True, text=True,
                                            timeout=10).stdout.strip() or None
    if torch.device(args.device).type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(args.device))
        meta.update(device_name=props.name, device_memory_gb=round(props.total_memory / 1e9, 1),
                    device_capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(),
                    float32_matmul_precision=torch.get_float32_matmul_precision())
    return meta


STEP_FUNCTIONS = {"tests": step_tests, "pickle": step_pickle, "syncs": step_syncs,
                  "determinism": step_determinism, "search": step_search, "speed": step_speed}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(HERE / "results" / "gpu_check.json"))
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (dry run)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (dry run)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--rows", type=int, default=None, help="rows of the speed data")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 420, quick 90)")
    parser.add_argument("--skorch-budget", type=float, default=None,
                        help="seconds per skorch epoch before it is cut and extrapolated")
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {STEPS}")
    if args.budget is None:
        args.budget = 90.0 if args.quick else 420.0
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is small on purpose
    report = Report(args.json, metadata(args))
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        report.doc["meta"]["error"] = (f"device {args.device!r} is not available: "
                                       "run with --device cpu --quick for a dry run")
        report.write()
        sys.exit(report.doc["meta"]["error"])
    ctx = Context(args, report)
    for key in STEPS:  # the fixed order, whatever order --steps lists
        if key in args.steps:
            run_step(ctx, key, STEP_FUNCTIONS[key])
    report.doc["meta"]["total_s"] = round(time.perf_counter() - ctx.start, 1)
    report.write()
    print("\n" + markdown(report.doc))
    print(f"JSON: {args.json}\nmarkdown: {Path(args.json).with_suffix('.md')}")
    return report.doc


if __name__ == "__main__":
    main()
