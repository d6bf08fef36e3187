"""Draw docs/_static/architecture.png: how skmlp is built (spec -> module -> loop -> head).

    python docs/figures/architecture.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BOXES = {
    # name: (x, y, width, title, lines, colour)
    "params": (0.2, 6.2, 3.4, "_params: PARAMETERS",
               ["one row per hyperparameter", "-> __init__, docstrings, validation"], "#e8eef7"),
    "estimator": (4.2, 6.2, 3.6, "estimator.fit (_base)",
                  ["validate -> data -> targets", "-> spec -> module -> train",
                   "transactional: a failure changes nothing"], "#e8eef7"),
    "data": (0.2, 3.9, 3.4, "_data: rows",
             ["TensorRows / ArrayRows / SparseRows", "slice, take, abs_max, chunk_rows"],
             "#eef7e8"),
    "spec": (4.2, 3.9, 3.6, "NetworkSpec (_spec)",
             ["inputs, hidden blocks, head_name,", "activation, dropout, norm, dtype",
              "-> build, macs, widths, to_dict"], "#fff4dd"),
    "tables": (8.4, 3.9, 3.4, "tables (_network)",
               ["ACTIVATIONS: fn, grad, bound, gain", "PARAMETER_RULES: init, decay group"],
               "#fff4dd"),
    "module": (4.2, 1.6, 3.6, "MLP module (_network)",
               ["Block: Linear [BN] act [dropout]", "output Linear; pure torch"], "#f7e8ee"),
    "loop": (0.2, 1.6, 3.4, "_training loop",
             ["fit_loop -> run_single_epoch -> train_step", "(_fastpath per block, autograd",
              "for the rest), _optim, the head's loss"], "#f7e8ee"),
    "head": (8.4, 1.6, 3.4, "Head (_heads)",
             ["loss + link + decode + score", "binary / multiclass / multilabel,",
              "identity / log link"], "#f7e8ee"),
    "out": (4.2, -0.6, 3.6, "predict / score / ONNX / pickle",
            ["all through the spec and head"], "#eeeeee"),
}
# (from, to, curvature): curved arrows go around the boxes between their ends
ARROWS = [("params", "estimator", 0), ("estimator", "spec", 0), ("estimator", "data", 0),
          ("tables", "spec", 0), ("spec", "module", 0), ("spec", "head", 0),
          ("data", "loop", 0), ("module", "loop", 0),
          ("module", "out", 0), ("head", "out", 0)]
HEIGHT = 1.6


def centre(name):
    x, y, w, *_ = BOXES[name]
    return x + w / 2, y + HEIGHT / 2


def edge(name, towards):
    """Where the line from the box's centre towards a point leaves the box."""
    x, y, w, *_ = BOXES[name]
    cx, cy = centre(name)
    dx, dy = towards[0] - cx, towards[1] - cy
    scale = min(abs((w / 2 + 0.08) / dx) if dx else float("inf"),
                abs((HEIGHT / 2 + 0.08) / dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def main(path):
    fig, ax = plt.subplots(figsize=(10, 6.2))
    for name, (x, y, w, title, lines, colour) in BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, HEIGHT, boxstyle="round,pad=0.05",
                                    fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + HEIGHT - 0.3, title, ha="center", va="center",
                fontsize=10, weight="bold")
        for i, line in enumerate(lines):
            ax.text(x + w / 2, y + HEIGHT - 0.72 - 0.34 * i, line, ha="center",
                    va="center", fontsize=8)
    for a, b, rad in ARROWS:
        if rad:  # leave and enter through the bottom edges
            start = (centre(a)[0], BOXES[a][1] - 0.08)
            end = (centre(b)[0], BOXES[b][1] - 0.08)
        else:
            start, end = edge(a, centre(b)), edge(b, centre(a))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                     color="#444444", lw=1.2,
                                     connectionstyle=f"arc3,rad={rad}"))
    ax.set_xlim(0, 12)
    ax.set_ylim(-0.8, 8.0)
    ax.axis("off")
    ax.set_title("How skmlp is built: one spec, one head, one table per choice", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(Path(__file__).resolve().parents[1] / "_static" / "architecture.png")
