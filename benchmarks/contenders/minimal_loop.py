"""A minimal hand-written torch loop: one tensor, randperm + slicing, nn.Sequential, Adam."""

import numpy as np
import torch
from torch import nn


def build(n_in, hidden, n_out, dtype):
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers).to(dtype)


def fit(task, X, y, hidden, batch, epochs, device="cpu", on_epoch=None):
    """Train; ``on_epoch(epoch)``, if given, is called after every epoch (for timing)."""
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(device)
    if task == "clf":
        classes, codes = np.unique(y, return_inverse=True)
        yt = torch.from_numpy(codes).to(device)
        n_out, loss_fn = len(classes), nn.functional.cross_entropy
    else:
        yt = torch.from_numpy(np.asarray(y, dtype=X.dtype).reshape(-1, 1)).to(device)
        n_out, loss_fn = 1, nn.functional.mse_loss
    model = build(X.shape[1], hidden, n_out, dtype).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = Xt.shape[0]
    for epoch in range(epochs):
        perm = torch.randperm(n, device=device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            loss = loss_fn(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return model, task


def predict(fitted, X):
    model, task = fitted
    param = next(model.parameters())
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(X)).to(param.device, param.dtype))
    return out.argmax(1).cpu().numpy() if task == "clf" else out[:, 0].cpu().numpy()
