"""Closed-form float64 NumPy formulas: readable, slow, the oracle for tests and benchmarks.

Every function takes array-likes, broadcasts ``weight``/``pos_weight`` like the kernels,
computes in float64 and returns float64 (a Python float for ``'mean'``/``'sum'``).
Input checks are the kernels' business, not this module's.
"""

import math

import numpy as np

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "sigmoid_pair",
    "softplus",
]


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    total = math.fsum(loss.ravel().tolist())
    if reduction == "sum":
        return total
    return total / loss.size if loss.size else math.nan


def _grad_scale(size, reduction, grad_output):
    scale = _f64(grad_output)
    return scale / size if reduction == "mean" and size else scale


def _zero_if_no_coefficient(coefficient, term):
    """``coefficient * term``, with 0 wherever the coefficient is 0 (even if term is inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(coefficient == 0, 0.0, coefficient * term)


def softplus(z):
    """``log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|))``."""
    z = _f64(z)
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def sigmoid_pair(x):
    """``(sigmoid(x), sigmoid(-x))``, each from ``e = exp(-|x|)``."""
    x = _f64(x)
    e = np.exp(-np.abs(x))
    one, small = 1.0 / (1.0 + e), e / (1.0 + e)
    return np.where(x >= 0, one, small), np.where(x >= 0, small, one)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """``-w * (y*max(log p, -100) + (1-y)*max(log(1-p), -100))``, reduced."""
    p, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_not_p = np.maximum(np.log1p(-p), -100.0)
    loss = -w * (y * log_p + (1.0 - y) * log_not_p)
    return _reduce(np.broadcast_to(loss, p.shape), reduction)


def binary_cross_entropy_grad(
    input, target, weight=None, reduction="mean", grad_output=1.0
):
    """``w * (p - y) / max(p*(1-p), 1e-12)``, times 1/N for ``'mean'``."""
    p, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    grad = w * (p - y) / np.maximum(p * (1.0 - p), 1e-12)
    return np.broadcast_to(grad * _grad_scale(p.size, reduction, grad_output), p.shape)


def _smoothed(target, label_smoothing):
    return _f64(target) * (1.0 - label_smoothing) + 0.5 * label_smoothing


def binary_cross_entropy_with_logits(
    input, target, weight=None, pos_weight=None, reduction="mean", label_smoothing=0.0
):
    """``w * (q*y'*softplus(-x) + (1-y')*softplus(x))``, reduced."""
    x, y = _f64(input), _smoothed(target, label_smoothing)
    w = 1.0 if weight is None else _f64(weight)
    q = 1.0 if pos_weight is None else _f64(pos_weight)
    loss = w * (
        _zero_if_no_coefficient(q * y, softplus(-x))
        + _zero_if_no_coefficient(1.0 - y, softplus(x))
    )
    return _reduce(np.broadcast_to(loss, x.shape), reduction)


def binary_cross_entropy_with_logits_grad(
    input,
    target,
    weight=None,
    pos_weight=None,
    reduction="mean",
    label_smoothing=0.0,
    grad_output=1.0,
):
    """``w * ((1-y')*sigmoid(x) - q*y'*sigmoid(-x))``, times 1/N for ``'mean'``."""
    x, y = _f64(input), _smoothed(target, label_smoothing)
    w = 1.0 if weight is None else _f64(weight)
    q = 1.0 if pos_weight is None else _f64(pos_weight)
    sig_pos, sig_neg = sigmoid_pair(x)
    grad = w * ((1.0 - y) * sig_pos - q * y * sig_neg)
    return np.broadcast_to(grad * _grad_scale(x.size, reduction, grad_output), x.shape)
