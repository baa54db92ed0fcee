"""Scalar formulas: the one source of truth for the math of every kernel.

Each function here is plain Python on floats (``math`` only), so it runs as is, compiles
with ``numba.njit`` for the CPU kernels (:mod:`numbce.cpu`) and with
``numba.cuda.jit(device=True)`` for the GPU kernels (:mod:`numbce.cuda`).
The contract is ``shared/spec/bce.md``; the notation follows it:

* ``x`` logit, ``p`` probability, ``y`` target in [0, 1], ``q`` pos_weight.
* ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``.
* ``sigmoid(x)`` and ``sigmoid(-x)`` both come from ``e = exp(-|x|)``: one is ``1/(1+e)``,
  the other ``e/(1+e)``; neither is ever formed as ``1 - sigmoid``.
"""

import math

LOG_CLAMP = -100.0
"""PyTorch's lower clamp of ``log(p)`` and ``log1p(-p)`` in BCE on probabilities."""

GRAD_DENOMINATOR_FLOOR = 1e-12
"""PyTorch's floor of ``p * (1 - p)`` in the gradient of BCE on probabilities."""


# The three primitives every formula goes through. In plain Python they are ``math``'s;
# each compile target registers its own implementation of them with ``numba.extending.overload``
# (the CPU its vectorizable ones in :mod:`numbce.cpu`, CUDA libdevice's in :mod:`numbce.cuda`).


def exp(z):
    """``e**z``."""
    return math.exp(z)


def log(z):
    """``log(z)``, ``-inf`` at 0."""
    return math.log(z) if z != 0.0 else -math.inf


def log1p(z):
    """``log(1 + z)``, ``-inf`` at -1."""
    return math.log1p(z) if z != -1.0 else -math.inf


def smooth_target(y, label_smoothing):
    """``y' = y * (1 - eps_ls) + eps_ls / 2``; exactly ``y`` when ``eps_ls == 0``."""
    return y * (1.0 - label_smoothing) + 0.5 * label_smoothing


def is_unit_interval(v):
    """True when ``0 <= v <= 1`` (False for nan): the range check of probabilities/targets."""
    return (v >= 0.0) & (v <= 1.0)


def logits_loss_grad(x, y, q):
    """Loss and d loss/dx of BCE-with-logits for one element, unweighted.

    ``l = q*y*softplus(-x) + (1-y)*softplus(x)``  (both terms >= 0: nothing cancels)
    ``dl/dx = (1-y)*sigmoid(x) - q*y*sigmoid(-x)`` (no cancellation for hard labels)

    A term whose coefficient is 0 counts as 0, so infinite logits give the limit, not nan.
    """
    e = exp(-abs(x))
    log1p_e = log1p(e)
    r = 1.0 / (1.0 + e)
    positive = x >= 0.0
    sigmoid_pos = r if positive else e * r
    sigmoid_neg = e * r if positive else r
    a = q * y
    b = 1.0 - y
    softplus_neg = (-x if x < 0.0 else 0.0) + log1p_e
    softplus_pos = (max(0.0, x)) + log1p_e
    term_a = a * softplus_neg if a != 0.0 else 0.0
    term_b = b * softplus_pos if b != 0.0 else 0.0
    return term_a + term_b, b * sigmoid_pos - a * sigmoid_neg


def probs_loss_grad(p, y):
    """Loss and d loss/dp of BCE on probabilities for one element, unweighted.

    ``l = -(y*max(log p, -100) + (1-y)*max(log1p(-p), -100))``
    ``dl/dp = (p - y) / max(p*(1-p), 1e-12)``
    """
    log_p = max(log(p), LOG_CLAMP)
    log_not_p = max(log1p(-p), LOG_CLAMP)
    loss = -(y * log_p + (1.0 - y) * log_not_p)
    grad = (p - y) / max(p * (1.0 - p), GRAD_DENOMINATOR_FLOOR)
    return loss, grad
