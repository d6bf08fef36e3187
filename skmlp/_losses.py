"""Per-sample losses and their gradients with respect to the network output.

Pure torch. Each loss maps ``(out, target)`` to one value per sample (summed
or averaged over outputs as scikit-learn does) and, for the hand-written
backward pass of ``_fastpath``, to ``d loss_i / d out_i`` of the same shape as
``out``. ``target`` is a float tensor ``(n, k)`` except for the multiclass
log-loss, where it holds class indices ``(n,)``.
"""

import math

import torch
import torch.nn.functional as F


def safe_bound(dtype):
    """A bound B: if every |out| and |target| is at most B, every loss here is
    finite in ``dtype`` (they grow at most quadratically in |out| and |target|,
    or are log-sum-exps of logits); poisson lowers it for the outputs."""
    return torch.finfo(dtype).max ** 0.25


class Loss:
    """A per-sample loss: ``value(out, y)`` -> (n,), ``grad(out, y)`` -> like ``out``."""

    def value(self, out, target):
        raise NotImplementedError

    def grad(self, out, target):
        raise NotImplementedError

    def value_and_grad(self, out, target):
        """Both at once (a loss may share work between them)."""
        return self.value(out, target), self.grad(out, target)

    def safe_output_bound(self, dtype):
        """|out| at most this (and |target| at most ``safe_bound``) keeps every
        per-sample loss finite in ``dtype``."""
        return safe_bound(dtype)

    def __call__(self, out, target):
        return self.value(out, target)


class SquaredError(Loss):
    """Half squared error, averaged over outputs (scikit-learn's ``squared_loss``)."""

    def value(self, out, target):
        return 0.5 * (out - target).pow(2).mean(dim=1)

    def grad(self, out, target):
        return (out - target).div_(out.shape[1])


class AbsoluteError(Loss):
    def value(self, out, target):
        return (out - target).abs().mean(dim=1)

    def grad(self, out, target):
        return torch.sign(out - target).div_(out.shape[1])


class Huber(Loss):
    """Huber loss with delta 1.0, averaged over outputs."""

    def value(self, out, target):
        return F.huber_loss(out, target, reduction="none", delta=1.0).mean(dim=1)

    def grad(self, out, target):
        return (out - target).clamp_(-1.0, 1.0).div_(out.shape[1])


class Poisson(Loss):
    """Poisson deviance (log link) up to terms constant in the prediction."""

    def value(self, out, target):
        return (torch.exp(out) - target * out).mean(dim=1)

    def grad(self, out, target):
        return (torch.exp(out) - target).div_(out.shape[1])

    def safe_output_bound(self, dtype):
        # exp(out) must stay finite too.
        return min(safe_bound(dtype), math.log(torch.finfo(dtype).max) / 2)


class BinaryLogLoss(Loss):
    """Binary / multilabel log-loss from logits, summed over labels."""

    def value(self, out, target):
        return F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(dim=1)

    def grad(self, out, target):
        return torch.sigmoid(out) - target


class MultiLogLoss(Loss):
    """Multiclass log-loss (softmax cross-entropy) from logits."""

    def value(self, out, target):
        return F.cross_entropy(out, target, reduction="none")

    def grad(self, out, target):
        return self.value_and_grad(out, target)[1]

    def value_and_grad(self, out, target):
        # One log-softmax serves both: loss_i = -log p_i[y_i], grad = p_i - onehot(y_i).
        log_p = torch.log_softmax(out, dim=1)
        value = -log_p.gather(1, target[:, None]).squeeze(1)
        g = log_p.exp_()
        g[torch.arange(g.shape[0], device=g.device), target] -= 1
        return value, g


REGRESSION = {
    "squared_error": SquaredError(),
    "absolute_error": AbsoluteError(),
    "huber": Huber(),
    "poisson": Poisson(),
}
BINARY = BinaryLogLoss()
MULTICLASS = MultiLogLoss()
