"""Plot the results of benchmarks/tables.py: error relative to CatBoost's vs fit time.

    python benchmarks/plot_tables.py [JSON] [--part confirmation|tuning|all] [--out PATH]

JSON defaults to the committed reference, benchmarks/tables_split_results.json; the part
to the confirmation part (the headline). One large marker per contender at its geometric
means over the part's tables (error relative to the baseline, fit seconds), and one small
marker per table, so the spread is visible; fit time on a log axis.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def plot(payload, out, part="confirmation"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, HERE)
    from tables import BASELINE, summarize

    summary = summarize(payload)
    members = [t for t in summary["per_table"] if part == "all" or summary["part"][t] == part]
    per_table = {t: summary["per_table"][t] for t in members}
    overall = summary["overall"].get(part, {})
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (cont, o) in enumerate(overall.items()):
        color = colors[i % len(colors)]
        pts = [(e["fit_s"], e["rel_error"]) for t in per_table
               for c, e in per_table[t].items() if c == cont and "rel_error" in e]
        if pts:
            ax.scatter(*zip(*pts), s=12, alpha=0.35, color=color)
        if o["gmean_fit_s"] and o["gmean_rel_error"]:
            ax.scatter(o["gmean_fit_s"], o["gmean_rel_error"], s=110, color=color,
                       edgecolor="black", label=f"{cont} ({o['n_tables']} tables)", zorder=3)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fit time [s] (log)")
    ax.set_ylabel(f"error / error of {BASELINE} (log)")
    meta = payload["meta"]
    ax.set_title(f"Real tables, {part} part: {len(per_table)} tables, seeds {meta['seeds']}; "
                 "large = geometric mean", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="?",
                        default=os.path.join(HERE, "tables_split_results.json"))
    parser.add_argument("--part", default="confirmation",
                        choices=("confirmation", "tuning", "all"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tables.png"))
    args = parser.parse_args(argv)
    with open(args.json) as f:
        payload = json.load(f)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot(payload, args.out, args.part)
    print(args.out)


if __name__ == "__main__":
    main()
