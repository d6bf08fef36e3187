"""The one description of a fitted network: inputs, blocks, head.

A ``NetworkSpec`` is plain data (ints, strings, a tuple), fixed at the start
of a fit. Everything else derives from it: the module (``build``), thread
sizing (``macs``), predict batch sizes (``widths``), the loss, link and decode
(``head``), persistence (``to_dict`` / ``from_dict``: the pickle stores the
spec, not the module's class) and ONNX export. Pure torch.
"""

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from ._heads import HEADS, TemperedHead
from ._network import bin_count, build, table_width

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class NetworkSpec:
    """What the network is.

    n_inputs : width of the numeric input ``x (n, n_inputs)``.
    hidden_dims : widths of the hidden blocks.
    n_outputs : width of the output layer (logits / raw outputs).
    head_name : key of ``_heads.HEADS``: the loss, link and decoding of the outputs.
    activation : key of ``_network.ACTIVATIONS``.
    dropout, batch_norm : per hidden block.
    dtype : ``"float32"`` or ``"float64"``.
    cardinalities : codes per categorical column (categories, missing,
        unknown), in column order; ``x_cat`` then holds one code per column.
    missing, indicator_columns : ``"indicator"`` fills NaN in the numeric
        input with ``fill`` and appends a 0/1 flag for each listed column.
    scaling, fill, shift, scale : ``None``, ``"standard"`` or ``"robust"``,
        with the per-column statistics learned in ``fit`` (``_columns``).
    numeric_embedding : a key of ``_network.NUMERIC_EMBEDDINGS`` (after
        filling and scaling).
    bins : per numeric column, the increasing edges of the piecewise
        embedding's quantile bins, in the column's units (() without it).
    n_ensemble : members trained inside the network (TabM-mini: their own
        input scaling and output layer, shared blocks); outputs
        ``(n, n_ensemble, n_outputs)``, combined by the head.
    bagged : the members are separate networks (``_network.Bag``, from
        ``early_stopping="bagging"``), each trained without its own fold.
    temperature : classifiers' calibration, set after training: the head's
        combined logits are divided by it (1.0: as they are).
    """

    n_inputs: int
    hidden_dims: tuple
    n_outputs: int
    head_name: str
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    dtype: str = "float64"
    cardinalities: tuple = ()
    missing: str = "error"
    indicator_columns: tuple = ()
    scaling: Optional[str] = None
    fill: tuple = ()
    shift: tuple = ()
    scale: tuple = ()
    numeric_embedding: Optional[str] = None
    bins: tuple = ()
    n_ensemble: int = 1
    bagged: bool = False
    temperature: float = 1.0

    @property
    def torch_dtype(self):
        return TORCH_DTYPES[self.dtype]

    @property
    def head(self):
        """The ``Head`` object (loss, link, decoding)."""
        head = HEADS[self.head_name]
        return head if self.temperature == 1.0 else TemperedHead(head, self.temperature)

    def table(self):
        """The table input's options, or None when the numeric input goes in as it is."""
        if not (self.cardinalities or self.missing == "indicator" or self.scaling
                or self.numeric_embedding):
            return None
        return dict(cardinalities=self.cardinalities, indicator_columns=self.indicator_columns,
                    missing=self.missing, scaling=self.scaling,
                    numeric_embedding=self.numeric_embedding,
                    bins=bin_count(self.bins) if self.bins else 0)

    def input_width(self):
        """Width of the first hidden block's input (after the table input)."""
        return table_width(self.n_inputs, self.cardinalities, self.indicator_columns,
                           self.numeric_embedding)

    def widths(self):
        """Input, hidden and output widths, in order."""
        return [self.input_width(), *self.hidden_dims, self.n_outputs]

    def macs(self, rows):
        """Multiply-adds of one forward pass of ``rows`` rows."""
        w = self.widths()
        return rows * self.n_ensemble * sum(a * b for a, b in zip(w[:-1], w[1:]))

    def build(self, generator):
        """The initialised module on the CPU (weights drawn from ``generator``)."""
        return build(self, generator)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, state):
        tuples = ("hidden_dims", "cardinalities", "indicator_columns", "fill", "shift", "scale")
        state = {k: tuple(v) if k in tuples else v for k, v in state.items()}
        if "bins" in state:
            state["bins"] = tuple(tuple(e) for e in state["bins"])
        return cls(**state)
