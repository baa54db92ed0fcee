"""Scalar formulas: the one source of truth for the math of every kernel.

:func:`make` returns the per-element functions for one arithmetic type and one set of
primitives (``exp``, ``log``, ``log1p``). The CPU kernels (:mod:`numbce.cpu`) compile them
with ``numba.njit`` over the vectorizable primitives of :mod:`numbce._vectormath`; the GPU
kernels (:mod:`numbce.cuda`) with ``numba.cuda.jit(device=True)`` over ``math``'s, which
CUDA maps to libdevice. The contract is ``shared/spec/bce.md``; the notation follows it:

* ``x`` logit, ``p`` probability, ``y`` target in [0, 1], ``q`` pos_weight.
* ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``.
* ``sigmoid(x)`` and ``sigmoid(-x)`` both come from ``e = exp(-|x|)``: one is ``1/(1+e)``,
  the other ``e/(1+e)``; neither is ever formed as ``1 - sigmoid``.

Every constant is of the arithmetic type ``real``, so float32 data is computed in float32
(a float64 literal would silently promote it).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

LOG_CLAMP = -100.0
"""PyTorch's lower clamp of ``log(p)`` and ``log1p(-p)`` in BCE on probabilities."""

GRAD_DENOMINATOR_FLOOR = 1e-12
"""PyTorch's floor of ``p * (1 - p)`` in the gradient of BCE on probabilities."""


def make(real: type, exp: Callable, log: Callable, log1p: Callable) -> SimpleNamespace:
    """The formulas in arithmetic type ``real`` over the given primitives.

    ``exp(z)`` is called with ``z <= 0`` (or nan), ``log(z)`` with ``z`` in [0, 1] (``-inf``
    at 0), ``log1p(z)`` with ``z`` in [-1, 1] (``-inf`` at -1).
    """
    zero, half, one = real(0.0), real(0.5), real(1.0)
    log_clamp, floor = real(LOG_CLAMP), real(GRAD_DENOMINATOR_FLOOR)

    def smooth_target(y, label_smoothing):
        """``y' = y * (1 - eps_ls) + eps_ls / 2``; exactly ``y`` when ``eps_ls == 0``."""
        return y * (one - label_smoothing) + half * label_smoothing

    def is_unit_interval(v):
        """True when ``0 <= v <= 1`` (False for nan): the range check of the inputs."""
        return (v >= zero) & (v <= one)

    def logits_loss_grad(x, y, q, w):
        """Loss and d loss/dx of BCE-with-logits for one element of weight ``w``.

        ``l = w*q*y*softplus(-x) + w*(1-y)*softplus(x)``  (both terms >= 0: nothing cancels)
        ``dl/dx = w*(1-y)*sigmoid(x) - w*q*y*sigmoid(-x)`` (no cancellation for hard labels)

        A term whose coefficient is 0 (a zero weight included) counts as 0, so infinite
        logits give the limit, never nan.
        """
        e = exp(-abs(x))
        log1p_e = log1p(e)
        r = one / (one + e)
        positive = x >= zero
        sigmoid_pos = r if positive else e * r
        sigmoid_neg = e * r if positive else r
        a = w * (q * y)
        b = w * (one - y)
        softplus_neg = max(zero, -x) + log1p_e
        softplus_pos = max(zero, x) + log1p_e
        term_a = a * softplus_neg if a != zero else zero
        term_b = b * softplus_pos if b != zero else zero
        return term_a + term_b, b * sigmoid_pos - a * sigmoid_neg

    def probs_loss_grad(p, y, w):
        """Loss and d loss/dp of BCE on probabilities for one element of weight ``w``.

        ``l = -w*(y*max(log p, -100) + (1-y)*max(log1p(-p), -100))``
        ``dl/dp = w*(p - y) / max(p*(1-p), 1e-12)``
        """
        log_p = max(log(p), log_clamp)
        log_not_p = max(log1p(-p), log_clamp)
        loss = -w * (y * log_p + (one - y) * log_not_p)
        grad = w * ((p - y) / max(p * (one - p), floor))  # weight last: no underflow
        return loss, grad

    return SimpleNamespace(
        smooth_target=smooth_target,
        is_unit_interval=is_unit_interval,
        logits_loss_grad=logits_loss_grad,
        probs_loss_grad=probs_loss_grad,
    )
