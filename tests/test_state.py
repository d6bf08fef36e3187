"""Nothing outside the estimator changes; results repeat; memory stays bounded.

- inputs (numpy, pandas, sparse, sample_weight) are never modified;
- the global torch / numpy RNGs, torch's thread count, default dtype and
  grad mode are the same after fit / partial_fit / predict, also when they raise;
- same ``random_state`` -> identical outputs (refit, clone, pickle, skops,
  threads), ``random_state=None`` -> fresh entropy every fit;
- ``predict`` works in batches (peak memory beyond the output < one copy of X);
- loading never runs code of ours beyond rebuilding the network.
"""

import ast
import contextlib
import ctypes
import pathlib
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import skmlp
import skmlp._data
from skmlp import MLPTorchClassifier, MLPTorchRegressor

RNG = np.random.RandomState(0)
X = RNG.randn(120, 4)
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0])
# Dropout, shuffling, several batches and early stopping: every use of randomness.
RANDOM_EVERYWHERE = dict(hidden_dims=(8,), max_iter=4, dropout=0.3, shuffle=True,
                         batch_size=16, early_stopping=True, n_iter_no_change=2,
                         validation_fraction=0.2)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _global_state():
    return dict(torch_rng=torch.get_rng_state(), numpy_rng=np.random.get_state(),
                threads=torch.get_num_threads(), dtype=torch.get_default_dtype(),
                grad=torch.is_grad_enabled())


def _assert_same_global_state(before):
    after = _global_state()
    assert torch.equal(before["torch_rng"], after["torch_rng"]), "global torch RNG changed"
    for a, b in zip(before["numpy_rng"], after["numpy_rng"]):
        assert np.array_equal(a, b), "global numpy RNG changed"
    for key in ("threads", "dtype", "grad"):
        assert before[key] == after[key], f"torch {key} changed"


@contextlib.contextmanager
def _untouched_globals():
    before = _global_state()
    yield
    _assert_same_global_state(before)


def _proba(model, X_):
    return model.predict_proba(X_) if hasattr(model, "predict_proba") else model.predict(X_)


# ------------------------------------------------------------------ inputs
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("kind", ["numpy", "pandas", "sparse"])
def test_inputs_are_not_modified(kind, dtype):
    Xd = (X * 3).astype(dtype)
    if kind == "pandas":
        Xd = pd.DataFrame(Xd, columns=list("abcd"))
        y = pd.Series(Y_REG)
    elif kind == "sparse":
        Xd = sp.csr_matrix(np.where(np.abs(Xd) > 1, Xd, 0))
        y = Y_REG.copy()
    else:
        y = Y_REG.copy()
    weights = RNG.rand(X.shape[0]) + 0.5
    copies = [Xd.copy(), y.copy(), weights.copy()]
    model = MLPTorchRegressor(hidden_dims=(4,), max_iter=2, random_state=0, batch_size=200)
    model.fit(Xd, y, sample_weight=weights)
    model.partial_fit(Xd, y, sample_weight=weights)
    model.predict(Xd)
    model.score(Xd, y, sample_weight=weights)
    if kind == "pandas":
        pd.testing.assert_frame_equal(Xd, copies[0])
        pd.testing.assert_series_equal(y, copies[1])
    elif kind == "sparse":
        assert (Xd != copies[0]).nnz == 0 and Xd.dtype == copies[0].dtype
    else:
        np.testing.assert_array_equal(Xd, copies[0])
        assert Xd.dtype == copies[0].dtype and Xd.flags.writeable
    np.testing.assert_array_equal(y, copies[1])
    np.testing.assert_array_equal(weights, copies[2])


def test_classifier_inputs_are_not_modified():
    Xf = X.astype(np.float32)  # the no-copy path: the tensor shares Xf's memory
    y = np.array(["a", "b", "c"])[Y_CLASS]
    weights = np.ones(X.shape[0])
    copies = [Xf.copy(), y.copy(), weights.copy()]
    model = MLPTorchClassifier(class_weight="balanced", random_state=0,
                               **RANDOM_EVERYWHERE).fit(Xf, y, sample_weight=weights)
    model.predict_proba(Xf)
    for value, copy in zip((Xf, y, weights), copies):
        np.testing.assert_array_equal(value, copy)


def test_read_only_inputs_work():
    Xr, yr = X.copy(), Y_REG.copy()
    Xr.flags.writeable = False
    yr.flags.writeable = False
    model = MLPTorchRegressor(hidden_dims=(4,), max_iter=2, random_state=0).fit(Xr, yr)
    assert np.isfinite(model.predict(Xr)).all()


