"""The hyperparameters: one table, from which everything about them derives.

``PARAMETERS`` lists every hyperparameter once: name, default, check, what is
accepted, the numpydoc type and description, and which estimators take it.
From it come the constructors (``make_init``: explicit signatures that
``get_params``, ``clone``, ``repr`` and Sphinx see), the numpydoc
"Parameters" sections (``parameters_doc``) and validation at ``fit``
(``validate_params``: every message names the parameter, the value received and
what is accepted). An estimator class states only the defaults it changes.
Choices that select an implementation are read from that implementation's
table (activations, optimizers, regression heads), so validation and dispatch
cannot disagree.
"""

import inspect
import numbers
import textwrap
from dataclasses import dataclass

import numpy as np

from ._heads import REGRESSION_HEADS
from ._network import ACTIVATIONS, NUMERIC_EMBEDDINGS
from ._optim import OPTIMIZERS

SCHEDULES = ("constant", "cosine", "plateau")
DTYPES = (None, "float32", "float64", "auto")
MISSING = ("error", "indicator")
SCALINGS = ("standard", "robust")
EARLY_STOPPING = ("auto", "refit", "bagging", "finetune")


def _choice(options):
    def check(value):
        return isinstance(value, str) and value in options

    return check, "one of " + ", ".join(repr(o) for o in options)


