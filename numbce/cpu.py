"""CPU backend: Numba loops over flat arrays, one kernel definition for every family and
variant.

:func:`_kernel` compiles the loop for one :class:`Variant` (a frozen dataclass: the family,
the dtype, which results are stored or reduced, how each operand is laid out, serial or
parallel) around the family's per-element formulas; the flags are compile-time constants,
so each variant carries only the work it asks for.

Determinism: the data is cut into fixed blocks of :data:`numbce._config.BLOCK` elements;
each block sums its losses in float64 in a fixed pairwise order (:func:`_tree_sum`), records
out-of-range values in flags; the partials are then added with ``math.fsum``. No fastmath
flag is used (sums are never reordered, no ``a*b + c`` is contracted into an FMA, which LLVM
decides differently per CPU and even per compilation of the same code), so the bits are
the same for any thread count, any x86-64 CPU, and a fresh or cached compile. Each variant
has its own cache file, keyed by the variant and a hash of the sources it is built from.

Threads: Numba's ``workqueue`` threading layer (what an install without OpenMP or TBB
gets) aborts the process when two threads launch parallel kernels at once, so parallel
launches take :data:`PARALLEL_LAUNCH`; serial kernels (small inputs) run concurrently
without the GIL.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import operator
import pathlib
import textwrap
import threading
import types
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import binding
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.np.unsafe.ndarray import to_fixed_tuple

from numbce import _config, _validate, _vectormath
from numbce._cache import use_checked_cache
from numbce._validate import Request
from numbce.losses import FAMILIES, Primitives
from numbce.losses._family import MAX_PARAMS

BAD_INPUT, BAD_TARGET = 1, 2
"""Bits of a block's flags: an input (where range-checked) or a target outside [0, 1]."""

PARAMS_AT = 4
"""Where the family's :data:`MAX_PARAMS` parameters start in a kernel's ``scalars`` (after
the weight, pos_weight, gradient scale and row length)."""

SCALAR, ROW, FULL = "scalar", "row", "full"
"""Operand layouts: one value; one value per column of the last axis (indexed in the
kernel, never copied out to the input's size); a flat array of the input's size."""

PARALLEL_LAUNCH = threading.Lock()
"""Held while a parallel kernel runs (see the module docstring)."""

_INLINE = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": False,
    "forceinline": True,
}
"""Functions the kernels call: inlined by LLVM (see :mod:`numbce._vectormath`)."""

_SOURCES = ("cpu.py", "_formulas.py", "_vectormath.py", "losses")
_SOURCE_HASH = hashlib.sha1(
    b"".join(
        path.read_bytes()
        for name in _SOURCES
        for path in sorted((pathlib.Path(__file__).parent / name).glob("**/*.py"))
        or [pathlib.Path(__file__).parent / name]
    )
).hexdigest()[:12]
"""Numba's cache checks only the file of the function it compiles; the kernels inline
code from these files too, so their hash keys every cache entry."""


@dataclass(frozen=True)
class Variant:
    """Everything a compiled kernel depends on besides the argument types."""

    family: str
    dtype: str
    store_loss: bool
    reduce_loss: bool
    store_grad: bool
    store_hess: bool
    weight: str
    pos_weight: str
    grad_output_array: bool
    parallel: bool
    interleave: (
        int  # LLVM's loop-vectorizer interleave count (Family.vector_interleave)
    )
    defaults: bool = False
    """Weights of 1 and the family's default options, compiled in as constants: LLVM then
    drops only the arithmetic they make exact (``w * 1``, ``y * 1``; ``y + 0.0`` stays, as
    -0.0 + 0.0 is +0.0), so the results are those of the general kernel."""


@functools.cache
def default_params(family: str) -> tuple:
    """The kernel parameters of ``family``'s default options."""
    options = FAMILIES[family].options
    values = tuple(option.default for option in options)
    return (
        _validate._params(FAMILIES[family], values) if options else _validate._NO_PARAMS
    )


