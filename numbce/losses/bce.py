"""Binary cross-entropy on probabilities (``torch.nn.BCELoss``), with PyTorch's clamps.

For a probability ``p`` in [0, 1] (anything else is an error)::

    l       = -w (y max(log p, -100) + (1 - y) max(log1p(-p), -100))
    dl/dp   = w (p - y) / max(p (1 - p), 1e-12)
    d2l/dp2 = w (y / p^2 + (1 - y) / (1 - p)^2)   where p (1 - p) > 1e-12
            = w / 1e-12                            elsewhere (the floored gradient's slope)

The clamp and the floor are PyTorch's: p = 0 or 1 gives finite values.
"""

from __future__ import annotations

import numpy as np

from numbce.losses._family import Family, Primitives, mp

LOG_CLAMP = -100.0
"""PyTorch's lower clamp of ``log(p)`` and ``log1p(-p)``."""

GRAD_DENOMINATOR_FLOOR = 1e-12
"""PyTorch's floor of ``p (1 - p)`` in the gradient."""


def _element(primitives: Primitives):
    real, log, log1p = primitives.real, primitives.log, primitives.log1p
    one, log_clamp, floor = real(1.0), real(LOG_CLAMP), real(GRAD_DENOMINATOR_FLOOR)

    @primitives.jit
    def element(p, y, w, q, params):
        not_p = one - p
        log_p = max(log(p), log_clamp)
        log_not_p = max(log1p(-p), log_clamp)
        loss = -w * (y * log_p + (one - y) * log_not_p)
        variance = p * not_p
        grad = w * ((p - y) / max(variance, floor))  # weight last: no underflow
        curvature = y / (p * p) + (one - y) / (not_p * not_p)
        hess = w * (curvature if variance > floor else one / floor)
        return loss, grad, hess

    return element


def _reference(p, y, w, q):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        loss = -w * (
            y * np.maximum(np.log(p), LOG_CLAMP)
            + (1.0 - y) * np.maximum(np.log1p(-p), LOG_CLAMP)
        )
        variance = p * (1.0 - p)
        grad = w * (p - y) / np.maximum(variance, GRAD_DENOMINATOR_FLOOR)
        hess = w * np.where(
            variance > GRAD_DENOMINATOR_FLOOR,
            y / p**2 + (1.0 - y) / (1.0 - p) ** 2,
            1.0 / GRAD_DENOMINATOR_FLOOR,
        )
    return loss, grad, hess


def _exact(p, y, q):
    import mpmath  # the dev extra: only the accuracy measurement needs it

    p, y = mp(p), mp(y)
    log_p = max(mpmath.log(p), LOG_CLAMP) if p > 0 else mpmath.mpf(LOG_CLAMP)
    log_not_p = max(mpmath.log1p(-p), LOG_CLAMP) if p < 1 else mpmath.mpf(LOG_CLAMP)
    floor = mpmath.mpf(GRAD_DENOMINATOR_FLOOR)
    grad = (p - y) / max(p * (1 - p), floor)
    if p * (1 - p) > floor:
        terms = y / p**2, (1 - y) / (1 - p) ** 2
    else:
        terms = 1 / floor, mpmath.mpf(0)
    hess = terms[0] + terms[1]
    return -(y * log_p + (1 - y) * log_not_p), grad, hess, abs(grad), hess


def _torch(p, y, q):
    import torch

    return torch.nn.functional.binary_cross_entropy(p, y, reduction="none")


FAMILY = Family(
    name="binary_cross_entropy",
    class_name="BCELoss",
    title="Binary cross-entropy of probabilities "
    "(``torch.nn.functional.binary_cross_entropy``)",
    doc=__doc__.split("\n", 1)[1].strip(),
    signature=("weight", "reduction", "*", "size_average", "reduce"),
    derivative_signature=("weight", "reduction", "grad_output"),
    class_signature=("weight", "reduction"),
    default_reduction="mean",
    class_reduction="mean",
    input_name="input (probabilities)",
    input_in_unit_interval=True,
    pos_weight=False,
    options=(),
    params=lambda: (0.0,),
    element=_element,
    reference=_reference,
    exact=_exact,
    torch=_torch,
    accuracy_options=({},),
    input_grid="probabilities",
    torch_signature=(
        ("input", "target"),
        ("weight", "size_average", "reduce", "reduction"),
    ),
)
