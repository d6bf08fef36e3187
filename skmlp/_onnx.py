"""Export a fitted skmlp estimator's network to ONNX.

Imported by ``skmlp`` without importing ``onnx`` or ``torch.onnx``: both are
loaded when ``to_onnx`` is called (install them with ``pip install
skmlp[onnx]``).

Two kinds of graph:

* one float32 input ``"X"`` (models without categorical columns, the default
  for them): the network and its output transform, exported by
  ``torch.onnx.export``;
* one input per column (models with categorical columns, or
  ``inputs="columns"``): a small ``ai.onnx.ml`` front end turns each
  categorical column into the codes ``predict`` uses (``_columns``: ``0 ..
  k-1`` the sorted categories, ``k`` missing, ``k + 1`` unknown) and stacks
  the numeric columns, then the same exported network (whose table input
  one-hot codes or embeds the codes, fills, flags and scales) follows.
"""

import contextlib
import copy
import json
import logging
import numbers
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._columns import _column, _is_missing, _library, column_names, is_dataframe

# The integer fed for a missing value of an int64 categorical input, and the
# one ``onnx_inputs`` feeds for a value that cannot be an integer category.
INT_MISSING = int(np.iinfo(np.int64).min)
INT_OTHER = INT_MISSING + 1
ML_OPSET = 3  # ai.onnx.ml: LabelEncoder-2
METADATA_KEY = "skmlp.columns"  # per input: its column index and kind
PREFIX = "skmlp/"  # the network's own names inside the combined graph


