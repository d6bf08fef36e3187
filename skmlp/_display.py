"""LossCurveDisplay: the training curve of a fitted estimator.

Follows scikit-learn's Display API (``from_estimator`` / ``plot``; fitted
artists in attributes ending with ``_``). matplotlib is imported only when
plotting (``pip install skmlp[plot]``).
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "LossCurveDisplay needs matplotlib: pip install 'skmlp[plot]'"
        ) from exc
    return plt


class LossCurveDisplay:
    """Training loss (and validation score) per epoch.

    Create it with :meth:`from_estimator`; the constructor only stores data.
    The validation score (present with ``early_stopping=True``) is drawn on a
    twin y-axis, since it is on another scale (accuracy or R²).

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Mean training loss of every epoch.
    validation_scores : array-like of shape (n_epochs,), default=None
        Validation score of every epoch, or None.
    estimator_name : str, default=None
        Name used in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The training-loss line.
    lines_ : list of matplotlib Line2D
        All lines drawn: the loss, then the validation score and the kept
        epoch's marker if any.
    ax_ : matplotlib Axes
        The axes of the loss.
    ax_val_ : matplotlib Axes or None
        The twin axes of the validation score (None without one).
    best_line_ : matplotlib Line2D or None
        The vertical line at the epoch whose weights were kept (the best
        validation score; None without validation scores).
    legend_ : matplotlib Legend
        The legend (below the axes when there is a validation score).
    figure_ : matplotlib Figure
        The figure holding the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skmlp import LossCurveDisplay, MLPTorchClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPTorchClassifier((16,), max_iter=30, early_stopping=True,
    ...                          random_state=0).fit(X, y)
    >>> disp = LossCurveDisplay.from_estimator(clf)
    >>> len(disp.lines_)
    3
    """

    def __init__(self, loss_curve, validation_scores=None, *, estimator_name=None):
        self.loss_curve = loss_curve
        self.validation_scores = validation_scores
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, loss_kwargs=None,
                       validation_kwargs=None):
        """Plot the loss curve of a fitted skmlp estimator.

        Parameters
        ----------
        estimator : MLPTorchClassifier, MLPTorchRegressor or Pipeline
            A fitted estimator (``loss_curve_``, ``validation_scores_``), or a
            fitted pipeline (or search) whose final estimator is one.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Legend name; the estimator's class name when None.
        loss_kwargs, validation_kwargs : dict, default=None
            Passed to ``ax.plot`` for the loss and the validation line.

        Returns
        -------
        display : LossCurveDisplay
        """
        estimator = _final_estimator(estimator)
        check_is_fitted(estimator, "loss_curve_")
        display = cls(
            estimator.loss_curve_,
            getattr(estimator, "validation_scores_", None),
            estimator_name=name or type(estimator).__name__,
        )
        return display.plot(ax=ax, loss_kwargs=loss_kwargs,
                            validation_kwargs=validation_kwargs)

    def plot(self, ax=None, *, name=None, loss_kwargs=None, validation_kwargs=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None. With validation scores
            the legend goes below the axes: a new figure makes room for it,
            a figure you pass keeps its layout (use ``layout="constrained"``
            or ``fig.subplots_adjust(bottom=0.22)``).
        name : str, default=None
            Legend name; ``estimator_name`` when None.
        loss_kwargs, validation_kwargs : dict, default=None
            Passed to ``ax.plot`` for the loss and the validation line.

        Returns
        -------
        display : LossCurveDisplay
            ``self``, with the fitted artists set.
        """
        plt = _pyplot()
        own_figure = ax is None
        if own_figure:
            _, ax = plt.subplots()
        name = name or self.estimator_name
        loss = np.asarray(self.loss_curve, dtype=float)
        epochs = np.arange(1, loss.shape[0] + 1)
        label = "training loss" if name is None else f"{name} training loss"
        (self.line_,) = ax.plot(epochs, loss, **{"label": label, **(loss_kwargs or {})})
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        self.lines_ = [self.line_]
        self.ax_val_ = None
        self.best_line_ = None
        if self.validation_scores is not None:
            scores = np.asarray(self.validation_scores, dtype=float)
            # The scores belong to the last fit: its epochs end the loss curve.
            val_epochs = np.arange(loss.shape[0] - scores.shape[0] + 1, loss.shape[0] + 1)
            self.ax_val_ = ax.twinx()
            kwargs = {"label": "validation score", "color": "C1", **(validation_kwargs or {})}
            (val_line,) = self.ax_val_.plot(val_epochs, scores, **kwargs)
            self.ax_val_.set_ylabel("validation score")
            self.lines_.append(val_line)
            if np.isfinite(scores).any():
                best = int(val_epochs[np.nanargmax(scores)])
                self.best_line_ = ax.axvline(best, color="0.4", linestyle="--", linewidth=1,
                                             label=f"weights kept (epoch {best})")
                self.lines_.append(self.best_line_)
            # Below the axes, where no curve can hide it or be hidden by it.
            self.legend_ = ax.legend(self.lines_, [line.get_label() for line in self.lines_],
                                     loc="upper center", bbox_to_anchor=(0.5, -0.14),
                                     ncol=len(self.lines_), frameon=False)
            if own_figure:  # room for it; a figure the caller made keeps its layout
                ax.figure.subplots_adjust(bottom=0.22)
        else:
            self.legend_ = ax.legend(self.lines_, [line.get_label() for line in self.lines_],
                                     loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


def _final_estimator(estimator):
    """The model inside a fitted pipeline or search (the estimator itself otherwise)."""
    while True:
        if hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif hasattr(estimator, "steps") and hasattr(estimator, "named_steps"):
            estimator = estimator.steps[-1][1]
        else:
            return estimator
