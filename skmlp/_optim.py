"""Lean SGD / Adam / AdamW steps for MLPs (pure torch).

``torch.optim`` spends most of a small step in Python bookkeeping (profiler
records, hooks, per-group dispatch), and on CPU its per-parameter kernels
make several passes over memory. These classes make the same updates as
``torch.optim.SGD``/``Adam``/``AdamW`` (same formulas, same defaults: eps
1e-8, beta2 0.999). On CPU and CUDA a step is one of torch's fused kernels
per parameter group (``torch._fused_adam_`` etc., what ``fused=True``
selects in ``torch.optim``: one pass over each tensor). Those kernels are
private torch API (tested with torch 2.13): where one is missing, or raises,
the optimizer switches for good to the public path, a loop of in-place tensor
operations per parameter (also used on MPS). Weight decay applies to the
``decay`` group only (weight matrices), coupled for SGD/Adam and decoupled
for AdamW.

``OPTIMIZERS`` is the table of optimizer names: parameter validation reads
its keys and ``make`` dispatches through it.
"""

import math

import torch

# Devices whose torch build has the fused optimizer kernels (torch >= 2.4).
FUSED_DEVICES = ("cpu", "cuda")

# Steps between two flushes of subnormal values to zero (CPU only, see
# ``_Optimizer.flush_subnormals``).
FLUSH_EVERY = 50


def _fusable(params, kernel):
    devices = {p.device.type for p in params}
    dtypes = {p.dtype for p in params}
    return (len(devices) == 1 and devices <= set(FUSED_DEVICES)
            and dtypes <= {torch.float16, torch.bfloat16, torch.float32, torch.float64}
            and callable(getattr(torch, kernel, None)))


class _Optimizer:
    kernel = None  # name of the fused torch kernel

    def __init__(self, decay, no_decay, *, lr, weight_decay, fused=None):
        # Detached views: in-place updates without autograd tracking or no_grad.
        self.params = [p.detach() for p in list(decay) + list(no_decay)]
        self.leaves = list(decay) + list(no_decay)
        self.n_decay = len(decay)
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_count = 0
        self.fused = _fusable(self.params, self.kernel) if fused is None else fused
        # GPUs compute on subnormals at full speed; CPUs do not.
        self.flush = self.params[0].device.type == "cpu" and self.params[0].is_floating_point()

    def step(self):
        grads = self._grads()
        self.step_count += 1
        if self.fused:
            try:
                self._fused_step(grads)
                self._after_step()
                return
            except (AttributeError, RuntimeError, NotImplementedError, TypeError):
                # A torch whose private kernel is gone, renamed or refuses these
                # tensors: the kernels check their inputs before they write, so
                # nothing was updated; take the public path from now on.
                self.fused = False
        self._public_step(grads)
        self._after_step()

    def _after_step(self):
        if self.flush and self.step_count % FLUSH_EVERY == 0:
            self.flush_subnormals()

    def flush_subnormals(self):
        """Set the tiny entries of the parameters and buffers to zero.

        Over thousands of steps some weights and their moments (e.g. those of
        units that stopped learning) decay towards zero and into the
        subnormal range, where x86 CPUs compute up to 100x slower (Intel more than
        AMD): on one 2M-row fit an epoch took 23 s instead of 7 s, and the
        next 117 s. Flushing the calling thread (``torch.set_flush_denormal``)
        would miss torch's other threads; zeroing the values themselves
        every ``FLUSH_EVERY`` steps keeps every thread fast. It changes only
        values below ``sqrt(finfo.tiny)`` (1e-19 in float32): a weight that
        small moves no output, but its products with activations are
        subnormal. A flush costs three passes over the parameters.
        """
        tiny = torch.finfo(self.params[0].dtype).tiny ** 0.5
        for t in (*self.params, *(t for b in self._buffers() for t in b)):
            t.masked_fill_(t.abs() < tiny, 0.0)

    def zero_grad(self):
        for p in self.leaves:
            p.grad = None

    def _grads(self):
        # A missing gradient counts as zero (torch.optim skips the parameter);
        # skmlp's training steps always fill every gradient.
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.leaves]

    def _groups(self, *lists):
        """(decay slice, weight decay), (no-decay slice, 0.0) of each list, non-empty only."""
        cut = self.n_decay
        groups = [([x[:cut] for x in lists], self.weight_decay), ([x[cut:] for x in lists], 0.0)]
        return [(group, wd) for group, wd in groups if group[0]]

    def _couple_decay(self, grads):
        """grad + weight_decay * w for the weight matrices (new tensors)."""
        if self.weight_decay and self.n_decay:
            decayed = [g.add(p, alpha=self.weight_decay)
                       for g, p in zip(grads[: self.n_decay], self.params[: self.n_decay])]
            grads = decayed + grads[self.n_decay :]
        return grads

    def state_dict(self, copy=True):
        """``{"kind", "step", "buffers"}``: the step rule's name, its step count
        and its buffers (momentum, or Adam's two moments), copied unless
        ``copy=False`` (for an optimizer that takes no more steps)."""
        take = (lambda t: t.detach().clone()) if copy else (lambda t: t.detach())
        return {"kind": self.kind, "step": self.step_count,
                "buffers": [[take(t) for t in b] for b in self._buffers()]}

    def load_state_dict(self, state):
        """Continue from ``state_dict()``'s output; the state of another step
        rule (or of other parameters) is a ``ValueError``, never reinterpreted."""
        kind = state.get("kind")
        if kind != self.kind:
            raise ValueError(f"The optimizer state was made by {kind!r}, not {self.kind!r}: "
                             "one step rule cannot continue another's state. Refit "
                             "(warm_start=False) to change the optimizer.")
        buffers = state["buffers"]
        if any(len(b) != len(self.params) or any(tuple(t.shape) != tuple(p.shape)
                                                 for t, p in zip(b, self.params))
               for b in buffers):
            raise ValueError("The optimizer state does not match the network's parameters: "
                             "refit (warm_start=False).")
        self.step_count = state["step"]
        self._set_buffers([[t.to(p.device, p.dtype).clone() for t, p in zip(buf, self.params)]
                           for buf in state["buffers"]])


