"""torch's intra-op thread count, chosen per fit / predict and always restored.

Four limits, the smallest wins:

* **Problem size.** Small networks run fastest on one thread: OpenMP's
  fork/join costs more than tiny GEMMs gain. Steps below ``SINGLE_THREAD_MACS``
  multiply-adds use one thread.
* **Idle cores.** OpenMP splits every matrix product between its threads and
  waits for all of them at a barrier, spinning; when another process keeps a
  core busy, the thread that shares that core runs only part of the time and
  every product waits for it (fits took 8-36x the one-thread time on a busy
  2-core machine, benchmarks/busy_cores.py). So a larger fit uses at most as
  many threads as there are cores that other processes leave idle, measured
  from ``/proc/stat`` (Linux) minus this process's own CPU time, on the cores
  ``os.sched_getaffinity`` allows. Elsewhere (no ``/proc/stat``) no such
  limit applies, nor when OpenMP threads sleep while they wait
  (``OMP_WAIT_POLICY=PASSIVE``): then two threads finished sooner than one
  even on the busy machine.
* **SKMLP_NUM_THREADS.** When the environment variable is set to a positive
  integer it replaces the idle-core limit (no measurement): the most threads
  a fit or prediction uses. ``auto`` (or unset) measures.
* **joblib workers.** ``GridSearchCV(n_jobs=k)`` runs fits in loky worker
  processes (which get ``OMP_NUM_THREADS = cpu_count // k``), in threads
  (``backend="threading"``) or on Dask workers. Inside a worker the limit is
  the ``OMP_NUM_THREADS`` that joblib or Dask put into its environment, and in
  a worker *thread* ``cpu_count() // n`` where ``n`` is the number of skmlp
  fits running in worker threads at that moment (at least 2: joblib runs
  ``n_jobs=1`` in the caller's thread, so a worker thread always has a sibling).

None of them raises torch's own setting (``torch.set_num_threads``), which a
large fit on quiet cores uses. torch's OpenMP count is per thread, but
changing it also sets the default that new threads start from: the first call
to enter records the value, and every call that lowered it puts that value
back on exit (also when it raises), so neither the caller's thread nor threads
started later see a changed count.

The idle-core measurement costs no waiting in the usual case: every fit,
epoch and prediction reads the counters (and skmlp does at import), and the
window since the last reading (0.1 s to a minute long) or a measurement at most
1 s old is used. Only a fit with neither sleeps, for what the window lacks of
``WINDOW`` seconds. A stale answer lasts one epoch: the count is measured
again after each. Predictions do not measure: in float64 the last bits of a
product can depend on the thread count, and a fitted model's predictions must
not depend on the machine's load (``SKMLP_NUM_THREADS`` applies to them).
"""

import math
import os
import threading
import time

import torch
from joblib import cpu_count
from joblib.parallel import get_active_backend

# Multiply-adds per training step (forward + backward) below which one thread
# is faster; about where a 2-thread GEMM starts to pay off on 2-core AMD VMs
# (measured crossover: about 20M on Zen 5, 12-16M on Zen 3 in float32).
SINGLE_THREAD_MACS = 20_000_000

# Idle-core measurement: the shortest and longest window between two readings
# of /proc/stat that count, and how long a measurement stays valid after it.
WINDOW = 0.1
MAX_WINDOW = 60.0
MAX_AGE = 1.0
# A core counts as idle when other processes leave at least 1 - SLACK of it.
SLACK = 0.25
ENV = "SKMLP_NUM_THREADS"

_lock = threading.Lock()
_local = threading.local()  # per thread: how many ``torch_threads`` blocks are open in it
_active = 0  # calls currently inside ``torch_threads`` (any thread)
_threaded = 0  # of those, how many run in joblib worker threads
_outer = None  # torch's thread count before the first of them entered


def _allowed_cpus():
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        return None


