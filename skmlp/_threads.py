"""torch's intra-op thread count, chosen per fit / predict and always restored.

Two limits, the smaller wins:

* **Problem size.** Small networks run fastest on one thread: OpenMP's
  fork/join costs more than tiny GEMMs gain, and when the cores are shared
  (other processes, parallel searches) spinning OpenMP threads made a
  300-row fit 25x slower here. Steps below ``SINGLE_THREAD_MACS``
  multiply-adds use one thread.
* **joblib workers.** ``GridSearchCV(n_jobs=k)`` runs fits in loky worker
  processes (which get ``OMP_NUM_THREADS = cpu_count // k``), in threads
  (``backend="threading"``) or on Dask workers. Inside a worker the limit is
  the ``OMP_NUM_THREADS`` that joblib or Dask put into its environment, and in
  a worker *thread* ``cpu_count() // n`` where ``n`` is the number of skmlp
  fits running in worker threads at that moment (at least 2: joblib runs
  ``n_jobs=1`` in the caller's thread, so a worker thread always has a sibling).

Outside workers, a large fit uses torch's own setting. torch's OpenMP count is
per thread, but changing it also sets the default that new threads start
from: the first call to enter records the value, and every call that lowered
it puts that value back on exit (also when it raises), so neither the caller's
thread nor threads started later see a changed count.
"""

import os
import threading

import torch
from joblib import cpu_count
from joblib.parallel import get_active_backend

# Multiply-adds per training step (forward + backward) below which one thread
# is faster; about where a 2-thread GEMM starts to pay off on 2-core AMD VMs
# (measured crossover: about 20M on Zen 5, 12-16M on Zen 3 in float32).
SINGLE_THREAD_MACS = 20_000_000

_lock = threading.Lock()
_local = threading.local()  # per thread: how many ``torch_threads`` blocks are open in it
_active = 0  # calls currently inside ``torch_threads`` (any thread)
_threaded = 0  # of those, how many run in joblib worker threads
_outer = None  # torch's thread count before the first of them entered


def threads_for(macs_per_step):
    """The size limit for a step of ``macs_per_step`` multiply-adds (None: none)."""
    return 1 if macs_per_step < SINGLE_THREAD_MACS else None


def in_joblib_worker():
    """True inside a task run by joblib (``Parallel``) or a backend such as Dask."""
    backend, _ = get_active_backend()
    return (getattr(backend, "nesting_level", None) or 0) >= 1


def _env_limit():
    value = os.environ.get("OMP_NUM_THREADS", "")
    try:
        return max(1, int(value.split(",")[0]))
    except ValueError:
        return None


def _worker_limit(in_thread, n_threaded):
    """The limit inside a joblib worker (None: none)."""
    limits = [] if _env_limit() is None else [_env_limit()]
    if in_thread:
        limits.append(max(1, cpu_count() // max(2, n_threaded)))
    return min(limits) if limits else None


def _default_for_new_threads():
    """torch's count as a newly started thread sees it (the process default)."""
    seen = []
    reader = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    reader.start()
    reader.join()
    return seen[0]


class torch_threads:
    """Context manager: run the block with at most ``n_threads`` torch threads
    (``None``: no size limit), and within a joblib worker's share."""

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    def __enter__(self):
        global _active, _threaded, _outer
        # Nested in this thread (a predict inside a fit's callback): run with at
        # most the enclosing block's count and give exactly that back on exit.
        self.nested = getattr(_local, "depth", 0) > 0
        _local.depth = getattr(_local, "depth", 0) + 1
        if self.nested:
            self.before = torch.get_num_threads()
            self.changed = self.n_threads is not None and self.n_threads < self.before
            if self.changed:
                torch.set_num_threads(self.n_threads)
            return self
        worker = in_joblib_worker()
        self.threaded = worker and threading.current_thread() is not threading.main_thread()
        with _lock:
            current = torch.get_num_threads()
            if _active == 0:
                # A worker thread may have started while an earlier fit had
                # lowered the default; its own count is then not the one to restore.
                main = threading.current_thread() is threading.main_thread()
                _outer = current if main else _default_for_new_threads()
            _active += 1
            _threaded += self.threaded
            limits = [] if self.n_threads is None else [self.n_threads]
            if worker:
                limit = _worker_limit(self.threaded, _threaded)
                limits += [] if limit is None else [limit]
            self.changed = bool(limits) and min(limits) < current
            if self.changed:
                torch.set_num_threads(min(limits))
        return self

    def __exit__(self, *exc):
        global _active, _threaded, _outer
        _local.depth -= 1
        if self.nested:
            if self.changed:
                torch.set_num_threads(self.before)
            return False
        with _lock:
            _active -= 1
            _threaded -= self.threaded
            # Also a worker thread that started while an earlier fit had lowered
            # the default (and so never "changed" it itself) gets _outer back.
            if self.changed or torch.get_num_threads() != _outer:
                torch.set_num_threads(_outer)
            if _active == 0:
                _outer = None
        return False
