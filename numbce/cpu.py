"""CPU kernels: Numba loops over flat arrays, generated from one definition.

One kernel body serves every variant. :func:`_kernel` closes over compile-time flags
(which family, whether the loss is stored elementwise and/or reduced, whether the gradient
is stored, which optional operands are arrays rather than scalars, serial or parallel);
Numba folds the flags, so each variant carries only the work it asks for.

The data is cut into fixed blocks of :data:`BLOCK` elements. Each block sums its losses in
float64 into ``partial[b]`` and records out-of-range inputs in ``flags[b]``; the driver then
sums the partials in order, so the result is bit-identical for any thread count.
"""

from __future__ import annotations

import functools
import math

import numba
import numba.extending
import numpy as np

from numbce import _formulas
from numbce._validate import Problem, range_error

BLOCK = 4096
"""Elements per reduction block (fixed: results do not depend on the thread count)."""

PARALLEL_THRESHOLD = 1 << 16
"""Below this many elements the serial kernel is used (threads cost more than they save)."""

BAD_INPUT, BAD_TARGET = 1, 2
"""Bits of ``flags[b]``: a probability (family 'probs') or a target outside [0, 1]."""

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


def _register_primitive(stub, implementation):
    """Make the jitted ``stub`` (a primitive of :mod:`numbce._formulas`) compile to
    ``implementation`` for the CPU target."""
    numba.extending.overload(stub, target="cpu", jit_options=_JIT)(
        lambda z: implementation
    )


_register_primitive(_formulas.exp, lambda z: math.exp(z))
_register_primitive(_formulas.log, lambda z: math.log(z))
_register_primitive(_formulas.log1p, lambda z: math.log1p(z))

_logits_loss_grad = numba.njit(**_JIT)(_formulas.logits_loss_grad)
_probs_loss_grad = numba.njit(**_JIT)(_formulas.probs_loss_grad)
_smooth_target = numba.njit(**_JIT)(_formulas.smooth_target)
_is_unit_interval = numba.njit(**_JIT)(_formulas.is_unit_interval)


@functools.cache
def _kernel(
    logits: bool,
    store_loss: bool,
    reduce_loss: bool,
    store_grad: bool,
    weight_array: bool,
    pos_weight_array: bool,
    grad_output_array: bool,
    parallel: bool,
):
    """Compile-on-first-use kernel for one combination of flags.

    Arguments of the returned function (arrays flat, of the compute dtype; an operand
    whose flag is off is ignored and may be any 1-element array):
    ``x, y, weight, pos_weight, grad_output`` inputs; ``pos_weight_value, label_smoothing,
    loss_scale, grad_scale`` scalars; ``loss_out, grad_out`` outputs of ``x.size``;
    ``partial`` (float64) and ``flags`` (uint8) outputs, one per block.
    """

    def kernel(
        x,
        y,
        weight,
        pos_weight,
        grad_output,
        pos_weight_value,
        label_smoothing,
        loss_scale,
        grad_scale,
        loss_out,
        grad_out,
        partial,
        flags,
    ):
        n = x.size
        for b in numba.prange(partial.size):
            start = b * BLOCK
            stop = min(start + BLOCK, n)
            block_sum = 0.0
            bad = 0
            for i in range(start, stop):
                xi = np.float64(x[i])
                yi = np.float64(y[i])
                bad |= np.uint8(not _is_unit_interval(yi)) * BAD_TARGET
                if logits:
                    qi = (
                        np.float64(pos_weight[i])
                        if pos_weight_array
                        else pos_weight_value
                    )
                    loss, grad = _logits_loss_grad(
                        xi, _smooth_target(yi, label_smoothing), qi
                    )
                else:
                    bad |= np.uint8(not _is_unit_interval(xi)) * BAD_INPUT
                    loss, grad = _probs_loss_grad(xi, yi)
                if weight_array:
                    wi = np.float64(weight[i])
                    loss *= wi
                    grad *= wi
                if reduce_loss:
                    block_sum += loss
                if store_loss:
                    loss_out[i] = loss * loss_scale
                if store_grad:
                    if grad_output_array:
                        grad *= np.float64(grad_output[i])
                    grad_out[i] = grad * grad_scale
            partial[b] = block_sum
            flags[b] = bad

    return numba.njit(parallel=parallel, **_JIT)(kernel)


def _first_out_of_range(values: np.ndarray, start: int) -> tuple[int, float]:
    offset = int(np.flatnonzero(~((values >= 0) & (values <= 1)))[0])
    return start + offset, values[offset].item()


def _raise_range_error(problem: Problem, flags: np.ndarray, logits: bool) -> None:
    """Find the first offending element (error path only) and raise its ValueError."""
    checks = [(BAD_TARGET, problem.y, "target")]
    if not logits:
        checks.insert(0, (BAD_INPUT, problem.x, "input (probabilities)"))
    for bit, values, name in checks:
        bad_blocks = np.flatnonzero(flags & bit)
        if bad_blocks.size:
            start = int(bad_blocks[0]) * BLOCK
            index, value = _first_out_of_range(values[start : start + BLOCK], start)
            raise range_error(name, index, value, problem.shape)


def _as_operand(value, dtype) -> tuple[bool, np.ndarray]:
    if isinstance(value, np.ndarray):
        return True, value
    return False, np.ones(1, dtype=dtype)


def run(problem: Problem, *, logits: bool, want_loss: bool, want_grad: bool):
    """Run one pass of the kernel over ``problem``; return ``(loss, grad)`` (None if unwanted).

    ``loss`` is reduced per ``problem.reduction`` (a float64 Python float for mean/sum, a
    float64-accumulated array of the compute dtype for 'none'); ``grad`` is flat.
    """
    x = problem.x
    n = x.size
    dtype = x.dtype
    weight_array, weight = _as_operand(problem.weight, dtype)
    pos_weight_array, pos_weight = _as_operand(problem.pos_weight, dtype)
    grad_output_array, grad_output = _as_operand(problem.grad_output, dtype)
    weight_scalar = 1.0 if weight_array else problem.weight
    pos_weight_value = 1.0 if pos_weight_array else problem.pos_weight
    grad_output_scalar = 1.0 if grad_output_array else problem.grad_output

    store_loss = want_loss and problem.reduction == "none"
    reduce_loss = want_loss and not store_loss
    grad_scale = weight_scalar * grad_output_scalar
    if problem.reduction == "mean" and n:
        grad_scale /= n

    kernel = _kernel(
        logits,
        store_loss,
        reduce_loss,
        want_grad,
        weight_array,
        pos_weight_array and logits,
        grad_output_array and want_grad,
        n >= PARALLEL_THRESHOLD,
    )
    nblocks = -(-n // BLOCK)
    loss_out = np.empty(n if store_loss else 1, dtype=dtype)
    grad_out = np.empty(n if want_grad else 1, dtype=dtype)
    partial = np.empty(nblocks, dtype=np.float64)
    flags = np.empty(nblocks, dtype=np.uint8)
    kernel(
        x,
        problem.y,
        weight,
        pos_weight,
        grad_output,
        pos_weight_value,
        problem.label_smoothing,
        weight_scalar,
        grad_scale,
        loss_out,
        grad_out,
        partial,
        flags,
    )
    if flags.any():
        _raise_range_error(problem, flags, logits)

    loss = None
    if store_loss:
        loss = loss_out
    elif reduce_loss:
        total = math.fsum(partial) * weight_scalar
        loss = total if problem.reduction == "sum" else (total / n if n else math.nan)
    return loss, (grad_out if want_grad else None)
