"""Output heads: the loss, the link and the decoding of each task (pure torch).

A ``Head`` is everything that depends on what the outputs mean: how targets
are laid out for training, the per-sample loss and its gradient (for the
hand-written backward pass of ``_fastpath``), the link from raw outputs to
predictions (probabilities, means), the decoding into labels, and the
validation score. ``HEADS`` is the one table: estimators pick an entry by name
(``NetworkSpec.head_name``), parameter validation reads its regression keys,
and training, predict, score, early stopping and ONNX export all use the same
object. Adding a regression loss with a link is one ``Loss`` and one entry.

Losses map ``(out, target)`` to one value per sample (summed or averaged over
outputs as scikit-learn does) and to ``d loss_i / d out_i`` of the same shape
as ``out``. ``target`` is a float tensor ``(n, k)`` except for the multiclass
log-loss, where it holds class indices ``(n,)``.
"""

import math

import numpy as np

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
        """Per-sample loss; for ensemble outputs ``(n, k, o)`` the members' mean."""
        if out.ndim == 3:
            n, k = out.shape[:2]
            flat = self.value(out.reshape(n * k, *out.shape[2:]),
                              target.repeat_interleave(k, dim=0))
            return flat.view(n, k).mean(dim=1)
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
    """Binary / multilabel log-loss from logits, summed over labels.

    ``smoothing`` moves the 0/1 targets towards 0.5: ``t (1 - s) + s / 2``
    (the rule of ``cross_entropy``'s ``label_smoothing`` with two classes).
    """

    def __init__(self, smoothing=0.0):
        self.smoothing = float(smoothing)

    def _target(self, target):
        s = self.smoothing
        return target if s == 0 else target * (1 - s) + s / 2

    def value(self, out, target):
        return F.binary_cross_entropy_with_logits(out, self._target(target),
                                                  reduction="none").sum(dim=1)

    def grad(self, out, target):
        return torch.sigmoid(out) - self._target(target)


class MultiLogLoss(Loss):
    """Multiclass log-loss (softmax cross-entropy) from logits, with
    ``cross_entropy``'s ``label_smoothing`` rule: the one-hot target becomes
    ``(1 - s) onehot + s / n_classes``."""

    def __init__(self, smoothing=0.0):
        self.smoothing = float(smoothing)

    def value(self, out, target):
        return F.cross_entropy(out, target, reduction="none", label_smoothing=self.smoothing)

    def grad(self, out, target):
        return self.value_and_grad(out, target)[1]

    def value_and_grad(self, out, target):
        # One log-softmax serves both: loss_i = -sum_k q_ik log p_ik, grad = p_i - q_i.
        log_p = torch.log_softmax(out, dim=1)
        rows = torch.arange(out.shape[0], device=out.device)
        value = -log_p[rows, target]
        s = self.smoothing
        if s:
            value = (1 - s) * value - s * log_p.mean(dim=1)
        g = log_p.exp_()
        if s:
            g.sub_(s / out.shape[1])
        g[rows, target] -= 1 - s
        return value, g



# ------------------------------------------------------------------- heads
class Head:
    """Loss, link and decoding of one task.

    loss : the per-sample training loss (a ``Loss``).
    is_classifier : probabilities out (classifier) or predictions (regressor).
    """

    loss = None
    is_classifier = False

    def encode(self, y):
        """Targets (codes for classifiers, values for regressors) as trained on."""
        return np.asarray(y, dtype=np.float64)

    def output(self, z):
        """What ``predict_proba`` (classifiers) or ``predict`` (regressors) returns."""
        raise NotImplementedError

    def score(self, z, Y, W):
        """The validation score of raw outputs ``z`` (accuracy / R², as ``score``)."""
        raise NotImplementedError

    def stratify(self, Y):
        """The labels to stratify a validation split by (None: do not)."""
        return None

    def training_loss(self, label_smoothing=0.0):
        """The loss to train with (classification heads take ``label_smoothing``)."""
        return self.loss

    def safe_output_bound(self, dtype):
        return self.loss.safe_output_bound(dtype)

    def combine(self, z):
        """An ensemble's member outputs ``(n, k, o)`` as one raw output ``(n, o)``
        whose decoding is the average of the members' predictions (``z`` as it
        is when it has no member axis)."""
        return z if z.ndim == 2 else self._combine(z)


