"""Torch's thread count per fit: size limit and joblib workers (skmlp/_threads.py)."""

import threading

import numpy as np
import pytest
import torch
from joblib import Parallel, cpu_count, delayed

from skmlp import MLPTorchClassifier
from skmlp._threads import in_joblib_worker

X = np.random.RandomState(0).randn(60, 4)
y = (X[:, 0] > 0).astype(int)


def _threads_during_fit(raise_in_fit=False):
    seen = []

    def record(est, epoch, logs):
        seen.append(torch.get_num_threads())
        if raise_in_fit:
            raise RuntimeError("boom")

    clf = MLPTorchClassifier((4,), max_iter=2, random_state=0, callbacks=[record])
    try:
        clf.fit(X, y)
    except RuntimeError:
        pass
    seen.append(in_joblib_worker())
    return seen


def _new_thread_count():
    out = []
    t = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    t.start()
    t.join()
    return out[0]


@pytest.fixture
def threads4(monkeypatch):
    """Run with torch at 4 threads (more than a 2-job worker's share of 2 cores).

    The size limit is switched off so that only the worker limit is seen.
    """
    monkeypatch.setattr("skmlp._threads.SINGLE_THREAD_MACS", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield 4
    torch.set_num_threads(before)


def test_plain_fit_keeps_thread_count(threads4):
    seen = _threads_during_fit()
    assert seen[:-1] == [4, 4] and seen[-1] is False
    assert torch.get_num_threads() == 4


@pytest.mark.parametrize("raise_in_fit", [False, True])
def test_threading_backend_limits_and_restores(threads4, monkeypatch, raise_in_fit):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("skmlp._threads.cpu_count", lambda: 4)
    results = Parallel(n_jobs=2, backend="threading")(
        delayed(_threads_during_fit)(raise_in_fit) for _ in range(4)
    )
    for seen in results:
        assert seen[-1] is True  # ran inside a joblib worker
        assert all(n == 2 for n in seen[:-1]), seen  # 4 cores // 2 concurrent jobs
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4  # the default for new threads is restored too


def test_env_limit_in_worker_thread(threads4, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = Parallel(n_jobs=2, backend="threading")(
        delayed(_threads_during_fit)() for _ in range(2)
    )
    assert all(seen[:-1] == [1, 1] for seen in results)
    assert torch.get_num_threads() == 4


def _in_loky_worker():
    import skmlp._threads

    skmlp._threads.SINGLE_THREAD_MACS = 0  # a fresh worker process: only the worker limit
    torch.set_num_threads(2)  # as if torch had been configured before the fit
    seen = _threads_during_fit()
    return seen, torch.get_num_threads()


def test_loky_worker_uses_inner_limit():
    # loky gives each of its n_jobs workers OMP_NUM_THREADS = cpu_count // n_jobs.
    ((seen, after),) = Parallel(n_jobs=2, backend="loky")(
        delayed(_in_loky_worker)() for _ in range(1)
    )
    expected = min(2, max(1, cpu_count() // 2))
    assert seen[:-1] == [expected, expected] and seen[-1] is True
    assert after == 2


def test_small_fits_use_one_thread_and_restore(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.SINGLE_THREAD_MACS", 20_000_000)
    seen = _threads_during_fit()
    assert seen[:-1] == [1, 1]
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4


def test_large_fits_keep_torch_threads(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.SINGLE_THREAD_MACS", 10)
    assert _threads_during_fit()[:-1] == [4, 4]
    assert torch.get_num_threads() == 4


def test_nested_and_concurrent_calls_restore_once(threads4):
    from concurrent.futures import ThreadPoolExecutor

    from skmlp._threads import torch_threads

    def work(_):
        with torch_threads(1):
            with torch_threads(2):
                return torch.get_num_threads()

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(work, range(8))) == {1}
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4


def test_worker_threads_end_with_the_count_they_started_with(threads4, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("skmlp._threads.cpu_count", lambda: 4)

    def fit_then_count():
        MLPTorchClassifier((16,), max_iter=3, random_state=0).fit(X, y)
        return torch.get_num_threads()

    counts = Parallel(n_jobs=2, backend="threading")(delayed(fit_then_count)() for _ in range(6))
    assert counts == [4] * 6
    assert torch.get_num_threads() == 4
