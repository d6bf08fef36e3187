"""torch's intra-op thread count, chosen per call and always restored.

Small networks run fastest on one thread: OpenMP's fork/join costs more than
the tiny GEMMs gain, and when the cores are shared (GridSearchCV workers, other
processes) spinning OpenMP threads make a fit many times slower. Large ones
use the threads torch already has. The count is set with a process-wide
reference count so concurrent calls (predict from several Python threads)
restore the caller's original value exactly once, when the last one leaves.
"""

import threading
from contextlib import contextmanager

import torch

# Multiply-accumulates per step below which one thread is faster (measured on
# a 2-core Zen5 box: about where a 2-thread GEMM starts to pay off).
SINGLE_THREAD_MACS = 20_000_000

_lock = threading.Lock()
_depth = 0
_saved = None


def threads_for(macs_per_step):
    """The thread count for a step costing ``macs_per_step`` multiply-adds."""
    return 1 if macs_per_step < SINGLE_THREAD_MACS else None


@contextmanager
def torch_threads(n_threads):
    """Run the block with at most ``n_threads`` torch threads (None: unchanged)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = torch.get_num_threads()
        _depth += 1
        if n_threads is not None and n_threads < torch.get_num_threads():
            torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and torch.get_num_threads() != _saved:
                torch.set_num_threads(_saved)


def macs(arch, rows):
    """Multiply-adds of one forward pass of ``rows`` rows through ``arch``."""
    widths = [arch["n_inputs"], *arch["hidden_dims"], arch["n_outputs"]]
    return rows * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
