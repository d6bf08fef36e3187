"""skmlp: scikit-learn MLP estimators whose network and training run in PyTorch.

``LossCurveDisplay``, ``to_onnx`` and ``onnx_inputs`` import matplotlib / onnx only when used.
"""

from ._classifier import MLPTorchClassifier
from ._display import LossCurveDisplay
from ._onnx import onnx_inputs, to_onnx
from ._regressor import MLPTorchRegressor
from ._tabular import TabularMLPClassifier, TabularMLPRegressor

__version__ = "0.1.0"

__all__ = [
    "LossCurveDisplay",
    "MLPTorchClassifier",
    "MLPTorchRegressor",
    "TabularMLPClassifier",
    "TabularMLPRegressor",
    "onnx_inputs",
    "to_onnx",
    "__version__",
]
