"""skorch with an equivalent module (float32, as skorch requires)."""

import numpy as np
from torch import nn

from .minimal_loop import build


def available():
    try:
        import skorch  # noqa: F401
    except ImportError:
        return False
    return True


def fit(task, X, y, hidden, batch, epochs, device="cpu", callbacks=None):
    """Train; ``callbacks`` (skorch callbacks) are passed to the net (for timing)."""
    import torch
    from skorch import NeuralNetClassifier, NeuralNetRegressor

    X = np.asarray(X, dtype=np.float32)
    common = dict(max_epochs=epochs, batch_size=batch, lr=1e-3, optimizer=torch.optim.Adam,
                  train_split=None, verbose=0, device=device, iterator_train__shuffle=True,
                  callbacks=callbacks)
    if task == "clf":
        n_out = len(np.unique(y))
        net = NeuralNetClassifier(build(X.shape[1], hidden, n_out, torch.float32),
                                  criterion=nn.CrossEntropyLoss, **common)
        return net.fit(X, np.asarray(y, dtype=np.int64))
    net = NeuralNetRegressor(build(X.shape[1], hidden, 1, torch.float32), **common)
    return net.fit(X, np.asarray(y, dtype=np.float32).reshape(-1, 1))
