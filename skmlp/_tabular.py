"""TabularMLPClassifier / TabularMLPRegressor: the same estimators, defaults tuned for tables.

The defaults are the ones ``benchmarks/tabular_ablation.py`` chose on real
tables (see the docs' benchmarks page for the table behind each choice). Every
parameter of ``MLPTorchClassifier`` / ``MLPTorchRegressor`` is accepted; only
the defaults differ.
"""

from ._classifier import MLPTorchClassifier
from ._params import estimator
from ._regressor import MLPTorchRegressor

# The defaults both tabular estimators change; each was kept because it paid in
# ``benchmarks/tabular_ablation.py`` (docs: benchmarks page, "Tabular defaults").
TABULAR_DEFAULTS = dict(
    missing="indicator",
    scaling="robust",
    early_stopping="auto",
    validation_fraction=0.2,
    n_iter_no_change=20,
    numeric_embedding="periodic",
    n_ensemble=4,
)


@estimator("classifier", **TABULAR_DEFAULTS, label_smoothing=0.1)
class TabularMLPClassifier(MLPTorchClassifier):
    """MLP classifier for tables (DataFrames as they are), with tuned defaults.

    :class:`MLPTorchClassifier` with defaults chosen on real tables: robust
    scaling, missing-value indicators, periodic numeric embeddings, an
    ensemble of 4 members in one network, label smoothing 0.1, and (from 1000
    training rows on) the best epoch on a held-out fifth of the data.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    is_categorical_ : ndarray of bool of shape (`n_features_in_`,)
        Which columns were taken as categorical.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when X has string column names.
    n_outputs_ : int
        Number of output units (1 for binary targets).
    module_ : torch.nn.Module
        The fitted network.
    n_iter_ : int
        Number of epochs run.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of every epoch (the members' mean).
    best_loss_ : float
        Minimum of ``loss_curve_``.
    validation_scores_ : list of float or None
        Validation accuracy per epoch.
    best_validation_score_ : float or None
        Best validation accuracy.
    history_ : list of dict
        One dict per epoch with keys "epoch", "loss", "val_score", "lr" and
        "seconds".

    See Also
    --------
    MLPTorchClassifier : The same estimator with scikit-learn's MLP defaults.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmlp import TabularMLPClassifier
    >>> df = pd.DataFrame({"x": [0.1, 0.5, None, 0.9] * 10,
    ...                    "kind": ["a", "b", "a", "c"] * 10})
    >>> clf = TabularMLPClassifier(max_iter=5, random_state=0).fit(df, [0, 1, 0, 1] * 10)
    >>> clf.is_categorical_.tolist()
    [False, True]
    """


@estimator("regressor", **TABULAR_DEFAULTS, target_scaling=True)
class TabularMLPRegressor(MLPTorchRegressor):
    """MLP regressor for tables (DataFrames as they are), with tuned defaults.

    :class:`MLPTorchRegressor` with defaults chosen on real tables: robust
    scaling, missing-value indicators, periodic numeric embeddings, an
    ensemble of 4 members in one network, standardised targets, and (from 1000
    training rows on) the best epoch on a held-out fifth of the data.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    is_categorical_ : ndarray of bool of shape (`n_features_in_`,)
        Which columns were taken as categorical.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when X has string column names.
    n_outputs_ : int
        Number of targets.
    module_ : torch.nn.Module
        The fitted network.
    n_iter_ : int
        Number of epochs run.
    t_ : int
        Number of training samples seen.
    loss_curve_ : list of float
        Mean training loss of every epoch (the members' mean, in standardised
        units).
    best_loss_ : float
        Minimum of ``loss_curve_``.
    validation_scores_ : list of float or None
        Validation R² per epoch.
    best_validation_score_ : float or None
        Best validation R².
    history_ : list of dict
        One dict per epoch with keys "epoch", "loss", "val_score", "lr" and
        "seconds".

    See Also
    --------
    MLPTorchRegressor : The same estimator with scikit-learn's MLP defaults.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmlp import TabularMLPRegressor
    >>> df = pd.DataFrame({"x": [0.1, 0.5, None, 0.9] * 10,
    ...                    "kind": ["a", "b", "a", "c"] * 10})
    >>> reg = TabularMLPRegressor(max_iter=5, random_state=0).fit(df, [1.0, 2.0, 1.5, 3.0] * 10)
    >>> reg.predict(df.head(2)).shape
    (2,)
    """
