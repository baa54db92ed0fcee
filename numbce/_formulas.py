"""Per-element building blocks shared by the loss families' formulas.

:func:`make` returns them compiled with one backend's :class:`~numbce.losses._family.
Primitives`. Notation: ``x`` logit, ``y`` target in [0, 1].

* ``sigmoid(x)`` and ``sigmoid(-x)`` both come from ``e = exp(-|x|)`` and ``r = 1/(1+e)``:
  one is ``r``, the other ``e*r``; neither is ever formed as ``1 - sigmoid``.
* ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``; ``softplus(x)`` and ``softplus(-x)`` share
  ``log1p(e)``.
* A term whose coefficient is 0 counts as 0 even when its value is infinite
  (:func:`term`), so infinite logits give the limits, never nan. A coefficient made of
  several factors is built as ``term(term(a, b), c)``: 0 as soon as ``a`` is (a target 0
  under an infinite ``pos_weight``).
"""

from __future__ import annotations

from types import SimpleNamespace

from numbce.losses._family import Primitives


def make(primitives: Primitives) -> SimpleNamespace:
    """``term(coefficient, value)`` and ``logistic(x)`` in ``primitives.real`` arithmetic."""
    real, exp, log1p_unit, jit = (
        primitives.real,
        primitives.exp,
        primitives.log1p_unit,
        primitives.jit,
    )
    zero, one = real(0.0), real(1.0)

    @jit
    def term(coefficient, value):
        """``coefficient * value``, but 0 when the coefficient is 0 (``0 * inf = 0``)."""
        return coefficient * value if coefficient != zero else zero

    @jit
    def logistic(x):
        """``(sigmoid(x), sigmoid(-x), e, r, log1p(e))`` with ``e = exp(-|x|)``, ``r =
        1/(1+e)``; ``softplus(+-x) = max(+-x, 0) + log1p(e)``."""
        e = exp(-abs(x))
        r = one / (one + e)
        positive = x >= zero
        return (
            (r if positive else e * r),
            (e * r if positive else r),
            e,
            r,
            log1p_unit(e),
        )

    return SimpleNamespace(term=term, logistic=logistic)
