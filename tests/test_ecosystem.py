"""skmlp inside scikit-learn's composition tools: pipelines, searches, routing."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.stats import loguniform
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.datasets import load_diabetes, make_classification
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from helpers import sklearn_older_than
from skmlp import MLPTorchClassifier, MLPTorchRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=0)


def small_clf(**kw):
    return MLPTorchClassifier((8,), max_iter=20, lr=1e-2, random_state=0, **kw)


def diabetes_frame():
    """load_diabetes as a DataFrame with a categorical and a string column."""
    data = load_diabetes(as_frame=True)
    df = data.frame.drop(columns="target").iloc[:150].copy()
    df["age_group"] = pd.cut(df["age"], 3, labels=["young", "mid", "old"])
    df["sex"] = np.where(df["sex"] > 0, "m", "f").astype(object)
    return df, data.target.iloc[:150].to_numpy()


def column_pipeline(est):
    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["age_group", "sex"]),
        ("num", StandardScaler(), make_column_selector(dtype_include=np.number)),
    ])
    return Pipeline([("pre", pre), ("mlp", est)])


def test_column_transformer_pipeline_on_mixed_frame():
    df, y = diabetes_frame()
    with pytest.raises(ValueError, match="categorical_features"):
        MLPTorchRegressor((8,), max_iter=2, categorical_features=None).fit(df, y)
    raw = MLPTorchRegressor((8,), max_iter=2).fit(df, y)  # the raw frame goes in as it is
    assert raw.is_categorical_.tolist() == [False, True] + [False] * 8 + [True]  # sex, age_group
    reg = MLPTorchRegressor((16,), max_iter=20, lr=3e-2, random_state=0)
    pipe = column_pipeline(reg).fit(df, (y - y.mean()) / y.std())
    # 3 age groups + 2 sexes one-hot, 9 numeric columns (sex became a string)
    assert pipe["mlp"].n_features_in_ == 3 + 2 + 9
    assert pipe.score(df, (y - y.mean()) / y.std()) > 0.3
    clf = column_pipeline(small_clf()).fit(df, y > np.median(y))
    assert clf.predict_proba(df).shape == (150, 2)
    assert set(clf.predict(df)) <= {False, True}


def test_grid_search_parallel():
    grid = {"hidden_dims": [(4,), (8,)], "lr": [1e-3, 1e-2]}
    gs = GridSearchCV(small_clf(), grid, cv=3, n_jobs=2).fit(X, Y)
    seq = GridSearchCV(small_clf(), grid, cv=3, n_jobs=1).fit(X, Y)
    assert gs.best_params_ == seq.best_params_
    np.testing.assert_allclose(gs.cv_results_["mean_test_score"],
                               seq.cv_results_["mean_test_score"])
    assert gs.best_estimator_.score(X, Y) > 0.7


def test_randomized_and_halving_search_parallel():
    space = {"lr": loguniform(1e-3, 3e-2), "hidden_dims": [(4,), (8,)]}
    rs = RandomizedSearchCV(small_clf(), space, n_iter=3, cv=3, n_jobs=2,
                            random_state=0).fit(X, Y)
    assert len(rs.cv_results_["params"]) == 3 and rs.best_score_ > 0.5
    hs = HalvingGridSearchCV(small_clf(), {"lr": [1e-3, 3e-3, 1e-2, 3e-2]}, cv=3, factor=2,
                             resource="max_iter", min_resources=5, max_resources=20,
                             n_jobs=2, random_state=0).fit(X, Y)
    assert hs.n_iterations_ >= 2
    assert hs.best_estimator_.max_iter == 20


def test_cross_validate_parallel_regressor():
    y = X[:, 0] * 2 + X[:, 1]
    res = cross_validate(MLPTorchRegressor((8,), max_iter=100, lr=1e-2, random_state=0), X, y,
                         cv=3, n_jobs=2, return_estimator=True)
    assert len(res["estimator"]) == 3
    assert np.all(res["test_score"] > 0.5)


def _zero_weight_on_class_1():
    return np.where(Y == 1, 0.0, 1.0)


def test_sample_weight_routed_through_pipeline():
    w = _zero_weight_on_class_1()
    with sklearn.config_context(enable_metadata_routing=True):
        mlp = small_clf().set_fit_request(sample_weight=True)
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), mlp)
        pipe.fit(X, Y, sample_weight=w)
        # Class 1 carried no weight, so the network learned to predict (almost) only 0.
        assert np.mean(pipe.predict(X) == 1) < 0.05
        unweighted = make_pipeline(StandardScaler(),
                                   small_clf().set_fit_request(sample_weight=True))
        assert set(unweighted.fit(X, Y).predict(X)) == {0, 1}


@pytest.mark.skipif(sklearn_older_than(1, 8), reason="scikit-learn routes sample_weight to a "
                    "Pipeline's score inside a search from 1.8 on (UnsetMetadataPassedError "
                    "before); routing to fit is tested without a search above")
def test_sample_weight_routed_through_pipeline_and_search():
    w = _zero_weight_on_class_1()
    with sklearn.config_context(enable_metadata_routing=True):
        mlp = small_clf().set_fit_request(sample_weight=True)
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), mlp)
        # Routed to fit and (weighted accuracy) to score in every CV split.
        mlp.set_score_request(sample_weight=True)
        gs = GridSearchCV(pipe, {"mlptorchclassifier__lr": [1e-2, 3e-2]}, cv=3, n_jobs=2,
                          error_score="raise")
        gs.fit(X, Y, sample_weight=w)
        assert np.mean(gs.predict(X) == 1) < 0.05
        # Class 1 (always wrong now) has weight 0 in the weighted accuracy.
        assert np.all(gs.cv_results_["mean_test_score"] > 0.95)


def test_sample_weight_request_is_required_under_routing():
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), small_clf())
        with pytest.raises(Exception, match="sample_weight"):
            pipe.fit(X, Y, sample_weight=_zero_weight_on_class_1())
