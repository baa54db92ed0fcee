"""CPU kernels: Numba loops over flat arrays, generated from one definition.

One kernel body serves every variant. :func:`_kernel` closes over compile-time flags
(which family, whether the loss is stored elementwise and/or reduced, whether the gradient
is stored, which optional operands are arrays rather than scalars, serial or parallel);
Numba folds the flags, so each variant carries only the work it asks for.

The data is cut into fixed blocks of :data:`BLOCK` elements. Each block sums its losses in
float64 and records out-of-range inputs in flags (``blocks_out[:, b]``); the driver then
sums the partials in order, so the result is bit-identical for any thread count.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from numbce import _formulas, _vectormath
from numbce._validate import Problem, check_unit_interval

BLOCK = 4096
"""Elements per reduction block (fixed: results do not depend on the thread count)."""
_BLOCK_U = np.uint64(BLOCK)

PARALLEL_THRESHOLD = 2 * BLOCK
"""From two blocks on, the parallel kernel is used: measured on 2 cores, two threads already
halve the time of 8192 elements (the OpenMP launch costs about 2 us, one block 12-30 us)."""

BAD_INPUT, BAD_TARGET = 1, 2
"""Bits of a block's flags: a probability (family 'probs') or a target outside [0, 1]."""

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_INLINE = {"nogil": True, "error_model": "numpy", "inline": "always"}
"""Per-element functions are inlined in Numba's IR, so LLVM sees one loop body it can
vectorize. They take the kernel's flags: kernels allow only 'contract' (a*b + c fused into
one FMA, which removes a rounding and breaks no compensated step)."""
_KERNEL_FASTMATH = {"contract"}


def _element_functions(fmt: _vectormath.Format):
    """``(logits_element, probs_element)``, each ``(x, y, q, w, label_smoothing) -> (loss,
    grad, input_ok, target_ok)`` in ``fmt``'s type over the vectorizable primitives
    (``probs_element`` ignores ``q`` and ``label_smoothing``; logits are always ok)."""
    formulas = _formulas.make(fmt.real, *_vectormath.make(fmt))
    smooth_target, is_unit_interval, logits_loss_grad, probs_loss_grad = (
        numba.njit(**_INLINE)(f)
        for f in (
            formulas.smooth_target,
            formulas.is_unit_interval,
            formulas.logits_loss_grad,
            formulas.probs_loss_grad,
        )
    )

    @numba.njit(**_INLINE)
    def logits_element(x, y, q, w, label_smoothing):
        loss, grad = logits_loss_grad(x, smooth_target(y, label_smoothing), q, w)
        return loss, grad, True, is_unit_interval(y)

    @numba.njit(**_INLINE)
    def probs_element(x, y, q, w, label_smoothing):
        loss, grad = probs_loss_grad(x, y, w)
        return loss, grad, is_unit_interval(x), is_unit_interval(y)

    return logits_element, probs_element


_logits_element32, _probs_element32 = _element_functions(_vectormath.FLOAT32)
_logits_element64, _probs_element64 = _element_functions(_vectormath.FLOAT64)


@numba.njit(fastmath={"reassoc"}, **_JIT)
def _sum64(values, count):
    """float64 sum of ``values[:count]``; LLVM may reorder it (SIMD lanes), the formulas
    elsewhere keep strict IEEE arithmetic (fastmath flags stay with their function)."""
    total = 0.0
    for i in range(count):
        total += values[i]
    return total


