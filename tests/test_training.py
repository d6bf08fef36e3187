"""Training behaviour of the estimators: stopping, partial_fit, schedules,
regularisation, losses, L-BFGS, callbacks, divergence and optimizers."""

import copy
import pickle
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from helpers import build_mlp

from skmlp import MLPTorchClassifier, MLPTorchRegressor
from skmlp._training import TrainConfig, make_optimizer

HISTORY_KEYS = {"epoch", "loss", "val_score", "lr", "seconds"}


@pytest.fixture(autouse=True)
def _one_thread():
    # Speed only: tiny networks (and scipy's L-BFGS-B vector updates) run many
    # times faster on one torch / BLAS thread on a busy CI box. Both counts are
    # restored afterwards, so no other test sees them changed.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n_threads)


def _clf_data(n=120, n_classes=3, seed=0):
    X, y = make_classification(n_samples=n, n_features=6, n_informative=4,
                               n_classes=n_classes, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _reg_data(n=80, n_targets=1, seed=0):
    X, y = make_regression(n_samples=n, n_features=5, n_targets=n_targets, noise=0.1,
                           random_state=seed)
    return StandardScaler().fit_transform(X), y / np.std(y)


def _weights(est):
    return [t.detach().clone() for t in est.module_.state_dict().values()]


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _fit_quiet(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# ----------------------------------------------------------------- early stopping
def test_early_stopping_restores_weights_of_best_validation_epoch():
    X, y = _clf_data(n=200)
    states = []

    def record(est, epoch, logs):
        states.append(_weights(est))

    clf = MLPTorchClassifier((16,), lr=0.05, early_stopping=True, n_iter_no_change=3,
                             max_iter=60, random_state=0, callbacks=[record])
    _fit_quiet(clf, X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ == len(clf.history_) == len(states)
    assert [h["val_score"] for h in clf.history_] == scores
    assert clf.best_validation_score_ == max(scores)
    best = int(np.argmax(scores))  # first epoch reaching the maximum
    assert _same_weights(_weights(clf), states[best])
    if clf.n_iter_ < clf.max_iter:
        # stopped because the last n_iter_no_change epochs did not improve by tol
        stalled = scores[-clf.n_iter_no_change:]
        assert max(stalled) < max(scores[:-clf.n_iter_no_change]) + clf.tol
    assert best < clf.n_iter_ - 1 or clf.n_iter_ == clf.max_iter


def test_without_early_stopping_validation_attributes_are_none():
    X, y = _clf_data()
    clf = _fit_quiet(MLPTorchClassifier((8,), max_iter=3, random_state=0), X, y)
    assert clf.validation_scores_ is None
    assert clf.best_validation_score_ is None
    assert all(h["val_score"] is None for h in clf.history_)
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_early_stopping_split_is_stratified():
    # X carries no information, so the network predicts one class for every
    # row and the validation accuracy is that class's share of the validation
    # split: exactly 18/20 when the split keeps the 90/10 class ratio.
    X = np.zeros((200, 3))
    y = np.r_[np.zeros(180, int), np.ones(20, int)]
    finals = set()
    for seed in range(6):
        clf = MLPTorchClassifier((), lr=0.2, early_stopping=True, max_iter=15,
                                 random_state=seed)
        _fit_quiet(clf, X, y)
        finals.add(round(clf.best_validation_score_, 6))
    assert finals == {0.9}


def test_early_stopping_split_is_seeded_by_random_state():
    X, y = _reg_data(n=60)
    kw = dict(hidden_dims=(8,), lr=0.01, early_stopping=True, max_iter=8,
              validation_fraction=0.3)
    a = _fit_quiet(MLPTorchRegressor(random_state=1, **kw), X, y)
    b = _fit_quiet(MLPTorchRegressor(random_state=1, **kw), X, y)
    c = _fit_quiet(MLPTorchRegressor(random_state=2, **kw), X, y)
    assert a.validation_scores_ == b.validation_scores_
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.validation_scores_ != c.validation_scores_


def test_early_stopping_validation_score_weighted_by_sample_weight_only():
    X = np.zeros((200, 2))
    y = np.r_[np.zeros(180, int), np.ones(20, int)]
    sw = np.where(y == 1, 20.0, 1.0)
    kw = dict(hidden_dims=(), lr=0.05, early_stopping=True, max_iter=25, random_state=0)
    # Weighted, class 1 dominates: the model predicts 1 everywhere; the
    # stratified validation split holds 18 zeros (weight 1), 2 ones (weight 20).
    clf = _fit_quiet(MLPTorchClassifier(**kw), X, y, sample_weight=sw)
    assert clf.predict(X[:1])[0] == 1
    assert clf.validation_scores_[-1] == pytest.approx(40 / 58)
    # class_weight trains the same way, but the validation score is what
    # ``score`` gives: plain accuracy (class weights are not sample weights).
    # (So here early stopping keeps the first epochs' weights, which predict 0.)
    clf = _fit_quiet(MLPTorchClassifier(class_weight={1: 20.0}, **kw), X, y)
    assert clf.validation_scores_[-1] == pytest.approx(0.1)
    assert {round(s, 6) for s in clf.validation_scores_} <= {0.1, 0.9}


def test_validation_score_hooks_match_sklearn_metrics():
    rng = np.random.default_rng(0)
    X, y = _reg_data(n=40, n_targets=2)
    reg = _fit_quiet(MLPTorchRegressor((4,), max_iter=2, random_state=0), X, y)
    pred, w = rng.normal(size=y.shape), rng.uniform(0.1, 2, size=40)
    got = reg._head.score(torch.from_numpy(pred), torch.from_numpy(y), torch.from_numpy(w))
    assert float(got) == pytest.approx(r2_score(y, pred, sample_weight=w))

    Xc, yc = _clf_data(n=40)
    clf = _fit_quiet(MLPTorchClassifier((4,), max_iter=2, random_state=0), Xc, yc)
    logits = rng.normal(size=(40, 3))
    got = clf._head.score(torch.from_numpy(logits), torch.from_numpy(yc), torch.from_numpy(w))
    assert float(got) == pytest.approx(accuracy_score(yc, logits.argmax(1), sample_weight=w))


def test_early_stopping_multilabel_splits_without_stratification():
    X, _ = _clf_data(n=60)
    Y = np.c_[X[:, 0] > 0, X[:, 1] > 0.5, X[:, 2] < 0].astype(int)
    clf = _fit_quiet(MLPTorchClassifier((8,), lr=0.01, early_stopping=True, max_iter=5,
                                        random_state=0), X, Y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.t_ == clf.n_iter_ * 54  # 6 of 60 rows held out


def test_without_early_stopping_training_loss_stops():
    X, y = _reg_data(n=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged, not max_iter
        reg = MLPTorchRegressor((4,), tol=1e9, n_iter_no_change=3, max_iter=50,
                                random_state=0).fit(X, y)
    assert reg.n_iter_ == 4  # epoch 1 improves on inf, then 3 epochs without tol gain
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPTorchRegressor((4,), lr=0.01, tol=0, max_iter=3, random_state=0).fit(X, y)


def test_early_stopping_regressor_monitors_r2():
    X, y = _reg_data(n=100)
    reg = _fit_quiet(MLPTorchRegressor((16,), lr=0.01, early_stopping=True, max_iter=40,
                                       random_state=0), X, y)
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    assert reg.best_validation_score_ > 0.5  # R² of an easy linear target
    assert all(s <= 1.0 for s in reg.validation_scores_)


# -------------------------------------------------------------------- partial_fit
def test_partial_fit_runs_one_epoch_per_call():
    X, y = _clf_data(n=50)
    clf = MLPTorchClassifier((8,), batch_size=16, random_state=0)
    for call in range(1, 4):
        clf.partial_fit(X, y, classes=np.unique(y))
        assert clf.n_iter_ == call
        assert clf.t_ == 50 * call
        assert len(clf.loss_curve_) == len(clf.history_) == call
    reg = MLPTorchRegressor((8,), random_state=0)
    Xr, yr = _reg_data(n=30)
    reg.partial_fit(Xr, yr).partial_fit(Xr[:10], yr[:10])
    assert (reg.n_iter_, reg.t_) == (2, 40)


def test_partial_fit_input_checks():
    X, y = _clf_data(n=30)
    clf = MLPTorchClassifier((4,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # a class may be absent
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :4], y)
    clf.partial_fit(X, y, classes=[2, 1, 0])  # the same classes may be passed again
    with pytest.raises(ValueError, match="differs from self.classes_"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    reg = MLPTorchRegressor((4,), random_state=0).partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(X[:, :3], y)


def test_partial_fit_balanced_class_weight_is_refused():
    X, y = _clf_data(n=30)
    clf = MLPTorchClassifier((4,), class_weight="balanced")
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        clf.partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_carries_optimizer_and_rng_state():
    X, y = _clf_data(n=60)
    kw = dict(hidden_dims=(8,), batch_size=16, lr=0.01, random_state=3)
    two_calls = MLPTorchClassifier(**kw)
    two_calls.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y)
    # the same as two epochs of one fit: optimizer moments and shuffling continue
    one_fit = _fit_quiet(MLPTorchClassifier(max_iter=2, **kw), X, y)
    assert _same_weights(_weights(two_calls), _weights(one_fit))
    assert two_calls.loss_curve_ == one_fit.loss_curve_
    # a fresh Adam for the second epoch (what warm_start fit does) differs
    fresh = MLPTorchClassifier(max_iter=1, warm_start=True, **kw)
    _fit_quiet(fresh, X, y)
    _fit_quiet(fresh, X, y)
    assert fresh.loss_curve_[0] == two_calls.loss_curve_[0]
    assert not _same_weights(_weights(fresh), _weights(two_calls))


def test_partial_fit_ignores_early_stopping():
    X, y = _reg_data(n=40)
    reg = MLPTorchRegressor((4,), early_stopping=True, random_state=0)
    reg.partial_fit(X, y)
    assert reg.t_ == 40  # no rows held out
    assert reg.validation_scores_ is None and reg.history_[0]["val_score"] is None


def test_warm_start_continues_and_cold_start_restarts():
    X, y = _reg_data(n=60)
    kw = dict(hidden_dims=(16,), lr=0.01, max_iter=15, tol=0, random_state=0)
    warm = _fit_quiet(MLPTorchRegressor(warm_start=True, **kw), X, y)
    first = list(warm.loss_curve_)
    _fit_quiet(warm, X, y)
    assert warm.n_iter_ == len(warm.loss_curve_) == 30
    assert warm.t_ == 30 * 60
    assert warm.loss_curve_[:15] == first
    # the second fit starts where the first ended, not from a fresh network
    assert warm.loss_curve_[15] < 0.5 * first[0]
    assert abs(warm.loss_curve_[15] - first[-1]) < abs(first[0] - first[-1]) / 4

    cold = _fit_quiet(MLPTorchRegressor(**kw), X, y)
    _fit_quiet(cold, X, y)
    single = _fit_quiet(MLPTorchRegressor(**kw), X, y)
    assert cold.n_iter_ == single.n_iter_ == 15
    assert cold.loss_curve_ == single.loss_curve_
    np.testing.assert_array_equal(cold.predict(X), single.predict(X))


# ------------------------------------------------------------------ lr schedules
def test_constant_schedule_keeps_lr():
    X, y = _reg_data(n=30)
    reg = _fit_quiet(MLPTorchRegressor((4,), lr=0.02, max_iter=5, random_state=0), X, y)
    assert [h["lr"] for h in reg.history_] == [0.02] * 5


def test_cosine_schedule_anneals_to_zero_and_restarts_on_warm_fit():
    X, y = _reg_data(n=30)
    reg = MLPTorchRegressor((4,), lr=0.1, lr_schedule="cosine", max_iter=20, tol=0,
                            warm_start=True, random_state=0)
    _fit_quiet(reg, X, y)
    lrs = [h["lr"] for h in reg.history_]
    expected = [0.05 * (1 + math.cos(math.pi * e / 20)) for e in range(20)]
    np.testing.assert_allclose(lrs, expected)
    assert lrs[0] == 0.1 and lrs[-1] < 1e-3
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    _fit_quiet(reg, X, y)  # a new warm fit runs a new schedule
    np.testing.assert_allclose([h["lr"] for h in reg.history_[20:]], expected)


def test_plateau_schedule_divides_lr_by_5_and_stops_below_1e_6():
    X, y = _reg_data(n=30)
    # tol is unreachable, so every n_iter_no_change=2 epochs count as a plateau
    reg = MLPTorchRegressor((4,), lr=1e-3, lr_schedule="plateau", n_iter_no_change=2,
                            tol=1e9, max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # it stops, converged
        reg.fit(X, y)
    lrs = [h["lr"] for h in reg.history_]
    # the first epoch improves on best_loss_=inf, the next two do not, ...
    expected = [1e-3] + [1e-3 / 5**k for k in range(5) for _ in range(2)]  # last: 1.6e-6
    np.testing.assert_allclose(lrs, expected)
    assert reg.n_iter_ == 11  # 1.6e-6 / 5 < 1e-6 stops


def test_plateau_keeps_lr_while_improving():
    X, y = _reg_data(n=30)
    reg = _fit_quiet(MLPTorchRegressor((8,), lr=1e-3, lr_schedule="plateau", tol=0,
                                       n_iter_no_change=2, max_iter=8, random_state=0), X, y)
    assert {h["lr"] for h in reg.history_} == {1e-3}


# ---------------------------------------------------------- dropout / batch norm
def test_dropout_active_in_training_off_in_predict():
    X, y = _clf_data(n=60)
    clf = _fit_quiet(MLPTorchClassifier((32,), dropout=0.5, max_iter=5, random_state=0), X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    Xt = torch.from_numpy(X)
    clf.module_.train()
    with torch.no_grad():
        assert not torch.equal(clf.module_(Xt), clf.module_(Xt))
    clf.module_.eval()
    plain = _fit_quiet(MLPTorchClassifier((32,), max_iter=5, random_state=0), X, y)
    assert clf.loss_curve_ != plain.loss_curve_


def test_dropout_is_repeatable_and_leaves_global_rng_alone():
    X, y = _clf_data(n=60)
    kw = dict(hidden_dims=(16,), dropout=0.3, batch_size=20, max_iter=4, random_state=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = _fit_quiet(MLPTorchClassifier(**kw), X, y)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)  # the global seed must not matter
    b = _fit_quiet(MLPTorchClassifier(**kw), X, y)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = _fit_quiet(MLPTorchClassifier(**{**kw, "random_state": 8}), X, y)
    assert c.loss_curve_ != a.loss_curve_


def test_batch_norm_predicts_in_eval_mode():
    X, y = _reg_data(n=41)
    # batch_size 20 leaves a last batch of one row: it joins the previous batch
    reg = _fit_quiet(MLPTorchRegressor((8,), batch_norm=True, batch_size=20, max_iter=3,
                                       random_state=0), X, y)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in reg.module_.modules())
    full = reg.predict(X)
    for i in (0, 17, 40):
        np.testing.assert_allclose(reg.predict(X[i:i + 1]), full[i:i + 1], rtol=1e-12)


def test_batch_norm_with_one_training_row_is_a_clear_error():
    reg = MLPTorchRegressor((4,), batch_norm=True)
    with pytest.raises(ValueError, match="at least 2 training samples"):
        reg.fit([[0.0, 1.0]], [1.0])


# ----------------------------------------------------------------- class weights
@pytest.mark.parametrize("batch_size", [300, 16])
def test_class_weight_dict_equals_sample_weight(batch_size):
    X, y = _clf_data(n=60)
    kw = dict(hidden_dims=(8,), lr=0.01, max_iter=4, batch_size=batch_size, random_state=0)
    a = _fit_quiet(MLPTorchClassifier(class_weight={0: 2.0}, **kw), X, y)
    b = _fit_quiet(MLPTorchClassifier(**kw), X, y, sample_weight=np.where(y == 0, 2.0, 1.0))
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-10)
    # combined with sample_weight by product
    sw = np.linspace(0.5, 2.0, 60)
    c = _fit_quiet(MLPTorchClassifier(class_weight={0: 2.0}, **kw), X, y, sample_weight=sw)
    d = _fit_quiet(MLPTorchClassifier(**kw), X, y, sample_weight=sw * np.where(y == 0, 2, 1))
    np.testing.assert_allclose(c.loss_curve_, d.loss_curve_, rtol=1e-12)
    assert a.loss_curve_ != _fit_quiet(MLPTorchClassifier(**kw), X, y).loss_curve_


def test_class_weight_balanced_and_string_labels():
    X, y = _clf_data(n=60, n_classes=2)
    labels = np.where(y == 1, "yes", "no")
    keep = np.r_[np.flatnonzero(labels == "no"), np.flatnonzero(labels == "yes")[:10]]
    X, labels = X[keep], labels[keep]
    kw = dict(hidden_dims=(8,), lr=0.01, max_iter=4, random_state=0)
    counts = {c: np.sum(labels == c) for c in ("no", "yes")}
    sw = np.array([len(labels) / (2 * counts[c]) for c in labels])
    a = _fit_quiet(MLPTorchClassifier(class_weight="balanced", **kw), X, labels)
    b = _fit_quiet(MLPTorchClassifier(**kw), X, labels, sample_weight=sw)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    c = _fit_quiet(MLPTorchClassifier(class_weight={"yes": 3.0}, **kw), X, labels)
    d = _fit_quiet(MLPTorchClassifier(**kw), X, labels,
                   sample_weight=np.where(labels == "yes", 3.0, 1.0))
    np.testing.assert_allclose(c.loss_curve_, d.loss_curve_, rtol=1e-12)


# -------------------------------------------------------------- regression losses
def _next_epoch_loss(reg, X, y):
    """Training loss at the current weights (one full-batch partial_fit epoch)."""
    reg.partial_fit(X, y)
    return reg.loss_curve_[-1]


def test_squared_error_loss_curve_is_half_mse_as_sklearn():
    X, y = _reg_data(n=40, n_targets=2)
    # sklearn's definition: with a vanishing step its first loss is half the MSE
    # of (practically) its initial predictions, averaged over all outputs.
    sk = _fit_quiet(MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=1e-12, alpha=0.0,
                                 batch_size=40, max_iter=1, random_state=0), X, y)
    assert sk.loss_curve_[0] == pytest.approx(0.5 * np.mean((y - sk.predict(X)) ** 2),
                                              rel=1e-6)
    reg = _fit_quiet(MLPTorchRegressor((5,), max_iter=5, random_state=0), X, y)
    expected = 0.5 * np.mean((y - reg.predict(X)) ** 2)
    assert _next_epoch_loss(reg, X, y) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("loss", ["absolute_error", "huber", "poisson"])
def test_other_losses_match_their_definition_and_decrease(loss):
    X, y = _reg_data(n=40)
    if loss == "poisson":
        y = np.random.default_rng(0).poisson(np.exp(0.5 * X[:, 0]))
    else:
        y = 3 * y  # residuals above huber's delta
    reg = _fit_quiet(MLPTorchRegressor((8,), loss=loss, lr=0.01, max_iter=30, tol=0,
                                       random_state=0), X, y)
    assert reg.loss_curve_[-1] < reg.loss_curve_[0]
    pred = reg.predict(X)
    r = y - pred
    if loss == "absolute_error":
        expected = np.mean(np.abs(r))
    elif loss == "huber":
        expected = np.mean(np.where(np.abs(r) <= 1, 0.5 * r**2, np.abs(r) - 0.5))
    else:
        expected = np.mean(pred - y * np.log(pred))
    assert _next_epoch_loss(reg, X, y) == pytest.approx(expected, rel=1e-9)


def test_poisson_predictions_positive_and_negative_targets_refused():
    X, y = _reg_data(n=40)
    counts = np.random.default_rng(0).poisson(2.0, size=40)
    reg = _fit_quiet(MLPTorchRegressor((8,), loss="poisson", lr=0.05, max_iter=10,
                                       random_state=0), X, counts)
    assert np.all(reg.predict(X) > 0)
    assert np.all(reg.predict(-20 * X) > 0)
    assert reg.score(X, counts) > -1
    with pytest.raises(ValueError, match="non-negative"):
        MLPTorchRegressor(loss="poisson").fit(X, y - 10)
    with pytest.raises(ValueError, match="non-negative"):
        reg.partial_fit(X, -counts)


# ------------------------------------------------------------------------ L-BFGS
def _scaled_split(loader):
    X, y = loader(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


@pytest.mark.parametrize("loader", [load_iris, load_digits])
def test_lbfgs_matches_sklearn_accuracy_at_defaults(loader):
    X_tr, X_te, y_tr, y_te = _scaled_split(loader)
    ours = _fit_quiet(MLPTorchClassifier(optimizer="lbfgs", random_state=0), X_tr, y_tr)
    ref = _fit_quiet(MLPClassifier(solver="lbfgs", random_state=0), X_tr, y_tr)
    assert ours.score(X_te, y_te) >= ref.score(X_te, y_te) - 0.02
    assert 1 <= ours.n_iter_ <= ours.max_iter
    assert len(ours.loss_curve_) == len(ours.history_) == ours.n_iter_
    assert ours.loss_curve_[-1] < ours.loss_curve_[0]


def test_lbfgs_respects_max_iter_and_tol():
    X, y = _clf_data(n=80)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf = MLPTorchClassifier((8,), optimizer="lbfgs", max_iter=5, random_state=0).fit(X, y)
    assert clf.n_iter_ == 5
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3, 4, 5]
    assert all(set(h) == HISTORY_KEYS for h in clf.history_)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        loose = MLPTorchClassifier((8,), optimizer="lbfgs", tol=1e-1, max_iter=200,
                                   random_state=0).fit(X, y)
    tight = _fit_quiet(MLPTorchClassifier((8,), optimizer="lbfgs", tol=1e-3, max_iter=200,
                                          random_state=0), X, y)
    assert loose.n_iter_ < tight.n_iter_
    assert not hasattr(loose, "partial_fit")


def test_lbfgs_callback_stops():
    X, y = _reg_data(n=40)
    reg = MLPTorchRegressor((4,), optimizer="lbfgs", random_state=0,
                            callbacks=[lambda est, epoch, logs: epoch == 3])
    reg.fit(X, y)
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3


# --------------------------------------------------------------------- callbacks
def test_callbacks_receive_estimator_epoch_logs_and_can_stop():
    X, y = _clf_data(n=40)
    calls = []

    def spy(est, epoch, logs):
        calls.append((est, epoch, dict(logs)))

    clf = MLPTorchClassifier((4,), max_iter=10, random_state=0,
                             callbacks=[spy, lambda est, epoch, logs: epoch == 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a callback stop is not one
        clf.fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4
    assert [c[1] for c in calls] == [1, 2, 3, 4]
    assert all(c[0] is clf for c in calls)
    assert all(set(c[2]) == HISTORY_KEYS for c in calls)
    assert [c[2]["loss"] for c in calls] == clf.loss_curve_
    assert [set(h) for h in clf.history_] == [HISTORY_KEYS] * 4
    assert all(h["seconds"] >= 0 and h["lr"] == clf.lr for h in clf.history_)


def test_keyboard_interrupt_propagates():
    X, y = _reg_data(n=30)

    def interrupt(est, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    reg = MLPTorchRegressor((4,), dropout=0.2, max_iter=10, random_state=0,
                            callbacks=[interrupt])
    with pytest.raises(KeyboardInterrupt):
        reg.fit(X, y)
    reg.set_params(callbacks=None, max_iter=2)
    _fit_quiet(reg, X, y)  # still usable afterwards
    assert reg.n_iter_ == 2


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = _clf_data(n=40)
    _fit_quiet(MLPTorchClassifier((4,), max_iter=3, verbose=1, random_state=0), X, y)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert all("loss" in line and f"Epoch {i}" in line for i, line in enumerate(lines, 1))
    _fit_quiet(MLPTorchClassifier((4,), max_iter=3, verbose=1, early_stopping=True,
                                  random_state=0), X, y)
    assert "validation score" in capsys.readouterr().out
    _fit_quiet(MLPTorchClassifier((4,), max_iter=3, random_state=0), X, y)
    assert capsys.readouterr() == ("", "")


def test_verbose_2_shows_a_progress_bar(capsys):
    pytest.importorskip("tqdm")  # a hard dependency; the skip only guards broken installs
    X, y = _clf_data(n=40)
    _fit_quiet(MLPTorchClassifier((4,), max_iter=2, batch_size=16, verbose=2,
                                  random_state=0), X, y)
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 2
    assert "epoch 1" in err and "epoch 2" in err and "sample" in err


# -------------------------------------------------------------------- divergence
@pytest.mark.parametrize("kind", ["sgd_huge_lr", "sgd_unit_lr", "huge_X"])
def test_divergence_stops_restores_and_warns(kind):
    X, y = _reg_data(n=50)
    kw = dict(hidden_dims=(8,), max_iter=30, random_state=0)
    if kind == "sgd_huge_lr":
        X, kw = X * 100, dict(kw, optimizer="sgd", lr=1e6, nesterov=True)
    elif kind == "sgd_unit_lr":  # the last finite epoch ends in overflowing weights
        y, kw = y * 100, dict(kw, optimizer="sgd", lr=1.0)
    else:
        X = X * 1e160
    reg = MLPTorchRegressor(**kw)
    with pytest.warns(ConvergenceWarning, match="diverged.*`lr`"):
        reg.fit(X, y)
    assert reg.n_iter_ < 30
    assert all(math.isfinite(v) for v in reg.loss_curve_)
    assert np.all(np.isfinite(reg.predict(X)))
    assert all(torch.isfinite(p).all() for p in reg.module_.parameters())


def test_divergence_classifier_probabilities_finite():
    X, y = _clf_data(n=60)
    clf = MLPTorchClassifier((8,), optimizer="sgd", lr=1e6, batch_size=10, max_iter=20,
                             random_state=0)
    with pytest.warns(ConvergenceWarning, match="`lr`"):
        clf.fit(X * 1000, y)
    assert np.all(np.isfinite(clf.predict_proba(X * 1000)))


# -------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_reduce_the_loss(optimizer):
    X, y = _clf_data(n=100)
    lr = 0.05 if optimizer == "sgd" else 0.01
    clf = _fit_quiet(MLPTorchClassifier((16,), optimizer=optimizer, lr=lr, max_iter=30,
                                        tol=0, random_state=0), X, y)
    assert clf.loss_curve_[-1] < 0.7 * clf.loss_curve_[0]
    assert clf.score(X, y) > 0.6  # chance is 1/3


def test_momentum_matters_for_adam():
    X, y = _clf_data(n=60)
    kw = dict(hidden_dims=(8,), optimizer="adam", lr=0.01, max_iter=5, random_state=0)
    a = _fit_quiet(MLPTorchClassifier(momentum=0.9, **kw), X, y)
    b = _fit_quiet(MLPTorchClassifier(momentum=0.5, **kw), X, y)
    assert a.loss_curve_[0] == b.loss_curve_[0]
    assert a.loss_curve_[1:] != b.loss_curve_[1:]


def test_weight_decay_leaves_biases_alone():
    # One full-batch SGD step (momentum 0) with and without decay from the same
    # start: weight matrices differ by exactly -lr * wd * W0, biases not at all.
    X, y = _reg_data(n=30)
    kw = dict(hidden_dims=(6,), optimizer="sgd", momentum=0.0, lr=0.1, max_iter=1,
              random_state=0)
    start = _weights(_fit_quiet(MLPTorchRegressor(**{**kw, "lr": 1e-300}), X, y))
    plain = _fit_quiet(MLPTorchRegressor(weight_decay=0.0, **kw), X, y)
    decayed = _fit_quiet(MLPTorchRegressor(weight_decay=0.5, **kw), X, y)
    names = list(plain.module_.state_dict())
    for name, w0, a, b in zip(names, start, _weights(plain), _weights(decayed)):
        if name.endswith("bias"):
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(b - a, -0.1 * 0.5 * w0)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_applies_to_weight_matrices_only(name):
    # Pure torch, one step from the same start with and without decay: biases
    # and BatchNorm parameters move identically; weight matrices differ by
    # -lr * wd * W0 (sgd: L2 in the gradient; adamw: decoupled), or at all (adam).
    gen = torch.Generator().manual_seed(0)
    start = build_mlp(4, (5,), 2, batch_norm=True, dtype=torch.float64, generator=gen)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    after = {}
    for wd in (0.0, 0.3):
        module = copy.deepcopy(start)
        config = TrainConfig(optimizer=name, momentum=0.0 if name == "sgd" else 0.9,
                             weight_decay=wd)
        optimizer = make_optimizer(module, config, lr=0.1)
        module(x).pow(2).mean().backward()
        optimizer.step()
        after[wd] = dict(module.named_parameters())
    for pname, p0 in start.named_parameters():
        a, b = after[0.0][pname].detach(), after[0.3][pname].detach()
        if p0.ndim == 1:
            assert torch.equal(a, b), pname
        elif name == "adam":
            assert not torch.allclose(a, b), pname
        else:
            torch.testing.assert_close(b - a, -0.1 * 0.3 * p0.detach())


def test_batch_with_all_zero_weights_does_not_break_the_fit():
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 3), rng.randn(30)
    w = np.ones(30)
    w[:10] = 0  # the first batch (no shuffling) has weight sum 0
    reg = MLPTorchRegressor((4,), max_iter=5, batch_size=10, shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*Maximum iterations")
        reg.fit(X, y, sample_weight=w)
    assert reg.n_iter_ == 5 and np.all(np.isfinite(reg.loss_curve_))


@pytest.mark.parametrize("class_weight", [{0: 0, 1: 0}, {0: -1, 1: 1}, {0: np.inf, 1: 1}])
def test_invalid_combined_class_weights_are_rejected(class_weight):
    X, y = np.random.RandomState(0).randn(20, 2), np.arange(20) % 2
    with pytest.raises(ValueError, match="class_weight"):
        MLPTorchClassifier((3,), max_iter=2, class_weight=class_weight).fit(X, y)


def test_changing_the_loss_of_a_continued_network_is_refused():
    rng = np.random.RandomState(0)
    X, y = rng.randn(20, 2), rng.rand(20)
    reg = MLPTorchRegressor((4,), max_iter=2, warm_start=True, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="loss='poisson' differs"):
        reg.set_params(loss="poisson").fit(X, y)
    with pytest.raises(ValueError, match="differs"):
        reg.partial_fit(X, y)
    reg.set_params(warm_start=False).fit(X, y)  # a fresh fit may change it
    assert np.all(reg.predict(X) > 0)


def test_exhausted_cosine_schedule_warns_under_partial_fit():
    rng = np.random.RandomState(0)
    X, y = rng.randn(20, 2), rng.rand(20)
    reg = MLPTorchRegressor((3,), lr_schedule="cosine", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.partial_fit(X, y)
    with pytest.warns(UserWarning, match="cosine.*reached lr=0"):
        reg.partial_fit(X, y)


def test_lbfgs_dropout_masks_come_from_random_state_not_the_global_rng():
    X, y = _reg_data(n=60)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    kw = dict(hidden_dims=(16,), optimizer="lbfgs", dropout=0.3, max_iter=15, random_state=4)
    a = _fit_quiet(MLPTorchRegressor(**kw), X, y)
    assert torch.equal(torch.get_rng_state(), before)
    b = _fit_quiet(MLPTorchRegressor(**kw), X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = _fit_quiet(MLPTorchRegressor(**{**kw, "random_state": 5}), X, y)
    assert not np.array_equal(a.predict(X), c.predict(X))


# ------------------------------------------------ label smoothing, target scaling
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_label_smoothing_matches_torch_cross_entropy(smoothing):
    from skmlp._heads import HEADS

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (7,), generator=gen)
    loss = HEADS["multiclass"].training_loss(smoothing)
    value, grad = loss.value_and_grad(z.detach(), t)
    ref = torch.nn.functional.cross_entropy(z, t, reduction="none", label_smoothing=smoothing)
    ref.sum().backward()
    torch.testing.assert_close(value, ref.detach())
    torch.testing.assert_close(grad, z.grad)
    # binary: targets move towards 0.5 by the same rule, t (1 - s) + s / 2
    zb = torch.randn(7, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    tb = torch.randint(0, 2, (7, 1), generator=gen).double()
    bin_loss = HEADS["binary"].training_loss(smoothing)
    soft = tb * (1 - smoothing) + smoothing / 2
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zb, soft, reduction="none")
    torch.testing.assert_close(bin_loss.value(zb.detach(), tb), ref.detach().sum(1))
    ref.sum().backward()
    torch.testing.assert_close(bin_loss.grad(zb.detach(), tb), zb.grad)


def test_label_smoothing_keeps_probabilities_away_from_0_and_1():
    X, y = _clf_data(n=90)
    kw = dict(hidden_dims=(16,), max_iter=200, lr=3e-2, random_state=0)
    sharp = _fit_quiet(MLPTorchClassifier(**kw), X, y)
    smooth = _fit_quiet(MLPTorchClassifier(label_smoothing=0.3, **kw), X, y)
    # the smoothed optimum of a training point is 1 - 0.3 + 0.3 / 3 = 0.8
    assert sharp.predict_proba(X).max() > 0.99 > 0.95 > smooth.predict_proba(X).max()
    assert smooth.score(X, y) > 0.9


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_target_scaling_trains_in_standard_units_and_predicts_in_the_targets(loss):
    rng = np.random.RandomState(0)
    X = rng.randn(150, 3)
    y = np.exp(1 + 0.5 * X[:, 0]) * 1000 if loss == "poisson" else 5000 + 800 * X[:, 0]
    w = rng.uniform(0.5, 2, 150)
    kw = dict(hidden_dims=(16,), max_iter=150, lr=1e-2, random_state=0, loss=loss)
    est = _fit_quiet(MLPTorchRegressor(target_scaling=True, **kw), X, y, sample_weight=w)
    shift, scale = est._target_affine
    if loss == "poisson":  # only divided by the weighted mean: targets stay >= 0
        assert shift[0] == 0 and scale[0] == pytest.approx(np.average(y, weights=w))
    else:
        assert shift[0] == pytest.approx(np.average(y, weights=w))
        assert scale[0] == pytest.approx(np.sqrt(np.cov(y, aweights=w, bias=True)))
    assert est.score(X, y) > 0.9
    assert est.loss_curve_[-1] < 1  # standardised units
    plain = _fit_quiet(MLPTorchRegressor(**kw), X, y)
    assert est.score(X, y) > plain.score(X, y)
    with pytest.raises(ValueError, match="target_scaling"):
        est.set_params(warm_start=True, target_scaling=False).fit(X, y)


# ------------------------------------------------------------------ ensembles
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_ensemble_averages_member_probabilities(kind):
    X, y = _clf_data(n=90)
    if kind == "binary":
        y = y > 0
    elif kind == "multilabel":
        y = np.column_stack([y == 0, y == 1]).astype(int)
    est = _fit_quiet(MLPTorchClassifier((8,), n_ensemble=4, max_iter=5, random_state=0), X, y)
    module = est.module_
    with torch.no_grad():
        z = module(torch.from_numpy(X))  # (n, k, o): one output per member
    assert z.shape[:2] == (90, 4)
    member = torch.sigmoid(z) if kind != "multiclass" else torch.softmax(z, dim=-1)
    mean = member.mean(dim=1).numpy()
    proba = est.predict_proba(X)
    if kind == "binary":
        mean = np.column_stack([1 - mean[:, 0], mean[:, 0]])
    np.testing.assert_allclose(proba, mean, rtol=1e-10, atol=1e-12)
    if kind != "multilabel":
        np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), proba, rtol=1e-10)
        assert_labels = est.classes_[proba.argmax(1)]
        np.testing.assert_array_equal(est.predict(X), assert_labels)


def test_ensemble_loss_is_the_members_mean_and_regressor_averages_means():
    X, y = _reg_data(n=60)
    y = np.abs(y)
    est = _fit_quiet(MLPTorchRegressor((8,), n_ensemble=3, loss="poisson", max_iter=3,
                                       random_state=0), X, y)
    with torch.no_grad():
        z = est.module_(torch.from_numpy(X))
    np.testing.assert_allclose(est.predict(X), torch.exp(z).mean(dim=1)[:, 0].numpy(),
                               rtol=1e-10)
    from skmlp._heads import HEADS

    loss = HEADS["poisson"].loss
    target = torch.from_numpy(y.reshape(-1, 1))
    members = [loss.value(z[:, j], target).mean() for j in range(3)]
    assert float(loss(z, target).mean()) == pytest.approx(float(sum(members) / 3))


def test_ensemble_pickles_and_continues():
    X, y = _clf_data(n=60)
    est = MLPTorchClassifier((8,), n_ensemble=2, random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    est.partial_fit(X, y)
    back.partial_fit(X, y)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
