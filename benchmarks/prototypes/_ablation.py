"""Shared by the prototypes here: run ``tabular_ablation.py`` with a patched ``build``.

A prototype adds a pseudo-parameter to ``--row`` (e.g. ``bins='tree'``) that
``tabular_ablation.build`` does not know; ``run(extra, wrap)`` pops it, builds the
estimator as usual and lets ``wrap(est, task, value, seed)`` change it, so the
defaults and the prototype run side by side in one process, on the same splits.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import tabular_ablation as A  # noqa: E402


def run(extra, wrap, argv=None):
    built = A.build

    def build(task, params, seed, n_train):
        params = dict(params)
        value = params.pop(extra, None)
        est, applied = built(task, params, seed, n_train)
        if value is None:
            return est, applied
        return wrap(est, task, value, seed), {**applied, extra: value}

    A.build = build
    A.main(sys.argv[1:] if argv is None else argv)
