"""MLPTorchClassifier: label encoding and class weights; the head decodes outputs."""

from dataclasses import replace

import numpy as np
from scipy import sparse
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import BaseMLPTorch
from ._heads import HEADS, classification_head
from ._params import estimator


def balanced_class_weight(counts):
    """``class_weight="balanced"``'s weight per class from the classes' (weighted)
    row counts: ``total / (n_present * count)``, scikit-learn's
    ``n_samples / (n_classes * np.bincount(y))`` when every class has rows of
    weight. A class without any (absent from this fit's rows, or on rows of
    weight zero only) gets 1: no row of weight carries it, and the others are
    balanced among themselves."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    out = np.ones_like(counts)
    out[present] = counts[present].sum() / (present.sum() * counts[present])
    return out


@estimator("classifier")
class MLPTorchClassifier(ClassifierMixin, BaseMLPTorch):
    """Multi-layer perceptron classifier trained with PyTorch.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier` whose network
    and training run in PyTorch (CPU, CUDA or MPS). Binary targets use one
    logit and a sigmoid, multiclass targets a softmax over one logit per
    class, and multilabel indicator targets one sigmoid per label.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (for multilabel targets, ``arange(n_labels)``).
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
        Number of output units (1 for binary targets).
    module_ : torch.nn.Module
        The fitted network (outputs logits).
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
        accuracy by default, weighted by ``sample_weight``) of every epoch of the
        last ``fit``, which chose the weights held; None when the last call did
        not validate.
    best_validation_score_ : float or None
        The best of ``validation_scores_``: the score of the weights kept
        (before ``calibration``).
    temperature_ : float
        The temperature the last fit divided the logits by
        (``calibration="temperature"``); 1.0 when it applied none.
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags

    # ---------------------------------------------------------------- hooks
    def _check_data(self, X, y, *, reset):
        X, y = self._check_X(X, y=y, reset=reset, multi_output=True)
        if sparse.issparse(y):  # a multilabel indicator matrix: small, so dense
            y = y.toarray()
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
        if type_of_target(y) == "multiclass-multioutput":
            raise ValueError(
                f"y has {y.shape[1]} columns of class labels that are not all 0/1 (a "
                f"multiclass-multioutput target), which {type(self).__name__} does not "
                "support: it takes binary, multiclass and multilabel-indicator (0/1 columns) "
                "targets. Fit one classifier per column, e.g. with "
                "sklearn.multioutput.MultiOutputClassifier.")
        return X, y

    def _training_loss(self):
        return self._head.training_loss(self.label_smoothing)

    def _calibrate(self, val_data, total=None, outputs=None):
        """``calibration="temperature"``: divide the logits by the temperature
        that minimises the held-out log loss (``total`` sums over Dask
        workers); ``temperature_`` records it (1.0: none applied). ``outputs``:
        the held-out rows' outputs when they are not the network's on
        ``val_data``'s X (bagging: each row's from the member it was held
        out of)."""
        temperature = 1.0
        if val_data is not None and self.calibration == "temperature":
            X, Y, W = val_data
            z = self._outputs(self.module_, X, combine=False) if outputs is None else outputs
            temperature = HEADS[self._spec.head_name].temperature(z, Y, W, total)
        if temperature != self._spec.temperature:
            self._spec = replace(self._spec, temperature=temperature)
        self.temperature_ = temperature

    def _encode_targets(self, y, *, reset, classes=None, sample_weight=None):
        multilabel = type_of_target(y) == "multilabel-indicator"
        if reset:
            labels = unique_labels(y) if classes is None else np.unique(classes)
            if multilabel:
                labels = np.arange(y.shape[1])
            elif labels.shape[0] < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the "
                    f"data, but the data contains only one class: {labels[0]!r}."
                )
            head_name = classification_head(multilabel, labels.shape[0])
            self.classes_ = labels
            self.n_outputs_ = HEADS[head_name].n_outputs(labels.shape[0])
        else:
            n_labels = y.shape[1] if multilabel else self.classes_.shape[0]
            head_name = classification_head(multilabel, n_labels)
            if head_name != self._spec.head_name or n_labels != self.classes_.shape[0]:
                raise ValueError("The type of target (or the number of labels) differs from "
                                 "the one seen in the first fit / partial_fit call.")
        head = HEADS[head_name]
        if multilabel:
            if self.class_weight is not None:
                raise ValueError("class_weight is not supported for multilabel targets; "
                                 "pass sample_weight instead.")
            return head_name, head.encode(y), None
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"`y` has classes not in `self.classes_`: {unseen!r}. "
                             f"`self.classes_` is {self.classes_!r}.")
        codes = np.searchsorted(self.classes_, y)
        weights = None
        if isinstance(self.class_weight, str):  # "balanced"
            weights = balanced_class_weight(np.bincount(codes, weights=sample_weight,
                                                        minlength=len(self.classes_)))[codes]
        elif self.class_weight is not None:
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            weights = cw[codes]
        return head_name, head.encode(codes), weights

    # ------------------------------------------------------------- partial_fit
    @available_if(lambda est: est.optimizer != "lbfgs")
    def partial_fit(self, X, y, classes=None, sample_weight=None):
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
        check_is_fitted(self, "module_")
        return self._forward(X, self._head.decision)

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
        check_is_fitted(self, "module_")
        return self._forward(X, self._head.proba)

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
        check_is_fitted(self, "module_")
        return self._forward(X, self._head.log_proba)

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
        return self._head.labels(self._forward(X, self._head.predict), self.classes_)
