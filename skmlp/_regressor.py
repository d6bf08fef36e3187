"""MLPTorchRegressor: target shape, regression losses and the output link."""

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._base import BaseMLPTorch
from ._data import check_X
from ._losses import REGRESSION


class MLPTorchRegressor(RegressorMixin, BaseMLPTorch):
    """Multi-layer perceptron regressor trained with PyTorch.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor` whose network
    and training run in PyTorch (CPU, CUDA or MPS). Single- and multi-output
    targets; the prediction's shape follows the target's.

    Parameters
    ----------
    hidden_dims : tuple of int, default=(100,)
        Sizes of the hidden layers; ``()`` gives a linear model.
    activation : {"relu", "tanh", "sigmoid", "logistic", "identity", "gelu", \
"silu", "leaky_relu", "elu"}, default="relu"
        Activation after every hidden layer (``"logistic"`` is ``"sigmoid"``).
    optimizer : {"sgd", "adam", "adamw", "lbfgs"}, default="adam"
        ``"lbfgs"`` is full-batch L-BFGS-B with a line search (scipy driving
        torch, as scikit-learn's MLP): it ignores ``lr`` and ``batch_size``.
    lr : float, default=1e-3
        Learning rate.
    momentum : float, default=0.9
        SGD momentum; for Adam/AdamW it is ``beta1``.
    nesterov : bool, default=True
        Nesterov momentum for SGD.
    weight_decay : float, default=1e-4
        L2 penalty in torch's sense: ``weight_decay * w`` is added to the
        gradient of every weight matrix (not biases or norm layers);
        decoupled for ``"adamw"``.
    batch_size : int or "auto", default="auto"
        Minibatch size; ``"auto"`` is ``min(200, n_samples)``.
    max_iter : int, default=200
        Maximum number of epochs (L-BFGS: iterations).
    lr_schedule : {"constant", "cosine", "plateau"}, default="constant"
        ``"cosine"`` anneals ``lr`` to 0 over ``max_iter`` epochs (restarting
        at every ``fit``, also under ``warm_start``; ``partial_fit`` calls continue it);
        ``"plateau"`` divides it by 5 whenever ``n_iter_no_change`` epochs pass
        without a ``tol`` improvement and stops once it is below 1e-6.
    dropout : float, default=0.0
        Dropout probability after every hidden activation.
    batch_norm : bool, default=False
        BatchNorm1d before every hidden activation.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when the validation
        R² stops improving and keep the best weights.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without a ``tol`` improvement before stopping.
    tol : float, default=1e-4
        Improvement threshold of the training loss (or validation score).
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    loss : {"squared_error", "absolute_error", "huber", "poisson"}, \
default="squared_error"
        Half squared error (as scikit-learn, so ``loss_curve_`` compares),
        absolute error, Huber (delta 1.0), or Poisson deviance with a log
        link (the network outputs the log-mean; ``predict`` returns the mean).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
    dtype : {"float32", "float64"} or None, default=None
        Compute dtype; ``None`` keeps float32 input in float32 and uses
        float64 for anything else.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, shuffling, dropout and the validation split through a
        local ``torch.Generator``; the global RNGs are never used.
    warm_start : bool, default=False
        Continue from the fitted network on the next ``fit``.
    verbose : int, default=0
        1 prints one line per epoch; 2 adds a progress bar over batches.
    callbacks : list of callables, default=None
        Each is called as ``cb(estimator, epoch, logs)`` after every epoch;
        returning True stops training.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.
    n_outputs_ : int
        Number of targets.
    module_ : torch.nn.Module
        The fitted network.
    n_iter_ : int
        Number of epochs (or L-BFGS iterations) run.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    best_loss_ : float
        Minimum of ``loss_curve_``.
    validation_scores_ : list of float or None
        Validation R² per epoch (None without early stopping).
    best_validation_score_ : float or None
        Best validation R² (None without early stopping).
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

    def __init__(
        self,
        hidden_dims=(100,),
        *,
        activation="relu",
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        batch_size="auto",
        max_iter=200,
        lr_schedule="constant",
        dropout=0.0,
        batch_norm=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        loss="squared_error",
        device="cpu",
        dtype=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        callbacks=None,
    ):
        super().__init__(
            hidden_dims, activation=activation, optimizer=optimizer, lr=lr,
            momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            batch_size=batch_size, max_iter=max_iter, lr_schedule=lr_schedule,
            dropout=dropout, batch_norm=batch_norm, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            tol=tol, shuffle=shuffle, device=device, dtype=dtype,
            random_state=random_state, warm_start=warm_start, verbose=verbose,
            callbacks=callbacks,
        )
        self.loss = loss

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags

    # ---------------------------------------------------------------- hooks
    def _check_data(self, X, y, *, reset):
        X, y = check_X(self, X, y=y, reset=reset, multi_output=True, y_numeric=True)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y has dtype {y.dtype}: {type(self).__name__} needs a numeric "
                             "target. Convert numbers stored as text with y.astype(float); "
                             "for class labels use MLPTorchClassifier.")
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' needs non-negative targets (counts or "
                             "rates); y has negative values.")
        return X, y

    def _encode_targets(self, y, *, reset, classes=None):
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if reset:
            self._y_ndim = y.ndim
            self._loss_at_fit = self.loss
            self.n_outputs_ = Y.shape[1]
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs, but the fitted network has "
                             f"{self.n_outputs_}.")
        elif self.loss != self._loss_at_fit:
            raise ValueError(
                f"loss={self.loss!r} differs from the loss the network was trained with "
                f"({self._loss_at_fit!r}); warm_start and partial_fit continue that network. "
                "Set warm_start=False (or use a new estimator) to change the loss."
            )
        return np.asarray(Y, dtype=np.float64), None

    def _loss(self):
        return REGRESSION[self.loss]

    def _score_tensor(self, out, Y, W):
        pred = torch.exp(out) if self._loss_at_fit == "poisson" else out
        w = torch.ones_like(Y[:, 0]) if W is None else W
        w = w[:, None] / w.sum()
        mean = (w * Y).sum(dim=0, keepdim=True)
        ss_res = (w * (Y - pred) ** 2).sum(dim=0)
        ss_tot = (w * (Y - mean) ** 2).sum(dim=0)
        r2 = torch.where(ss_tot > 0, 1 - ss_res / torch.where(ss_tot > 0, ss_tot, 1),
                         (ss_res == 0).to(out.dtype))
        return r2.mean()

    # ------------------------------------------------------------ partial_fit
    @available_if(lambda est: est.optimizer != "lbfgs")
    def partial_fit(self, X, y, sample_weight=None):
        """Train for exactly one epoch on (X, y), continuing from the last call.

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
        link = torch.exp if self._loss_at_fit == "poisson" else (lambda z: z)
        out = self._forward(X, link)
        return out.ravel() if self._y_ndim == 1 else out