def golden_minimum(f, low, high, *, start, iterations=40):
    """The ``x`` in ``[low, high]`` where ``f`` is lowest by golden-section search,
    or ``start`` when ``f(start)`` is at least as low (also when ``f`` is not
    finite). Deterministic: every process evaluating the same ``f`` gets the
    same ``x``."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc < fd or not math.isfinite(fd):
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    best, f_best = (c, fc) if fc < fd else (d, fd)
    f_start = f(start)
    if not math.isfinite(f_best) or (math.isfinite(f_start) and f_start <= f_best):
        return start
    return best


def _weighted_mean(values, W):
    return values.mean() if W is None else (values * W).sum() / W.sum()


class _ClassificationHead(Head):
    is_classifier = True

    def output(self, z):
        return self.proba(z)

    def score(self, z, Y, W):
        return _weighted_mean(self.correct(z, Y).to(z.dtype), W)

    def training_loss(self, label_smoothing=0.0):
        return type(self.loss)(label_smoothing) if label_smoothing else self.loss

    def labels(self, codes, classes):
        """``predict``'s output from the codes ``predict`` decoded."""
        return classes[codes]

    def temperature(self, z, Y, W, total=None):
        """The temperature ``T`` whose ``combine(z) / T`` has the lowest log loss.

        ``z`` holds the raw outputs ``(n, o)`` or ensemble member outputs
        ``(n, k, o)`` of held-out rows with targets ``Y`` and weights ``W``
        (None: equal). Dividing the combined logits by ``T`` (``T < 1``
        sharpens, ``T > 1`` softens) is temperature scaling (Guo et al., 2017,
        "On Calibration of Modern Neural Networks"): the ranking of the classes
        stays, and the softening of label smoothing is undone. For an ensemble
        the members' mean probabilities are scaled, not each member's (sharp
        members would average to hard votes).

        When every held-out row is classified correctly the log loss falls
        towards 0 as ``T`` does and has no minimum (the sharpest temperature
        searched would be kept, and one wrong row at predict would cost
        ``log(1e13)``). The targets are then those of the rule of succession,
        ``(n + 1) / (n + 2)`` on the true class and the rest shared by the other
        classes, ``n`` the rows' effective number (Kish: ``sum(w)**2 /
        sum(w**2)``): no error in ``n`` rows is evidence of an error rate near
        ``1 / (n + 2)``, not of none.

        ``total(value) -> float`` sums a number over processes (Dask workers;
        default: this process's). Returns 1.0 when no temperature in
        ``[1/50, 50]`` does better, the loss is not finite or the rows weigh
        nothing.
        """
        total = total or float
        combined = self.combine(z)
        w = (torch.ones(combined.shape[0], dtype=combined.dtype, device=combined.device)
             if W is None else W.reshape(-1))
        weight = total(w.sum())
        if not weight > 0:  # no held-out weight: nothing to fit on
            return 1.0
        loss = self.loss
        wrong = total((~self.correct(combined, Y)).to(w.dtype).mul(w).sum())
        if wrong == 0:
            n = weight ** 2 / total(w.pow(2).sum())
            loss = self.training_loss(self._smoothing_for(1 / (n + 2), combined.shape[1]))

        def log_loss(log_t):
            return total(loss.value(combined / math.exp(log_t), Y).mul(w).sum()) / weight

        return math.exp(golden_minimum(log_loss, -math.log(50), math.log(50), start=0.0))

    def _smoothing_for(self, rest, n_outputs):
        """The label smoothing that leaves ``rest`` of a target's mass off its
        true class: two classes per output (sigmoid heads)."""
        return 2 * rest


def _log_mean_exp(log_values, dim=1):
    return torch.logsumexp(log_values, dim=dim) - math.log(log_values.shape[dim])


class _SigmoidMixin:
    def _combine(self, z):
        # logit of the members' mean probability, computed in log space
        return _log_mean_exp(F.logsigmoid(z)) - _log_mean_exp(F.logsigmoid(-z))


