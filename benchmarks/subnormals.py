"""Subnormal numbers: what flushing tiny weights and gradients saves.

    python benchmarks/subnormals.py [--rows 2000000] [--epochs 2] [--threads 1]

Over thousands of Adam steps some weights and moments decay towards zero and
into the subnormal range (below 1.2e-38 in float32), where x86 CPUs compute
many times slower (Intel more than AMD); the products of tiny weights with
activations, and the gradients of saturated outputs, land there too. skmlp
zeroes values below ``sqrt(finfo.tiny)`` in the parameters and optimizer
moments every ``FLUSH_EVERY`` steps and in the output gradient every step
(``skmlp/_optim.py``, ``skmlp/_fastpath.py``). This script fits W2's network
(hidden (256, 128), Adam, batch 256, float32) on ``rows`` x 50 rows of
``benchmarks/dask_incremental.py``'s data, each way in a fresh process:

* ``skmlp``: as shipped;
* ``no flush``: both flushes switched off (what skmlp did before);
* ``no flush + FTZ``: switched off, with ``torch.set_flush_denormal(True)``
  (the processor flushes on the calling thread only: torch's other threads
  would still compute on subnormals).

It prints the seconds of every epoch, the subnormal weights left at the end
and the training accuracy (the flush must not change what is learned).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAYS = ("skmlp", "no flush", "no flush + FTZ")


def child(args):
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    from dask_incremental import make_data

    import skmlp._fastpath
    import skmlp._optim
    from skmlp import MLPTorchClassifier

    if args.child != "skmlp":
        skmlp._optim.FLUSH_EVERY = 2**62
        skmlp._fastpath._flush_tiny = lambda g: None
    if args.child == "no flush + FTZ":
        torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    os.environ["SKMLP_NUM_THREADS"] = str(args.threads)
    dX, dy = make_data(args.rows, 50, 10)
    X, y = dX.compute(scheduler="synchronous"), dy.compute(scheduler="synchronous")
    est = MLPTorchClassifier((256, 128), batch_size=256, max_iter=args.epochs, tol=0.0,
                             random_state=0)
    tic = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - tic
    tiny = torch.finfo(torch.float32).tiny
    subnormal = sum(int(((p.abs() > 0) & (p.abs() < tiny)).sum())
                    for p in est.module_.parameters())
    print(json.dumps({"epoch_seconds": [h["seconds"] for h in est.history_],
                      "fit_seconds": seconds, "subnormal_weights": subnormal,
                      "accuracy": float(est.score(X[:200000], y[:200000]))}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    print(f"{args.rows:,} x 50 float32, hidden (256, 128), Adam, batch 256, {args.epochs} "
          f"epochs, {args.threads} thread(s); {platform.processor() or platform.machine()}")
    results = {}
    for way in WAYS:
        out = subprocess.run([sys.executable, __file__, "--child", way, *sys.argv[1:]],
                             capture_output=True, text=True, check=True)
        results[way] = json.loads(out.stdout.strip().splitlines()[-1])
        print(way, results[way], flush=True)
    print("\n| way | seconds per epoch | fit s | vs skmlp | subnormal weights left | "
          "training accuracy |\n|---|---|---|---|---|---|")
    base = results["skmlp"]["fit_seconds"]
    for way, r in results.items():
        epochs = ", ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        print(f"| {way} | {epochs} | {r['fit_seconds']:.1f} | {r['fit_seconds'] / base:.2f}x | "
              f"{r['subnormal_weights']} | {r['accuracy']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setup": vars(args) | {"cpu": _cpu_name()}, "results": results}, f,
                      indent=1)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