@functools.cache
def _primitives(dtype: str, data: str) -> Primitives:
    """The vectorizable primitives computing in ``dtype`` for data of dtype ``data``.

    ``power(m, g)`` is ``m * m`` (correctly rounded) for ``g = 2``: what LLVM makes of
    ``pow(m, 2)`` where ``g`` is a constant (:attr:`Variant.defaults`), so that both
    kernels agree, and the defaults kernel vectorizes. Other ``g``: libm's ``pow``
    (correctly rounded to about 0.5 ulp, but a scalar call) for data of its own dtype;
    float32 data computed in float64 takes ``exp(g log m)`` instead: vectorized, and its
    float64 error (about ``g |log m|`` float64 ulps) vanishes in the rounding to
    float32."""
    fmt = _vectormath.FLOAT32 if dtype == "float32" else _vectormath.FLOAT64
    exp, log, log1p, log1p_unit = _vectormath.make(fmt)
    jit = numba.njit(**_INLINE)
    zero, one, two = fmt.real(0.0), fmt.real(1.0), fmt.real(2.0)

    if data == dtype:

        @jit
        def power(m, g):
            return m * m if g == two else m**g

    else:

        @jit
        def power(m, g):
            if g == two:
                return m * m
            return one if g == zero else exp(g * log(m))

    narrow = None if data == dtype else _primitives(data, data)
    return Primitives(
        fmt.real, exp, log, log1p, log1p_unit, power, jit, _vectormath.fma, narrow
    )


@functools.cache
def _element(family: str, dtype: str):
    """The family's formulas for ``dtype``: ``(x, y, w, q, params) -> (loss, grad, hess)``
    in ``dtype``, ``params`` a tuple of :data:`numbce.losses._family.MAX_PARAMS` values of :func:`_params_dtype`."""
    if _params_dtype(family, dtype) == dtype:
        return FAMILIES[family].element(_primitives(dtype, dtype))
    wide = FAMILIES[family].element(_primitives("float64", dtype))
    narrow, double = np.float32, np.float64

    @numba.njit(**_INLINE)
    def element(x, y, w, q, params):
        loss, grad, hess = wide(double(x), double(y), double(w), double(q), params)
        return narrow(loss), narrow(grad), narrow(hess)

    return element


def _params_dtype(family: str, dtype: str) -> str:
    """The dtype a family's formulas compute ``dtype`` data in."""
    return "float64" if FAMILIES[family].float32_in_float64 else dtype


@numba.njit(**_INLINE)
def _tree_sum(values, count, scratch):
    """float64 sum of ``values[:count]`` in a fixed pairwise order: ``values`` is padded
    with zeros to the next power of two, whose halves are added elementwise into
    ``scratch`` (float64, half of ``values``' size), then halved again down to one. Every
    step is an elementwise loop the compiler vectorizes in this exact order, and the order
    depends on ``count`` alone."""
    width = values.size
    while width > 1 and width // 2 >= count:
        width //= 2
    if width == 1:
        return np.float64(values[0]) if count else 0.0
    for i in range(count, width):
        values[i] = 0
    half = width // 2
    for k in range(half):
        scratch[k] = np.float64(values[k]) + np.float64(values[k + half])
    while half > 1:
        half //= 2
        for k in range(half):
            scratch[k] += scratch[k + half]
    return scratch[0]


ARGUMENTS = ("x", "y", "weight", "pos_weight", "grad_output", "scalars",
             "loss_out", "grad_out", "hess_out", "blocks_out")  # fmt: skip
"""The arguments of :func:`_kernel_body`, in order."""


def kernel_arguments(variant: Variant) -> tuple[str, ...]:
    """The arguments the compiled kernel of ``variant`` takes: those of :data:`ARGUMENTS`
    it reads or writes (an array argument costs a call from Python about 0.06 us)."""
    unused = {
        "weight": variant.weight == SCALAR,
        "pos_weight": variant.pos_weight == SCALAR,
        "grad_output": not variant.grad_output_array,
        "loss_out": not variant.store_loss,
        "grad_out": not variant.store_grad,
        "hess_out": not variant.store_hess,
    }
    return tuple(name for name in ARGUMENTS if not unused.get(name, False))