class _WithOutputTransform(torch.nn.Module):
    """The fitted network followed by the head's output (``predict_proba`` /
    ``predict``), flattened to 1-d for a regressor fitted on a 1-d target.

    ``forward(x, x_cat=None)`` takes the network's inputs: ``X``, ``x_num``
    or ``(x_num, x_cat)``; with ``no_numeric`` its one input is ``x_cat``
    (``x_num`` is then an empty ``(n, 0)`` tensor made here)."""

    def __init__(self, module, output, flatten, affine=None, combine=None, no_numeric=False):
        super().__init__()
        self.module = module
        self.combine = combine
        self.output = output
        self.flatten = flatten
        self.no_numeric = no_numeric
        self.affine = None
        if affine is not None:  # target_scaling: back to the target's units
            self.register_buffer("shift", torch.as_tensor(affine[0], dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(affine[1], dtype=torch.float32))
            self.affine = True

    def forward(self, x, x_cat=None):
        if self.no_numeric:  # the one input is x_cat
            x, x_cat = torch.zeros((x.shape[0], 0), dtype=torch.float32), x
        inputs = (x,) if x_cat is None else (x, x_cat)
        z = self.module(*inputs)
        out = self.output(z if self.combine is None else self.combine(z))
        if self.affine:
            out = out * self.scale + self.shift
        return out[:, 0] if self.flatten else out


def to_onnx(estimator, X_sample, path=None, *, opset_version=None, inputs="auto",
            missing_string=""):
    """Export a fitted estimator, with its column encoding and output transform, to ONNX.

    **Inputs.** A model without categorical columns gets, by default, one
    float32 input ``"X"`` of shape ``(n_samples, n_features)``. A model with
    categorical columns (or any model with ``inputs="columns"``) gets one
    input per column, in column order, each of shape ``(n_samples, 1)``,
    named as ``feature_names_in_`` (``"x0"``, ``"x1"``, ... for a model
    fitted without column names):

    * numeric column: float32, NaN for a missing value;
    * categorical column whose categories are strings: string, and
      ``missing_string`` for a missing value;
    * categorical column whose categories are integers (or bools): int64,
      and ``-2**63`` for a missing value;
    * categorical column with other numeric categories: float64, NaN for a
      missing value.

    Categories are encoded inside the graph exactly as ``predict`` does: the
    sorted categories of ``fit`` (or ``categories``) are codes ``0 .. k-1``,
    a missing value has code ``k`` and any other value ("unknown") ``k + 1``;
    the network then one-hot codes or embeds them, and fills, flags and
    scales the numeric columns, as in ``predict``. :func:`onnx_inputs` turns a
    DataFrame or array into this input dict (missing values included).

    **Output.** One output:

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
    estimator : MLPTorchClassifier, MLPTorchRegressor, TabularMLPClassifier or TabularMLPRegressor
        A fitted estimator.
    X_sample : array-like or DataFrame of shape (n_samples, n_features)
        A few rows of input, used to check the number of columns (and, for
        a DataFrame, their names) and to trace the ``"X"`` graph.
    path : str or path-like, default=None
        Where to save the model; nothing is written when None.
    opset_version : int, default=None
        ONNX opset of the network; None lets torch choose. The column front
        end uses the ``ai.onnx.ml`` opset 3 (``LabelEncoder``).
    inputs : {"auto", "columns"}, default="auto"
        ``"auto"``: one input per column when the model has categorical
        columns, else the single input ``"X"``. ``"columns"``: one input per
        column for every model.
    missing_string : str, default=""
        What stands for a missing value in a string input (string tensors
        cannot hold None). It must not be one of the column's categories;
        another value that is not a category is "unknown", as in
        ``predict``. Stored in the model's metadata, where
        :func:`onnx_inputs` reads it.

    Returns
    -------
    model : onnx.ModelProto
        The exported model (``onnxruntime.InferenceSession(
        model.SerializeToString())`` runs it).

    See Also
    --------
    onnx_inputs : The input dict of a DataFrame or array for this model.

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

    A table with a text column and missing values:

    >>> import pandas as pd
    >>> from skmlp import TabularMLPClassifier, onnx_inputs
    >>> df = pd.DataFrame({"x": [0.1, 0.5, None, 0.9] * 10,
    ...                    "kind": ["a", "b", None, "c"] * 10})
    >>> clf = TabularMLPClassifier(max_iter=5, random_state=0).fit(df, [0, 1, 0, 1] * 10)
    >>> model = to_onnx(clf, df)
    >>> [i.name for i in model.graph.input]
    ['x', 'kind']
    >>> session = ort.InferenceSession(model.SerializeToString())
    >>> new = pd.DataFrame({"x": [0.3, None], "kind": ["b", "never seen"]})
    >>> proba = session.run(None, onnx_inputs(session, new))[0]
    >>> bool(np.allclose(proba, clf.predict_proba(new), atol=1e-5))
    True
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_onnx needs onnx and onnxscript: pip install 'skmlp[onnx]'") from exc
    check_is_fitted(estimator, "module_")
    if inputs not in ("auto", "columns"):
        raise ValueError(f"inputs={inputs!r}: use 'auto' (one input per column when the model "
                         "has categorical columns, else 'X') or 'columns'.")
    if not isinstance(missing_string, str):
        raise TypeError(f"missing_string must be a str; got {missing_string!r}.")
    layout = estimator._layout
    if inputs == "auto" and not np.any(layout.categorical):
        model = _export_matrix(estimator, X_sample, opset_version)
    else:
        model = _export_columns(estimator, X_sample, opset_version, missing_string)
    onnx.checker.check_model(model)
    if path is not None:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return model


def _wrapped(estimator, no_numeric=False):
    """The network in float32 on the CPU, with the head's output transform."""
    head = estimator._spec.head
    flatten = not head.is_classifier and estimator._y_ndim == 1
    module = copy.deepcopy(estimator.module_).to("cpu", torch.float32).eval()
    affine = getattr(estimator, "_target_affine", None)
    wrapped = _WithOutputTransform(module, head.output, flatten, affine, head.combine,
                                   no_numeric=no_numeric)
    return wrapped.eval(), ("probabilities" if head.is_classifier else "predictions")


def _torch_export(wrapped, args, input_names, output, opset_version):
    """``torch.onnx.export`` (dynamo) with the rows dimension left free."""
    rows = torch.export.Dim("n_samples")
    with warnings.catch_warnings(), _quiet_loggers("torch"):
        warnings.simplefilter("ignore")  # torch.export chatter (e.g. torchvision missing)
        program = torch.onnx.export(
            wrapped, args, dynamo=True, verbose=False, input_names=input_names,
            output_names=[output], opset_version=opset_version,
            dynamic_shapes=tuple({0: rows} for _ in args),
        )
    return program.model_proto


def _export_matrix(estimator, X_sample, opset_version):
    """The graph with one float32 input ``"X"`` (no categorical columns)."""
    X = np.asarray(_dense(X_sample), dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X_sample must have shape (n_samples, {estimator.n_features_in_}); got {X.shape}."
        )
    if X.shape[0] < 2:  # a batch of 1 would be traced as a constant size
        X = np.repeat(X, 2, axis=0)
    wrapped, output = _wrapped(estimator)
    return _torch_export(wrapped, (torch.from_numpy(X[:2]),), ["X"], output, opset_version)


# ------------------------------------------------------------ one input per column
def input_names(estimator):
    """The graph's input names: ``feature_names_in_``, else ``x0, x1, ...``."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [f"x{j}" for j in range(estimator.n_features_in_)]


def _category_kind(categories, name):
    """``"string"``, ``"int64"`` or ``"double"``: the input type of a categorical
    column with these (sorted, non-missing) categories."""
    if all(isinstance(c, str) for c in categories):
        return "string"
    if all(isinstance(c, numbers.Integral) for c in categories):
        bad = [c for c in categories if not INT_OTHER < int(c) < 2**63]
        if bad:
            raise ValueError(f"categorical column {name!r} has the category {bad[0]!r}, which "
                             f"the int64 input cannot hold (or reserves for missing values).")
        return "int64"
    if all(isinstance(c, numbers.Real) for c in categories):
        if any(isinstance(c, numbers.Integral) and abs(int(c)) > 2**53 for c in categories):
            raise ValueError(f"categorical column {name!r} mixes integer and float categories "
                             "and has integers beyond 2**53, which a float64 input cannot hold "
                             "exactly.")
        return "double"
    kinds = sorted({type(c).__name__ for c in categories})
    raise ValueError(f"to_onnx exports categorical columns whose categories are all strings or "
                     f"all numbers; column {name!r} has categories of types {kinds}. Convert "
                     "the column (e.g. to str) before fitting to export it.")


def _check_sample(estimator, X_sample, names):
    n = estimator.n_features_in_
    shape = getattr(X_sample, "shape", None)
    if shape is None:
        shape = np.shape(X_sample)
    if len(shape) != 2 or shape[1] != n:
        raise ValueError(f"X_sample must have shape (n_samples, {n}); got {tuple(shape)}.")
    given = column_names(X_sample)
    if given is not None and getattr(estimator, "feature_names_in_", None) is not None \
            and given != names:
        raise ValueError(f"X_sample's columns {given} are not the columns the model was "
                         f"fitted on, {names}: pass rows with the same columns, in order.")


def _export_columns(estimator, X_sample, opset_version, missing_string):
    """The graph with one input per column: a front end of ``ai.onnx.ml`` and
    standard ops that builds ``x_num`` and ``x_cat``, then the network."""
    import onnx
    from onnx import TensorProto, helper

    names = input_names(estimator)
    _check_sample(estimator, X_sample, names)
    layout = estimator._layout
    mask = np.asarray(layout.categorical, dtype=bool)
    clash = [n for n in names if n.startswith(PREFIX)]
    if clash:
        raise ValueError(f"column names starting with {PREFIX!r} are reserved for the "
                         f"graph's own names: rename {clash}.")
    n_num, n_cat = int((~mask).sum()), int(mask.sum())

    # The network, traced on two rows of valid codes (its graph does not depend on values).
    wrapped, output = _wrapped(estimator, no_numeric=n_num == 0)
    args, net_inputs = [], []
    if n_num:
        args.append(torch.zeros((2, n_num), dtype=torch.float32))
        net_inputs.append("x_num")
    if n_cat:
        args.append(torch.zeros((2, n_cat), dtype=torch.int64))
        net_inputs.append("x_cat")
    net = _torch_export(wrapped, tuple(args), net_inputs, output, opset_version)
    if output in names:
        raise ValueError(f"a column is named {output!r}, like the graph's output: rename it.")
    _prefix_names(net.graph, PREFIX, keep={output})

    nodes, inits, graph_inputs, columns = [], [], [], []
    rows = "n_samples"
    num_parts, cat_parts = [], []
    categories = iter(layout.categories)
    for j, name in enumerate(names):
        if not mask[j]:
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, 1]))
            num_parts.append(name)
            columns.append({"index": j, "kind": "float"})
            continue
        cats = list(next(categories))
        kind = _category_kind(cats, name)
        k = len(cats)
        code = f"{PREFIX}code/{j}"
        if kind == "string":
            if missing_string in cats:
                raise ValueError(f"missing_string={missing_string!r} is a category of column "
                                 f"{name!r}: pass another missing_string to to_onnx.")
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING,
                                                              [rows, 1]))
            nodes.append(helper.make_node(
                "LabelEncoder", [name], [code], domain="ai.onnx.ml", name=code,
                keys_strings=cats + [missing_string], values_int64s=list(range(k + 1)),
                default_int64=k + 1))
        elif kind == "int64":
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [rows, 1]))
            nodes.append(helper.make_node(
                "LabelEncoder", [name], [code], domain="ai.onnx.ml", name=code,
                keys_int64s=[int(c) for c in cats] + [INT_MISSING],
                values_int64s=list(range(k + 1)), default_int64=k + 1))
        else:  # float64 categories: compare with each (exact), NaN is missing
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE,
                                                              [rows, 1]))
            nodes.extend(_double_codes(helper, name, code, [float(c) for c in cats], inits))
        cat_parts.append(code)
        columns.append({"index": j, "kind": kind})
    if num_parts:
        nodes.append(helper.make_node("Concat", num_parts, [PREFIX + "x_num"], axis=1))
    if cat_parts:
        nodes.append(helper.make_node("Concat", cat_parts, [PREFIX + "x_cat"], axis=1))

    graph = net.graph
    front = list(nodes)
    del graph.input[:]
    graph.input.extend(graph_inputs)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(front + body)
    graph.initializer.extend(inits)
    graph.name = "skmlp"
    imports = {op.domain: op.version for op in net.opset_import}
    if imports.get("ai.onnx.ml", ML_OPSET) != ML_OPSET:  # pragma: no cover - torch never adds it
        raise RuntimeError("the exported network already imports another ai.onnx.ml opset")
    if "ai.onnx.ml" not in imports:
        net.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    named = getattr(estimator, "feature_names_in_", None) is not None
    onnx.helper.set_model_props(net, {METADATA_KEY: json.dumps({"named": named,
                                                                "columns": columns}),
                                      "skmlp.missing_string": missing_string})
    return net


def _double_codes(helper, name, code, cats, inits):
    """Nodes giving a float64 column's codes: the index of the equal category
    (compared exactly), ``k`` for NaN, ``k + 1`` for any other value."""
    from onnx import TensorProto, numpy_helper

    k = len(cats)
    p = f"{PREFIX}double/{name}/"
    for suffix, value in (("cats", np.asarray([cats], dtype=np.float64)),
                          ("axis", np.asarray([1], dtype=np.int64)),
                          ("zero", np.asarray(0, dtype=np.int64)),
                          ("missing", np.asarray(k, dtype=np.int64)),
                          ("unknown", np.asarray(k + 1, dtype=np.int64))):
        inits.append(numpy_helper.from_array(value, p + suffix))
    return [
        helper.make_node("Equal", [name, p + "cats"], [p + "eq"]),  # (n, k)
        helper.make_node("Cast", [p + "eq"], [p + "eqi"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", [p + "eqi", p + "axis"], [p + "count"], keepdims=1),
        helper.make_node("Greater", [p + "count", p + "zero"], [p + "found"]),
        helper.make_node("Cast", [p + "eq"], [p + "eqf"], to=TensorProto.FLOAT),
        helper.make_node("ArgMax", [p + "eqf"], [p + "index"], axis=1, keepdims=1),
        helper.make_node("Where", [p + "found", p + "index", p + "unknown"], [p + "known"]),
        helper.make_node("IsNaN", [name], [p + "nan"]),
        helper.make_node("Where", [p + "nan", p + "missing", p + "known"], [code]),
    ]


def _prefix_names(graph, prefix, keep):
    """Prefix every name in ``graph`` (edges, initializers, value infos, nodes)
    except those in ``keep``, so the column inputs cannot clash with them."""
    def rename(name):
        return name if not name or name in keep else prefix + name

    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g") or len(attribute.graphs):  # pragma: no cover
                raise RuntimeError("the exported network has a subgraph; to_onnx cannot "
                                   "combine it with the column inputs.")
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name)
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            value.name = rename(value.name)
    for init in graph.initializer:
        init.name = rename(init.name)


# ------------------------------------------------------------------ feeding it
def onnx_inputs(model, X):
    """The input dict of ``X`` (a DataFrame or array) for a graph from :func:`to_onnx`.

    Reads the graph's inputs (their names and types) and, for a graph with
    one input per column, the metadata ``to_onnx`` stored. Columns are taken
    by name from a pandas or polars DataFrame (when the model was fitted with
    column names), by position otherwise. Missing
    values (None, NaN, ``pd.NA``, polars nulls) become what the graph reads
    as missing: NaN in float inputs, ``missing_string`` in string inputs,
    ``-2**63`` in int64 inputs. In a string input any other value is
    passed as ``str(value)``; in an int64 input a value that is not an
    integer becomes a number that is no category ("unknown", as in
    ``predict``).

    Parameters
    ----------
    model : onnx.ModelProto or onnxruntime.InferenceSession
        The exported model, or a session running it.
    X : DataFrame or array-like of shape (n_samples, n_features)
        The rows to predict.

    Returns
    -------
    feed : dict
        ``{input name: numpy array}``, for ``session.run(None, feed)``.
    """
    specs, meta = _graph_inputs(model)
    if [name for name, _ in specs] == ["X"] and METADATA_KEY not in meta:
        return {"X": np.asarray(_dense(X), dtype=np.float32)}
    stored = json.loads(meta[METADATA_KEY])
    columns = stored["columns"]
    missing_string = meta.get("skmlp.missing_string", "")
    n = X.shape[1] if hasattr(X, "shape") else np.shape(X)[1]
    given = column_names(X) if stored["named"] else None  # else by position
    feed = {}
    for (name, _), column in zip(specs, columns):
        if given is not None:
            if name not in given:
                raise ValueError(f"X has no column {name!r}; the model's inputs are "
                                 f"{[s[0] for s in specs]}.")
            j = given.index(name)
        else:
            j = column["index"]
            if j >= n:
                raise ValueError(f"X has {n} columns; the model has {len(specs)} inputs.")
        feed[name] = _feed_column(X, j, column["kind"], missing_string)
    return feed


def _dense(X):
    """A sparse matrix densified (the graph's input is dense); anything else as it is."""
    return X.toarray() if hasattr(X, "toarray") else X


def _graph_inputs(model):
    """``([(name, type), ...], metadata)`` of a ModelProto or an InferenceSession."""
    if hasattr(model, "get_inputs"):  # onnxruntime.InferenceSession
        return ([(i.name, i.type) for i in model.get_inputs()],
                dict(model.get_modelmeta().custom_metadata_map))
    if hasattr(model, "graph"):
        return ([(i.name, i.type.tensor_type.elem_type) for i in model.graph.input],
                {p.key: p.value for p in model.metadata_props})
    raise TypeError(f"model must be an onnx.ModelProto or an onnxruntime.InferenceSession; "
                    f"got {type(model).__name__}.")


def _feed_column(X, j, kind, missing_string):
    """Column ``j`` of X as an ``(n, 1)`` array of the input's type."""
    if kind == "float":
        return _float_column(X, j, np.float32)
    if kind == "double":
        values = _column(X, j)
        out = np.array([np.nan if m else (float(v) if isinstance(v, numbers.Real) else np.inf)
                        for v, m in zip(values, _is_missing(values))], dtype=np.float64)
        return out.reshape(-1, 1)
    values = _column(X, j)
    missing = _is_missing(values)
    if kind == "string":
        out = np.array([missing_string if m else (v if isinstance(v, str) else str(v))
                        for v, m in zip(values, missing)], dtype=object)
    else:  # int64
        out = np.array([INT_MISSING if m else _as_int(v) for v, m in zip(values, missing)],
                       dtype=np.int64)
    return out.reshape(-1, 1)


def _as_int(v):
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real) and float(v).is_integer() and abs(v) < 2**63:
        return int(v)
    return INT_OTHER


def _float_column(X, j, dtype):
    lib = _library(X)
    if lib == "pandas" and is_dataframe(X):
        col = X.iloc[:, j]
        try:
            return col.to_numpy(dtype=dtype, na_value=np.nan).reshape(-1, 1)
        except (TypeError, ValueError):
            pass
    elif lib == "polars" and is_dataframe(X):
        return np.asarray(X.to_series(j).to_numpy(), dtype=dtype).reshape(-1, 1)
    elif hasattr(X, "toarray"):
        return np.asarray(X[:, [j]].toarray(), dtype=dtype)
    else:
        arr = np.asarray(X)
        if arr.dtype != object:
            return arr[:, j].astype(dtype).reshape(-1, 1)
    values = _column(X, j)
    return np.array([np.nan if m else v for v, m in zip(values, _is_missing(values))],
                    dtype=dtype).reshape(-1, 1)


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