class BinaryHead(_SigmoidMixin, _ClassificationHead):
    """Two classes: one logit, a sigmoid; ``decision`` is the positive logit."""

    loss = BinaryLogLoss()

    def n_outputs(self, n_classes):
        return 1

    def encode(self, codes):
        return np.asarray(codes, dtype=np.float64).reshape(-1, 1)

    def proba(self, z):
        p = torch.sigmoid(z)
        return torch.cat([1 - p, p], dim=1)

    def log_proba(self, z):
        return torch.cat([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)

    def decision(self, z):
        return z[:, 0]

    def predict(self, z):
        return (z[:, 0] > 0).to(torch.int64)

    def correct(self, z, Y):
        return (z[:, 0] > 0) == (Y[:, 0] > 0.5)

    def stratify(self, Y):
        return Y


class MulticlassHead(_ClassificationHead):
    """One logit per class and a softmax."""

    loss = MultiLogLoss()

    def _combine(self, z):
        return _log_mean_exp(torch.log_softmax(z, dim=-1))  # log of the mean probabilities

    def n_outputs(self, n_classes):
        return n_classes

    def encode(self, codes):
        return np.asarray(codes)

    def proba(self, z):
        return torch.softmax(z, dim=1)

    def log_proba(self, z):
        return torch.log_softmax(z, dim=1)

    def decision(self, z):
        return z

    def predict(self, z):
        return z.argmax(dim=1)

    def correct(self, z, Y):
        return z.argmax(dim=1) == Y

    def _smoothing_for(self, rest, n_outputs):
        # (1 - s) + s / K on the true class is 1 - rest
        return rest * n_outputs / (n_outputs - 1) if n_outputs > 1 else 0.0

    def stratify(self, Y):
        return Y


class MultilabelHead(_SigmoidMixin, _ClassificationHead):
    """An indicator matrix: one independent sigmoid per label."""

    loss = BinaryLogLoss()

    def n_outputs(self, n_labels):
        return n_labels

    def proba(self, z):
        return torch.sigmoid(z)

    def log_proba(self, z):
        return F.logsigmoid(z)

    def decision(self, z):
        return z

    def predict(self, z):
        return (z > 0).to(torch.int64)

    def correct(self, z, Y):
        return ((z > 0) == (Y > 0.5)).all(dim=1)

    def labels(self, codes, classes):
        return codes  # the indicator matrix itself


def _identity(z):
    return z


class RegressionHead(Head):
    """A regression loss and its inverse link (identity, or exp for a log link).

    ``nonnegative`` targets are required by losses defined only for them.
    """

    def __init__(self, loss, inverse_link=_identity, nonnegative=False):
        self.loss = loss
        self.inverse_link = inverse_link
        self.nonnegative = nonnegative

    def n_outputs(self, n_targets):
        return n_targets

    def target_scaling(self, Y, weights):
        """Per target ``(shift, scale)`` for ``target_scaling``: the weighted mean
        and standard deviation, or for a log link only the weighted mean as
        scale (targets stay non-negative). A scale of 0 becomes 1."""
        w = np.ones(Y.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        mean = np.average(Y, axis=0, weights=w)
        if self.inverse_link is not _identity:
            return np.zeros_like(mean), np.where(mean > 0, mean, 1.0)
        std = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=w))
        return mean, np.where(std > 0, std, 1.0)

    def check_target(self, y, name):
        if self.nonnegative and np.any(np.asarray(y) < 0):
            raise ValueError(f"loss={name!r} needs non-negative targets (counts or rates); "
                             "y has negative values.")

    def output(self, z):
        return self.inverse_link(z)

    def _combine(self, z):
        if self.inverse_link is _identity:
            return z.mean(dim=1)
        return _log_mean_exp(z)  # log link: the log of the members' mean prediction

    def score(self, z, Y, W):
        pred = self.output(z)
        w = torch.ones_like(Y[:, 0]) if W is None else W
        w = w[:, None] / w.sum()
        mean = (w * Y).sum(dim=0, keepdim=True)
        ss_res = (w * (Y - pred) ** 2).sum(dim=0)
        ss_tot = (w * (Y - mean) ** 2).sum(dim=0)
        r2 = torch.where(ss_tot > 0, 1 - ss_res / torch.where(ss_tot > 0, ss_tot, 1),
                         (ss_res == 0).to(z.dtype))
        return r2.mean()


REGRESSION_HEADS = {
    "squared_error": RegressionHead(SquaredError()),
    "absolute_error": RegressionHead(AbsoluteError()),
    "huber": RegressionHead(Huber()),
    "poisson": RegressionHead(Poisson(), torch.exp, nonnegative=True),
}
CLASSIFICATION_HEADS = {
    "binary": BinaryHead(),
    "multiclass": MulticlassHead(),
    "multilabel": MultilabelHead(),
}
HEADS = {**REGRESSION_HEADS, **CLASSIFICATION_HEADS}


class TemperedHead:
    """A classification head whose combined logits are divided by a temperature
    (``calibration="temperature"``): ``predict_proba``, ``decision_function``,
    the ONNX graph and validation all read ``combine``."""

    def __init__(self, head, temperature):
        self.head = head
        self.divisor = temperature

    def __getattr__(self, name):
        return getattr(self.head, name)

    def combine(self, z):
        return self.head.combine(z) / self.divisor


def classification_head(multilabel, n_classes):
    """The name of the head for a classification target."""
    if multilabel:
        return "multilabel"
    return "binary" if n_classes == 2 else "multiclass"