def _narrowed(function, arguments: tuple[str, ...]):
    """:func:`_kernel_body`'s ``function`` recompiled from its own source with only
    ``arguments``; each other argument is one 1-element array made inside, never touched
    (a wrapper taking fewer arguments would compile the loop twice). Its closure's values
    become globals, Numba's compile-time constants either way; the two lines of the
    header stay two, so line numbers in errors are the file's."""
    code = function.__code__
    lines = inspect.getsource(function).splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if "):" in line) + 1
    assert header == 2, "the kernel's header is two lines"
    unused = [name for name in ARGUMENTS if name not in arguments]
    setup = "; ".join([f"{name} = unused" for name in unused])
    source = "".join(
        ["\n" * (code.co_firstlineno - 1),
         f"def kernel({', '.join(arguments)}):\n",
         f"    unused = np.empty(1, x.dtype); {setup}\n" if unused else "    pass\n",
         *textwrap.dedent("".join(lines)).splitlines(keepends=True)[header:]]
    )  # fmt: skip
    scope = {**function.__globals__,
             **{name: cell.cell_contents
                for name, cell in zip(code.co_freevars, function.__closure__)}}  # fmt: skip
    exec(compile(source, __file__, "exec"), scope)  # noqa: S102
    return scope["kernel"]


def _kernel(variant: Variant):
    """The compiled kernel of ``variant``: :func:`_kernel_body` taking only
    :func:`kernel_arguments`, with its interleave count, cached under a name keyed by the
    variant, the values it compiles in (default parameters, block size) and the sources."""
    function = _narrowed(_kernel_body(variant), kernel_arguments(variant))
    constants = (astuple(variant), default_params(variant.family), _config.BLOCK)
    key = hashlib.sha1(repr((constants, _SOURCE_HASH)).encode()).hexdigest()
    function.__qualname__ = f"kernel_{variant.family}_{key[:16]}"
    kernel = _InterleavingDispatcher(
        py_func=function,
        locals={},
        targetoptions={"nopython": True, "parallel": variant.parallel,
                       "nogil": True, "error_model": "numpy"},
    )  # fmt: skip
    kernel.vector_interleave = variant.interleave
    return use_checked_cache(kernel)


class _InterleavingDispatcher(CPUDispatcher):
    """Numba's CPU dispatcher, compiling with LLVM's loop-vectorizer interleave count set to
    ``vector_interleave`` (see :class:`numbce.losses.Family`'s): an LLVM option of the whole
    process, so it is set under Numba's compiler lock and put back to LLVM's default (0,
    the cost model) after the compile. A compiled kernel computes every element the same
    way whatever the count: it changes the speed, never a bit of a result."""

    vector_interleave = 0

    def compile(self, sig):
        if not self.vector_interleave:
            return super().compile(sig)
        with global_compiler_lock:
            _set_interleave(self.vector_interleave)
            try:
                return super().compile(sig)
            finally:
                _set_interleave(0)


def _set_interleave(count: int) -> None:
    binding.set_option("numbce", f"-force-vector-interleave={count}")


