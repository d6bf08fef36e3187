"""Shared test helpers (not a test module)."""

import torch

from skmlp._spec import NetworkSpec

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def build_mlp(n_inputs, hidden_dims, n_outputs, *, activation="relu", dropout=0.0,
              batch_norm=False, dtype=torch.float32, generator=None, head="squared_error"):
    """The package's network for these sizes, built through its ``NetworkSpec``."""
    spec = NetworkSpec(n_inputs, tuple(hidden_dims), n_outputs, head, activation=activation,
                       dropout=dropout, batch_norm=batch_norm, dtype=_DTYPES[dtype])
    return spec.build(generator if generator is not None else torch.Generator().manual_seed(0))


def sklearn_older_than(major, minor):
    """Is the installed scikit-learn older than ``major.minor``?"""
    import re

    import sklearn

    found = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    return (int(found.group(1)), int(found.group(2))) < (major, minor)
