"""The CUDA path: fit / partial_fit / predict on a GPU, pickles across devices,
reproducibility, batched predict and the absence of per-batch host syncs.

Every test here is marked ``cuda`` and skipped (with the reason) when
``torch.cuda.is_available()`` is false. On a GPU machine run them alone with
``pytest -m cuda tests/test_cuda.py``; ``benchmarks/gpu_check.py`` runs them as
its first step. Data and networks are small: each test takes a second or less
(the two subprocess tests a few seconds).
"""

import io
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skmlp import MLPTorchClassifier, MLPTorchRegressor

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device: torch.cuda.is_available() is False "
                              "(no GPU here, or a CPU build of torch)"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
SYNC_MESSAGE = "synchronizing CUDA operation"

rng = np.random.RandomState(0)
X = rng.randn(300, 8)
Y3 = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)  # 3 classes
Y_REG = X[:, :3].sum(axis=1) + 0.1 * rng.randn(300)
CLASSES = np.unique(Y3)

KINDS = {
    "classifier": (MLPTorchClassifier, Y3),
    "regressor": (MLPTorchRegressor, Y_REG),
}


def make(kind, **params):
    cls, y = KINDS[kind]
    params = {"hidden_dims": (16,), "max_iter": 5, "random_state": 0, "device": "cuda",
              "batch_size": 64, **params}
    return cls(**params), y


def device_of(est):
    return next(est.module_.parameters()).device


def all_on_cuda(est):
    return all(t.device.type == "cuda" for t in [*est.module_.parameters(),
                                                 *est.module_.buffers()])


def outputs(est, data=X):
    return est.predict_proba(data) if hasattr(est, "predict_proba") else est.predict(data)


def assert_host_outputs(est, n=X.shape[0], dtype=np.float64):
    """Every output is a numpy array (or float) on the host, in the compute dtype."""
    pred = est.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape[0] == n
    if isinstance(est, MLPTorchClassifier):
        assert set(np.unique(pred)) <= set(est.classes_)
        for method in ("predict_proba", "predict_log_proba", "decision_function"):
            out = getattr(est, method)(X)
            assert type(out) is np.ndarray and out.dtype == dtype, method
            assert np.all(np.isfinite(out)), method
        assert_allclose(est.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert pred.dtype == dtype and np.all(np.isfinite(pred))
    score = est.score(X, KINDS["classifier" if isinstance(est, MLPTorchClassifier)
                               else "regressor"][1])
    assert isinstance(score, float)
    assert all(isinstance(v, float) and np.isfinite(v) for v in est.loss_curve_)


# ----------------------------------------------------------- fit / predict
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "lbfgs"])
@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_on_cuda(kind, optimizer):
    est, y = make(kind, optimizer=optimizer)
    est.fit(X, y)
    assert all_on_cuda(est)
    assert est.n_iter_ >= 1
    assert_host_outputs(est)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_on_cuda(kind, optimizer):
    est, y = make(kind, optimizer=optimizer)
    extra = {"classes": CLASSES} if kind == "classifier" else {}
    est.partial_fit(X, y, **extra)
    est.partial_fit(X, y)
    assert all_on_cuda(est)
    assert est.n_iter_ == 2 and est.t_ == 2 * X.shape[0]
    assert_host_outputs(est)
    # The optimizer state survives a pickle round trip and goes back to the GPU.
    again = pickle.loads(pickle.dumps(est))
    again.partial_fit(X, y)
    assert all_on_cuda(again) and again.n_iter_ == 3


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_and_batch_norm_on_cuda(kind):
    est, y = make(kind, hidden_dims=(16, 8), dropout=0.3, batch_norm=True)
    est.fit(X, y)
    assert all_on_cuda(est)  # BatchNorm's running statistics too
    assert_host_outputs(est)
    again, _ = make(kind, hidden_dims=(16, 8), dropout=0.3, batch_norm=True)
    assert_array_equal(outputs(again.fit(X, y)), outputs(est))


@pytest.mark.parametrize("kind", KINDS)
def test_early_stopping_on_cuda(kind):
    est, y = make(kind, early_stopping=True, max_iter=40, n_iter_no_change=3)
    est.fit(X, y)
    assert all_on_cuda(est)
    assert len(est.validation_scores_) == est.n_iter_
    assert all(isinstance(v, float) for v in est.validation_scores_)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert_host_outputs(est)


