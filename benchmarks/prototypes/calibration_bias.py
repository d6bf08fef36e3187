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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import tables as T  # noqa: E402
import skmlp._classifier as C  # noqa: E402
from skmlp import TabularMLPClassifier  # noqa: E402
from skmlp._heads import HEADS  # noqa: E402

warnings.simplefilter("ignore")
torch.set_num_threads(1)

_orig = C.MLPTorchClassifier._calibrate
def _cal(self, val_data, total=None, outputs=None):
    if val_data is not None:
        X, Y, W = val_data
        z = self._outputs(self.module_, X, combine=False) if outputs is None else outputs
        comb = HEADS[self._spec.head_name].combine(z)
        self.__dict__["_stash"] = (comb.detach().double().numpy(), Y.detach().numpy(),
                                   None if W is None else W.detach().double().numpy())
    return _orig(self, val_data, total, outputs)
C.MLPTorchClassifier._calibrate = _cal

def fit_map(z, y, w, binary, bias=True):
    z = torch.tensor(z); y = torch.tensor(y)
    w = torch.ones(len(z), dtype=torch.float64) if w is None else torch.tensor(w).reshape(-1)
    a = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # log inverse temperature
    K = 1 if binary else z.shape[1]
    b = torch.zeros(K, dtype=torch.float64, requires_grad=bias)
    opt = torch.optim.LBFGS([a, b] if bias else [a], max_iter=200, line_search_fn="strong_wolfe")
    def loss():
        opt.zero_grad()
        s = z * a.exp() + b
        if binary:
            l = torch.nn.functional.binary_cross_entropy_with_logits(s.reshape(-1), y.reshape(-1).double(), reduction="none")
        else:
            l = torch.nn.functional.cross_entropy(s, y.reshape(-1).long(), reduction="none")
        l = (l * w).sum() / w.sum()
        l.backward(); return l
    opt.step(loss)
    return float(a.exp()), b.detach().numpy()

def apply(z, a, b, binary):
    s = z * a + b
    if binary:
        p = 1 / (1 + np.exp(-s.reshape(-1))); return np.column_stack([1 - p, p])
    s = s - s.max(1, keepdims=True); e = np.exp(s); return e / e.sum(1, keepdims=True)

out = []
parser = argparse.ArgumentParser()
parser.add_argument("--seeds", type=int, default=2)
parser.add_argument("--json", default="calibration_bias.json")
args = parser.parse_args()
tabs = [t for t, p in T.PART.items() if p == "tuning" and T.TABLES[t][0] == "clf"]
for seed in range(args.seeds):
    for name in tabs:
        X, y = T.TABLES[name][1]()
        Xtr, Xte, ytr, yte = T.split(X, y, "clf", seed, 10000, 5000)
        m = TabularMLPClassifier(random_state=seed).fit(Xtr, ytr)
        zv, Yv, Wv = m.__dict__["_stash"]
        binary = len(m.classes_) == 2
        Tm = m.temperature_
        zt = m.decision_function(Xte)
        zt = (zt.reshape(-1, 1) if binary else zt) * Tm
        base = log_loss(yte, m.predict_proba(Xte), labels=m.classes_)
        a0, b0 = fit_map(zv, Yv, Wv, binary, bias=False)
        a1, b1 = fit_map(zv, Yv, Wv, binary, bias=True)
        l0 = log_loss(yte, apply(zt, a0, 0.0, binary), labels=m.classes_)
        l1 = log_loss(yte, apply(zt, a1, b1, binary), labels=m.classes_)
        rec = dict(table=name, seed=seed, T=Tm, T_lbfgs=1 / a0, ll=base, ll_T=l0, ll_Tb=l1,
                   n_val=len(zv), bias=np.round(b1, 3).tolist())
        out.append(rec)
        print(f"{name:12s} s{seed} nval {len(zv):5d} T {Tm:.3f}/{1/a0:.3f} ll {base:.4f} T {l0:.4f} T+b {l1:.4f} ({l1/base:.3f})", flush=True)
g = lambda v: float(np.exp(np.mean(np.log(v))))
print("geo T+b / current:", g([r["ll_Tb"] / r["ll"] for r in out]))
json.dump(out, open(args.json, "w"), indent=1)
