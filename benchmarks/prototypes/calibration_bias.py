"""Prototype (not in skmlp): a bias beside the temperature of ``calibration``.

Fits ``TabularMLPClassifier`` at its defaults once per classification table of
the tuning part and seed, keeps the held-out rows' combined outputs (those the
temperature is fitted on), and compares the test log loss of the temperature
(as fitted by skmlp, and refitted here by L-BFGS as a check) with a temperature
plus a bias fitted the same way (Platt's scaling for binary targets, a bias per
class for multiclass ones)::

    python benchmarks/prototypes/calibration_bias.py [--seeds 2] [--json out.json]

Result: ``benchmarks/calibration_bias_results.json``.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import torch
from sklearn.metrics import log_loss
from torch.nn import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import tables as T  # noqa: E402
import skmlp._classifier as C  # noqa: E402
from skmlp import TabularMLPClassifier  # noqa: E402
from skmlp._heads import HEADS  # noqa: E402

warnings.simplefilter("ignore")
torch.set_num_threads(1)

_calibrate = C.MLPTorchClassifier._calibrate


def calibrate_and_keep(self, val_data, total=None, outputs=None):
    """skmlp's ``_calibrate``, keeping the held-out rows' combined outputs."""
    if val_data is not None:
        X, Y, W = val_data
        z = self._outputs(self.module_, X, combine=False) if outputs is None else outputs
        combined = HEADS[self._spec.head_name].combine(z)
        self.__dict__["_held_out"] = (combined.detach().double().numpy(), Y.detach().numpy(),
                                      None if W is None else W.detach().double().numpy())
    return _calibrate(self, val_data, total, outputs)


def fit_map(z, y, w, binary, bias=True):
    """``(1 / T, b)`` minimising the weighted log loss of ``z / T + b``."""
    z, y = torch.tensor(z), torch.tensor(y)
    w = torch.ones(len(z), dtype=torch.float64) if w is None else torch.tensor(w).reshape(-1)
    log_scale = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1 if binary else z.shape[1], dtype=torch.float64, requires_grad=bias)
    params = [log_scale, b] if bias else [log_scale]
    opt = torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s = z * log_scale.exp() + b
        if binary:
            losses = F.binary_cross_entropy_with_logits(s.reshape(-1), y.reshape(-1).double(),
                                                        reduction="none")
        else:
            losses = F.cross_entropy(s, y.reshape(-1).long(), reduction="none")
        loss = (losses * w).sum() / w.sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_scale.exp()), b.detach().numpy()


def probabilities(z, scale, b, binary):
    s = z * scale + b
    if binary:
        p = 1 / (1 + np.exp(-s.reshape(-1)))
        return np.column_stack([1 - p, p])
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", default="calibration_bias.json")
    args = parser.parse_args()
    C.MLPTorchClassifier._calibrate = calibrate_and_keep
    tables = [t for t, p in T.PART.items() if p == "tuning" and T.TABLES[t][0] == "clf"]
    out = []
    for seed in range(args.seeds):
        for name in tables:
            X, y = T.TABLES[name][1]()
            Xtr, Xte, ytr, yte = T.split(X, y, "clf", seed, 10000, 5000)
            m = TabularMLPClassifier(random_state=seed).fit(Xtr, ytr)
            zv, Yv, Wv = m.__dict__["_held_out"]
            binary = len(m.classes_) == 2
            zt = m.decision_function(Xte)
            zt = (zt.reshape(-1, 1) if binary else zt) * m.temperature_  # before the temperature
            base = log_loss(yte, m.predict_proba(Xte), labels=m.classes_)
            s0, _ = fit_map(zv, Yv, Wv, binary, bias=False)
            s1, b1 = fit_map(zv, Yv, Wv, binary, bias=True)
            l0 = log_loss(yte, probabilities(zt, s0, 0.0, binary), labels=m.classes_)
            l1 = log_loss(yte, probabilities(zt, s1, b1, binary), labels=m.classes_)
            out.append(dict(table=name, seed=seed, T=m.temperature_, T_lbfgs=1 / s0, ll=base,
                            ll_T=l0, ll_Tb=l1, n_val=len(zv), bias=np.round(b1, 3).tolist()))
            print(f"{name:12s} s{seed} held out {len(zv):5d} T {m.temperature_:.3f}/{1 / s0:.3f}"
                  f" log loss {base:.4f}, refitted T {l0:.4f}, T + bias {l1:.4f}"
                  f" ({l1 / base:.3f})", flush=True)
    if out:
        ratio = np.exp(np.mean(np.log([r["ll_Tb"] / r["ll"] for r in out])))
        print(f"geometric mean, T + bias / T: {ratio:.3f}")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
