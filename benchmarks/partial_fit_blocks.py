"""partial_fit over many small blocks: seconds per call and peak memory, now vs a baseline.

    python benchmarks/partial_fit_blocks.py [--baseline REV] [--blocks 300] [--rows 200]
                                            [--features 50] [--hidden 256,128] [--rounds 3]

Each measurement runs in a fresh process (so peak resident memory is that run's own):
``partial_fit`` is called ``--blocks`` times on blocks of ``--rows`` x ``--features``
(float32, Adam, one thread), after one warm-up call. Reported: median seconds per call
over ``--rounds`` interleaved rounds (every contender once per round) and the peak
resident memory of the process above what it held after the first call (the network,
optimizer and data already in place), in MiB. ``--baseline REV`` measures skmlp as of git
revision REV beside the working copy (a ``git archive`` copy), as ``benchmarks/run.py``
does; issue 18 uses it to check that undoing a failed call no longer deep-copies the
model on every call.
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, resource, sys, time, warnings
sys.path.insert(0, {src!r})
import numpy as np, torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from skmlp import MLPTorchClassifier
rng = np.random.RandomState(0)
blocks, rows, d = {blocks}, {rows}, {features}
X = rng.randn(rows * 8, d).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(int)
clf = MLPTorchClassifier({hidden}, random_state=0)
clf.partial_fit(X[:rows], y[:rows], classes=[0, 1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tic = time.perf_counter()
for i in range(blocks):
    j = (i % 8) * rows
    clf.partial_fit(X[j:j + rows], y[j:j + rows])
seconds = (time.perf_counter() - tic) / blocks
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mib": (peak - base) / 1024}}))
"""


def archive(rev):
    """skmlp as of ``rev`` in a temporary folder (its path)."""
    data = subprocess.run(["git", "archive", rev, "skmlp"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    tmp = tempfile.mkdtemp(prefix="skmlp-baseline-")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp


def measure(src, args):
    code = CHILD.format(src=src, blocks=args.blocks, rows=args.rows, features=args.features,
                        hidden=tuple(int(h) for h in args.hidden.split(",")))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--hidden", default="256,128")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sources = {"skmlp (working copy)": ROOT}
    if args.baseline:
        sources[f"skmlp@{args.baseline}"] = archive(args.baseline)
    results = {name: [] for name in sources}
    for _ in range(args.rounds):
        for name, src in sources.items():
            results[name].append(measure(src, args))
    print(f"partial_fit: {args.blocks} calls on {args.rows} x {args.features} blocks, "
          f"hidden ({args.hidden}), float32, 1 thread; median of {args.rounds} rounds\n")
    print("| contender | ms per call | peak memory above the first call (MiB) |")
    print("|---|---|---|")
    for name, runs in results.items():
        ms = 1000 * statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_mib"] for r in runs)
        print(f"| {name} | {ms:.2f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
