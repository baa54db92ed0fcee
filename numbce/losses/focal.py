"""Sigmoid focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection";
``torchvision.ops.sigmoid_focal_loss``).

With ``s = sigmoid(x)``, ``s_ = sigmoid(-x)``, ``ce = y softplus(-x) + (1 - y) softplus(x)``,
``m = 1 - p_t = s (1 - y) + s_ y`` (a sum of non-negative terms, never ``1 - p_t``),
``alpha_t = alpha y + (1 - alpha)(1 - y)`` (1 when ``alpha`` is None or negative),
``A = w alpha_t``, ``k = 1 - 2y``, ``u = s s_ / m`` (``s`` for y = 1, ``s_`` for y = 0) and
``g = (1 - y) s - y s_`` (d ce/dx)::

    l       = A ce m^gamma
    dl/dx   = A m^gamma (g + gamma k u ce)
    d2l/dx2 = A m^gamma (s s_ + 2 gamma k u g + gamma k u ce ((gamma - 1) k u + s_ - s))

``u`` replaces ``m^(gamma-1)``: finite for every finite logit and every gamma >= 0 (the
autograd of the torchvision formula gives nan for gamma < 1 once ``m`` rounds to 0), and
infinite logits give the limits. gamma = 0 with alpha None is BCE with logits.
"""

from __future__ import annotations

import numpy as np

from numbce import _formulas
from numbce.losses import bce_logits
from numbce.losses._family import Family, Option, Primitives, mp, real_scalar, times


def _check_alpha(value):
    if value is None:
        return None
    value = real_scalar("alpha", value)
    if not value <= 1.0:  # nan too
        raise ValueError(
            f"alpha must be None, negative (no weighting) or <= 1, got {value!r}"
        )
    return value


COMPENSATE_ABOVE = 2.0
"""From this gamma on, float64 ``m^gamma`` is corrected by the rounding errors of ``m``
(below, the uncorrected form is within the 8-ulp bound already: 6.2 ulps of the terms
at gamma 2, soft targets; the default gamma's kernel then compiles without it)."""

MAX_GAMMA = 1000.0
"""The largest gamma: ``m^gamma`` has about ``gamma`` ulps of error from the rounding of
``m`` (and is below float64's smallest number for every ``m <= 1/2`` from gamma = 1075
on); beyond, the loss and its derivatives would be noise, then inf or nan."""


def _check_gamma(value) -> float:
    value = real_scalar("gamma", value)
    if not 0.0 <= value <= MAX_GAMMA:  # nan and inf too
        raise ValueError(f"gamma must be in [0, {MAX_GAMMA:g}], got {value!r}")
    return value


def _params(alpha, gamma: float) -> tuple[float, float, float]:
    """``(alpha, 1 - alpha, gamma)``; ``(1, 1, gamma)`` without alpha weighting."""
    if alpha is None or alpha < 0:
        return 1.0, 1.0, gamma
    return alpha, 1.0 - alpha, gamma


def _element(primitives: Primitives):
    """The focal terms on BCE with logits' own unweighted ``(ce, g, s s_)``, computed by
    that family's formulas in the data's dtype (float32 for float32 data, whose focal
    terms are computed in float64), the weight multiplied last: gamma = 0 with alpha None
    gives BCE's bits (without weight, or with hard targets), and ``alpha_t``, ``m^gamma
    <= 1`` times a value round to at most that value, so focal <= BCE there."""
    f = _formulas.make(primitives)
    real = primitives.real
    zero, one, two = (real(v) for v in (0.0, 1.0, 2.0))
    term, logistic, pow_ = f.term, f.logistic, primitives.power
    data = primitives.data or primitives
    narrow, data_one, data_zero = data.real, data.real(1.0), data.real(0.0)
    bce = bce_logits.FAMILY.element(data)
    fma = primitives.fma
    compensated = primitives.data is None and np.dtype(real) == np.float64

    @primitives.jit
    def rounding_of_m(x, y, e, r, d):
        """``r d - fl(r d)`` for ``r = fl(1 / (1 + e))`` and ``d`` as the element forms
        them, to first order: the errors of ``1 - y``, ``e y`` (or ``e (1 - y)``), their
        sum, ``1 + e``, the division and the product, by error-free transformations
        (``e`` taken as exact)."""
        not_y = one - y
        not_y_lo = (one - not_y) - y  # exact: 1 - y = not_y + not_y_lo
        if x >= zero:  # d = not_y + e y
            a, b, b_lo = not_y, e * y, fma(e, y, -(e * y))
            b_lo += not_y_lo
        else:  # d = e not_y + y
            a, b, b_lo = y, e * not_y, fma(e, not_y, -(e * not_y)) + e * not_y_lo
        v = d - a  # two-sum: d + d_lo = a + b exactly
        d_lo = (a - (d - v)) + (b - v) + b_lo
        s1 = one + e
        s1_lo = (one - s1) + e  # exact: 1 + e = s1 + s1_lo (1 >= e)
        r_lo = r * (fma(-r, s1, one) - r * s1_lo)  # 1 / (s1 + s1_lo) - r
        product = r * d
        return fma(r, d, -product) + r * d_lo + r_lo * d

    @primitives.jit
    def element(x, y, w, q, params):
        alpha_pos, alpha_neg, gamma = params[0], params[1], params[2]
        ce, g, h = bce(narrow(x), narrow(y), data_one, data_one,
                       (data_one, data_zero, data_zero))  # fmt: skip
        ce, g, h = real(ce), real(g), real(h)
        not_y = one - y
        alpha_t = min(alpha_pos * y + alpha_neg * not_y, one)
        sigmoid_pos, sigmoid_neg, e, r, _ = logistic(x)
        # m = r d; u = s s_ / m = r e / d, whose limit is r where d = e = 0 (y = 1, x = inf)
        d = not_y + e * y if x >= zero else e * not_y + y
        m = min(r * d, one)
        u = r * (e / d if d != zero else one)
        power = pow_(m, gamma)
        if compensated and (m < one) & (m != zero) & (gamma > COMPENSATE_ABOVE):
            power = min(
                fma(power, gamma * (rounding_of_m(x, y, e, r, d) / m), power), one
            )
        if gamma == zero:
            # BCE's derivatives, as they are (adding 0 is not a no-op on -0)
            grad_core, hess_core = g, h
        else:
            k = not_y - y
            ku_ce = k * term(u, ce)
            grad_core = g + gamma * ku_ce
            hess_core = (
                h
                + two * gamma * k * u * g
                + gamma * ku_ce * ((gamma - one) * k * u + sigmoid_neg - sigmoid_pos)
            )
        loss = term(w, term(alpha_t, term(power, ce)))
        grad = term(w, term(alpha_t, term(power, grad_core)))
        hess = term(w, term(alpha_t, term(power, hess_core)))
        return loss, grad, hess

    return element