# ------------------------------------------------------------- global state
@pytest.mark.parametrize("cls", [MLPTorchClassifier, MLPTorchRegressor])
@pytest.mark.parametrize("random_state", [0, None, np.random.RandomState(1)])
def test_global_state_unchanged_by_fit_partial_fit_predict(cls, random_state):
    y = Y_CLASS if cls is MLPTorchClassifier else Y_REG
    with _untouched_globals():
        model = cls(random_state=random_state, **RANDOM_EVERYWHERE).fit(X, y)
    kwargs = {"classes": [0, 1, 2]} if cls is MLPTorchClassifier else {}
    with _untouched_globals():
        cls(hidden_dims=(4,), dropout=0.2, random_state=random_state).partial_fit(X, y, **kwargs)
    with _untouched_globals():
        model.partial_fit(X, y)
        _proba(model, X)
        model.predict(X)
        model.score(X, y)


def test_global_state_unchanged_when_fit_raises():
    def boom(estimator, epoch, logs):
        raise RuntimeError("callback failed")

    calls = [
        lambda: MLPTorchClassifier(lr=-1).fit(X, Y_CLASS),
        lambda: MLPTorchClassifier(max_iter=2).fit(np.full_like(X, np.nan), Y_CLASS),
        lambda: MLPTorchRegressor(max_iter=2, device="cuda:99").fit(X, Y_REG),
        lambda: MLPTorchRegressor((4,), dropout=0.5, callbacks=[boom]).fit(X, Y_REG),
        lambda: MLPTorchClassifier((4,), max_iter=2).partial_fit(X, Y_CLASS),
        lambda: MLPTorchRegressor((4,), max_iter=2).fit(X, Y_REG).predict(X[:, :2]),
    ]
    for call in calls:
        with _untouched_globals():
            with pytest.raises((ValueError, TypeError, RuntimeError)):
                call()


def test_failed_callback_leaves_dropout_on_no_generator():
    def boom(estimator, epoch, logs):
        raise RuntimeError("callback failed")

    model = MLPTorchRegressor((4,), dropout=0.5, callbacks=[boom], random_state=0)
    with pytest.raises(RuntimeError):
        model.fit(X, Y_REG)
    assert not hasattr(model, "module_")  # a first fit that fails leaves it unfitted
    model.set_params(callbacks=None, max_iter=3).fit(X, Y_REG)
    before = model.predict(X)
    model.set_params(callbacks=[boom], warm_start=True)
    with pytest.raises(RuntimeError):
        model.fit(X, Y_REG)  # trains in place until the callback raises
    assert all(getattr(m, "generator", None) is None for m in model.module_.modules())
    np.testing.assert_array_equal(model.predict(X), before)


# ------------------------------------------------------------ repeatability
@pytest.mark.parametrize("cls", [MLPTorchClassifier, MLPTorchRegressor])
def test_same_random_state_same_predictions(cls, tmp_path):
    y = Y_CLASS if cls is MLPTorchClassifier else Y_REG
    model = cls(random_state=42, **RANDOM_EVERYWHERE).fit(X, y)
    reference = _proba(model, X)
    assert model.n_iter_ >= 2  # several shuffled epochs ran
    np.testing.assert_array_equal(_proba(cls(random_state=42, **RANDOM_EVERYWHERE).fit(X, y), X),
                                  reference)
    np.testing.assert_array_equal(_proba(clone(model).fit(X, y), X), reference)
    np.testing.assert_array_equal(_proba(model.fit(X, y), X), reference)  # refit
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(_proba(restored, X), reference)
    np.testing.assert_array_equal(_proba(clone(restored).fit(X, y), X), reference)
    other = _proba(cls(random_state=43, **RANDOM_EVERYWHERE).fit(X, y), X)
    assert not np.array_equal(other, reference)


