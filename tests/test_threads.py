"""Torch's thread count per fit: size limit, idle cores, SKMLP_NUM_THREADS and joblib
workers (skmlp/_threads.py).

The idle-core measurement is replaced by a fixed answer wherever a test checks
another limit, so that what other processes on the machine do cannot change
the outcome; the measurement itself is tested on given /proc/stat readings.
"""

import os
import threading

import numpy as np
import pytest
import torch
from joblib import Parallel, cpu_count, delayed

from skmlp import MLPTorchClassifier
import skmlp._threads as threads_mod
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
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: None)
    monkeypatch.delenv("SKMLP_NUM_THREADS", raising=False)
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
    skmlp._threads.idle_limit = lambda wait=True: None
    os.environ.pop("SKMLP_NUM_THREADS", None)
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


# --- idle cores and SKMLP_NUM_THREADS ------------------------------------------------


def test_large_fit_uses_at_most_the_idle_cores(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: 1)
    assert _threads_during_fit()[:-1] == [1, 1]
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4


def test_idle_limit_never_raises_torch_setting(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: 3)
    assert _threads_during_fit()[:-1] == [3, 3]
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: 16)
    assert _threads_during_fit()[:-1] == [4, 4]
    assert torch.get_num_threads() == 4


def _probe_must_not_run(wait=True):
    raise AssertionError("the idle cores were measured")


def test_env_var_replaces_the_measurement(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.idle_limit", _probe_must_not_run)
    monkeypatch.setenv("SKMLP_NUM_THREADS", "2")
    assert _threads_during_fit()[:-1] == [2, 2]
    monkeypatch.setenv("SKMLP_NUM_THREADS", "8")  # a cap: torch's 4 stays
    assert _threads_during_fit()[:-1] == [4, 4]
    assert torch.get_num_threads() == 4


def test_env_var_auto_measures(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: 2)
    monkeypatch.setenv("SKMLP_NUM_THREADS", " Auto ")
    assert _threads_during_fit()[:-1] == [2, 2]


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_env_var_is_a_clear_error(threads4, monkeypatch, value):
    monkeypatch.setenv("SKMLP_NUM_THREADS", value)
    clf = MLPTorchClassifier((4,), max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="SKMLP_NUM_THREADS.*positive number of threads"):
        clf.fit(X, y)
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4


def test_bad_env_var_leaves_no_open_block_behind(threads4, monkeypatch):
    monkeypatch.setenv("SKMLP_NUM_THREADS", "none")
    with pytest.raises(ValueError):
        MLPTorchClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    monkeypatch.delenv("SKMLP_NUM_THREADS")
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: 1)
    # Not taken for a block nested in the failed one: the limit applies.
    assert _threads_during_fit()[:-1] == [1, 1]
    assert torch.get_num_threads() == 4


def test_small_fits_do_not_measure(threads4, monkeypatch):
    monkeypatch.setattr("skmlp._threads.SINGLE_THREAD_MACS", 20_000_000)
    monkeypatch.setattr("skmlp._threads.idle_limit", _probe_must_not_run)
    assert _threads_during_fit()[:-1] == [1, 1]


def test_fit_measures_and_predict_does_not(threads4, monkeypatch):
    waits = []

    def record(wait=True):
        waits.append(wait)
        return None

    monkeypatch.setattr("skmlp._threads.idle_limit", record)
    clf = MLPTorchClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    assert waits == [True, False, False]  # on entry (may wait), then after each epoch
    clf.predict_proba(X)
    assert waits == [True, False, False]  # predictions never depend on the load


def test_env_var_limits_predictions(threads4, monkeypatch):
    from skmlp._threads import torch_threads

    monkeypatch.setattr("skmlp._threads.idle_limit", _probe_must_not_run)
    monkeypatch.setenv("SKMLP_NUM_THREADS", "2")
    with torch_threads(None, measure=False):
        assert torch.get_num_threads() == 2
    monkeypatch.delenv("SKMLP_NUM_THREADS")
    with torch_threads(None, measure=False):
        assert torch.get_num_threads() == 4
    assert torch.get_num_threads() == 4


def test_thread_count_follows_the_load_between_epochs(threads4, monkeypatch):
    answers = iter([4, 1, 3, None])  # entry, after epochs 1, 2, 3
    monkeypatch.setattr("skmlp._threads.idle_limit", lambda wait=True: next(answers))
    seen = []
    clf = MLPTorchClassifier((4,), max_iter=3, random_state=0,
                             callbacks=[lambda est, epoch, logs: seen.append(
                                 torch.get_num_threads())])
    clf.fit(X, y)
    assert seen == [1, 3, 3]  # the user's callback runs after the recheck
    assert torch.get_num_threads() == 4
    assert _new_thread_count() == 4


PROC_STAT = b"""cpu  900 0 100 3000 10 0 0 0 0 0
cpu0 400 0 50 1500 5 0 0 0 0 0
cpu1 500 0 50 1400 5 0 0 0 0 0
cpu3 0 0 0 100 0 0 0 0 0 0
intr 12345
ctxt 678
"""