def _reference(x, y, w, q, alpha=0.25, gamma=2.0):
    alpha_pos, alpha_neg, gamma = _params(alpha, gamma)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e = np.exp(-np.abs(x))
        s = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        s_ = np.where(x >= 0, e / (1.0 + e), 1.0 / (1.0 + e))
        softplus_pos = np.maximum(x, 0.0) + np.log1p(e)
        softplus_neg = np.maximum(-x, 0.0) + np.log1p(e)
        ce = np.where(y == 0, 0.0, y * softplus_neg) + np.where(
            y == 1, 0.0, (1.0 - y) * softplus_pos
        )
        m = s * (1.0 - y) + s_ * y
        u = np.where(m > 0, s * s_ / m, np.maximum(s, s_))
        k = 1.0 - 2.0 * y
        g = (1.0 - y) * s - y * s_
        u_ce = times(u, ce)
        alpha_t = alpha_pos * y + alpha_neg * (1.0 - y)
        power = m**gamma
        curvature = (
            s * s_
            + 2 * gamma * k * u * g
            + gamma * k * u_ce * ((gamma - 1) * k * u + s_ - s)
        )
        loss, grad, hess = (
            times(w, times(alpha_t, times(power, value)))
            for value in (ce, g + gamma * k * u_ce, curvature)
        )
    return loss, grad, hess


def _exact(x, y, q, alpha=0.25, gamma=2.0):
    import mpmath  # the dev extra: only the accuracy measurement needs it

    alpha_pos, alpha_neg, gamma = (mpmath.mpf(v) for v in _params(alpha, gamma))
    x, y = mp(x), mp(y)
    s, s_ = 1 / (1 + mpmath.exp(-x)), 1 / (1 + mpmath.exp(x))
    ce = (y * mpmath.log1p(mpmath.exp(-x)) if y else 0) + (
        (1 - y) * mpmath.log1p(mpmath.exp(x)) if y != 1 else 0
    )
    m = s * (1 - y) + s_ * y
    u = s * s_ / m if m else max(s, s_)
    k, g = 1 - 2 * y, (1 - y) * s - y * s_
    weight = alpha_pos * y + alpha_neg * (1 - y)
    power = m**gamma if m or gamma else mpmath.mpf(1)
    grad_terms = (g, gamma * k * u * ce)
    hess_terms = (
        s * s_,
        2 * gamma * k * u * g,
        gamma * k * u * ce * ((gamma - 1) * k * u + s_ - s),
    )
    scale = weight * power
    return (
        scale * ce,
        scale * sum(grad_terms),
        scale * sum(hess_terms),
        scale * sum(abs(t) for t in grad_terms),
        scale * sum(abs(t) for t in hess_terms),
    )


def _torch(x, y, q, alpha=0.25, gamma=2.0):
    """torchvision's ``sigmoid_focal_loss`` (elementwise), written in torch."""
    import torch

    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


FAMILY = Family(
    name="sigmoid_focal_loss",
    class_name="SigmoidFocalLoss",
    title="Sigmoid focal loss of logits (``torchvision.ops.sigmoid_focal_loss``)",
    doc=__doc__.split("\n", 1)[1].strip(),
    signature=("alpha", "gamma", "reduction", "*", "weight"),
    derivative_signature=("alpha", "gamma", "reduction", "*", "weight", "grad_output"),
    class_signature=("alpha", "gamma", "reduction", "weight"),
    default_reduction="none",
    class_reduction="mean",
    input_name="input",
    input_in_unit_interval=False,
    pos_weight=False,
    options=(Option("alpha", 0.25, _check_alpha), Option("gamma", 2.0, _check_gamma)),
    params=_params,
    element=_element,
    reference=_reference,
    exact=_exact,
    torch=_torch,
    accuracy_options=(
        {"alpha": 0.25, "gamma": 2.0},
        {"alpha": None, "gamma": 0.5},
        {"alpha": None, "gamma": 3.7},
    ),
    input_grid="logits",
    torch_signature=(("inputs", "targets"), ("alpha", "gamma", "reduction")),
    # m^gamma multiplies m's rounding error by gamma: 13.5 float32 ulps at gamma = 3.7
    float32_in_float64=True,
    vector_interleave=(8, 8),  # Zen 5, serial fused float32: 4.8 -> 2.8 ns/element
)
