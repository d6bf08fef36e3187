"""Torch's intra-op thread count inside joblib workers.

``GridSearchCV(n_jobs=k)`` runs fits in parallel: in loky worker processes
(which get ``OMP_NUM_THREADS = cpu_count // k``), in threads (``backend=
"threading"``) or on Dask workers. Torch sizes its own thread pool, so each
parallel fit would otherwise use every core and the fits would fight over
them. ``limit_torch_threads`` lowers ``torch.set_num_threads`` for the
duration of a fit / predict that runs inside a joblib worker and restores the
previous value afterwards, also when the fit raises.

The limit is

* the ``OMP_NUM_THREADS`` value that joblib (loky) or Dask put into the
  worker's environment, when set;
* in a worker *thread* (threading backend), ``cpu_count() // n`` where ``n``
  is the number of skmlp fits running in worker threads of this process at
  that moment, at least 2 (joblib does not tell a thread how many siblings it
  has; with ``n_jobs=1`` it runs tasks in the caller's thread, so a worker
  thread always has one).

Outside joblib workers nothing changes: a plain ``fit`` uses torch's setting.

Torch's count is per thread for its OpenMP backend, but a change also sets
the default that new threads start from. The first fit to enter records the
value and every fit that lowered it puts that value back on exit, so neither
the caller's thread nor threads started later see a changed count.
"""

import functools
import os
import threading

import torch
from joblib import cpu_count
from joblib.parallel import get_active_backend

_lock = threading.Lock()
_active = 0  # fits currently inside ``limit_torch_threads`` (any thread)
_threaded = 0  # of those, how many run in non-main threads
_outer = None  # torch's thread count before the first of them entered


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


def _worker_limit(n_threaded):
    """The thread count a fit in this worker should use (None: no limit)."""
    limits = []
    env = _env_limit()
    if env is not None:
        limits.append(env)
    if threading.current_thread() is not threading.main_thread():
        # joblib runs n_jobs=1 in the caller's thread, so a worker thread has
        # at least one sibling.
        limits.append(max(1, cpu_count() // max(2, n_threaded)))
    return min(limits) if limits else None


class _Limit:
    def __enter__(self):
        global _active, _threaded, _outer
        self.changed = False
        if not in_joblib_worker():
            self.counted = False
            return self
        self.counted = True
        self.threaded = threading.current_thread() is not threading.main_thread()
        with _lock:
            current = torch.get_num_threads()
            if _active == 0:
                _outer = current
            _active += 1
            _threaded += self.threaded
            limit = _worker_limit(_threaded)
            if limit is not None and limit < current:
                torch.set_num_threads(limit)
                self.changed = True
        return self

    def __exit__(self, *exc):
        global _active, _threaded, _outer
        if not self.counted:
            return False
        with _lock:
            _active -= 1
            _threaded -= self.threaded
            if self.changed:
                torch.set_num_threads(_outer)
            if _active == 0:
                _outer = None
        return False


def limit_torch_threads(method):
    """Decorator: run ``method`` under the worker thread limit (see module doc)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _Limit():
            return method(*args, **kwargs)

    return wrapper