def _real(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if not np.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        if high is not None and (value >= high if high_open else value > high):
            return False
        return True

    lo = "" if low is None else ("(" if low_open else "[") + str(low)
    hi = "" if high is None else str(high) + (")" if high_open else "]")
    return check, f"a real number in {lo or '(-inf'}, {hi or 'inf)'}"


def _int(low):
    def check(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low

    return check, f"an integer >= {low}"


def _bool():
    return (lambda v: isinstance(v, (bool, np.bool_))), "True or False"


def _hidden_dims(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0
    return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)


def _batch_size(value):
    return value == "auto" if isinstance(value, str) else _int(1)[0](value)


def _callbacks(value):
    return value is None or (
        isinstance(value, (list, tuple)) and all(callable(cb) for cb in value)
    )


def _scoring(value):
    if value is None or callable(value):
        return True
    if not isinstance(value, str):
        return False
    from sklearn.metrics import get_scorer_names

    return value == "loss" or value in get_scorer_names()


def _class_weight(value):
    return value is None or value == "balanced" or isinstance(value, dict)


def _random_state(value):
    return value is None or isinstance(value, (numbers.Integral, np.random.RandomState)) and not isinstance(value, bool)


def _categorical_features(value):
    if value is None or (isinstance(value, str) and value == "from_dtype"):
        return True
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return False
    return all(isinstance(v, (str, numbers.Integral, bool, np.bool_)) for v in value)


def _categories(value):
    return (isinstance(value, str) and value == "auto") or isinstance(value, dict)


def _device(value):
    if not isinstance(value, str):
        return False
    head, _, index = value.partition(":")
    if head == "cuda" and index:
        return index.isdigit()
    return value in ("cpu", "cuda", "mps", "auto")



def _names(options):
    return ", ".join(f'"{o}"' for o in options)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its check, default and documentation."""

    name: str
    default: object
    rule: tuple  # (check(value) -> bool, "what is accepted")
    type: str  # numpydoc type, e.g. "float" or '{"relu", ...}'
    doc: str
    tasks: tuple = ("classifier", "regressor")
    # Shapes the network, the column encoding or the optimizer state: fixed by
    # the first (cold) fit; continuing with another value needs a refit.
    frozen: bool = False


BOTH, CLF, REG = ("classifier", "regressor"), ("classifier",), ("regressor",)

PARAMETERS = (
    Param("hidden_dims", (100,),
          (_hidden_dims, "a tuple of positive integers (layer sizes), e.g. (100,) or ()"),
          "tuple of int", "Sizes of the hidden layers; ``()`` gives a linear model.",
          frozen=True),
    Param("activation", "relu", _choice(tuple(ACTIVATIONS)),
          "{" + _names(ACTIVATIONS) + "}",
          'Activation after every hidden layer (``"logistic"`` is ``"sigmoid"``).',
          frozen=True),
    Param("optimizer", "adam", _choice(tuple(OPTIMIZERS)), "{" + _names(OPTIMIZERS) + "}",
          '``"lbfgs"`` is full-batch L-BFGS-B with a line search (scipy driving torch, '
          "as scikit-learn's MLP): it ignores ``lr`` and ``batch_size``.",
          frozen=True),
    Param("lr", 1e-3, _real(0, low_open=True), "float", "Learning rate."),
    Param("momentum", 0.9, _real(0, 1, high_open=True), "float",
          "SGD momentum; for Adam/AdamW it is ``beta1``."),
    Param("nesterov", True, _bool(), "bool", "Nesterov momentum for SGD."),
    Param("weight_decay", 1e-4, _real(0), "float",
          "L2 penalty in torch's sense: ``weight_decay * w`` is added to the gradient of "
          'every weight matrix (not biases or norm layers); decoupled for ``"adamw"``.'),
    Param("batch_size", "auto", (_batch_size, "'auto' or an integer >= 1"), 'int or "auto"',
          'Minibatch size; ``"auto"`` is ``min(200, n_samples)``.'),
    Param("max_iter", 200, _int(1), "int", "Maximum number of epochs (L-BFGS: iterations)."),
    Param("lr_schedule", "constant", _choice(SCHEDULES), "{" + _names(SCHEDULES) + "}",
          '``"cosine"`` anneals ``lr`` to 0 over ``max_iter`` epochs (restarting at every '
          "``fit``, also under ``warm_start``; ``partial_fit`` calls continue it); "
          '``"plateau"`` divides it by 5 whenever ``n_iter_no_change`` epochs pass without '
          "a ``tol`` improvement and stops once it is below 1e-6."),
    Param("dropout", 0.0, _real(0, 1, high_open=True), "float",
          "Dropout probability after every hidden activation.",
          frozen=True),
    Param("batch_norm", False, _bool(), "bool", "BatchNorm1d before every hidden activation.",
          frozen=True),
    Param("early_stopping", False,
          (lambda v: _bool()[0](v) or (isinstance(v, str) and v in EARLY_STOPPING),
           "True, False, 'auto', 'refit', 'bagging' or 'finetune'"),
          'bool, "auto", "refit", "bagging" or "finetune"',
          "Hold out ``validation_fraction`` of the data (stratified for single-label "
          "classifiers; only rows of positive ``sample_weight``), stop when the validation "
          "score (``scoring``: accuracy or R² by default, as ``score``) "
          'stops improving and keep the best weights. ``"refit"``: that held-out run only '
          "chooses the number of epochs (and the ``calibration``); the network then trains "
          "again from its starting weights on all rows for that many epochs, so no row is "
          'lost to validation, for about 1.6 times the time of ``True``. ``"bagging"`` '
          "(needs ``n_ensemble >= 2``): the ensemble's members become separate networks; "
          "the rows are split into ``n_ensemble`` folds (stratified as above) and each "
          "member trains on all folds but its own and keeps its best epoch on that one, so "
          "every row trains most members and validates one; ``calibration`` is fitted on "
          "every row's prediction by the member it was held out of. ``validation_scores_`` "
          "then holds per epoch the score the bagged model would have had it stopped there "
          "(each member's best so far, averaged by fold weight), so it never falls and "
          "``best_validation_score_`` is its last value. ``\"finetune\"``: as ``True``, "
          "then the best epoch's weights train 10 more epochs (fewer where ``max_iter`` "
          "ends the fit first) on all rows, the held-out ones included, at ``lr`` with a "
          "fresh optimizer, for about 1.2 times the time of ``True``; "
          "``validation_scores_`` and ``calibration`` stay those of the held-out run. "
          '``"auto"``: ``True`` from 1000 training rows on, ``"bagging"`` from 60 to '
          "999 rows when ``n_ensemble >= 2``, nothing held out otherwise (as "
          "``HistGradientBoostingClassifier``'s ``\"auto\"``, which holds out from 10000 "
          "rows; the thresholds are measured, see the benchmarks page). ``partial_fit`` and "
          '``optimizer="lbfgs"`` never hold out.'),
    Param("scoring", None, (_scoring, "None, 'loss', a scikit-learn scorer name or a "
                            "callable scorer(estimator, X, y)"),
          'str, callable or None',
          "What early stopping monitors and the best epoch is chosen by. None: ``score``'s "
          'metric (accuracy or R²). ``"loss"``: the validation loss of the estimator\'s own '
          "loss (log loss for classifiers, without label smoothing), negated so that higher "
          "is better, as scikit-learn's ``neg_log_loss``. Any scikit-learn scorer name (e.g. "
          '``"roc_auc"``, ``"neg_mean_absolute_error"``) or callable ``scorer(estimator, X, '
          "y)``, evaluated on the held-out rows as given (with their ``sample_weight`` "
          "when the callable takes a ``sample_weight`` keyword, as scikit-learn's scorers "
          "do; unweighted otherwise). ``validation_scores_`` holds it."),
    Param("validation_fraction", 0.1, _real(0, 1, low_open=True, high_open=True), "float",
          "Share of the training data held out for early stopping."),
    Param("n_iter_no_change", 10, _int(1), "int",
          "Epochs without a ``tol`` improvement before stopping: training stops after "
          "the ``n_iter_no_change``-th such epoch in a row (scikit-learn's MLP runs "
          "one more: it stops when its count exceeds "
          "``n_iter_no_change``)."),
    Param("tol", 1e-4, _real(0), "float",
          "Improvement threshold of the training loss (or validation score)."),
    Param("shuffle", True, _bool(), "bool", "Reshuffle the samples every epoch."),
    Param("label_smoothing", 0.0, _real(0, 1, high_open=True), "float",
          "In [0, 1), as ``torch.nn.functional.cross_entropy``'s: the one-hot target "
          "becomes ``(1 - s) onehot + s / n_classes``; binary and multilabel targets move "
          "towards 0.5 by the same rule (``t (1 - s) + s / 2``).", CLF),
    Param("calibration", None,
          (lambda v: v is None or (isinstance(v, str) and v == "temperature"),
           "None or 'temperature'"),
          '"temperature" or None',
          'After a fit that held out validation rows (``early_stopping``), ``"temperature"`` '
          "divides the network's logits by the temperature that minimises the log loss of "
          "those rows (temperature scaling: sharper or softer probabilities, the same "
          "ranking of the classes, so ``predict`` does not change). When the network "
          "classifies every held-out row correctly that log loss has no minimum (it falls "
          "as the temperature does), so the rows' targets become the rule of succession's: "
          "``(n + 1) / (n + 2)`` on the true class for ``n`` held-out rows. "
          "``temperature_`` holds it; 1.0 when nothing was held out.", CLF),
    Param("target_scaling", False, _bool(), "bool",
          "Standardise each target with its (weighted) ``fit`` mean and standard "
          "deviation, train on that and undo it in ``predict`` (``loss_curve_`` is then "
          "in standardised units, and huber's delta applies in them). With "
          '``loss="poisson"`` targets are only divided by their weighted mean.', REG,
          frozen=True),
    Param("class_weight", None,
          (_class_weight, "None, 'balanced' or a dict {label: weight}"),
          'dict, "balanced" or None', "Weights per class, multiplied into ``sample_weight``.",
          CLF),
    Param("loss", "squared_error", _choice(tuple(REGRESSION_HEADS)),
          "{" + _names(REGRESSION_HEADS) + "}",
          "Half squared error (as scikit-learn, so ``loss_curve_`` compares), absolute "
          "error, Huber (delta 1.0), or Poisson deviance with a log link (the network "
          "outputs the log-mean; ``predict`` returns the mean).", REG,
          frozen=True),
    Param("categorical_features", "from_dtype",
          (_categorical_features, "'from_dtype', None, or a list of column names, column "
           "indices or a boolean mask"),
          '"from_dtype", None, or list of str, int or bool',
          'Which columns are categorical. ``"from_dtype"``: the DataFrame columns whose dtype '
          "is pandas ``category``, ``string`` or ``object``, or polars ``Categorical``, "
          "``Enum`` or ``String`` (numpy and sparse input have none); None: none (a "
          "non-numeric column is then an error); or column names, indices or a boolean "
          "mask. Each is encoded inside the network: one-hot with at most 8 categories, "
          "else a learned 8-dimensional embedding; a missing value is a category of its "
          "own and a category unseen in ``fit`` maps to zeros.",
          frozen=True),
    Param("categories", "auto", (_categories, "'auto' or a dict {column: list of categories}"),
          '"auto" or dict',
          'The categories of the categorical columns. ``"auto"``: learned from the data '
          "of the first ``fit`` or ``partial_fit`` call (rows of positive weight). A dict "
          "declares them up front for the columns it names (column names, or indices for "
          "input without names; each must be categorical): ``{\"city\": [\"Oslo\", "
          "\"Rome\"]}``. Declared lists set the encoding's size whatever the first block "
          "holds, which is what streaming through ``partial_fit`` (e.g. with Dask) needs; "
          "values outside them map to the unknown code in ``fit`` and ``predict`` alike. "
          "Columns the dict does not name are learned from the data.",
          frozen=True),
    Param("missing", "error", _choice(MISSING), "{" + _names(MISSING) + "}",
          '``"error"``: NaN in a numeric column is an error. ``"indicator"``: NaN is '
          "replaced by the column's (weighted) training median and the network gets one "
          "0/1 input per column that had missing values in ``fit``. inf is always an error.",
          frozen=True),
    Param("scaling", None, (lambda v: v is None or (isinstance(v, str) and v in SCALINGS),
                            "None, 'standard' or 'robust'"),
          "{" + _names(SCALINGS) + "} or None",
          "Numeric columns as given (None), standardised with the (weighted) mean and "
          'standard deviation from ``fit`` (``"standard"``), or centred on the median, '
          'divided by the interquartile range and smoothly clipped to (-3, 3) '
          '(``"robust"``: ``x / sqrt(1 + (x / 3)^2)``). Constant columns are not divided '
          "by zero; sparse input is scaled a batch at a time.",
          frozen=True),
    Param("numeric_embedding", None,
          (lambda v: v is None or (isinstance(v, str) and v in NUMERIC_EMBEDDINGS),
           "None, " + ", ".join(repr(k) for k in NUMERIC_EMBEDDINGS if k)),
          "{" + _names(k for k in NUMERIC_EMBEDDINGS if k) + "} or None",
          "Each numeric column (after ``missing`` and ``scaling``) passes through "
          'learned features before the MLP (Gorishniy et al., 2022, "On Embeddings for '
          'Numerical Features"). ``"periodic"``: cos and sin of 16 learned frequencies, '
          'then a linear layer of its own to 8 values with a ReLU. ``"piecewise"``: where '
          "the value lies in each of up to 16 quantile bins learned in ``fit`` (weighted "
          "by ``sample_weight``; 0 below a bin, 1 above, linear inside; beyond the "
          "training range the end bins go on by the distance to it), then a linear "
          'layer to 8 values with a ReLU. ``"periodic+piecewise"``: both side by side, '
          "4 values each. Use them with ``scaling``.",
          frozen=True),
    Param("n_ensemble", 1, _int(1), "int",
          "k > 1 trains k members inside one network on the same batches (TabM-mini, "
          "Gorishniy et al., 2025: each member scales the shared input by its own vector "
          "and has its own output layer; the hidden blocks are shared) and averages their "
          "predictions: probabilities for the classifier (``decision_function`` and "
          "``predict_log_proba`` derive from them), outputs for the regressor (means for "
          "poisson). ``loss_curve_`` is the members' mean loss. With "
          '``early_stopping="bagging"`` (the Tabular default from 60 to 999 rows) the k '
          "members are separate networks instead, each trained on its own folds.",
          frozen=True),
    Param("device", "cpu", (_device, "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"), "str",
          '``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (cuda, then mps, '
          "then cpu)."),
    Param("dtype", None, (lambda v: v in DTYPES and (v is None or isinstance(v, str)),
                          "None, 'float32', 'float64' or 'auto'"),
          '{"float32", "float64", "auto"} or None',
          "Compute dtype; ``None`` keeps float32 input in float32 and uses float64 for "
          'anything else. ``"auto"``: float32 from 1000 training rows on (the fast path, '
          "measured at 0.68x the fit time for the same errors on the benchmark's tuning "
          "tables), as None below (small fits stay exact in float64) or when a training "
          "value lies beyond float32's range (about 3.4e38). Outputs are in the compute "
          "dtype.",
          frozen=True),
    Param("random_state", None, (_random_state, "None, an integer or a numpy RandomState"),
          "int, RandomState instance or None",
          "Seeds weights, shuffling, dropout and the validation split through a local "
          "``torch.Generator``; the global RNGs are never used."),
    Param("warm_start", False, _bool(), "bool",
          "Continue from the fitted network on the next ``fit``."),
    Param("verbose", 0, (lambda v: _int(0)[0](v) or isinstance(v, (bool, np.bool_)),
                         "0, 1 or 2"), "int",
          "1 prints one line per epoch; 2 adds a progress bar over batches."),
    Param("callbacks", None,
          (_callbacks, "None or a list of callables cb(estimator, epoch, logs)"),
          "list of callables",
          "Each is called as ``cb(estimator, epoch, logs)`` after every epoch; returning "
          "True stops training."),
)
BY_NAME = {p.name: p for p in PARAMETERS}
POSITIONAL = ("hidden_dims",)  # every other parameter is keyword-only


def parameters_for(task, defaults=None):
    """[(Param, default)] of the estimators of ``task``, with ``defaults`` applied."""
    defaults = dict(defaults or {})
    params = [(p, defaults.pop(p.name, p.default)) for p in PARAMETERS if task in p.tasks]
    if defaults:
        raise TypeError(f"unknown parameter(s) for a {task}: {sorted(defaults)}")
    return params


def make_init(params):
    """An ``__init__`` that stores its arguments untouched, with an explicit
    signature (``inspect.signature`` sees it, so ``get_params``, ``clone``,
    ``repr`` and the API docs do)."""
    kinds = inspect.Parameter
    signature = inspect.Signature(
        [kinds("self", kinds.POSITIONAL_OR_KEYWORD)]
        + [kinds(p.name, kinds.POSITIONAL_OR_KEYWORD if p.name in POSITIONAL
                 else kinds.KEYWORD_ONLY, default=default) for p, default in params]
    )

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    return __init__


def _default_text(value):
    return f'"{value}"' if isinstance(value, str) else repr(value)


def parameters_doc(params, indent=4):
    """The numpydoc "Parameters" entries of ``params``."""
    lines = []
    for p, default in params:
        lines.append(f"{p.name} : {p.type}, default={_default_text(default)}")
        lines.extend(textwrap.wrap(p.doc, 79 - indent - 4, initial_indent="    ",
                                   subsequent_indent="    ", break_on_hyphens=False))
    pad = " " * indent
    return ("\n" + pad).join(lines)


def estimator(task, **defaults):
    """Class decorator: the constructor and the docstring's parameters from the table.

    The class docstring holds ``{parameters}`` where the entries go; ``defaults``
    are the defaults this class changes.
    """

    def decorate(cls):
        params = parameters_for(task, defaults)
        cls.__init__ = make_init(params)
        cls.__init__.__qualname__ = f"{cls.__name__}.__init__"
        cls.__init__.__module__ = cls.__module__
        if cls.__doc__ and "{parameters}" in cls.__doc__:
            cls.__doc__ = cls.__doc__.replace("{parameters}", parameters_doc(params))
        if cls.__doc__ and "{attributes}" in cls.__doc__:
            cls.__doc__ = cls.__doc__.replace("{attributes}", _inherited_attributes(cls))
        return cls

    return decorate


def _inherited_attributes(cls):
    """The "Attributes" section of the nearest base class that documents one
    (a subclass that changes only defaults has the same fitted attributes)."""
    for base in cls.__mro__[1:]:
        doc = base.__doc__ or ""
        start = doc.find("    Attributes\n    ----------\n")
        if start >= 0:
            end = doc.find("\n\n    See Also", start)
            return doc[start + 4:end]
    raise TypeError(f"{cls.__name__}: no base class documents its attributes")


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter has a wrong value or type (catch as either)."""


def validate_params(est):
    """Raise ``ValueError``/``TypeError`` naming the first invalid parameter.

    Parameters not in the table (a subclass's own) are the subclass's to check.
    """
    name = type(est).__name__
    for param, value in est.get_params(deep=False).items():
        if param not in BY_NAME:
            continue
        check, expected = BY_NAME[param].rule
        if not check(value):
            raise InvalidParameterError(
                f"{name}: the {param!r} parameter must be {expected}; got {value!r}."
            )


def hidden_dims_tuple(value):
    """``hidden_dims`` as a tuple of ints (a bare int means one layer)."""
    if isinstance(value, numbers.Integral):
        return (int(value),)
    return tuple(int(v) for v in value)


def _canonical(value):
    """A comparable form of a parameter value (tuples, lists and arrays alike)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def frozen_values(est):
    """The frozen parameters of ``est`` as they are now, in comparable form."""
    params = est.get_params(deep=False)
    return {p.name: _canonical(hidden_dims_tuple(params[p.name]) if p.name == "hidden_dims"
                               else params[p.name])
            for p in PARAMETERS if p.frozen and p.name in params}


def check_frozen(est, fitted):
    """``ValueError`` naming the first frozen parameter that differs from
    ``fitted`` (``frozen_values`` at the cold fit), for continued training."""
    now = frozen_values(est)
    for name, value in fitted.items():
        if name in now and now[name] != value:
            raise ValueError(
                f"{type(est).__name__}: {name}={now[name]!r} differs from the value the model "
                f"was fitted with ({value!r}); warm_start and partial_fit continue that "
                f"network, and {name} shapes the network, the column encoding or the "
                "optimizer state. Refit to change it: set warm_start=False (or use "
                "sklearn.base.clone) and call fit.")