def test_partial_fit_sequence_repeats_and_survives_pickle():
    def run(model, n):
        for _ in range(n):
            model.partial_fit(X, Y_CLASS, classes=[0, 1, 2])
        return model

    kw = dict(hidden_dims=(6,), dropout=0.2, batch_size=16, random_state=3)
    a = run(MLPTorchClassifier(**kw), 3)
    b = run(pickle.loads(pickle.dumps(run(MLPTorchClassifier(**kw), 2))), 1)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_skops_round_trip_with_trusted_types(tmp_path):
    sio = pytest.importorskip("skops.io", reason="skops is an optional dependency")
    model = MLPTorchClassifier(random_state=0, batch_norm=True, **RANDOM_EVERYWHERE)
    model.fit(X, Y_CLASS)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted == ["skmlp._classifier.MLPTorchClassifier"]  # nothing torch-specific
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)
    loaded = sio.load(path, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_predict_from_threads_is_identical():
    model = MLPTorchClassifier(random_state=0, batch_norm=True, **RANDOM_EVERYWHERE)
    model.fit(X, Y_CLASS)
    Xbig = np.tile(X, (20, 1))
    reference = model.predict_proba(Xbig)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.predict_proba(Xbig), range(8)))
    for result in results:
        np.testing.assert_array_equal(result, reference)


def test_random_state_none_draws_fresh_entropy():
    def fit_none():
        return MLPTorchRegressor(random_state=None, **RANDOM_EVERYWHERE).fit(X, Y_REG).predict(X)

    assert not np.array_equal(fit_none(), fit_none())
    # SPEC: seeding numpy (or torch) globally does not make random_state=None repeatable.
    np.random.seed(0)
    torch.manual_seed(0)
    first = fit_none()
    np.random.seed(0)
    torch.manual_seed(0)
    assert not np.array_equal(first, fit_none())


def test_random_state_instance_is_repeatable_from_the_same_seed():
    a = MLPTorchRegressor(random_state=np.random.RandomState(5), **RANDOM_EVERYWHERE)
    b = MLPTorchRegressor(random_state=np.random.RandomState(5), **RANDOM_EVERYWHERE)
    np.testing.assert_array_equal(a.fit(X, Y_REG).predict(X), b.fit(X, Y_REG).predict(X))


# ------------------------------------------------------------------ memory
def _status_bytes(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible.

    Freed heap memory is first handed back to the OS (glibc ``malloc_trim``),
    so that a later allocation cannot hide in pages freed by earlier tests.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_predict_memory_is_bounded(sparse, monkeypatch):
    """Peak RSS of predict on 2M x 4 beyond its output stays below 1/4 of a float copy of X.

    torch's CPU allocations are invisible to tracemalloc, so this reads the
    process's peak resident set (VmHWM) after resetting it. Batches are made
    small (64K elements instead of 1M: the per-batch temporaries of the default,
    ~25-55 MB, are as large as this X) so that what is left to measure is what
    grows with n_samples: a predict that converted the whole input to a float
    tensor even once (32 MB as float32, 64 MB as float64) fails.
    """
    if not _reset_peak_rss():
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    monkeypatch.setattr(skmlp._data, "PREDICT_BATCH_ELEMENTS", 1 << 16)
    model = MLPTorchClassifier((3,), max_iter=1, random_state=0).fit(X, Y_CLASS > 0)
    n = 2_000_000
    dense_nbytes = n * X.shape[1] * 8
    Xbig = np.random.RandomState(1).randn(n, X.shape[1])
    if sparse:
        Xbig[:, ::2] = 0
        Xbig = sp.csr_matrix(Xbig)
    model.predict_proba(Xbig[:1000])  # warm up lazy allocations
    _reset_peak_rss()
    base = _status_bytes("VmRSS")
    out = model.predict_proba(Xbig)
    extra = _status_bytes("VmHWM") - base - out.nbytes
    assert out.shape == (n, 2) and np.isfinite(out).all()
    assert extra < 0.25 * dense_nbytes, (
        f"predict used {extra / 1e6:.0f} MB beyond its {out.nbytes / 1e6:.0f} MB output "
        f"on a {dense_nbytes / 1e6:.0f} MB input")


# ----------------------------------------------------------------- security
def _calls(tree, module, name):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == name and isinstance(node.func.value, ast.Name)
                and node.func.value.id == module):
            yield node


def test_no_unsafe_loading_in_the_package():
    """torch.load only with weights_only=True; no pickle/marshal loads, eval or exec."""
    files = sorted(pathlib.Path(skmlp.__file__).parent.rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _calls(tree, "torch", "load"):
            safe = [k for k in call.keywords if k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant) and k.value.value is True]
            assert safe, f"{path.name}:{call.lineno}: torch.load without weights_only=True"
        for module, name in [("pickle", "load"), ("pickle", "loads"), ("marshal", "loads"),
                             ("dill", "load"), ("dill", "loads")]:
            hits = list(_calls(tree, module, name))
            assert not hits, f"{path.name}:{hits[0].lineno}: {module}.{name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), f"{path.name}:{node.lineno}"


