"""Training on a dask array block by block vs in memory: time per pass and peak memory.

    python benchmarks/dask_incremental.py [--rows 2000000] [--features 50] [--blocks 10]
                                          [--passes 3] [--workers 2] [--json PATH]

Needs ``pip install 'skmlp[dask]'``. The data, ``rows x features`` float32 with
a binary target, is a dask array generated block by block on the workers of a
``dask.distributed.LocalCluster`` (``--workers`` processes, one thread each),
so it never exists whole in any one process. Three ways to train the same
``MLPTorchClassifier((100,), random_state=0)`` for ``--passes`` passes (epochs):

* ``dask, persisted``: ``X.persist()`` spreads the blocks over the workers'
  memory; ``dask_ml.wrappers.Incremental`` calls ``partial_fit`` once per
  block, the model travelling to the worker that holds the block;
* ``dask, streamed``: the same without ``persist``: every pass recomputes each
  block where it is needed (it stands for reading blocks from Parquet or CSV
  files); a worker holds about one block at a time;
* ``in memory``: one process gets the whole array (computed from the same
  dask graph) and calls ``fit(X, y)`` with ``max_iter=passes``.

For each: seconds per pass (the median over passes), the peak resident memory
of each worker process (``ru_maxrss``; for the in-memory fit of its process)
and that peak minus the process's memory before the data arrived (torch and
skmlp imported), and the accuracy on 100k held-out rows. Each dask run starts
a fresh cluster, so peaks do not carry over between runs.
"""

import argparse
import json
import logging
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np


def make_data(rows, features, blocks, seed=0):
    """X (float32) and y (int64) as dask arrays, generated block by block."""
    import dask.array as da

    chunk = -(-rows // blocks)
    X = da.random.default_rng(seed).standard_normal((rows, features), chunks=(chunk, features),
                                                   dtype=np.float32)
    w = np.random.default_rng(1).normal(size=features).astype(np.float32) / np.sqrt(features)

    def label(block):
        f = block @ w + 0.5 * np.sin(2 * block[:, 0]) + 0.3 * block[:, 1] * block[:, 2]
        return (f > 0).astype(np.int64)

    y = X.map_blocks(label, drop_axis=1, dtype=np.int64)
    return X, y


def held_out(features):
    X, y = make_data(100_000, features, 1, seed=12345)
    return X.compute(scheduler="synchronous"), y.compute(scheduler="synchronous")


def peak_mib():
    """This process's peak resident memory so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _warm():
    # Imports and first-use initialisation, so the baseline excludes them.
    from skmlp import MLPTorchClassifier

    warnings.simplefilter("ignore")
    MLPTorchClassifier((4,), max_iter=1).fit(np.zeros((4, 2), np.float32), [0, 1, 0, 1])
    return current_mib()


def estimator():
    from skmlp import MLPTorchClassifier

    return MLPTorchClassifier((100,), random_state=0)


def run_dask(args, persist, X_test, y_test):
    """One training run on a fresh LocalCluster (fresh worker processes)."""
    from dask import distributed

    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, dashboard_address=None,
                                  memory_limit=0, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        return _train_on(client, args, persist, X_test, y_test)


def _train_on(client, args, persist, X_test, y_test):
    from dask import distributed
    from dask_ml.wrappers import Incremental

    base = client.run(_warm)
    X, y = make_data(args.rows, args.features, args.blocks)
    if persist:
        X, y = client.persist([X, y])
        distributed.wait([X, y])
    inc = Incremental(estimator(), random_state=0)  # block order shuffled every pass
    seconds = []
    for _ in range(args.passes):
        tic = time.perf_counter()
        inc.partial_fit(X, y, classes=[0, 1])
        seconds.append(time.perf_counter() - tic)
    peaks = client.run(peak_mib)
    est = inc.estimator_
    return {
        "seconds_per_pass": statistics.median(seconds),
        "first_pass_seconds": seconds[0],
        "peak_mib": [round(peaks[w]) for w in sorted(peaks)],
        "peak_minus_base_mib": [round(peaks[w] - base[w]) for w in sorted(peaks)],
        "accuracy": float(est.score(X_test, y_test)),
        "n_iter_": est.n_iter_, "t_": est.t_,
    }


def run_in_memory(args):
    """The in-memory fit, in a fresh process (its own peak memory)."""
    out = subprocess.run([sys.executable, __file__, "--in-memory-child", *sys.argv[1:]],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_memory_child(args):
    import dask.array  # noqa: F401  (imported before the baseline, as on the workers)
    import threadpoolctl

    base = _warm()
    X_test, y_test = held_out(args.features)
    dX, dy = make_data(args.rows, args.features, args.blocks)
    # The same values as on the cluster, computed here block by block into
    # arrays allocated once (as a loader would fill them: no second copy).
    X = np.empty(dX.shape, dtype=dX.dtype)
    y = np.empty(dy.shape, dtype=dy.dtype)
    start = 0
    with threadpoolctl.threadpool_limits(1):
        for i in range(dX.numblocks[0]):
            block = dX.blocks[i].compute(scheduler="synchronous")
            X[start:start + len(block)] = block
            y[start:start + len(block)] = dy.blocks[i].compute(scheduler="synchronous")
            start += len(block)
    del block, dX, dy
    est = estimator().set_params(max_iter=args.passes)
    tic = time.perf_counter()
    est.fit(X, y)
    total = time.perf_counter() - tic
    print(json.dumps({
        "seconds_per_pass": total / est.n_iter_, "first_pass_seconds": None,
        "peak_mib": [round(peak_mib())], "peak_minus_base_mib": [round(peak_mib() - base)],
        "accuracy": float(est.score(X_test, y_test)), "n_iter_": est.n_iter_, "t_": est.t_,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--in-memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.in_memory_child:
        return in_memory_child(args)

    X_test, y_test = held_out(args.features)
    gib = args.rows * args.features * 4 / 2**30
    print(f"{args.rows:,} x {args.features} float32 ({gib:.2f} GiB) in {args.blocks} blocks, "
          f"{args.passes} passes, MLPTorchClassifier((100,)), batch 200; "
          f"LocalCluster: {args.workers} worker processes x 1 thread")
    results = {
        "dask, persisted": run_dask(args, True, X_test, y_test),
        "dask, streamed": run_dask(args, False, X_test, y_test),
        "in memory": run_in_memory(args),
    }

    print()
    print("| run | s / pass | peak MiB per process | peak - idle MiB | accuracy | n_iter_ |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        peaks = ", ".join(map(str, r["peak_mib"]))
        extra = ", ".join(map(str, r["peak_minus_base_mib"]))
        print(f"| {name} | {r['seconds_per_pass']:.1f} | {peaks} | {extra} | "
              f"{r['accuracy']:.4f} | {r['n_iter_']} |")
    if args.json:
        import torch

        meta = {"rows": args.rows, "features": args.features, "blocks": args.blocks,
                "passes": args.passes, "workers": args.workers,
                "machine": platform.processor() or platform.machine(),
                "python": platform.python_version(), "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump({"setup": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
