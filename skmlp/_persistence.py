"""The pickled form of a fitted estimator: numpy and builtins only.

Torch objects (the network's state dict, the optimizer state, the generator
state, the dtype) are stored as numpy arrays copied from CPU tensors and
strings, so a pickle never holds device tensors (a model fitted on CUDA loads
on a CPU-only machine), and skops, which knows numpy but not torch, can store
the estimator too. The network is rebuilt from its architecture on load, on
its saved device when this machine has it, else on the CPU. The network's
``NetworkSpec`` is stored as a dict and the module rebuilt from it on load.
"""

import numpy as np
import torch

from ._columns import ColumnLayout
from ._data import resolve_device
from ._spec import NetworkSpec
from ._training import TrainState

TRAIN_STATE_FIELDS = tuple(TrainState.__dataclass_fields__)


def pack(state):
    """The estimator's ``__dict__`` copy -> a state of numpy arrays and builtins."""
    module = state.pop("module_", None)
    if module is not None:
        state["_module_device"] = str(next(module.parameters()).device)
        state["_module_state"] = to_numpy(dict(module.state_dict()))
    if "_state" in state:
        state["_state"] = to_numpy(dict(state["_state"].__dict__))
    if "_rng_state" in state:
        state["_rng_state"] = to_numpy(state["_rng_state"])
    if "_spec" in state:
        state["_spec"] = state["_spec"].to_dict()
    if "_layout" in state:
        state["_layout"] = state["_layout"].to_dict()
    return state


def unpack(state):
    """The inverse of ``pack``; returns (state, module or None)."""
    state = dict(state)
    module_state = state.pop("_module_state", None)
    device = state.pop("_module_device", "cpu")
    if "_rng_state" in state:
        state["_rng_state"] = to_torch(state["_rng_state"])
    if isinstance(state.get("_spec"), dict):
        state["_spec"] = NetworkSpec.from_dict(state["_spec"])
    if isinstance(state.get("_layout"), dict):
        state["_layout"] = ColumnLayout.from_dict(state["_layout"])
    if isinstance(state.get("_state"), dict):
        train = {k: v for k, v in state["_state"].items() if k in TRAIN_STATE_FIELDS}
        if "best_loss" not in train:  # saved before the state kept it
            train["best_loss"] = min(train.get("loss_curve", ()), default=None)
        state["_state"] = TrainState(**{**train,
                                        "optimizer_state": to_torch(train["optimizer_state"])})
    if module_state is None:
        return state, None
    # A throwaway generator: the weights are overwritten by the saved ones.
    module = state["_spec"].build(torch.Generator().manual_seed(0))
    module.load_state_dict(to_torch(module_state))
    return state, module.to(available(device)).eval()


def available(device):
    """``device`` if this machine has it, else the CPU."""
    try:
        return resolve_device(device)
    except (ValueError, RuntimeError):
        return torch.device("cpu")


def to_numpy(obj):
    """Tensors (nested in dicts, lists, tuples) as numpy copies made on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


def to_torch(obj):
    """The inverse of ``to_numpy``."""
    if isinstance(obj, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, dict):
        return {k: to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_torch(v) for v in obj)
    return obj
