"""calibration="temperature": the held-out log loss picks a temperature that
divides the combined logits; everything that reads outputs sees it."""

import math
import pickle
import threading

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import log_loss

from skmlp import MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier
from skmlp._heads import HEADS, golden_minimum

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=1200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 6)
    logits = np.stack([X[:, 0], X[:, 1], -X[:, 0] - X[:, 1]], axis=1) * 2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    return X, y


def test_golden_minimum_finds_the_minimum_and_keeps_a_better_start():
    assert golden_minimum(lambda x: (x - 1.3) ** 2, -4, 4, start=0.0) == pytest.approx(1.3, abs=1e-6)
    assert golden_minimum(lambda x: abs(x) + 1, -4, 4, start=0.0) == 0.0
    assert golden_minimum(lambda x: math.nan, -4, 4, start=0.0) == 0.0
    # an infinite side is not chosen
    assert golden_minimum(lambda x: math.inf if x > 0 else (x + 2) ** 2, -4, 4,
                          start=-1.0) == pytest.approx(-2, abs=1e-6)


@pytest.mark.parametrize("head, scale", [("multiclass", 0.25), ("multiclass", 3.0),
                                         ("binary", 0.25), ("binary", 3.0)])
def test_head_temperature_undoes_a_known_softening(head, scale):
    # targets drawn from softmax(z); the model's logits are z * scale: the best
    # temperature is about scale (T < 1 sharpens soft logits)
    gen = torch.Generator().manual_seed(0)
    k = 3 if head == "multiclass" else 1
    z = 3 * torch.randn(20000, k, generator=gen, dtype=torch.float64)
    if head == "multiclass":
        Y = torch.multinomial(torch.softmax(z, 1), 1, generator=gen)[:, 0]
    else:
        Y = (torch.rand(20000, 1, generator=gen, dtype=torch.float64)
             < torch.sigmoid(z)).to(torch.float64)
    T = HEADS[head].temperature(z * scale, Y, None)
    assert T == pytest.approx(scale, rel=0.05)
    # weights count: rows of weight zero do not move it
    W = torch.ones(20000, dtype=torch.float64)
    W[:10000] = 0
    noisy = z * scale
    noisy[:10000] *= 20
    assert HEADS[head].temperature(noisy, Y, W) == pytest.approx(scale, rel=0.07)


def test_temperature_of_an_ensemble_scales_the_mean_probabilities():
    # members that disagree: scaling each member's logits would average sharp
    # members to hard votes; the combined output is what is scaled
    gen = torch.Generator().manual_seed(1)
    base = 2 * torch.randn(5000, 1, 3, generator=gen, dtype=torch.float64)
    z = 3 * (base + torch.randn(5000, 4, 3, generator=gen, dtype=torch.float64))
    Y = torch.multinomial(torch.softmax(base[:, 0], 1), 1, generator=gen)[:, 0]
    head = HEADS["multiclass"]
    T = head.temperature(z, Y, None)
    assert 1.0 < T < 50  # over-sharp members: the mean is softened, inside the range
    combined = head.combine(z)

    def loss(t):
        return float(head.loss.value(combined / t, Y).mean())

    assert loss(T) <= min(loss(1.0), loss(0.9 * T), loss(1.1 * T)) + 1e-12


