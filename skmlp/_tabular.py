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
# ``benchmarks/tabular_ablation.py`` (docs: benchmarks page, "Tabular defaults";
# "auto" bagging from 60 to 999 rows: the "Small tables: bagging" section; dtype="auto":
# "float32 from 1000 rows").
TABULAR_DEFAULTS = dict(
    missing="indicator",
    scaling="robust",
    early_stopping="auto",
    validation_fraction=0.2,
    n_iter_no_change=20,
    numeric_embedding="periodic+piecewise",
    n_ensemble=4,
    dtype="auto",
)


# Classifier only: the best epoch by validation log loss, lighter label smoothing
# (benchmarks/tabular_ablation.py on the 12 classification tables of the tuning
# part, 1 seed, relative to scoring=None with 0.1: error 0.963x, log loss 0.904x),
# then the temperature of the held-out rows (same tables: error 1.000x, log loss
# 0.932x; label smoothing 0 or 0.1 with it did not pay).
@estimator("classifier", **TABULAR_DEFAULTS, label_smoothing=0.05, scoring="loss",
           calibration="temperature")
class TabularMLPClassifier(MLPTorchClassifier):
    """MLP classifier for tables (DataFrames as they are), with tuned defaults.

    :class:`MLPTorchClassifier` with defaults chosen on real tables: robust
    scaling, missing-value indicators, periodic and piecewise-linear numeric
    embeddings side by side (``"periodic+piecewise"``), an ensemble of 4
    members in one network, label smoothing 0.05, and (from 1000
    training rows on) the epoch of the best validation log loss
    (``scoring="loss"``) on a held-out fifth of the data, whose log loss then
    also sets the temperature of the probabilities (``calibration``). From 60
    to 999 rows the 4 members are bagged instead (``early_stopping="auto"``):
    separate networks, each stopped on its own quarter of the rows, the
    temperature fitted on every row by the member that held it out. From
    1000 rows on it computes in float32 (``dtype="auto"``), below in float64.

    Parameters
    ----------
    {parameters}

    {attributes}

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
    scaling, missing-value indicators, periodic and piecewise-linear numeric
    embeddings side by side (``"periodic+piecewise"``), an ensemble of 4
    members in one network, standardised targets, and (from 1000
    training rows on) the best epoch on a held-out fifth of the data; from 60
    to 999 rows the 4 members are bagged (separate networks, each stopped on
    its own quarter of the rows). From 1000 rows on it computes in float32
    (``dtype="auto"``), below in float64.

    Parameters
    ----------
    {parameters}

    {attributes}

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