def test_unpickled_state_is_plain_data():
    """The pickled state holds numpy arrays and builtins only (no tensors, no code)."""
    model = MLPTorchClassifier(random_state=0, **RANDOM_EVERYWHERE).fit(X, Y_CLASS)
    allowed = (np.ndarray, np.generic, str, int, float, bool, type(None))

    def walk(obj, where):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}[{k!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        else:
            assert isinstance(obj, allowed), f"{where} is a {type(obj).__name__}"

    walk(model.__getstate__(), "state")


def test_predict_batches_are_sized_by_the_widest_layer(monkeypatch):
    """One feature but 200 hidden units: the batch is bounded by the hidden width."""
    import skmlp._base
    import skmlp._data

    monkeypatch.setattr(skmlp._data, "PREDICT_BATCH_ELEMENTS", 2000)
    rng = np.random.RandomState(0)
    reg = MLPTorchRegressor((200,), max_iter=1, random_state=0).fit(rng.randn(30, 1),
                                                                      rng.randn(30))
    rows = []
    real = skmlp._base.inference

    def spy(module):
        forward = real(module)
        return lambda xb: (rows.append(xb.shape[0]), forward(xb))[1]

    monkeypatch.setattr(skmlp._base, "inference", spy)
    X = rng.randn(1000, 1)
    out = reg.predict(X)
    assert max(rows) <= 2000 // 200 and sum(rows) == 1000
    monkeypatch.setattr(skmlp._data, "PREDICT_BATCH_ELEMENTS", 1 << 21)
    np.testing.assert_allclose(out, reg.predict(X))


# ------------------------------------------------------- fixes found on review
def test_float32_and_float64_fits_start_from_the_same_weights_and_agree():
    """As sklearn's test_mlp_classifier_dtypes_casting: same seed, either dtype."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import MinMaxScaler

    Xd, yd = load_digits(n_class=3, return_X_y=True)
    Xd = MinMaxScaler().fit_transform(Xd)
    kw = dict(hidden_dims=(5, 3), max_iter=20, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f64 = MLPTorchClassifier(**kw).fit(Xd[:300], yd[:300])
        f32 = MLPTorchClassifier(**kw).fit(Xd[:300].astype(np.float32), yd[:300])
    assert f32.predict_proba(Xd[:1].astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(f64.predict(Xd[300:]), f32.predict(Xd[300:].astype(np.float32)))
    np.testing.assert_allclose(f64.predict_proba(Xd[300:]),
                               f32.predict_proba(Xd[300:].astype(np.float32)), rtol=1e-3)
    first32 = MLPTorchClassifier(**{**kw, "max_iter": 1}).partial_fit(
        Xd[:1].astype(np.float32), yd[:1], classes=[0, 1, 2])
    first64 = MLPTorchClassifier(**{**kw, "max_iter": 1}).partial_fit(
        Xd[:1], yd[:1], classes=[0, 1, 2])
    for p32, p64 in zip(first32.module_.parameters(), first64.module_.parameters()):
        torch.testing.assert_close(p32, p64.to(torch.float32), rtol=1e-5, atol=1e-6)


def test_refit_that_fails_after_target_encoding_changes_nothing():
    """3 classes fitted; a refit on 4 classes that fails at the device check
    must not leave classes_ with 4 entries beside a 3-output network."""
    clf = MLPTorchClassifier((5,), max_iter=3, random_state=0).fit(X, Y_CLASS)
    before = dict(clf.__dict__)
    proba = clf.predict_proba(X)
    clf.set_params(device="cuda:99")  # no machine has 100 GPUs
    with pytest.raises(ValueError, match="cuda:99"):
        clf.fit(X, np.arange(len(X)) % 4)
    assert set(clf.__dict__) == set(before)
    assert len(clf.classes_) == 3 and clf.n_outputs_ == before["n_outputs_"]
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    # partial_fit that raises mid-training (a callback) also rolls back
    clf.set_params(device="cpu", callbacks=[lambda est, epoch, logs: 1 / 0])
    with pytest.raises(ZeroDivisionError):
        clf.partial_fit(X, Y_CLASS)
    assert clf.t_ == before["t_"] and clf.n_iter_ == before["n_iter_"]
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