@functools.cache
def _kernel(
    single: bool,
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

    Arguments of the returned function (flat arrays of the compute dtype, float32 if
    ``single`` else float64; an operand whose flag is off is ignored and may be any
    1-element array): ``x, y, weight, pos_weight, grad_output`` inputs; ``scalars`` =
    ``[pos_weight, weight, label_smoothing, grad_scale]`` (the values used where the operand
    is not an array); ``loss_out, grad_out`` outputs
    of ``x.size``; ``blocks_out`` (float64, shape (2, number of blocks)): each block's loss
    sum and its range-check flags.
    """

    blocks = numba.prange if parallel else range  # also keys Numba's cache per variant

    def kernel(
        x,
        y,
        weight,
        pos_weight,
        grad_output,
        scalars,
        loss_out,
        grad_out,
        blocks_out,
    ):
        pos_weight_value, weight_value, label_smoothing, grad_scale = scalars
        n = np.uint64(x.size)
        for b in blocks(blocks_out.shape[1]):
            # Unsigned indices: Numba then emits no negative-index wraparound, which would
            # turn every load into a gather.
            start = np.uint64(b) * _BLOCK_U
            stop = min(start + _BLOCK_U, n)
            # Losses go through an L1-sized buffer, summed after the loop: a float64
            # accumulator inside it would narrow float32 SIMD to the width of float64.
            block_losses = np.empty(BLOCK if reduce_loss else 0, dtype=x.dtype)
            # Boolean accumulators: an integer one would widen the SIMD lanes to 64 bits.
            inputs_ok = True
            targets_ok = True
            for i in range(start, stop):
                q = pos_weight[i] if pos_weight_array else pos_weight_value
                w = weight[i] if weight_array else weight_value
                # The flags are compile-time constants: Numba drops the other branches.
                if logits and single:
                    loss, grad, input_ok, target_ok = _logits_element32(
                        x[i], y[i], q, w, label_smoothing
                    )
                elif logits:
                    loss, grad, input_ok, target_ok = _logits_element64(
                        x[i], y[i], q, w, label_smoothing
                    )
                elif single:
                    loss, grad, input_ok, target_ok = _probs_element32(
                        x[i], y[i], q, w, label_smoothing
                    )
                else:
                    loss, grad, input_ok, target_ok = _probs_element64(
                        x[i], y[i], q, w, label_smoothing
                    )
                inputs_ok &= input_ok
                targets_ok &= target_ok
                if reduce_loss:
                    block_losses[i - start] = loss
                if store_loss:
                    loss_out[i] = loss
                if store_grad:
                    if grad_output_array:
                        grad *= grad_output[i]
                    grad_out[i] = grad * grad_scale
            blocks_out[0, b] = (
                _sum64(block_losses, stop - start) if reduce_loss else 0.0
            )
            blocks_out[1, b] = BAD_INPUT * (not inputs_ok) + BAD_TARGET * (
                not targets_ok
            )

    return numba.njit(parallel=parallel, fastmath=_KERNEL_FASTMATH, **_JIT)(kernel)


def _raise_range_error(problem: Problem, flags: np.ndarray, logits: bool) -> None:
    """Find the first offending element (error path only) and raise its ValueError."""
    checks = [(BAD_TARGET, problem.y, "target")]
    if not logits:
        checks.insert(0, (BAD_INPUT, problem.x, "input (probabilities)"))
    for bit, values, name in checks:
        bad_blocks = np.flatnonzero(flags & bit)
        if bad_blocks.size:
            start = int(bad_blocks[0]) * BLOCK
            check_unit_interval(
                name, values[start : start + BLOCK], start, problem.shape
            )


_PLACEHOLDER = {np.dtype(t): np.ones(1, dtype=t) for t in (np.float32, np.float64)}
"""Stand-in for the operands and outputs a kernel variant ignores (no allocation per call;
the same array type as real ones, so it adds no compiled variants; never written)."""


def _operand(value, dtype) -> tuple[bool, float, np.ndarray]:
    """``(is_array, scalar, array)`` for a float or flat array operand of a kernel."""
    if type(value) is float:
        return False, value, _PLACEHOLDER[dtype]
    return True, 1.0, value


def run(problem: Problem, *, logits: bool, want_loss: bool, want_grad: bool):
    """Run one pass of the kernel over ``problem``; return ``(loss, grad)`` (None if unwanted).

    ``loss`` is reduced per ``problem.reduction`` (a float64 sum or mean, accumulated in
    float64, for 'mean'/'sum'; a flat array of the compute dtype for 'none'); ``grad`` is
    flat.
    """
    x = problem.x
    n = x.size
    dtype = x.dtype
    weight_array, weight_scalar, weight = _operand(problem.weight, dtype)
    pos_weight_array, pos_weight_value, pos_weight = _operand(problem.pos_weight, dtype)
    grad_output_array, grad_output_scalar, grad_output = _operand(
        problem.grad_output, dtype
    )

    store_loss = want_loss and problem.reduction == "none"
    reduce_loss = want_loss and not store_loss
    grad_scale = grad_output_scalar
    if problem.reduction == "mean" and n:
        grad_scale /= n

    kernel = _kernel(
        dtype == np.float32,
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
    scalars = np.array(
        [pos_weight_value, weight_scalar, problem.label_smoothing, grad_scale],
        dtype=dtype,
    )
    loss_out = np.empty(n, dtype=dtype) if store_loss else _PLACEHOLDER[dtype]
    grad_out = np.empty(n, dtype=dtype) if want_grad else _PLACEHOLDER[dtype]
    blocks_out = np.empty((2, nblocks))
    kernel(
        x,
        problem.y,
        weight,
        pos_weight,
        grad_output,
        scalars,
        loss_out,
        grad_out,
        blocks_out,
    )
    # One block (small inputs) is read by index: no views, no NumPy reductions.
    if (
        (blocks_out[1, 0] if nblocks == 1 else blocks_out[1].any())
        if nblocks
        else False
    ):
        _raise_range_error(problem, blocks_out[1].astype(np.uint8), logits)

    loss = None
    if store_loss:
        loss = loss_out
    elif reduce_loss:
        total = blocks_out[0, 0] if nblocks == 1 else math.fsum(blocks_out[0])
        loss = total if problem.reduction == "sum" else (total / n if n else math.nan)
    return loss, (grad_out if want_grad else None)
