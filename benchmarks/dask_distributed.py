"""Data-parallel training over Dask workers (skmlp.dask) vs one worker vs in memory.

    python benchmarks/dask_distributed.py [--rows 2000000] [--features 50] [--blocks 10]
                                          [--passes 2] [--batch 256] [--rebalance] [--json PATH]
                                          [--runs dask1,dask2,mem1,mem2]

Needs ``pip install 'skmlp[dask]'``. The data are those of
``benchmarks/dask_incremental.py`` (``rows x features`` float32, binary
target, generated block by block on the workers and persisted there); the
network is W2's of ``benchmarks/run.py``: hidden (256, 128), Adam, lr 1e-3,
batch 256, no early stopping. Four ways to train it for ``--passes`` epochs:

* ``DaskMLPClassifier``, LocalCluster of 1 worker process x 1 thread;
* ``DaskMLPClassifier``, LocalCluster of 2 worker processes x 1 thread each
  (each worker holds half the blocks; every step all-reduces the gradients);
* ``MLPTorchClassifier.fit`` in memory, torch on 1 thread, then on 2 threads
  (a fresh process each: its own peak memory).

For each: seconds per pass (the median of ``history_``'s epoch seconds: the
training loop only; the column statistics and start-up are in "fit s"), the
speed-up over the 1-worker run, the CPU seconds per pass of the busiest
process (on a machine shared with other jobs, what a pass costs without the
waits their load causes: a synchronous all-reduce every step waits for the
worker that was descheduled last), the share of the training time spent in the
all-reduce (rank 0, waiting for the slower worker included), the peak
resident memory of each worker process above its memory before the data
arrived, and the accuracy on 100k held-out rows.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dask_incremental import _warm, held_out, make_data, peak_mib  # noqa: E402

HIDDEN, BATCH = (256, 128), 256  # W2 in benchmarks/run.py


def params(passes):
    return dict(hidden_dims=HIDDEN, batch_size=BATCH, max_iter=passes, lr=1e-3,
                early_stopping=False, tol=0.0, random_state=0)


def run_dask(args, workers, X_test, y_test):
    from dask import distributed

    from skmlp.dask import DaskMLPClassifier

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit=0,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        def warm():
            import skmlp.dask  # noqa: F401
            return _warm()

        base = client.run(warm)
        X, y = make_data(args.rows, args.features, args.blocks)
        X, y = client.persist([X, y])
        distributed.wait([X, y])
        if args.rebalance:
            client.rebalance([X, y])  # the scheduler may place the blocks unevenly
        tic = time.perf_counter()
        est = DaskMLPClassifier(**params(args.passes), client=client).fit(X, y)
        fit_seconds = time.perf_counter() - tic
        peaks = client.run(peak_mib)
        stats = est.dask_stats_
        rank0 = next(s for s in stats if s["rank"] == 0)
        return {
            "seconds_per_pass": statistics.median(h["seconds"] for h in est.history_),
            "fit_seconds": fit_seconds,
            # CPU seconds per pass of the busiest worker process: what a pass
            # costs without the waits that other jobs on the machine cause
            "cpu_seconds_per_pass": max(s["cpu_seconds"] for s in stats) / est.n_iter_,
            "allreduce_share": rank0["allreduce_seconds"] / rank0["seconds"],
            "allreduce_calls": rank0["allreduce_calls"],
            "steps_per_epoch": rank0["steps_per_epoch"],
            "rows_per_worker": [s["rows"] for s in sorted(stats, key=lambda s: s["rank"])],
            "peak_mib": [round(peaks[w]) for w in sorted(peaks)],
            "peak_minus_base_mib": [round(peaks[w] - base[w]) for w in sorted(peaks)],
            "accuracy": float(est.to_local().score(X_test, y_test)),
            "n_iter_": est.n_iter_,
        }


def run_in_memory(args, threads):
    out = subprocess.run([sys.executable, __file__, "--in-memory-child", str(threads),
                          *sys.argv[1:]], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_memory_child(args):
    import numpy as np
    import torch

    from skmlp import MLPTorchClassifier

    torch.set_num_threads(args.in_memory_child)
    base = _warm()
    X_test, y_test = held_out(args.features)
    dX, dy = make_data(args.rows, args.features, args.blocks)
    X = np.empty(dX.shape, dtype=dX.dtype)
    y = np.empty(dy.shape, dtype=dy.dtype)
    start = 0
    for i in range(dX.numblocks[0]):
        block = dX.blocks[i].compute(scheduler="synchronous")
        X[start:start + len(block)] = block
        y[start:start + len(block)] = dy.blocks[i].compute(scheduler="synchronous")
        start += len(block)
    del block, dX, dy
    tic, cpu = time.perf_counter(), time.process_time()
    est = MLPTorchClassifier(**params(args.passes)).fit(X, y)
    cpu = time.process_time() - cpu
    print(json.dumps({
        "seconds_per_pass": statistics.median(h["seconds"] for h in est.history_),
        "cpu_seconds_per_pass": cpu / est.n_iter_,
        "fit_seconds": time.perf_counter() - tic, "allreduce_share": None,
        "peak_mib": [round(peak_mib())], "peak_minus_base_mib": [round(peak_mib() - base)],
        "accuracy": float(est.score(X_test, y_test)), "n_iter_": est.n_iter_,
    }))


def extrapolate(one_worker, features, bandwidth=1.25e9, latency=50e-6):
    """On paper: a step on n machines costs c * B / n + A(n), with c * B the
    measured 1-worker step and A(n) a ring all-reduce of the gradients,
    2 (n - 1) / n * M / bandwidth + 2 (n - 1) * latency (10 Gb/s, 50 us a hop)."""
    dims = [features, *HIDDEN, 1]
    M = 4 * sum(a * b + b for a, b in zip(dims, dims[1:]))  # float32 gradients, bytes
    step = one_worker["seconds_per_pass"] / one_worker["steps_per_epoch"]
    print(f"1-worker step {1e3 * step:.2f} ms (batch {BATCH}); gradients {M / 1e3:.0f} KB")
    print(f"| machines | compute / step ms | all-reduce ms | speed-up, batch {BATCH} | "
          f"rows/s speed-up, batch {BATCH} per machine |")
    print("|---|---|---|---|---|")
    for n in (1, 2, 8, 64):
        allreduce = 2 * (n - 1) / n * M / bandwidth + 2 * (n - 1) * latency
        print(f"| {n} | {1e3 * step / n:.2f} | {1e3 * allreduce:.2f} | "
              f"{step / (step / n + allreduce):.2f}x | {n * step / (step + allreduce):.1f}x |")
    print(f"best n at batch {BATCH}: about {(step / (2 * latency)) ** 0.5:.1f}")


def main():
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--batch", type=int, default=256, help="global batch size (W2: 256)")
    parser.add_argument("--rebalance", action="store_true",
                        help="client.rebalance the persisted blocks over the workers")
    parser.add_argument("--runs", default="dask1,dask2,mem1,mem2",
                        help="which runs: dask1, dask2 (workers), mem1, mem2 (threads)")
    parser.add_argument("--in-memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    BATCH = args.batch
    warnings.simplefilter("ignore")
    if args.in_memory_child:
        return in_memory_child(args)

    X_test, y_test = held_out(args.features)
    gib = args.rows * args.features * 4 / 2**30
    print(f"{args.rows:,} x {args.features} float32 ({gib:.2f} GiB) in {args.blocks} blocks, "
          f"{args.passes} passes, hidden {HIDDEN}, batch {BATCH} (global), Adam", flush=True)
    results = {}
    runs = [("dask1", "dask, 1 worker x 1 thread", lambda: run_dask(args, 1, X_test, y_test)),
            ("dask2", "dask, 2 workers x 1 thread", lambda: run_dask(args, 2, X_test, y_test)),
            ("mem1", "in memory, 1 thread", lambda: run_in_memory(args, 1)),
            ("mem2", "in memory, 2 threads", lambda: run_in_memory(args, 2))]
    for key, name, run in runs:
        if key not in args.runs.split(","):
            continue
        results[name] = run()
        print(name, json.dumps(results[name]), flush=True)
    one = results["dask, 1 worker x 1 thread"]["seconds_per_pass"]  # dask1 is required
    print()
    one_cpu = results["dask, 1 worker x 1 thread"]["cpu_seconds_per_pass"]
    print("| run | s / pass | speed-up vs 1 worker | CPU s / pass (busiest process) | "
          "speed-up in CPU s | all-reduce share | fit s | peak - idle MiB per process | "
          "held-out accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        share = "-" if r["allreduce_share"] is None else f"{100 * r['allreduce_share']:.0f}%"
        extra = ", ".join(map(str, r["peak_minus_base_mib"]))
        print(f"| {name} | {r['seconds_per_pass']:.1f} | {one / r['seconds_per_pass']:.2f}x | "
              f"{r['cpu_seconds_per_pass']:.1f} | {one_cpu / r['cpu_seconds_per_pass']:.2f}x | "
              f"{share} | {r['fit_seconds']:.1f} | {extra} | {r['accuracy']:.4f} |")
    print()
    extrapolate(results["dask, 1 worker x 1 thread"], args.features)
    if args.json:
        import torch

        meta = {"rows": args.rows, "rebalance": args.rebalance, "runs": args.runs, "features": args.features, "blocks": args.blocks,
                "passes": args.passes, "hidden": HIDDEN, "batch": BATCH,
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                "python": platform.python_version(), "torch": torch.__version__,
                "note": "machine shared with other jobs while measured"}
        with open(args.json, "w") as f:
            json.dump({"setup": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
