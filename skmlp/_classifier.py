"""MLPTorchClassifier: target encoding, class weights and probability outputs."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import BaseMLPTorch
from ._data import check_X
from ._losses import BINARY, MULTICLASS


class MLPTorchClassifier(ClassifierMixin, BaseMLPTorch):
    """Multi-layer perceptron classifier trained with PyTorch.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier` whose network
    and training run in PyTorch (CPU, CUDA or MPS). Binary targets use one
    logit and a sigmoid, multiclass targets a softmax over one logit per
    class, and multilabel indicator targets one sigmoid per label.

    Parameters
    ----------
    hidden_dims : tuple of int, default=(100,)
        Sizes of the hidden layers; ``()`` gives a linear (logistic) model.
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
        Hold out ``validation_fraction`` of the data (stratified), stop when
        the validation accuracy stops improving and keep the best weights.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without a ``tol`` improvement before stopping.
    tol : float, default=1e-4
        Improvement threshold of the training loss (or validation score).
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``.
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
    classes_ : ndarray of shape (n_classes,)
        Class labels (for multilabel targets, ``arange(n_labels)``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.
    n_outputs_ : int
        Number of output units (1 for binary targets).
    module_ : torch.nn.Module
        The fitted network (outputs logits).
    n_iter_ : int
        Number of epochs (or L-BFGS iterations) run.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    best_loss_ : float
        Minimum of ``loss_curve_``.
    validation_scores_ : list of float or None
        Validation accuracy per epoch, weighted by ``sample_weight`` but not by
        ``class_weight``, as ``score`` (None without early stopping).
    best_validation_score_ : float or None
        Best validation accuracy (None without early stopping).
    history_ : list of dict
        One dict per epoch with keys "epoch", "loss", "val_score", "lr" and
        "seconds".

    See Also
    --------
    MLPTorchRegressor : The regressor.
    sklearn.neural_network.MLPClassifier : scikit-learn's NumPy MLP.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skmlp import MLPTorchClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPTorchClassifier((32,), optimizer="lbfgs", random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
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
        class_weight=None,
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
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags

    # ---------------------------------------------------------------- hooks
    def _check_data(self, X, y, *, reset):
        X, y = check_X(self, X, y=y, reset=reset, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        try:
            check_classification_targets(y)
        except TypeError as exc:  # labels numpy cannot sort, e.g. None among strings
            raise TypeError(f"{exc}\ny mixes label types: fill or drop missing labels and "
                            "give every label one type, e.g. y.astype(str).") from exc
        except ValueError as exc:
            if "continuous" not in str(exc):
                raise
            raise ValueError(f"{exc}\nFor a continuous target use MLPTorchRegressor, or bin "
                             "it into classes first (e.g. np.digitize).") from exc
        return X, y

    def _encode_targets(self, y, *, reset, classes=None):
        kind = type_of_target(y)
        multilabel = kind == "multilabel-indicator"
        if reset:
            labels = unique_labels(y) if classes is None else np.unique(classes)
            if multilabel:
                labels = np.arange(y.shape[1])
            elif labels.shape[0] < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the "
                    f"data, but the data contains only one class: {labels[0]!r}."
                )
            self.classes_ = labels
            self._multilabel = multilabel
            self.n_outputs_ = 1 if labels.shape[0] == 2 and not multilabel else labels.shape[0]
        elif multilabel != self._multilabel or (multilabel and y.shape[1] != self.classes_.shape[0]):
            raise ValueError("The type of target (or the number of labels) differs from "
                             "the one seen in the first fit / partial_fit call.")
        if multilabel:
            if self.class_weight is not None:
                raise ValueError("class_weight is not supported for multilabel targets; "
                                 "pass sample_weight instead.")
            return y.astype(np.float64), None
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"`y` has classes not in `self.classes_`: {unseen!r}. "
                             f"`self.classes_` is {self.classes_!r}.")
        codes = np.searchsorted(self.classes_, y)
        target = codes.reshape(-1, 1).astype(np.float64) if self.n_outputs_ == 1 else codes
        weights = None
        if self.class_weight is not None:
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            weights = cw[codes]
        return target, weights

    def _stratify(self, Y):
        return None if self._multilabel else Y

    def _loss(self):
        if self.n_outputs_ == 1 or self._multilabel:
            return BINARY
        return MULTICLASS

    def _score_tensor(self, out, Y, W):
        if self._multilabel:
            correct = ((out > 0) == (Y > 0.5)).all(dim=1)
        elif self.n_outputs_ == 1:
            correct = (out[:, 0] > 0) == (Y[:, 0] > 0.5)
        else:
            correct = out.argmax(dim=1) == Y
        correct = correct.to(out.dtype)
        return correct.mean() if W is None else (correct * W).sum() / W.sum()

    # ------------------------------------------------------------- partial_fit
    @available_if(lambda est: est.optimizer != "lbfgs")
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for exactly one epoch on (X, y), continuing from the last call.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            The target labels.
        classes : array-like of shape (n_classes,), default=None
            All classes that can appear in any call; required on the first
            call (not needed for multilabel indicator targets).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: one batch does not "
                "give the class frequencies. Pass class_weight=dict(zip(classes, "
                "compute_class_weight('balanced', classes=classes, y=y_sample))) computed "
                "on a large enough sample of the targets."
            )
        first = not hasattr(self, "module_")
        if not first and classes is not None and not np.array_equal(
                np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from self.classes_="
                             f"{self.classes_!r} set by the first partial_fit call.")
        if first and classes is None and type_of_target(y) != "multilabel-indicator":
            raise ValueError("classes must be passed on the first call to partial_fit: "
                             "all labels that can appear, e.g. classes=np.unique(y_all).")
        return self._fit(X, y, sample_weight, incremental=True,
                         classes=classes if first else None)

    # --------------------------------------------------------------- outputs
    def decision_function(self, X):
        """Logits: ``(n,)`` binary, ``(n, n_classes)`` multiclass, ``(n, n_labels)`` multilabel.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The positive class's logit for binary targets, else one logit per
            class or label.
        """
        out = self._forward(X, lambda z: z)
        return out[:, 0] if self.n_outputs_ == 1 and not self._multilabel else out

    def predict_proba(self, X):
        """Class probabilities, in the compute dtype.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (per label, independent, for multilabel targets).
        """
        return self._forward(X, self._proba)

    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba``, computed stably from the logits.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities.
        """
        return self._forward(X, self._log_proba)

    def predict(self, X):
        """Predicted labels (an indicator matrix for multilabel targets).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Predicted classes.
        """
        check_is_fitted(self, "module_")
        if self._multilabel:
            return self._forward(X, lambda z: (z > 0).to(torch.int64))
        if self.n_outputs_ == 1:
            codes = self._forward(X, lambda z: (z[:, 0] > 0).to(torch.int64))
        else:
            codes = self._forward(X, lambda z: z.argmax(dim=1))
        return self.classes_[codes]

    def _proba(self, z):
        if self._multilabel:
            return torch.sigmoid(z)
        if self.n_outputs_ == 1:
            p = torch.sigmoid(z)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(z, dim=1)

    def _log_proba(self, z):
        if self._multilabel:
            return F.logsigmoid(z)
        if self.n_outputs_ == 1:
            return torch.cat([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
        return torch.log_softmax(z, dim=1)