def _kernel_body(variant: Variant):
    """The kernel of ``variant`` as a Python function for Numba to compile, taking every
    one of :data:`ARGUMENTS` (:func:`_kernel` compiles it with fewer).

    Arguments: ``x, y`` flat arrays of the compute dtype; ``weight, pos_weight`` flat arrays
    laid out per the variant (any 1-element array where SCALAR); ``grad_output`` a flat
    array (ignored unless ``grad_output_array``); ``scalars`` float64 ``[weight,
    pos_weight, grad_scale, row, *params]``: the operands' values where SCALAR,
    ``grad_scale`` multiplying every derivative, ``row`` the length of the last axis (the
    period of ROW operands), the family's :data:`numbce.losses._family.MAX_PARAMS`
    parameters (one array: few arguments make a fast call); ``loss_out, grad_out,
    hess_out`` outputs of ``x.size`` (any 1-element array where not stored);
    ``blocks_out`` float64 of shape (2, number of blocks): each block's loss sum and range
    flags. Returns the flags of all blocks OR-ed (0: every value in range).
    """
    family = FAMILIES[variant.family]
    real = np.dtype(variant.dtype).type
    param = np.dtype(_params_dtype(variant.family, variant.dtype)).type
    zero, one = real(0.0), real(1.0)
    defaults = variant.defaults
    constant_params = tuple(map(param, default_params(variant.family)))
    block, block_u = _config.BLOCK, np.uint64(_config.BLOCK)
    blocks = numba.prange if variant.parallel else range
    check_input = family.input_in_unit_interval
    store_loss, reduce_loss = variant.store_loss, variant.reduce_loss
    store_grad, store_hess = variant.store_grad, variant.store_hess
    weight_full, weight_row = variant.weight == FULL, variant.weight == ROW
    pos_weight_full, pos_weight_row = (
        variant.pos_weight == FULL,
        variant.pos_weight == ROW,
    )
    rowwise = weight_row or pos_weight_row
    grad_output_array = variant.grad_output_array

    def kernel(x, y, weight, pos_weight, grad_output, scalars,
               loss_out, grad_out, hess_out, blocks_out):  # fmt: skip
        if defaults:
            weight_value, pos_weight_value, params = one, one, constant_params
        else:
            weight_value, pos_weight_value = real(scalars[0]), real(scalars[1])
            params = to_fixed_tuple(scalars[PARAMS_AT:].astype(param), MAX_PARAMS)
        grad_scale, row_u = real(scalars[2]), np.uint64(scalars[3])
        n = np.uint64(x.size)
        nblocks = blocks_out.shape[1]
        for t in blocks(nblocks):
            # The last (partial) block first: threads take equal runs of iterations, the
            # first runs one longer where they cannot be equal, so the short block
            # balances them (2 threads, N = 1e5: 50,848 and 49,152 elements, not 53,248
            # and 46,752).
            b = (t + nblocks - 1) % nblocks
            # Unsigned indices: no negative-index wraparound, which would turn every load
            # into a gather.
            start = np.uint64(b) * block_u
            stop = min(start + block_u, n)
            # Losses go through an L1-sized buffer, summed after the loop: a float64
            # accumulator inside it would narrow float32 SIMD to the width of float64.
            block_losses = np.empty(block if reduce_loss else 0, dtype=x.dtype)
            scratch = np.empty(block // 2 if reduce_loss else 0)
            # Boolean accumulators: an integer one would widen the SIMD lanes to 64 bits.
            inputs_ok = True
            targets_ok = True
            segment = start
            while segment < stop:  # one segment, or one per row for ROW operands
                column = segment % row_u if rowwise else np.uint64(0)
                segment_stop = min(stop, segment + row_u - column) if rowwise else stop
                for i in range(segment, segment_stop):
                    c = column + (i - segment)
                    w = (
                        weight[i]
                        if weight_full
                        else (weight[c] if weight_row else weight_value)
                    )
                    q = (pos_weight[i] if pos_weight_full
                         else (pos_weight[c] if pos_weight_row else pos_weight_value))  # fmt: skip
                    xi, yi = x[i], y[i]
                    loss, grad, hess = element(xi, yi, w, q, params)  # noqa: F821 (global below)
                    if check_input:
                        inputs_ok &= (xi >= zero) & (xi <= one)
                    targets_ok &= (yi >= zero) & (yi <= one)
                    if reduce_loss:
                        block_losses[i - start] = loss
                    if store_loss:
                        loss_out[i] = loss
                    scale = (
                        grad_output[i] * grad_scale if grad_output_array else grad_scale
                    )
                    if store_grad:
                        grad_out[i] = grad * scale
                    if store_hess:
                        hess_out[i] = hess * scale
                segment = segment_stop
            blocks_out[0, b] = (
                tree_sum(block_losses, stop - start, scratch)  # noqa: F821 (global below)
                if reduce_loss
                else 0.0
            )
            blocks_out[1, b] = BAD_INPUT * (not inputs_ok) + BAD_TARGET * (
                not targets_ok
            )
        flags = 0  # every block's flags: the caller looks at blocks only if one is set
        for b in range(blocks_out.shape[1]):
            flags |= int(blocks_out[1, b])
        return flags

    # The family's formulas are globals of this copy of the kernel, not closure cells
    # (Numba would never find a kernel that closes over a dispatcher in its cache).
    names = {"np": np, "element": _element(variant.family, variant.dtype),
             "tree_sum": _tree_sum, "BAD_INPUT": BAD_INPUT, "BAD_TARGET": BAD_TARGET,
             "to_fixed_tuple": to_fixed_tuple, "PARAMS_AT": PARAMS_AT,
             "MAX_PARAMS": MAX_PARAMS, "__name__": __name__}  # fmt: skip
    return types.FunctionType(
        kernel.__code__, names, "kernel_body", None, kernel.__closure__
    )


_PLACEHOLDER = {np.dtype(t): np.ones(1, dtype=t) for t in (np.float32, np.float64)}
"""Stand-in for the operands and outputs a variant ignores (no allocation per call; the
same array type as real ones, so it adds no compiled variants; never written)."""


def _flat(a, dtype: np.dtype) -> np.ndarray:
    a = a if type(a) is np.ndarray else np.asarray(a)
    if a.dtype == dtype and a.flags.c_contiguous:
        return a if a.ndim == 1 else a.reshape(-1)
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _layout(value, shape: tuple, dtype: np.dtype) -> tuple[str, float, np.ndarray]:
    """``(layout, scalar, array)`` of a float or array operand broadcastable to ``shape``."""
    if isinstance(value, float):
        return SCALAR, value, _PLACEHOLDER[dtype]
    a = np.asarray(value)
    if len(shape) > 1 and a.ndim and a.shape[-1] == shape[-1] and a.size == shape[-1]:
        return ROW, 1.0, _flat(a, dtype)
    return FULL, 1.0, _flat(np.broadcast_to(a, shape), dtype)


def _raise_range_error(request: Request, x, y, flags: np.ndarray) -> None:
    """Find the first offending element (error path only) and raise its ValueError."""
    checks = [(BAD_TARGET, y, "target")]
    if request.family.input_in_unit_interval:
        checks.insert(0, (BAD_INPUT, x, request.family.input_name))
    block = _config.BLOCK
    for bit, values, name in checks:
        bad_blocks = np.flatnonzero(flags & bit)
        if bad_blocks.size:
            start = int(bad_blocks[0]) * block
            _validate.check_unit_interval(
                name, values[start : start + block], start, request.shape
            )


def _buffer(out, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(where the kernel writes one result, the result)``: the caller's ``out`` (flat
    for the kernel, itself as the result) when it is C-contiguous in the compute dtype, else
    a new flat array for both (copied into ``out`` by the caller)."""
    if out is None or out.dtype != dtype or not out.flags.c_contiguous:
        new = np.empty(n, dtype)
        return new, new
    return (out if out.ndim == 1 else out.reshape(-1)), out


class _Plan(NamedTuple):
    """How :func:`run` runs one request, besides its data and result buffers."""

    kernel: CPUDispatcher
    pick: Callable[[tuple], tuple]
    """Picks the kernel's arguments from a tuple of all of :data:`ARGUMENTS`."""
    weight: np.ndarray
    pos_weight: np.ndarray
    scalars: np.ndarray
    """The kernel's ``scalars`` argument (float64, never written)."""
    store_loss: bool
    reduce_loss: bool
    grad_output_array: bool
    parallel: bool
    nblocks: int


_PLANS: dict[tuple, _Plan] = {}
"""Plans of requests whose operands are nonzero floats, by everything the plan depends on,
the settings of :mod:`numbce._config` included (a zero is left out: 0.0 == -0.0, but the
two give results of different signs)."""

_KERNELS: dict[tuple, tuple] = {}
"""``(compiled kernel, what picks its arguments from all of ARGUMENTS)`` by the fields of
its :class:`Variant` and the block size it compiles in (a tuple: a lookup stays cheap)."""


def _plan(request: Request) -> _Plan:
    """Work out how to run ``request``: lay out its operands, pick (or compile) the kernel
    of its :class:`Variant`, pack its scalars."""
    dtype, n, outputs, shape = (
        request.dtype,
        request.size,
        request.outputs,
        request.shape,
    )
    weight_layout, weight_value, weight = _layout(request.weight, shape, dtype)
    pos_weight_layout, pos_weight_value, pos_weight = _layout(
        request.pos_weight, shape, dtype
    )
    store_loss, reduce_loss = request.store_loss, request.reduce_loss
    derivatives = outputs.grad or outputs.hess
    grad_output_array = derivatives and type(request.grad_output) is not float
    parallel = n >= _config.PARALLEL_THRESHOLD
    name = request.family.name
    defaults = (
        weight_layout == pos_weight_layout == SCALAR
        and weight_value == pos_weight_value == 1.0
        and request.params == default_params(name)
    )
    key = (name, dtype.char, store_loss, reduce_loss, outputs.grad, outputs.hess,
           weight_layout, pos_weight_layout, grad_output_array, parallel,
           request.family.vector_interleave[n >= _config.STREAMING_THRESHOLD],
           defaults, _config.BLOCK)  # fmt: skip
    compiled = _KERNELS.get(key)
    if compiled is None:
        variant = Variant(key[0], dtype.name, *key[2:-1])
        positions = [ARGUMENTS.index(name) for name in kernel_arguments(variant)]
        compiled = _KERNELS[key] = (_kernel(variant), operator.itemgetter(*positions))
    grad_scale = request.grad_scale if derivatives else 1.0
    scalars = np.array((weight_value, pos_weight_value, grad_scale,
                        shape[-1] if shape else 1, *request.params))  # fmt: skip
    return _Plan(*compiled, weight, pos_weight, scalars, store_loss, reduce_loss,
                 grad_output_array, parallel, -(-n // _config.BLOCK))  # fmt: skip


def plan_for(request: Request) -> _Plan:
    """How :func:`execute` runs ``request``: cached where every operand is a float (the
    plan then depends on the request's metadata alone), else made anew."""
    weight, pos_weight, grad_output = (
        request.weight,
        request.pos_weight,
        request.grad_output,
    )
    if not (
        type(weight) is type(pos_weight) is type(grad_output) is float
        and weight
        and pos_weight
        and grad_output
    ):
        return _plan(request)
    key = (request.family.name, request.outputs, request.dtype.char,
           request.reduction, request.shape, weight, pos_weight, grad_output,
           request.params, _config.BLOCK, _config.PARALLEL_THRESHOLD,
           _config.STREAMING_THRESHOLD)  # fmt: skip
    found = _PLANS.get(key)
    if found is None:
        if len(_PLANS) >= 256:
            _PLANS.clear()
        found = _PLANS[key] = _plan(request)
    return found


def run(request: Request):
    """One pass of the kernel over a NumPy ``request``: ``(loss, grad, hess)``, each None
    unless asked for. ``loss`` is a float64 sum or mean for 'mean'/'sum' (summed in
    float64), else a flat array of the compute dtype, like ``grad`` and ``hess``, or the
    caller's ``out`` buffer itself where the kernel wrote into it."""
    return execute(plan_for(request), request, request.input, request.target)


def execute(plan: _Plan, request: Request, input: np.ndarray, target: np.ndarray):
    """:func:`run` with its plan, on ``input`` and ``target``: the request's own, or arrays
    of the same dtypes and shape as those it was checked with (a caller that keeps a
    plan and a request for calls of one kind: their values are checked here)."""
    (kernel, pick, weight, pos_weight, scalars, store_loss, reduce_loss,
     grad_output_array, parallel, nblocks) = plan  # fmt: skip
    dtype, n, outputs, out = request.dtype, request.size, request.outputs, request.out
    x, y = _flat(input, dtype), _flat(target, dtype)
    placeholder = _PLACEHOLDER[dtype]
    loss_out, loss = _buffer(out[0], n, dtype) if store_loss else (placeholder, None)
    grad_out, grad = _buffer(out[1], n, dtype) if outputs.grad else (placeholder, None)
    hess_out, hess = _buffer(out[2], n, dtype) if outputs.hess else (placeholder, None)
    grad_output = (
        _flat(request.grad_output, dtype) if grad_output_array else placeholder
    )
    blocks_out = np.empty((2, nblocks))
    arguments = pick((x, y, weight, pos_weight, grad_output, scalars,
                      loss_out, grad_out, hess_out, blocks_out))  # fmt: skip
    if parallel:
        with PARALLEL_LAUNCH:
            flags = kernel(*arguments)
    else:
        flags = kernel(*arguments)
    if flags:
        _raise_range_error(request, x, y, blocks_out[1].astype(np.uint8))

    if reduce_loss:
        total = (
            blocks_out.item(0)
            if nblocks == 1
            else _validate.exact_sum(blocks_out[0].tolist())
        )
        loss = _validate.finish(total, n, request.reduction)
    return loss, grad, hess
