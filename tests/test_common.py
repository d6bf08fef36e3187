"""scikit-learn's estimator checks, at default parameters, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmlp import (MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier,
                   TabularMLPRegressor)


@parametrize_with_checks([MLPTorchClassifier(), MLPTorchRegressor(), TabularMLPClassifier(),
                          TabularMLPRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