def test_class_and_sample_weights_on_cuda():
    w = np.random.RandomState(1).uniform(0.1, 3.0, X.shape[0])
    clf, y = make("classifier", class_weight="balanced")
    clf.fit(X, y, sample_weight=w)
    assert_host_outputs(clf)
    reg, y = make("regressor")
    reg.fit(X, y, sample_weight=w)
    assert_host_outputs(reg)


@pytest.mark.parametrize("kind", KINDS)
def test_integer_weights_equal_repeated_rows_on_cuda(kind):
    # One batch holds all the data, so the weighted mean is the repeated rows' mean.
    counts = np.random.RandomState(2).randint(1, 4, 60)
    cls, y = KINDS[kind]
    params = dict(hidden_dims=(8,), max_iter=5, random_state=0, device="cuda",
                  batch_size=1000, shuffle=False)
    weighted = cls(**params).fit(X[:60], y[:60], sample_weight=counts)
    repeated = cls(**params).fit(np.repeat(X[:60], counts, axis=0),
                                 np.repeat(y[:60], counts, axis=0))
    assert_allclose(outputs(weighted), outputs(repeated), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_input_on_cuda(kind):
    Xs = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    est, y = make(kind)
    est.fit(Xs, y)
    assert all_on_cuda(est)
    assert isinstance(outputs(est, Xs), np.ndarray)
    # The same rows in the same batches as the dense fit: the same model.
    dense, _ = make(kind)
    dense.fit(Xs.toarray(), y)
    assert_allclose(outputs(est, Xs), outputs(dense, Xs.toarray()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_on_cuda(kind):
    est, y = make(kind, dtype="float32")
    est.fit(X, y)
    assert next(est.module_.parameters()).dtype == torch.float32
    assert_host_outputs(est, dtype=np.float32)


def test_multilabel_and_multioutput_on_cuda():
    Y = np.column_stack([Y3 == 0, Y3 == 2]).astype(int)
    clf, _ = make("classifier")
    assert clf.fit(X, Y).predict(X).shape == Y.shape
    reg, _ = make("regressor", loss="poisson")
    pred = reg.fit(X, np.column_stack([np.abs(Y_REG), Y3])).predict(X)
    assert pred.shape == (X.shape[0], 2) and np.all(pred > 0)


def test_device_auto_and_index():
    est, y = make("classifier", device="auto")
    assert device_of(est.fit(X, y)).type == "cuda"
    est, y = make("classifier", device="cuda:0")
    assert device_of(est.fit(X, y)) == torch.device("cuda", 0)


def test_warm_start_moves_a_cpu_model_to_cuda():
    est, y = make("classifier", device="cpu", warm_start=True)
    est.fit(X, y)
    assert device_of(est).type == "cpu"
    est.set_params(device="cuda").fit(X, y)
    assert all_on_cuda(est) and est.n_iter_ == 10


# -------------------------------------------------------- reproducibility
SEEDED = {
    "adam": {},
    "sgd": {"optimizer": "sgd", "lr": 0.01},
    "dropout+batch_norm+early_stopping": {"dropout": 0.2, "batch_norm": True,
                                          "early_stopping": True, "hidden_dims": (16, 8)},
    "float32": {"dtype": "float32"},
}


@pytest.mark.parametrize("name", SEEDED)
def test_same_seed_same_predictions_on_cuda(name):
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state()
    a, y = make("classifier", **SEEDED[name])
    b, _ = make("classifier", **SEEDED[name])
    assert_array_equal(a.fit(X, y).predict_proba(X), b.fit(X, y).predict_proba(X))
    # Dropout masks come from a local CUDA generator: the global RNGs are untouched.
    assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_cuda_fit_matches_cpu_fit_in_float64(optimizer):
    # Same seed: same initial weights and the same shuffles (drawn on the CPU);
    # only the rounding of the matrix products differs.
    cuda, y = make("classifier", optimizer=optimizer)
    cpu, _ = make("classifier", optimizer=optimizer, device="cpu")
    assert_allclose(cuda.fit(X, y).predict_proba(X), cpu.fit(X, y).predict_proba(X),
                    rtol=0, atol=1e-6)


def test_cuda_fit_close_to_cpu_fit_in_float32():
    cuda, y = make("classifier", optimizer="sgd", lr=0.01, dtype="float32")
    cpu, _ = make("classifier", optimizer="sgd", lr=0.01, dtype="float32", device="cpu")
    assert_allclose(cuda.fit(X, y).predict_proba(X), cpu.fit(X, y).predict_proba(X),
                    rtol=0, atol=1e-4)


# ------------------------------------------------------------- persistence
@pytest.mark.parametrize("kind", KINDS)
def test_pickle_and_joblib_on_the_same_gpu_machine(kind):
    est, y = make(kind, batch_norm=True)
    est.fit(X, y)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    for back in (pickle.loads(pickle.dumps(est)), joblib.load(buf)):
        assert all_on_cuda(back)  # back on its saved device, which exists here
        assert_array_equal(outputs(back), outputs(est))


CHILD = textwrap.dedent("""
    import pickle, sys
    import numpy as np, torch
    assert not torch.cuda.is_available()
    with open(sys.argv[1], "rb") as fh:
        est = pickle.load(fh)
    assert next(est.module_.parameters()).device.type == "cpu"
    X = np.load(sys.argv[2])
    np.save(sys.argv[3], est.predict_proba(X))
    try:
        est.fit(X, est.predict(X))
    except ValueError as exc:
        print("FIT-ERROR", exc)
""")


def test_cuda_pickle_loads_and_predicts_without_a_gpu(tmp_path):
    est, y = make("classifier", hidden_dims=(16, 8), batch_norm=True, dropout=0.1)
    est.fit(X, y)
    (tmp_path / "est.pkl").write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "est.pkl"), str(tmp_path / "X.npy"),
         str(tmp_path / "proba.npy")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_allclose(np.load(tmp_path / "proba.npy"), est.predict_proba(X), rtol=0, atol=1e-6)
    # ``device`` keeps its value: refitting on the CPU-only machine names it.
    assert "FIT-ERROR device='cuda' is not available" in proc.stdout


# ---------------------------------------------------------------- predict
def test_predict_runs_in_batches_on_cuda():
    est, y = make("classifier")
    est.fit(X, y)
    big = np.tile(X, (4000, 1))  # 1.2M rows: 77 MB of float64, ~150 MB as logits
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    proba = est.predict_proba(big)
    grown = (torch.cuda.max_memory_allocated() - base) / 2**20
    assert grown < 64, f"predict used {grown:.0f} MB of GPU memory beyond the model"
    assert_allclose(proba[: X.shape[0]], est.predict_proba(X), rtol=1e-12)
    assert_allclose(proba[-X.shape[0]:], est.predict_proba(X), rtol=1e-12)


# ------------------------------------------------------- host synchronisation
def _syncs_reported():
    """Whether torch reports a known sync as a warning here (else skip)."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            float(torch.ones((), device="cuda"))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return any(SYNC_MESSAGE in str(w.message) for w in log)


@pytest.mark.parametrize("params", [
    {}, {"optimizer": "sgd"}, {"optimizer": "adamw"}, {"dropout": 0.2},
    {"batch_norm": True}, {"early_stopping": True}, {"class_weight": "balanced"},
], ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_no_host_sync_per_batch(params):
    """Epoch 2 of a fit, under set_sync_debug_mode("warn"): a few syncs per epoch
    (the loss is read once), none per batch (32 batches)."""
    if not _syncs_reported():
        pytest.skip("this torch does not report syncs as warnings")
    n_batches = 32
    Xb = np.tile(X, (8, 1))[: 64 * n_batches]
    yb = np.tile(Y3, 8)[: 64 * n_batches]

    def toggle(est, epoch, logs):  # on after epoch 1, off after epoch 2
        torch.cuda.set_sync_debug_mode("warn" if epoch == 1 else 0)

    est, _ = make("classifier", max_iter=2, callbacks=[toggle], **params)
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        try:
            est.fit(Xb, yb, sample_weight=np.linspace(0.5, 2, Xb.shape[0]))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in log if SYNC_MESSAGE in str(w.message)]
    where = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})
    assert len(syncs) < n_batches // 2, f"{len(syncs)} syncs in one epoch, at {where}"
