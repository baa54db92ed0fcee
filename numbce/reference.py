"""Closed-form float64 NumPy formulas: readable, slow, the oracle of tests and benchmarks.

For every family ``f`` of the registry: ``f``, ``f_grad`` and ``f_hess``, with the public
functions' signatures. They broadcast ``weight``/``pos_weight`` like the kernels, compute
in float64 (the family's ``reference`` formulas, written apart from the kernels' and
checked against mpmath) and return float64: an array, or a Python float for
``'mean'``/``'sum'``. Input checks are the kernels' business, not this module's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from numbce import functional
from numbce.losses import FAMILIES, Family

_RESULTS = {"": 0, "_grad": 1, "_hess": 2}


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _reference(family: Family, suffix: str) -> Callable:
    name = family.name + suffix
    public = functional.FUNCTIONS[name]
    bind = functional.binder(name, public.__signature__)
    option_names = [option.name for option in family.options]

    def function(*args, **kwargs):
        values = bind(args, kwargs)
        x, y = _f64(values["input"]), _f64(values["target"])
        w = 1.0 if values["weight"] is None else _f64(values["weight"])
        q = 1.0 if values.get("pos_weight") is None else _f64(values["pos_weight"])
        options = {key: values[key] for key in option_names}
        result = np.broadcast_to(
            family.reference(x, y, w, q, **options)[_RESULTS[suffix]], x.shape
        )
        reduction = values["reduction"]
        if suffix:
            scale = _f64(values["grad_output"])
            return result * (
                scale / x.size if reduction == "mean" and x.size else scale
            )
        if reduction == "none":
            return result
        total = math.fsum(result.ravel().tolist())
        if reduction == "sum":
            return total
        return total / x.size if x.size else math.nan

    function.__name__ = function.__qualname__ = name
    function.__signature__ = public.__signature__
    function.__doc__ = f"float64 reference of :func:`numbce.{name}`."
    return function


FUNCTIONS = {
    family.name + suffix: _reference(family, suffix)
    for family in FAMILIES.values()
    for suffix in _RESULTS
}
globals().update(FUNCTIONS)
__all__ = sorted(FUNCTIONS)  # noqa: PLE0605
