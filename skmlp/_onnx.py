"""Export a fitted skmlp estimator's network to ONNX.

Imported by ``skmlp`` without importing ``onnx`` or ``torch.onnx``: both are
loaded when ``to_onnx`` is called (install them with ``pip install
skmlp[onnx]``).
"""

import contextlib
import copy
import logging
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted


class _WithOutputTransform(torch.nn.Module):
    """The fitted network followed by the head's output (``predict_proba`` /
    ``predict``), flattened to 1-d for a regressor fitted on a 1-d target."""

    def __init__(self, module, output, flatten, affine=None, combine=None):
        super().__init__()
        self.module = module
        self.combine = combine
        self.output = output
        self.flatten = flatten
        self.affine = None
        if affine is not None:  # target_scaling: back to the target's units
            self.register_buffer("shift", torch.as_tensor(affine[0], dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(affine[1], dtype=torch.float32))
            self.affine = True

    def forward(self, X):
        z = self.module(X)
        out = self.output(z if self.combine is None else self.combine(z))
        if self.affine:
            out = out * self.scale + self.shift
        return out[:, 0] if self.flatten else out


def to_onnx(estimator, X_sample, path=None, *, opset_version=None):
    """Export a fitted estimator's network, with its output transform, to ONNX.

    The graph takes one float32 input ``"X"`` of shape ``(n_samples,
    n_features)`` (any number of rows) and has one output:

    * classifiers: ``"probabilities"``, equal to ``predict_proba`` (softmax
      for multiclass, ``[1 - p, p]`` for binary, one sigmoid per label for
      multilabel). The predicted label is ``classes_[argmax]`` (multilabel:
      ``probabilities > 0.5``); ``classes_`` stays with the estimator.
    * regressors: ``"predictions"``, equal to ``predict`` (``exp`` of the
      network's output for ``loss="poisson"``, the output itself otherwise),
      shaped like the training target.

    The export is always float32: a float64 model is cast, so its outputs
    differ from the estimator's by float32 rounding, well within 1e-5
    relative to ``max(1, |output|)`` (measured: at most 4e-7 on
    probabilities, 2e-6 on regression outputs). Preprocessing outside the estimator (e.g. a
    ``Pipeline``'s scaler) is not part of the graph: use ``skl2onnx`` for
    whole pipelines, or apply it before feeding the graph.

    Parameters
    ----------
    estimator : MLPTorchClassifier or MLPTorchRegressor
        A fitted estimator.
    X_sample : array-like of shape (n_samples, n_features)
        A few rows of input, used to trace the network and check the number
        of features.
    path : str or path-like, default=None
        Where to save the model; nothing is written when None.
    opset_version : int, default=None
        ONNX opset; None lets torch choose.

    Returns
    -------
    model : onnx.ModelProto
        The exported model (``onnxruntime.InferenceSession(
        model.SerializeToString())`` runs it).

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from skmlp import MLPTorchClassifier, to_onnx
    >>> X = np.random.RandomState(0).randn(40, 3).astype(np.float32)
    >>> clf = MLPTorchClassifier((8,), max_iter=5, random_state=0).fit(X, X[:, 0] > 0)
    >>> model = to_onnx(clf, X[:2])
    >>> session = ort.InferenceSession(model.SerializeToString())
    >>> session.run(None, {"X": X})[0].shape
    (40, 2)
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_onnx needs onnx and onnxscript: pip install 'skmlp[onnx]'") from exc
    check_is_fitted(estimator, "module_")
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        names = getattr(estimator, "feature_names_in_", None)
        cols = [names[j] if names is not None else j for j in np.flatnonzero(categorical)]
        raise ValueError(f"to_onnx does not export categorical columns yet; this model has "
                         f"{len(cols)}: {list(cols)}. Fit on numeric columns (e.g. with "
                         "categorical_features=None after encoding them) to export the network.")
    X = np.asarray(X_sample, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X_sample must have shape (n_samples, {estimator.n_features_in_}); got {X.shape}."
        )
    if X.shape[0] < 2:  # a batch of 1 would be traced as a constant size
        X = np.repeat(X, 2, axis=0)
    head = estimator._head
    output = "probabilities" if head.is_classifier else "predictions"
    flatten = not head.is_classifier and estimator._y_ndim == 1
    module = copy.deepcopy(estimator.module_).to("cpu", torch.float32).eval()
    affine = getattr(estimator, "_target_affine", None)
    wrapped = _WithOutputTransform(module, head.output, flatten, affine, head.combine).eval()
    with warnings.catch_warnings(), _quiet_loggers("torch"):
        warnings.simplefilter("ignore")  # torch.export chatter (e.g. torchvision missing)
        program = torch.onnx.export(
            wrapped, (torch.from_numpy(X[:2]),), dynamo=True, verbose=False,
            input_names=["X"], output_names=[output], opset_version=opset_version,
            dynamic_shapes=({0: torch.export.Dim("n_samples")},),
        )
    model = program.model_proto
    onnx.checker.check_model(model)
    if path is not None:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return model


@contextlib.contextmanager
def _quiet_loggers(name):
    """Raise logger ``name`` to ERROR for the block, then put its level back."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
