"""skmlp: scikit-learn MLP estimators whose network and training run in PyTorch."""

from ._classifier import MLPTorchClassifier
from ._regressor import MLPTorchRegressor

__version__ = "0.1.0"

__all__ = ["MLPTorchClassifier", "MLPTorchRegressor", "__version__"]
