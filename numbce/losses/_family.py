"""What a loss family declares, and what the backends give its formulas to compile.

A family is one :class:`Family` value in its own module (``numbce/losses/<name>.py``), listed
in :data:`numbce.losses.FAMILIES`. Everything else is generated from it: the public
functions and loss classes (:mod:`numbce.functional`), the kernel variants of every backend,
the float64 oracle (:mod:`numbce.reference`), the accuracy tables (:mod:`numbce.accuracy`),
the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

MAX_PARAMS = 3
"""Kernel parameters per family (padded with zeros): they travel in one array."""


class Primitives(NamedTuple):
    """What a backend compiles a family's formulas with.

    ``real`` is the arithmetic type (``np.float32``/``np.float64``; every constant must be of
    it, or float32 data would be promoted); ``exp(z)`` is called with ``z <= 0`` (or nan),
    ``log(z)`` with ``z`` in [0, 1], ``log1p(z)`` with ``z`` in [-1, 1], ``log1p_unit(z)``
    with ``z`` in [0, 1] (a ``log1p`` the backend may specialise), ``power(m, g)``
    (``m**g``, 1 for ``g = 0``) with ``m`` in [0, 1] and ``g >= 0``; ``jit`` turns a plain
    Python function into one the backend's kernels can call (``numba.njit(forceinline=
    True)`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU); ``fma(a, b, c)`` is
    ``a * b + c`` rounded once (exact error terms: ``fma(a, b, -a * b)``). ``data``: where
    the data's dtype is narrower than ``real`` (float32 data of a ``float32_in_float64``
    family), the primitives of the data's dtype, else None.
    """

    real: type
    exp: Callable
    log: Callable
    log1p: Callable
    log1p_unit: Callable
    power: Callable
    jit: Callable
    fma: Callable
    data: Primitives | None = None


@dataclass(frozen=True)
class Option:
    """A scalar option of a family: its name, default, and check (returns the value to use,
    raises TypeError/ValueError naming the option)."""

    name: str
    default: Any
    check: Callable[[Any], Any]


@dataclass(frozen=True, eq=False)  # hashed by identity: one value per family
class Family:
    """One loss family, declared once.

    * ``name``: the public function prefix (``name``, ``name_grad``, ``name_value_and_grad``,
      ``name_hess``, ``name_grad_hess``); ``class_name``: the loss class.
    * ``doc``: the formulas (loss, gradient, second derivative) for the docstrings.
    * ``signature``: the value function's parameters after ``input, target`` (``"*"`` starts
      the keyword-only ones); ``derivative_signature`` the same for the derivative
      functions (which add ``grad_output``); ``class_signature`` the constructor's.
    * ``default_reduction``: of the functions; ``class_reduction``: of the loss class.
    * ``input_name``: how range errors name the input when ``input_in_unit_interval``.
    * ``pos_weight``: whether the family takes a ``pos_weight`` operand (``q``).
    * ``options``: scalar options; ``params(options) -> tuple of floats`` turns their checked
      values into the kernel's parameters (at least one).
    * ``element(primitives) -> f(x, y, w, q, params) -> (loss, grad, hess)``: the per-element
      formulas, compiled by each backend (``x`` the input, ``y`` the target, ``w`` the
      weight, ``q`` the pos_weight, 1 where the family has none, ``params`` a tuple of
      :data:`MAX_PARAMS` values). Unused outputs are dead code the compiler removes.
    * ``reference(x, y, w, q, **options) -> (loss, grad, hess)``: float64 NumPy closed forms,
      written apart from ``element`` (an error shared by both would be invisible).
    * ``exact(x, y, q, **options) -> (loss, grad, hess, grad_unit, hess_unit)``: the same in
      50-digit mpmath; the units are the sum of the magnitudes of each derivative's terms
      (where terms of opposite signs cancel, errors are measured in ulps of it).
    * ``torch(x, y, q, **options) -> loss``: the same loss written in PyTorch (elementwise),
      the peer in accuracy tables and benchmarks; None if it has none.
    * ``torch_signature``: ``((prediction, target), positional)``, the names PyTorch (or
      torchvision) gives the prediction and the target, and its positional parameters
      after them, for :mod:`numbce.torch` (the family's other parameters follow,
      keyword-only); None keeps numbce's signature.
    * ``accuracy_options``: the option sets the accuracy tables and tests sweep;
      ``input_grid``: which extreme grid they use ("logits" or "probabilities").
    * ``float32_in_float64``: float32 data is computed in float64 (then rounded), where the
      float32 formulas would lose more than a few ulps.
    * ``vector_interleave``: ``(in cache, streamed)``, how many SIMD vectors the CPU
      kernel's loop computes at once (LLVM's loop-vectorizer interleave count; 0 leaves it
      to LLVM's cost model) for inputs under and from
      :data:`numbce._config.STREAMING_THRESHOLD` elements. Formulas that are one long
      chain of dependent operations (``exp`` then ``log1p``) keep the CPU waiting on
      latency; more independent vectors in flight fill that time, but too many can slow
      a loop over data streamed from RAM (likely: its iteration outgrows the
      out-of-order window that hides memory latency). Measure both at N = 1e5 and 1e7
      (the kernel benchmarks): it never changes a result.
    """

    name: str
    class_name: str
    title: str
    doc: str
    signature: tuple[str, ...]
    derivative_signature: tuple[str, ...]
    class_signature: tuple[str, ...]
    default_reduction: str
    class_reduction: str
    input_name: str
    input_in_unit_interval: bool
    pos_weight: bool
    options: tuple[Option, ...]
    params: Callable[..., tuple]
    element: Callable[[Primitives], Callable]
    reference: Callable
    exact: Callable
    torch: Callable | None
    accuracy_options: tuple[dict, ...]
    input_grid: str
    float32_in_float64: bool = False
    vector_interleave: tuple[int, int] = (0, 0)
    torch_signature: tuple[tuple[str, str], tuple[str, ...]] | None = None


def real_scalar(name: str, value) -> float:
    """``value`` as a float if it is one real number (not a string, None or an array), else
    TypeError naming ``name``. A zero loses its sign: options equal as numbers give the
    same results (and are kept by value, where 0.0 == -0.0)."""
    if isinstance(value, (str, bytes)) or value is None or getattr(value, "ndim", 0):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value) + 0.0
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def times(coefficient, value):
    """``coefficient * value`` for the NumPy references, 0 wherever the coefficient is 0
    (even if the value is inf: an infinite logit or pos_weight), as the kernels' terms."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(coefficient == 0, 0.0, coefficient * value)


def mp(value):
    """``value`` as an mpmath number (exactly: a float's binary value; an mpmath number as
    it is, so that the exact forms can be differentiated by mpmath)."""
    import mpmath  # the dev extra: only the accuracy measurement needs it

    return value if isinstance(value, mpmath.mpf) else mpmath.mpf(float(value))
