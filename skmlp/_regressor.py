"""MLPTorchRegressor: the target's shape; the head (loss + link) does the rest."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._base import BaseMLPTorch
from ._heads import REGRESSION_HEADS
from ._params import estimator


@estimator("regressor")
class MLPTorchRegressor(RegressorMixin, BaseMLPTorch):
    """Multi-layer perceptron regressor trained with PyTorch.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor` whose network
    and training run in PyTorch (CPU, CUDA or MPS). Single- and multi-output
    targets; the prediction's shape follows the target's.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.
    is_categorical_ : ndarray of bool of shape (`n_features_in_`,)
        Which columns were taken as categorical (``categorical_features``).
    categories_ : list of ndarray
        Per categorical column, in column order, the categories the model
        knows, sorted (as ``OneHotEncoder.categories_``; empty without
        categorical columns). A missing value is not listed, unlike
        ``OneHotEncoder``'s NaN: every column has a code of its own for it
        whether or not ``fit`` saw one, and each array can be declared in
        ``categories``, which takes no missing value.
    n_outputs_ : int
        Number of targets.
    module_ : torch.nn.Module
        The fitted network.
    n_iter_ : int
        Number of epochs (or L-BFGS iterations) run.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of every epoch (with ``n_ensemble > 1``, the
        members' mean).
    best_loss_ : float
        Minimum of ``loss_curve_``.
    validation_scores_ : list of float or None
        With early stopping, the monitored validation score (``scoring``;
        R² by default, weighted by ``sample_weight``) of every epoch of the
        last ``fit``, which chose the weights held; None when the last call did
        not validate.
    best_validation_score_ : float or None
        The best of ``validation_scores_``: the score of the weights kept.
    history_ : list of dict
        One dict per epoch with keys "epoch", "loss", "val_score", "lr" and
        "seconds".

    See Also
    --------
    MLPTorchClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : scikit-learn's NumPy MLP.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlp import MLPTorchRegressor
    >>> X = np.linspace(-1, 1, 50).reshape(-1, 1)
    >>> y = 2 * X.ravel() + 1
    >>> reg = MLPTorchRegressor((), optimizer="lbfgs", random_state=0).fit(X, y)
    >>> round(float(reg.predict([[0.5]])[0]), 2)
    2.0
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags

    # ---------------------------------------------------------------- hooks
    def _check_data(self, X, y, *, reset):
        X, y = self._check_X(X, y=y, reset=reset, multi_output=True, y_numeric=True)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y has dtype {y.dtype}: {type(self).__name__} needs a numeric "
                             "target. Convert numbers stored as text with y.astype(float); "
                             "for class labels use MLPTorchClassifier.")
        REGRESSION_HEADS[self.loss].check_target(y, self.loss)
        return X, y

    def _encode_targets(self, y, *, reset, classes=None, sample_weight=None):
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        head = REGRESSION_HEADS[self.loss]
        if reset:
            self._y_ndim = y.ndim
            self.n_outputs_ = head.n_outputs(Y.shape[1])
            self._target_affine = None
            if self.target_scaling:
                shift, scale = head.target_scaling(np.asarray(Y, dtype=np.float64),
                                                   sample_weight)
                self._target_affine = (shift, scale)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs, but the fitted network has "
                             f"{self.n_outputs_}.")
        Y = head.encode(Y)
        if self._target_affine is not None:
            shift, scale = self._target_affine
            Y = (Y - shift) / scale
        return self.loss, Y, None

    # ------------------------------------------------------------ partial_fit
    @available_if(lambda est: est.optimizer != "lbfgs")
    def partial_fit(self, X, y, sample_weight=None):
        """Train for exactly one epoch on (X, y), continuing from the last call.

        Each call adds one to ``n_iter_`` and one entry to ``loss_curve_``
        (one per block when ``dask_ml.wrappers.Incremental`` calls it). The
        first call fixes what is learned about the columns: the categories
        (unless declared in ``categories``), medians, scaling statistics and
        which columns get a missing-value indicator.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    # ----------------------------------------------------------------- output
    def predict(self, X):
        """Predict targets, shaped like the training target, in the compute dtype.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (the mean, always positive, for ``loss="poisson"``).
        """
        check_is_fitted(self, "module_")
        out = self._forward(X, self._head.output)
        if self._target_affine is not None:  # back to the target's units
            shift, scale = (a.astype(out.dtype) for a in self._target_affine)
            out = out * scale + shift
        return out.ravel() if self._y_ndim == 1 else out

