"""Bar chart of benchmarks/run.py's JSON: time relative to scikit-learn's MLP.

    python benchmarks/plot.py [benchmarks/reference_results.json] [docs/_static/benchmarks.png]
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"skmlp": "tab:blue", "minimal torch": "tab:gray", "sklearn": "tab:orange",
          "skorch": "tab:red"}


def main(src="benchmarks/reference_results.json", dst="docs/_static/benchmarks.png"):
    with open(src) as fh:
        rows = json.load(fh)["rows"]
    groups = sorted({(r["workload"], r["dtype"]) for r in rows})
    contenders = [c for c in COLORS if any(r["contender"] == c for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(contenders)
    for i, who in enumerate(contenders):
        ratios = []
        for workload, dtype in groups:
            peers = {r["contender"]: r["value"] for r in rows
                     if r["workload"] == workload and r["dtype"] == dtype}
            ratios.append(peers[who] / peers["sklearn"] if who in peers else np.nan)
        ax.bar(np.arange(len(groups)) + i * width, ratios, width, label=who,
               color=COLORS[who])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{w}\n{d}" for w, d in groups])
    ax.set_ylabel("time / sklearn's time (lower is faster)")
    ax.legend(ncol=len(contenders), fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"saved {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
