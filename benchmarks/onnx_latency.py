"""Predict latency: the ONNX graph in onnxruntime vs ``predict_proba``, 1 and 1000 rows.

    python benchmarks/onnx_latency.py [--repeat 7] [--threads 1]

A ``TabularMLPClassifier`` (its defaults: periodic embeddings, 4 ensemble
members, missing indicators, robust scaling) fitted on a table with 6
numeric columns (with missing values) and 3 text columns: 4 categories
(one-hot), 40 categories (embedded), and one with missing values. The rows
predicted are held-out rows with some unseen categories. Three ways:

* ``predict_proba``: skmlp on the pandas DataFrame;
* ``onnxruntime (feed ready)``: ``session.run`` on the input dict already
  built (what a service that receives typed columns pays);
* ``onnxruntime (from DataFrame)``: ``skmlp.onnx_inputs(session, df)`` then
  ``session.run`` (what replacing ``predict_proba`` on a DataFrame costs).

Each number is the median over ``--repeat`` rounds of the mean time per call
within a round (1 row: 200 calls a round; 1000 rows: 20); the three ways are
interleaved round by round. onnxruntime runs with ``--threads`` intra-op
threads; skmlp picks one thread for networks this small. Prints a markdown
table (speed-up: predict_proba's time over the way's).
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import onnxruntime as ort
import pandas as pd

from skmlp import TabularMLPClassifier, onnx_inputs, to_onnx


def make_table(n, seed):
    r = np.random.RandomState(seed)
    df = pd.DataFrame({f"num{j}": r.randn(n) for j in range(6)})
    df["small"] = r.choice(["a", "b", "c", "d"], n)
    df["wide"] = r.choice([f"item{i}" for i in range(40)], n)
    df["gappy"] = r.choice(["x", "y", "z"], n).astype(object)
    df.loc[r.rand(n) < 0.1, "gappy"] = None
    df.loc[r.rand(n) < 0.05, "num0"] = np.nan
    logit = df["num1"] - df["num2"] + (df["small"] == "a") + 0.05 * df["wide"].str[4:].astype(int)
    return df, (logit + 0.5 * r.randn(n) > 1).astype(int).to_numpy()


def per_call(fn, calls):
    tic = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - tic) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    df, y = make_table(3000, 0)
    clf = TabularMLPClassifier(max_iter=30, random_state=0).fit(df, y)
    test, _ = make_table(1000, 1)
    test.loc[:49, "wide"] = "never seen"
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(to_onnx(clf, df.head(2)).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    deviation = np.abs(session.run(None, onnx_inputs(session, test))[0]
                       - clf.predict_proba(test)).max()
    ways = {
        "predict_proba": lambda X, feed: clf.predict_proba(X),
        "onnxruntime (feed ready)": lambda X, feed: session.run(None, feed),
        "onnxruntime (from DataFrame)": lambda X, feed: session.run(None,
                                                                    onnx_inputs(session, X)),
    }
    rows_calls = [(1, 200), (1000, 20)]
    times = {(w, r): [] for w in ways for r, _ in rows_calls}
    for rows, calls in rows_calls:
        X = test.iloc[:rows] if rows > 1 else test.iloc[60:61]
        feed = onnx_inputs(session, X)
        for fn in ways.values():
            fn(X, feed)  # warm up
        for _ in range(args.repeat):
            for name, fn in ways.items():
                times[name, rows].append(per_call(lambda: fn(X, feed), calls))
    print(f"max |onnxruntime - predict_proba| on the 1000 rows: {deviation:.1e}")
    print(f"onnxruntime {ort.__version__}, {args.threads} intra-op thread(s); "
          f"medians of {args.repeat} rounds\n")
    print("| way | 1 row (ms) | 1000 rows (ms) | speed-up, 1 row | speed-up, 1000 rows |")
    print("|---|---|---|---|---|")
    base = [statistics.median(times["predict_proba", r]) for r, _ in rows_calls]
    for name in ways:
        one, many = (statistics.median(times[name, r]) for r, _ in rows_calls)
        print(f"| {name} | {1e3 * one:.3f} | {1e3 * many:.2f} | {base[0] / one:.1f}x "
              f"| {base[1] / many:.1f}x |")


if __name__ == "__main__":
    main()