@pytest.mark.parametrize("make", [
    lambda: MLPTorchClassifier((16,), max_iter=30, label_smoothing=0.3, early_stopping=True,
                               calibration="temperature", random_state=0),
    # float64: the identities below hold to 1e-9 (dtype="auto" computes 1200 rows in float32)
    lambda: TabularMLPClassifier(max_iter=15, label_smoothing=0.3, calibration="temperature",
                                 dtype="float64", random_state=0),
], ids=["mlp", "tabular-ensemble"])
def test_fit_sharpens_smoothed_probabilities_and_keeps_labels(make):
    X, y = _data()
    X_test, y_test = _data(2000, seed=1)
    plain = clone(make()).set_params(calibration=None).fit(X, y)
    calibrated = make().fit(X, y)
    assert plain.temperature_ == 1.0
    # label smoothing 0.3 softens the probabilities: the temperature sharpens them
    assert calibrated.temperature_ < 0.9
    assert log_loss(y_test, calibrated.predict_proba(X_test)) < log_loss(
        y_test, plain.predict_proba(X_test))
    # the same network otherwise: the combined logits (an ensemble's log mean
    # probabilities) are divided by the temperature, so no label changes
    np.testing.assert_allclose(calibrated.decision_function(X_test) * calibrated.temperature_,
                               plain.decision_function(X_test), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(calibrated.predict(X_test), plain.predict(X_test))
    proba = calibrated.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.log(proba), calibrated.predict_log_proba(X_test), atol=1e-9)
    np.testing.assert_array_equal(calibrated.predict(X_test),
                                  calibrated.classes_[proba.argmax(1)])