class SGD(_Optimizer):
    """SGD with (Nesterov) momentum, as ``torch.optim.SGD`` with dampening 0."""

    kernel = "_fused_sgd_"
    kind = "sgd"

    def __init__(self, decay, no_decay, *, lr, momentum, nesterov, weight_decay, fused=None):
        super().__init__(decay, no_decay, lr=lr, weight_decay=weight_decay, fused=fused)
        self.momentum = momentum
        self.nesterov = nesterov and momentum > 0
        self.buf = None

    def _public_step(self, grads):
        grads = self._couple_decay(grads)
        if self.momentum > 0:
            if self.buf is None:
                self.buf = [g.clone() for g in grads]
            else:
                for buf, g in zip(self.buf, grads):
                    buf.mul_(self.momentum).add_(g)
            if self.nesterov:
                grads = [g.add(buf, alpha=self.momentum) for g, buf in zip(grads, self.buf)]
            else:
                grads = self.buf
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-self.lr)

    def _fused_step(self, grads):
        first = self.momentum > 0 and self.buf is None
        bufs = [torch.empty_like(p) for p in self.params] if first else self.buf
        bufs = bufs if self.momentum > 0 else self.params  # sliced alongside, unused
        kernel = getattr(torch, self.kernel)
        for (params, grads_, bufs_), wd in self._groups(self.params, grads, bufs):
            kernel(params, grads_, bufs_ if self.momentum > 0 else [],
                   weight_decay=wd, momentum=self.momentum, lr=self.lr,
                   dampening=0.0, nesterov=self.nesterov, maximize=False,
                   is_first_step=first)
        if first:
            self.buf = bufs

    def _buffers(self):
        return [] if self.buf is None else [self.buf]

    def _set_buffers(self, buffers):
        self.buf = buffers[0] if buffers else None


class Adam(_Optimizer):
    """Adam (``decoupled=False``) or AdamW, as ``torch.optim.Adam``/``AdamW``."""

    def __init__(self, decay, no_decay, *, lr, beta1, weight_decay, decoupled,
                 beta2=0.999, eps=1e-8, fused=None):
        self.decoupled = decoupled  # before super(): it names the kernel
        super().__init__(decay, no_decay, lr=lr, weight_decay=weight_decay, fused=fused)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._step_tensor = None

    @property
    def kernel(self):
        return "_fused_adamw_" if self.decoupled else "_fused_adam_"

    @property
    def kind(self):
        return "adamw" if self.decoupled else "adam"

    def _public_step(self, grads):
        if self.decoupled:
            if self.weight_decay:
                for p in self.params[: self.n_decay]:
                    p.mul_(1 - self.lr * self.weight_decay)
        else:
            grads = self._couple_decay(grads)
        bias1 = 1 - self.beta1**self.step_count
        bias2_sqrt = math.sqrt(1 - self.beta2**self.step_count)
        for p, g, avg, avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            avg.lerp_(g, 1 - self.beta1)
            avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = avg_sq.sqrt().div_(bias2_sqrt).add_(self.eps)
            p.addcdiv_(avg, denom, value=-self.lr / bias1)

    def _fused_step(self, grads):
        # The kernel reads the step count from a tensor (float32, as torch.optim keeps it).
        if self._step_tensor is None:
            self._step_tensor = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self._step_tensor.fill_(self.step_count)
        kernel = getattr(torch, self.kernel)
        lists = (self.params, grads, self.exp_avg, self.exp_avg_sq)
        for (params, grads_, avg, avg_sq), wd in self._groups(*lists):
            kernel(params, grads_, avg, avg_sq, [], [self._step_tensor] * len(params),
                   lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=wd,
                   eps=self.eps, amsgrad=False, maximize=False)

    def _buffers(self):
        return [self.exp_avg, self.exp_avg_sq]

    def _set_buffers(self, buffers):
        self.exp_avg, self.exp_avg_sq = buffers


def _sgd(decay, no_decay, *, lr, momentum, nesterov, weight_decay):
    return SGD(decay, no_decay, lr=lr, momentum=momentum, nesterov=nesterov,
               weight_decay=weight_decay)


def _adam(decoupled):
    def make(decay, no_decay, *, lr, momentum, nesterov, weight_decay):
        return Adam(decay, no_decay, lr=lr, beta1=momentum, weight_decay=weight_decay,
                    decoupled=decoupled)

    return make


# name -> factory(decay, no_decay, *, lr, momentum, nesterov, weight_decay), or
# None for "lbfgs", which is not a step rule but a full-batch solver (_lbfgs).
OPTIMIZERS = {"sgd": _sgd, "adam": _adam(False), "adamw": _adam(True), "lbfgs": None}