def test_proc_stat_parsing_counts_the_allowed_cores():
    ticks = threads_mod._CLOCK_TICKS
    assert threads_mod._parse_proc_stat(PROC_STAT, None) == ((1505 + 1405 + 100) / ticks, 3)
    assert threads_mod._parse_proc_stat(PROC_STAT, {1, 3}) == ((1405 + 100) / ticks, 2)
    assert threads_mod._parse_proc_stat(PROC_STAT, {7}) is None
    assert threads_mod._parse_proc_stat(b"intr 1\n", None) is None


class FakeMachine:
    """/proc/stat and the clocks of a machine with ``cores`` cores where other
    processes keep ``busy`` cores busy and this process ``own`` cores."""

    def __init__(self, monkeypatch, cores=2, busy=0.0, own=0.0):
        self.cores, self.busy, self.own = cores, busy, own
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        self.wall = self.idle = self.cpu = 0.0
        self.sleeps = []
        monkeypatch.setattr(threads_mod, "_read_proc_stat", lambda: (self.idle, self.cores))
        monkeypatch.setattr(threads_mod, "_monotonic", lambda: self.wall)
        monkeypatch.setattr(threads_mod, "_process_time", lambda: self.cpu)
        monkeypatch.setattr(threads_mod, "_sleep", self.advance)
        monkeypatch.setattr(threads_mod, "_probe", threads_mod._Probe())

    def advance(self, seconds):
        self.sleeps.append(seconds)
        self.wall += seconds
        self.cpu += self.own * seconds
        self.idle += (self.cores - self.busy - self.own) * seconds


@pytest.mark.parametrize("cores, busy, own, expected", [
    (2, 0.0, 0.0, 2),  # quiet: all cores
    (2, 0.05, 0.0, 2),  # background noise does not cost a core
    (2, 1.0, 0.0, 1),  # one busy neighbour: one thread
    (2, 0.6, 0.0, 1),  # a core 60% busy is not idle
    (2, 2.0, 0.0, 1),  # never fewer than one thread
    (8, 3.0, 0.0, 5),
    (2, 0.0, 2.0, 2),  # this process's own threads are not a neighbour
    (2, 1.0, 1.0, 1),
])
def test_idle_limit_from_readings(monkeypatch, cores, busy, own, expected):
    machine = FakeMachine(monkeypatch, cores, busy, own)
    assert threads_mod.idle_limit(wait=True) == expected
    assert machine.sleeps == [threads_mod.WINDOW]  # no earlier reading: one window


def test_idle_limit_reuses_recent_readings(monkeypatch):
    machine = FakeMachine(monkeypatch, busy=1.0)
    threads_mod._probe.observe()  # e.g. at import
    machine.advance(0.5)  # work between the import and the fit
    machine.sleeps.clear()
    assert threads_mod.idle_limit(wait=True) == 1
    assert machine.sleeps == []  # the window since the import was used
    machine.advance(0.01)  # right after: too short a window, the measurement is recent
    machine.busy = 0.0
    assert threads_mod.idle_limit(wait=False) == 1
    machine.advance(threads_mod.MAX_AGE + 1)  # a window long enough sees the neighbour gone
    assert threads_mod.idle_limit(wait=False) == 2
    machine.advance(threads_mod.MAX_WINDOW + 1)  # too old to describe now
    machine.sleeps.clear()
    assert threads_mod.idle_limit(wait=False) is None
    assert machine.sleeps == []
    machine.advance(threads_mod.MAX_WINDOW + 1)
    machine.sleeps.clear()
    assert threads_mod.idle_limit(wait=True) == 2
    assert machine.sleeps == [threads_mod.WINDOW]


def test_idle_limit_waits_only_for_what_the_window_lacks(monkeypatch):
    machine = FakeMachine(monkeypatch, busy=1.0)
    threads_mod._probe.observe()  # e.g. at import
    machine.advance(0.03)  # a fit right after the import
    machine.sleeps.clear()
    assert threads_mod.idle_limit(wait=True) == 1
    assert machine.sleeps == [pytest.approx(threads_mod.WINDOW - 0.03)]


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "passive"}, {"GOMP_SPINCOUNT": "0"}])
def test_no_idle_limit_when_openmp_sleeps(monkeypatch, env):
    machine = FakeMachine(monkeypatch, busy=1.0)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert threads_mod.idle_limit(wait=True) is None
    assert machine.sleeps == []  # not even measured


def test_idle_limit_without_proc_stat(monkeypatch):
    monkeypatch.setattr(threads_mod, "_read_proc_stat", lambda: None)
    monkeypatch.setattr(threads_mod, "_probe", threads_mod._Probe())
    assert threads_mod.idle_limit(wait=True) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the measurement reads /proc/stat")
def test_idle_limit_on_this_machine(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    # Whatever the other processes do: between one thread and the allowed cores.
    assert 1 <= threads_mod.idle_limit(wait=True) <= len(os.sched_getaffinity(0))