def test_binary_temperature_keeps_predict_and_scales_the_decision():
    X, y = _data()
    y = y == 0
    kw = dict(hidden_dims=(16,), max_iter=20, label_smoothing=0.2, early_stopping=True,
              random_state=0)
    plain = MLPTorchClassifier(**kw).fit(X, y)
    calibrated = MLPTorchClassifier(calibration="temperature", **kw).fit(X, y)
    assert calibrated.temperature_ != 1.0
    np.testing.assert_allclose(calibrated.decision_function(X) * calibrated.temperature_,
                               plain.decision_function(X), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(calibrated.predict(X), plain.predict(X))


def test_no_held_out_rows_no_temperature():
    X, y = _data(300)
    est = MLPTorchClassifier((8,), max_iter=5, calibration="temperature", random_state=0)
    assert est.fit(X, y).temperature_ == 1.0  # early_stopping=False: nothing held out
    est = TabularMLPClassifier(max_iter=5, n_ensemble=1, random_state=0)
    assert est.fit(X, y).temperature_ == 1.0  # "auto": under 1000 rows only an ensemble bags
    est.set_params(n_ensemble=4)
    assert est.fit(X, y).temperature_ != 1.0  # bagged: from every row's held-out member
    est.set_params(early_stopping="refit")
    assert est.fit(X, y).temperature_ != 1.0  # the held-out run's temperature stays
    assert not hasattr(MLPTorchRegressor(), "calibration")


def test_temperature_is_fitted_state_frozen_pickled_and_exported():
    X, y = _data()
    est = MLPTorchClassifier((16,), max_iter=20, label_smoothing=0.3, early_stopping=True,
                             calibration="temperature", random_state=0).fit(X, y)
    proba = est.predict_proba(X)
    est.set_params(calibration=None)  # takes effect at the next fit only
    np.testing.assert_array_equal(est.predict_proba(X), proba)
    back = pickle.loads(pickle.dumps(est))
    assert back.temperature_ == est.temperature_
    np.testing.assert_array_equal(back.predict_proba(X), proba)
    onnxruntime = pytest.importorskip("onnxruntime")
    from skmlp import to_onnx

    model = to_onnx(est, X[:3])
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": X.astype(np.float32)})
    np.testing.assert_allclose(out, proba, atol=1e-5)
    # a partial_fit changes the network: the old temperature no longer applies
    est.partial_fit(X[:50], y[:50])
    assert est.temperature_ == 1.0


def test_invalid_calibration_is_a_clear_error():
    X, y = _data(100)
    with pytest.raises(ValueError, match="calibration.*None or 'temperature'"):
        MLPTorchClassifier(calibration="isotonic").fit(X, y)


def _explicit_log_loss(head, z, Q):
    """Held-out log loss against soft targets ``Q`` (n, classes), written out."""
    if head == "multiclass":
        return lambda t: float(-(Q * torch.log_softmax(z / t, 1)).sum(1).mean())
    return lambda t: float(torch.nn.functional.binary_cross_entropy_with_logits(
        z / t, Q, reduction="none").sum(1).mean())


@pytest.mark.parametrize("head", ["multiclass", "binary", "multilabel"])
def test_temperature_when_every_held_out_row_is_right(head):
    # all rows classified correctly: the plain log loss falls to 0 as T does and
    # has no minimum; the targets become the rule of succession's, (n+1)/(n+2)
    # on the true class, and the temperature stays well inside the search range
    gen = torch.Generator().manual_seed(2)
    n = 150
    k = {"multiclass": 4, "binary": 1, "multilabel": 3}[head]
    z = 4 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    if head == "multiclass":
        Y = z.argmax(1)
        Q = torch.nn.functional.one_hot(Y, k).to(z.dtype) * (1 - 1 / (n + 2))
        Q += (1 - Q.sum(1, keepdim=True)) / (k - 1) * (Q == 0)
    else:
        Y = (z > 0).to(z.dtype)
        Q = Y * (n + 1) / (n + 2) + (1 - Y) / (n + 2)
    T = HEADS[head].temperature(z, Y, None)
    expected = math.exp(golden_minimum(lambda lt: _explicit_log_loss(head, z, Q)(math.exp(lt)),
                                       -math.log(50), math.log(50), start=0.0))
    assert T == pytest.approx(expected, rel=1e-6)
    assert 0.05 < T < 50
    # the effective number of rows ignores the weights' scale
    assert HEADS[head].temperature(z, Y, torch.full((n,), 1e-3, dtype=z.dtype)) == pytest.approx(
        T, rel=1e-6)
    # one wrong row: the plain log loss has its minimum, and it is taken
    Y_wrong = Y.clone()
    if head == "multiclass":
        Y_wrong[0] = (Y[0] + 1) % k
    else:
        Y_wrong[0, 0] = 1 - Y[0, 0]
    plain = HEADS[head].loss
    T_wrong = HEADS[head].temperature(z, Y_wrong, None)
    expected = math.exp(golden_minimum(
        lambda lt: float(plain.value(z / math.exp(lt), Y_wrong).mean()),
        -math.log(50), math.log(50), start=0.0))
    assert T_wrong == pytest.approx(expected, rel=1e-6)
    # rows that weigh nothing: nothing to fit on
    assert HEADS[head].temperature(z, Y, torch.zeros(n, dtype=z.dtype)) == 1.0


class _TwoProcessSum:
    """``total`` as two Dask workers see it: each thread's value summed with the
    other's (an all-reduce), in lockstep."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=30)  # a mismatch fails, never hangs
        self.values = [0.0, 0.0]

    def for_worker(self, rank):
        def total(value):
            self.values[rank] = float(value)
            self.barrier.wait()
            result = sum(self.values)
            self.barrier.wait()
            return result
        return total


@pytest.mark.parametrize("separable", [False, True])
def test_temperature_summed_over_workers_equals_one_process(separable):
    # the held-out rows split over two workers: the same temperature as all
    # rows in one process, in the plain case and under the rule of succession
    gen = torch.Generator().manual_seed(3)
    z = 3 * torch.randn(300, 4, generator=gen, dtype=torch.float64)
    Y = z.argmax(1)
    if not separable:  # mistakes on the second worker's rows only: the first's are all right
        Y[150:] = torch.multinomial(torch.softmax(z[150:], 1), 1, generator=gen)[:, 0]
    W = torch.rand(300, generator=gen, dtype=torch.float64)
    head = HEADS["multiclass"]
    whole = head.temperature(z, Y, W)
    summed, results = _TwoProcessSum(), [None, None]

    def worker(rank, rows):
        results[rank] = head.temperature(z[rows], Y[rows], W[rows], summed.for_worker(rank))

    threads = [threading.Thread(target=worker, args=(0, slice(0, 120))),
               threading.Thread(target=worker, args=(1, slice(120, 300)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # the same search on sums taken in another order: equal to the search's tolerance
    assert results[0] == results[1] == pytest.approx(whole, rel=1e-6)
    if separable:  # the rule of succession applied on both: far from the search's edge
        assert whole > 0.1