def _read_proc_stat():
    """Seconds of idle time summed over this process's allowed cores, and how
    many of them ``/proc/stat`` lists (None where there is no /proc/stat)."""
    try:
        with open("/proc/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    try:
        return _parse_proc_stat(text, _allowed_cpus())
    except (ValueError, IndexError):  # not the format this reads: no measurement
        return None


def _parse_proc_stat(text, allowed):
    """(idle seconds, cores) from /proc/stat's per-core lines of the cores in
    ``allowed`` (None: all); None when there are none."""
    idle, cores = 0, 0
    for line in text.split(b"\n"):
        if not line.startswith(b"cpu") or line[3:4] == b" ":
            continue  # not a per-core line ("cpu " is the total)
        name, *fields = line.split()
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        idle += int(fields[3]) + int(fields[4])  # idle + iowait, in clock ticks
        cores += 1
    if cores == 0:
        return None
    return idle / _CLOCK_TICKS, cores


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLOCK_TICKS = 100


# The clocks (module names, so that tests can give readings of their own).
_monotonic, _process_time, _sleep = time.monotonic, time.process_time, time.sleep


class _Reading:
    __slots__ = ("wall", "idle", "cores", "own")

    def __init__(self, wall, idle, cores, own):
        self.wall, self.idle, self.cores, self.own = wall, idle, cores, own


def _reading():
    stat = _read_proc_stat()
    if stat is None:
        return None
    return _Reading(_monotonic(), stat[0], stat[1], _process_time())


def _busy_between(a, b):
    """Cores other processes kept busy between readings ``a`` and ``b``."""
    wall = b.wall - a.wall
    busy = a.cores * wall - (b.idle - a.idle) - (b.own - a.own)
    return min(max(busy / wall, 0.0), float(b.cores))


class _Probe:
    """Readings of /proc/stat and the latest measurement of other processes' load."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = None  # the reading the current window starts at
        self.measured = None  # (monotonic time at its end, busy cores, cores)

    def observe(self, force=False):
        """Take a reading; measure the window since the last kept reading once
        it is ``WINDOW`` long (``force``: any window, as after sleeping for one).
        A shorter window is extended by the next reading; a longer one than
        ``MAX_WINDOW`` is too old to describe now and starts a new one."""
        now = _reading()
        if now is None:
            return None
        last = self.last
        window = None if last is None else now.wall - last.wall
        if window is None or last.cores != now.cores or (window > MAX_WINDOW and not force):
            self.last = now
        elif window > 0 and (force or window >= WINDOW):
            self.measured = (now.wall, _busy_between(last, now), now.cores)
            self.last = now
        return now

    def idle_cores(self, wait):
        """Cores other processes leave idle (None: unknown). ``wait``: when no
        recent measurement exists, sleep until the window since the last kept
        reading is ``WINDOW`` long and measure it."""
        with self.lock:
            now = self.observe()
            if now is None:
                return None
            if self.measured is None or now.wall - self.measured[0] > MAX_AGE:
                if not wait:
                    return None
                self.measured = None
                # Only what the window since the last kept reading lacks.
                _sleep(max(0.0, WINDOW - (now.wall - self.last.wall)))
                self.observe(force=True)
                if self.measured is None:  # the cores changed while it slept
                    return None
            _, busy, cores = self.measured
        return cores - busy


_probe = _Probe()
_probe.observe()  # the first fit measures from skmlp's import on


def openmp_sleeps():
    """True when OpenMP's waiting threads sleep instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=0``, which OpenMP read when
    torch loaded: the environment now says the same unless it was changed since)."""
    return (os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
            or os.environ.get("GOMP_SPINCOUNT", "").strip() == "0")


def idle_limit(wait=True):
    """The idle-core limit: at most as many threads as other processes leave
    cores idle (at least 1; None when that cannot be measured, and when OpenMP
    threads sleep while they wait: then all threads finish sooner than one even
    next to busy processes, see benchmarks/busy_cores.py)."""
    if openmp_sleeps():
        return None
    idle = _probe.idle_cores(wait)
    return None if idle is None else max(1, math.floor(idle + SLACK))


def env_threads():
    """``SKMLP_NUM_THREADS`` as a thread count (None: unset or ``auto``)."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("", "auto"):
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV}={value!r}: set it to a positive number of threads, or to "
                         "'auto' (or unset it) to use the cores other processes leave idle.")
    return n


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
    (``None``: no size limit), within a joblib worker's share and on no more
    cores than other processes leave idle (or ``SKMLP_NUM_THREADS``).

    ``measure=False`` (predictions): no idle-core limit, only
    ``SKMLP_NUM_THREADS``. In float64 the last bits of a matrix product can
    depend on the thread count, and a fitted model's predictions must not
    depend on what else the machine was doing.
    """

    def __init__(self, n_threads=None, measure=True):
        self.n_threads = n_threads
        self.measure = measure

    def __enter__(self):
        global _active, _threaded, _outer
        # Nested in this thread (a predict inside a fit's callback): run with at
        # most the enclosing block's count and give exactly that back on exit.
        self.nested = getattr(_local, "depth", 0) > 0
        self.probed = False
        if self.nested:
            _local.depth += 1
            self.before = torch.get_num_threads()
            self.changed = self.n_threads is not None and self.n_threads < self.before
            if self.changed:
                torch.set_num_threads(self.n_threads)
            return self
        worker = in_joblib_worker()
        self.threaded = worker and threading.current_thread() is not threading.main_thread()
        # Measured before taking the lock: it may sleep, and it raises for a bad
        # SKMLP_NUM_THREADS before anything is changed (``__exit__`` then never runs).
        load_limit = None
        if (self.n_threads is None or self.n_threads > 1) and torch.get_num_threads() > 1:
            load_limit = env_threads()
            if load_limit is None and self.measure:
                load_limit = idle_limit(wait=True)
                self.probed = True
        _local.depth = 1
        with _lock:
            current = torch.get_num_threads()
            if _active == 0:
                # A worker thread may have started while an earlier fit had
                # lowered the default; its own count is then not the one to restore.
                main = threading.current_thread() is threading.main_thread()
                _outer = current if main else _default_for_new_threads()
            _active += 1
            _threaded += self.threaded
            others = [] if self.n_threads is None else [self.n_threads]
            if worker:
                limit = _worker_limit(self.threaded, _threaded)
                others += [] if limit is None else [limit]
            # The most the idle-core limit may give between epochs (``recheck``).
            self.cap = min([current] + others)
            limits = others + ([] if load_limit is None else [load_limit])
            self.changed = bool(limits) and min(limits) < current
            if self.changed:
                torch.set_num_threads(min(limits))
        return self

    def recheck(self):
        """Between epochs: follow the other processes' load since the last
        measurement (a neighbour that started or stopped during the fit)."""
        if not self.probed:
            return
        limit = idle_limit(wait=False)
        if limit is None:
            return
        with _lock:
            target = min(self.cap, limit)
            if target != torch.get_num_threads():
                torch.set_num_threads(target)
                self.changed = True

    def __exit__(self, *exc):
        global _active, _threaded, _outer
        _local.depth -= 1
        if self.nested:
            if self.changed:
                torch.set_num_threads(self.before)
            return False
        if self.probed:
            with _probe.lock:  # what this call saw of the others' load, for the next one
                _probe.observe()
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
