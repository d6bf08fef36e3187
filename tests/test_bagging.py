"""early_stopping="bagging": the ensemble's members as separate networks, each
trained on all folds but its own and stopped at its best epoch on that one."""

import pickle

import numpy as np
import pytest
import torch

from skmlp import MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier
from skmlp._base import AUTO_EARLY_STOPPING_ROWS, resolve_early_stopping
from skmlp._network import MLP, Bag

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clf(n=200, seed=0, classes=2):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    score = X[:, 0] + 0.5 * X[:, 1] + 0.7 * rng.randn(n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


def _kw(**extra):
    kw = dict(hidden_dims=(16,), max_iter=30, n_iter_no_change=5, lr=0.01, random_state=0,
              n_ensemble=3, early_stopping="bagging")
    return {**kw, **extra}


def _members_proba(clf, X):
    """The members' mean probability, each member on its own (no temperature)."""
    out = []
    for member in clf.module_.members:
        with torch.no_grad():
            z = member(torch.as_tensor(X, dtype=torch.float32))
        out.append(torch.softmax(z, 1) if z.shape[1] > 1 else
                   torch.cat([1 - torch.sigmoid(z), torch.sigmoid(z)], 1))
    return torch.stack(out).mean(0).numpy()


def test_members_are_separate_networks_averaged():
    X, y = _clf(classes=3)
    clf = MLPTorchClassifier(**_kw(dtype="float32")).fit(X, y)
    assert isinstance(clf.module_, Bag) and len(clf.module_.members) == 3
    assert all(isinstance(m, MLP) and m.n_ensemble == 1 for m in clf.module_.members)
    first = [p.detach() for p in clf.module_.members[0].parameters()]
    second = [p.detach() for p in clf.module_.members[1].parameters()]
    assert not any(torch.equal(a, b) for a, b in zip(first, second))
    np.testing.assert_allclose(clf.predict_proba(X), _members_proba(clf, X), rtol=1e-5,
                               atol=1e-6)


def test_each_member_validates_on_its_own_fold():
    X, y = _clf(n=90, classes=3)
    w = np.ones(len(y))
    w[:6] = 0  # rows of weight zero always train
    est = MLPTorchClassifier(**_kw())
    est.fit(X, y, sample_weight=w)  # fitted: the head is known
    rows = (X, y, w, None)
    folds = list(est._folds(rows, w, 0, 3))
    held = np.concatenate([val[4] for _, val in folds])
    assert sorted(held) == list(range(6, 90))  # every positive row validates once
    counts = []
    for train, val in folds:
        assert len(train[1]) + len(val[1]) == 90
        assert not np.isin(val[4], np.arange(6)).any()
        counts.append(np.bincount(val[1], minlength=3))
    counts = np.array(counts)  # (fold, class): stratified, so within one of each other
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()


def test_a_rare_class_keeps_the_others_stratified():
    X, y = _clf(n=90, classes=2)
    y = y.copy()
    y[:2] = 2  # 2 rows, fewer than the 3 folds
    est = MLPTorchClassifier(**_kw(max_iter=1)).fit(X, y)
    counts = np.array([np.bincount(val[1], minlength=3)
                       for _, val in est._folds((X, y, None, None), None, 0, 3)])
    assert (counts[:, :2].max(axis=0) - counts[:, :2].min(axis=0) <= 1).all()
    assert counts[:, 2].sum() == 2


def test_bagging_is_repeatable_and_records_the_members_runs():
    X, y = _clf()
    a = MLPTorchClassifier(**_kw(scoring="loss")).fit(X, y)
    b = MLPTorchClassifier(**_kw(scoring="loss")).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_iter_ == len(a.loss_curve_) == len(a.history_) == len(a.validation_scores_)
    assert a.n_iter_ <= 30
    # Each member trains on the rows of the other two folds (133 or 134 of 200),
    # the longest run for n_iter_ epochs.
    assert 133 * a.n_iter_ <= a.t_ <= 3 * 134 * a.n_iter_
    assert len(set(h["epoch"] for h in a.history_)) == a.n_iter_
    assert a.best_validation_score_ <= 0  # the negated log loss
    assert np.isfinite(a.best_validation_score_)


@pytest.mark.parametrize("scoring", [None, "loss"])
def test_best_validation_score_is_the_best_of_validation_scores(scoring):
    # Per epoch the score of the members' best weights so far (a member that
    # stopped keeps its best): it never falls, and its last value is the score
    # of the weights kept, best_validation_score_ (the mean of the members'
    # current scores, as before, could exceed it).
    rng = np.random.RandomState(3)
    X = rng.randn(300, 4)
    y = 2 * X[:, 0] + 0.1 * rng.randn(300)
    for est in (MLPTorchRegressor(**_kw(n_iter_no_change=3, lr=0.03, scoring=scoring)),
                MLPTorchClassifier(**_kw(n_iter_no_change=3, lr=0.03, scoring=scoring))):
        target = y if isinstance(est, MLPTorchRegressor) else (y > 0).astype(int)
        est.fit(X, target)
        scores = est.validation_scores_
        assert np.all(np.diff(scores) >= 0)
        assert est.best_validation_score_ == max(scores) == scores[-1]
        assert [h["val_score"] for h in est.history_] == scores


def test_temperature_from_the_out_of_fold_rows():
    X, y = _clf(classes=3)
    plain = MLPTorchClassifier(**_kw(label_smoothing=0.2)).fit(X, y)
    tempered = MLPTorchClassifier(**_kw(label_smoothing=0.2, calibration="temperature")).fit(X, y)
    assert plain.temperature_ == 1.0
    assert tempered.temperature_ < 1.0  # label smoothing kept the members too soft
    np.testing.assert_allclose(tempered.decision_function(X) * tempered.temperature_,
                               plain.decision_function(X), rtol=1e-6, atol=1e-9)


def test_bagging_regressor_pickles_and_continues():
    rng = np.random.RandomState(0)
    X = rng.randn(150, 4)
    y = X[:, 0] - X[:, 1] + 0.3 * rng.randn(150)
    reg = MLPTorchRegressor(**_kw()).fit(X, y)
    assert isinstance(reg.module_, Bag)
    back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    n = reg.n_iter_
    reg.partial_fit(X, y)  # all members, the same batches
    assert reg.n_iter_ == n + 1 and isinstance(reg.module_, Bag)
    reg.set_params(warm_start=True, max_iter=3).fit(X, y)  # each member on its fold again
    assert reg.n_iter_ <= n + 1 + 3


def test_a_failing_warm_start_leaves_every_member_as_it_was():
    X, y = _clf()
    clf = MLPTorchClassifier(**_kw()).fit(X, y)
    before = clf.predict_proba(X)
    calls = []

    def boom(est, epoch, logs):
        calls.append(epoch)
        if len(calls) == 5:  # in the second member's run
            raise RuntimeError("boom")

    clf.set_params(warm_start=True, max_iter=3, n_iter_no_change=100, callbacks=[boom])
    with pytest.raises(RuntimeError, match="boom"):
        clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_a_callback_that_stops_keeps_the_members_trained_so_far():
    X, y = _clf()
    clf = MLPTorchClassifier(**_kw(callbacks=[lambda est, epoch, logs: epoch == 2])).fit(X, y)
    assert isinstance(clf.module_, Bag) and len(clf.module_.members) == 1
    assert clf._spec.n_ensemble == 1 and clf.n_iter_ == 2
    assert clf.predict_proba(X).shape == (len(y), 2)
    with pytest.raises(ValueError, match="has one member"):  # nothing left to fold
        clf.set_params(warm_start=True, callbacks=None).fit(X, y)
    # A warm start that a callback stops keeps every member (those not reached as they were).
    clf = MLPTorchClassifier(**_kw()).fit(X, y)
    seen = []
    clf.set_params(warm_start=True,
                   callbacks=[lambda est, epoch, logs: seen.append(epoch) or len(seen) == 3])
    clf.fit(X, y)
    assert len(clf.module_.members) == 3 and clf._spec.n_ensemble == 3 and len(seen) == 3


def test_callbacks_count_epochs_on_across_members_and_warm_starts_keep_the_folds():
    X, y = _clf()
    seen = []
    clf = MLPTorchClassifier(**_kw(callbacks=[lambda est, epoch, logs: seen.append(epoch)]))
    clf.fit(X, y)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) > clf.n_iter_
    seed = clf._bag_seed
    held = [val[4] for _, val in clf._folds((X, y, None, None), None, seed, 3)]
    clf.set_params(warm_start=True, callbacks=None, max_iter=2).fit(X, y)
    assert clf._bag_seed == seed  # the same rows validate each member again
    again = [val[4] for _, val in clf._folds((X, y, None, None), None, clf._bag_seed, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(held, again))


def test_auto_counts_the_rows_that_carry_weight():
    from skmlp import TabularMLPRegressor

    X, y = _clf(n=100)
    w = np.zeros(100)
    w[:3] = 1  # 3 rows of weight: too few to bag, so nothing is held out
    clf = TabularMLPClassifier(max_iter=3, random_state=0).fit(X, np.arange(100) % 2,
                                                               sample_weight=w)
    assert not clf._spec.bagged and clf.validation_scores_ is None
    rng = np.random.RandomState(0)
    X = rng.randn(1005, 3)
    w = np.ones(1005)
    w[:10] = 0  # 995 rows of weight: float64, as the same rows alone
    reg = TabularMLPRegressor(max_iter=2, random_state=0).fit(X, X[:, 0], sample_weight=w)
    assert reg._spec.dtype == "float64" and reg._spec.bagged  # 995 rows: bagged


def test_bagging_needs_members_and_rows():
    X, y = _clf()
    with pytest.raises(ValueError, match="n_ensemble >= 2"):
        MLPTorchClassifier(**_kw(n_ensemble=1)).fit(X, y)
    with pytest.raises(ValueError, match="at least 3 samples"):
        MLPTorchClassifier(**_kw()).fit(X[:4], [0, 1, 0, 1], sample_weight=[1, 1, 0, 0])
    plain = MLPTorchClassifier(**_kw(early_stopping=False, warm_start=True)).fit(X, y)
    with pytest.raises(ValueError, match="cannot continue a network fitted without"):
        plain.set_params(early_stopping="bagging").fit(X, y)


def test_auto_bags_small_tables_with_an_ensemble():
    from skmlp._base import AUTO_BAGGING_ROWS as low

    assert resolve_early_stopping("auto", low, 4) == "bagging"
    assert resolve_early_stopping("auto", low - 1, 4) is False
    assert resolve_early_stopping("auto", low, 1) is False
    assert resolve_early_stopping("auto", AUTO_EARLY_STOPPING_ROWS, 4) is True
    X, y = _clf(n=low)
    clf = TabularMLPClassifier(max_iter=5, random_state=0).fit(X, y)
    assert isinstance(clf.module_, Bag)


@pytest.mark.parametrize("levels", [4, 40])  # one-hot coded, embedded
def test_a_category_a_member_never_trained_on_acts_as_unknown_to_it(levels):
    import pandas as pd

    rng = np.random.RandomState(0)
    n = 160
    X = pd.DataFrame({"x": rng.randn(n),
                      "kind": rng.randint(0, levels, n).astype(str).astype(object)})
    y = (X["x"] + rng.randn(n) > 0).astype(int)
    X.loc[0, "kind"] = "rare"  # one row: in one member's fold, the others train on it
    clf = MLPTorchClassifier(**_kw(n_ensemble=4)).fit(X, y)
    x_num = torch.tensor(X[["x"]].to_numpy()[:1], dtype=torch.float64)  # dtype: float64 data
    codes = torch.tensor(clf._layout.encode(X.iloc[:1]))
    unknown = torch.full_like(codes, clf._spec.cardinalities[0] - 1)
    with torch.no_grad():
        same = [torch.equal(m(x_num, codes), m(x_num, unknown)) for m in clf.module_.members]
    assert sum(same) == 1  # the member that held the row out
    # The same for the held-out part of early_stopping=True: a network that did
    # not train on the row maps "rare" as it maps an unknown category.
    for seed in range(4):
        best = MLPTorchClassifier(**_kw(early_stopping=True, n_ensemble=1, random_state=seed,
                                        validation_fraction=0.5)).fit(X, y)
        with torch.no_grad():
            out = best.module_(x_num, codes), best.module_(x_num, unknown)
        if torch.equal(*out):
            break
    else:
        pytest.fail("no split of 4 held the rare row out, or none forgot it")
    # No hidden layer and an ensemble: the one-hot weights sit in the ensemble output layer.
    if levels <= 10:
        for seed in range(4):
            flat = MLPTorchClassifier(**_kw(early_stopping=True, n_ensemble=2, hidden_dims=(),
                                            random_state=seed, validation_fraction=0.5)
                                      ).fit(X, y)
            with torch.no_grad():
                out = flat.module_(x_num, codes), flat.module_(x_num, unknown)
            if torch.equal(*out):
                break
        else:
            pytest.fail("the ensemble output layer kept the never-trained category's weights")


def test_verbose_names_each_member_and_a_failing_scorer_says_what_to_do(capsys):
    X, y = _clf(n=120, classes=3)
    y = y.copy()
    y[:2] = 9  # a class of 2 rows: some folds lack it
    MLPTorchClassifier(**_kw(max_iter=2, verbose=1)).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("Member ") == 3 and "Member 2 of 3: trains on 80 rows, validates on 40" in out
    with pytest.raises(ValueError, match="scoring='neg_log_loss' failed on the 40 held-out rows"):
        MLPTorchClassifier(**_kw(scoring="neg_log_loss")).fit(X, y)
