"""CUDA kernels: grid-stride loops over device arrays, generated from one definition.

:func:`compute` is the GPU backend of :mod:`numbce.functional`: it takes arrays exposing
``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA tensors) or the
CUDA simulator's arrays, checks them with :func:`numbce._validate.validate` (the CPU's
request and messages) and runs one fused pass of a kernel from :func:`_kernel`. The
per-element math is each family's ``element`` (:mod:`numbce.losses`), compiled with
``cuda.jit(device=True)`` over ``math.exp``, ``math.log`` and ``math.log1p`` (libdevice):
the CPU kernels' formulas, not a copy.

One pass, one launch of at most :data:`numbce._config.BLOCKS_PER_SM` blocks per
multiprocessor of :data:`numbce._config.THREADS_PER_BLOCK` threads; each thread walks the data with the grid's stride:

* it reads ``x[i]`` and ``y[i]`` once (range-checking the target in its own dtype, then
  casting it, and the weights, to the compute dtype in registers), writes each result asked
  for once, and adds its losses into a float64 register;
* each block sums its threads' float64 sums with a fixed tree in dynamic shared memory into
  ``partial[block]``; the host adds the partials with ``math.fsum`` (as the CPU does), so a
  result is the same on every call on the same device, and no second pass reads the data;
* a per-column operand (``pos_weight`` of shape (C,)) is read at ``i % C``, never copied out;
* a thread keeps the first index at which a probability or target is outside [0, 1] and
  ends with one ``atomic.min`` into ``first_bad``: the host then raises the CPU's ValueError
  for the first offending element, copying that one value back.

Warp shuffles would only speed up the per-block sum, done once per thread after the loop,
so there is one reduction path, the shared-memory one, which the simulator runs too.

``numba.cuda`` is imported on the first call (:func:`_require_cuda`), never by
``import numbce``; without numba-cuda or a CUDA driver that call raises
:class:`CudaUnavailableError`. Under ``NUMBA_ENABLE_CUDASIM=1`` the simulator runs the same
kernels in Python, with NumPy's ``exp``/``log``/``log1p`` (IEEE results at 0, where Python's
``math`` raises).
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import warnings
from fractions import Fraction
from typing import Any

import numba
import numpy as np

from numbce import _config, _validate, cpu
from numbce._validate import Outputs
from numbce.losses import Family, Primitives

cuda: Any = None
"""``numba.cuda``, set by :func:`_require_cuda`. The kernels must find it among this
module's globals: the simulator swaps it there for its fake thread context."""


class CudaUnavailableError(RuntimeError):
    """The GPU path was asked for without numba-cuda or without a usable CUDA driver."""


def _require_cuda() -> None:
    """Import ``numba.cuda`` into :data:`cuda`; raise :class:`CudaUnavailableError` if it
    cannot run."""
    global cuda
    try:
        module = importlib.import_module("numba.cuda")
    except ImportError as error:
        raise CudaUnavailableError(
            "numbce got a CUDA array but numba-cuda is not installed: "
            "pip install 'numbce[cuda]'"
        ) from error
    if not module.is_available():
        raise CudaUnavailableError(
            "numbce got a CUDA array but no CUDA driver or GPU is usable "
            f"({module.cuda_error()}); set NUMBA_ENABLE_CUDASIM=1 to use Numba's "
            "CUDA simulator"
        )
    cuda = module


def _simulator() -> bool:
    return bool(importlib.import_module("numba.cuda.core.config").ENABLE_CUDASIM)


def _ieee(function):
    """``function`` on NumPy scalars, silent about inf and nan results, as a GPU computes
    them (simulator only: NumPy would warn)."""

    def call(*args):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return function(*args)

    return call


def _exact_fma(a, b, c):
    """``a * b + c`` rounded once, for the simulator (its ``cuda.fma`` rounds twice)."""
    if not all(map(math.isfinite, (a, b, c))):
        return a * b + c
    return type(a)(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


@functools.cache
def _element(family: Family, single: bool, simulator: bool):
    """``family``'s per-element formulas for one dtype, compiled as a CUDA device function
    (float32 data computed in float64 where the family asks for it, as on the CPU)."""
    if simulator:
        exp, log, log1p, power = map(_ieee, (np.exp, np.log, np.log1p, np.power))
        fma = _exact_fma
    else:
        exp, log, log1p, power = math.exp, math.log, math.log1p, math.pow
        fma = cuda.fma
    device = cuda.jit(device=True)
    jit = (lambda function: device(_ieee(function))) if simulator else device
    wide = single and family.float32_in_float64
    real = np.float32 if single and not wide else np.float64
    primitives = functools.partial(
        Primitives, exp=exp, log=log, log1p=log1p, log1p_unit=log1p, power=power,
        jit=jit, fma=fma,
    )  # fmt: skip
    narrow = primitives(np.float32) if wide else None
    element = family.element(primitives(real, data=narrow))
    if not wide:
        return element
    narrow, double = np.float32, np.float64

    def narrowed(x, y, w, q, params):
        loss, grad, hess = element(double(x), double(y), double(w), double(q), params)
        return narrow(loss), narrow(grad), narrow(hess)

    return jit(narrowed)


@functools.cache
def _kernel(family: Family, variant, threads: int, simulator: bool):
    """The kernel of one :class:`numbce.cpu.Variant` (its ``parallel`` is ignored), compiled
    per argument types on first launch.

    Arguments (arrays flat; one a variant does not use is never touched): ``x``
    (float16/32/64), ``y`` (any real or bool dtype: range-checked in it, then cast to the
    compute dtype, float32 or float64, as on the CPU), ``weight``, ``pos_weight`` (any real
    dtype: ``n`` elements if FULL, ``row`` if ROW), ``grad_output`` (``n``); the scalars
    ``weight_value``, ``pos_weight_value`` (used where SCALAR), ``grad_scale`` of the
    compute dtype; ``params`` the family's parameters; ``row`` the last axis' length;
    outputs ``loss_out``, ``grad_out``, ``hess_out`` (of ``x``'s dtype), ``partial``
    (float64, one per block) and ``first_bad`` (int64: first bad input index, first bad
    target index; set to ``n`` before the launch). Launch with ``threads`` threads per block.
    """
    if threads < 1 or threads & (threads - 1):
        raise ValueError(f"threads per block must be a power of two, got {threads}")
    real = np.float32 if variant.dtype == "float32" else np.float64
    element = _element(family, variant.dtype == "float32", simulator)
    check_input = family.input_in_unit_interval
    store_loss, reduce_loss = variant.store_loss, variant.reduce_loss
    store_grad, store_hess = variant.store_grad, variant.store_hess
    weight_full, weight_row = variant.weight == "full", variant.weight == "row"
    pos_weight_full = variant.pos_weight == "full"
    pos_weight_row = variant.pos_weight == "row"
    grad_output_array = variant.grad_output_array

    def kernel(x, y, weight, pos_weight, grad_output, weight_value, pos_weight_value,
               grad_scale, params, row, loss_out, grad_out, hess_out, partial,
               first_bad):  # fmt: skip
        n = x.size
        bad_input = n
        bad_target = n
        total = 0.0  # float64, whatever the dtype
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            # The flags are compile-time constants: the other branches are compiled out.
            xi = real(x[i])
            target = y[i]
            if not (
                (target >= 0) & (target <= 1)
            ):  # before rounding to the compute dtype
                bad_target = min(bad_target, i)
            if check_input and not ((xi >= 0) & (xi <= 1)):
                bad_input = min(bad_input, i)
            w = weight_value
            if weight_full:
                w = real(weight[i])
            elif weight_row:
                w = real(weight[i % row])
            q = pos_weight_value
            if pos_weight_full:
                q = real(pos_weight[i])
            elif pos_weight_row:
                q = real(pos_weight[i % row])
            loss, grad, hess = element(xi, real(target), w, q, params)
            if reduce_loss:
                total += loss
            if store_loss:
                loss_out[i] = loss
            scale = grad_scale
            if grad_output_array:
                scale = real(grad_output[i]) * grad_scale
            if store_grad:
                grad_out[i] = grad * scale
            if store_hess:
                hess_out[i] = hess * scale
        if bad_input < n:
            cuda.atomic.min(first_bad, 0, bad_input)
        if bad_target < n:
            cuda.atomic.min(first_bad, 1, bad_target)
        if reduce_loss:
            # Dynamic shared memory (size 0 here, ``threads`` float64 at launch): the
            # simulator backs it with one buffer per launch, where it creates a static
            # array on a block's first request without a lock (two threads of a block
            # could get two arrays, and partial sums were lost).
            sums = cuda.shared.array(0, numba.float64)
            t = cuda.threadIdx.x
            sums[t] = total
            cuda.syncthreads()
            width = threads // 2
            while width > 0:
                if t < width:
                    sums[t] += sums[t + width]
                cuda.syncthreads()
                width //= 2
            if t == 0:
                partial[cuda.blockIdx.x] = sums[0]

    return cuda.jit(kernel)


def _is_torch(a) -> bool:
    return type(a).__module__.partition(".")[0] == "torch"


def _as_device(a):
    """A Numba device array viewing ``a``'s memory (no copy; a PyTorch tensor through a
    detached view), with the stream ``a`` reports (none for PyTorch: see :func:`_stream`)."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if _is_torch(a):
        a = a.detach()
    return cuda.as_cuda_array(a, sync=False)


def _stream(input, array):
    """The caller's stream: PyTorch's current one for a tensor (its array interface omits
    it), else the one ``array`` carries (a Numba array's ``stream``, 0 for the default)."""
    if not _is_torch(input):
        return array.stream
    torch = sys.modules["torch"]
    handle = torch.cuda.current_stream(input.device).cuda_stream
    return cuda.external_stream(handle) if handle else 0


def _to_host(a, stream) -> np.ndarray:
    host = a.copy_to_host(stream=stream)
    if stream:
        stream.synchronize()
    return host


def _flat(a, shape: tuple, n: int, stream, dtype=None):
    """``a`` (device, broadcastable to ``shape``) as a flat C-contiguous array of ``n``.

    A C-contiguous array of the full shape is viewed in place; any other (strided, or of a
    broadcast shape) is copied once on the device into a new array of ``dtype`` (default:
    ``a``'s), by Numba's broadcasting assignment kernel.
    """
    if tuple(a.shape) == tuple(shape) and a.is_c_contiguous():
        return a.reshape(n)
    full = cuda.device_array(shape, dtype=dtype or a.dtype, stream=stream)
    if n:
        full[:] = a
    return full.reshape(n)


def _layout(name: str, value, shape: tuple, dtype: np.dtype, stream):
    """``(layout, scalar, flat device array or None)`` of a validated operand: a float is
    SCALAR; a one-element array becomes one (copied back if on the device); an array along
    the last axis (shape (C,), (1, C), ...) is ROW, used in place; any other array is FULL,
    broadcast on the host (then copied once) or on the device."""
    if isinstance(value, float):
        return "scalar", value, None
    on_device = _validate.is_cuda_array(value)
    value = _as_device(value) if on_device else np.asarray(value)
    if value.size == 1:
        host = _to_host(value, stream) if on_device else value
        return "scalar", float(host.reshape(())), None
    n = math.prod(shape)
    row = len(shape) > 1 and value.size == shape[-1] == tuple(value.shape)[-1]
    if row and not on_device:
        return (
            "row",
            1.0,
            cuda.to_device(np.ascontiguousarray(value.reshape(-1)), stream=stream),
        )
    if row and value.is_c_contiguous():
        return "row", 1.0, value.reshape(value.size)
    if on_device:
        return "full", 1.0, _flat(value, shape, n, stream, dtype)
    full = np.ascontiguousarray(np.broadcast_to(value, shape), dtype=dtype).reshape(-1)
    return "full", 1.0, cuda.to_device(full, stream=stream)


def _empty(like, array, shape: tuple, stream):
    """A device array of ``array``'s dtype and ``shape``: from PyTorch's caching allocator
    (on its current stream) when the input ``like`` is a tensor, else from Numba."""
    if _is_torch(like):
        return cuda.as_cuda_array(like.detach().new_empty(shape), sync=False)
    return cuda.device_array(shape, dtype=array.dtype, stream=stream)


def _range_error(
    family: Family, first_bad: np.ndarray, x, y, n: int, dtype, shape: tuple, stream
):
    """The CPU's ValueError for the first bad input, else the first bad target (named with
    its value in its own dtype, as the CPU checks a wide target before rounding it)."""
    for index, values, name in (
        (first_bad[0], x, family.input_name),
        (first_bad[1], y, "target"),
    ):
        if index < n:
            index = int(index)
            value = _to_host(values[index : index + 1], stream)[0]
            value = float(value) if name == "target" else dtype.type(value).item()
            return _validate.OutOfRangeError(name, index, value, shape)
    return None


def _max_blocks() -> int:
    if _config.MAX_BLOCKS is not None:
        return _config.MAX_BLOCKS
    # The simulator's device has no multiprocessor count: one block per "SM" there.
    device = cuda.get_current_device()
    return _config.BLOCKS_PER_SM * getattr(device, "MULTIPROCESSOR_COUNT", 1)


def compute(family: Family, outputs: Outputs, input, target, **options) -> tuple:
    """``(loss, grad, hess)`` of ``family`` for GPU arrays (None where not asked for).

    ``input`` and ``target`` are device arrays of one shape (``input`` float16/32/64,
    float16 computed in float32; ``target`` any real or bool dtype), used in place;
    ``weight``, ``pos_weight`` and ``grad_output`` may be host or device values (see
    :func:`_layout`). The launch goes on the stream ``input`` carries (a Numba array's
    ``stream``, e.g. set with ``.bind(stream)``; PyTorch's current stream for a tensor);
    other device operands must be ready on it.

    Returns ``loss``: for ``'none'`` a Numba device array of the input's shape and dtype,
    for ``'mean'``/``'sum'`` a NumPy scalar of the input's dtype (sums in float64);
    ``grad`` and ``hess``: Numba device arrays of the input's shape and dtype, times 1/N for
    ``'mean'`` and times ``grad_output``. Raises TypeError/ValueError exactly as the CPU
    path does, and ValueError for a probability or target outside [0, 1] naming the first
    offending index and value (the one host synchronisation besides fetching a sum).
    """
    _require_cuda()
    if not _validate.is_cuda_array(target):
        raise TypeError(
            "target must be a CUDA array when input is one, got "
            f"{type(target).__module__}.{type(target).__name__}; copy it to the device "
            "first (e.g. numba.cuda.to_device(target))"
        )
    x_array, y_array = _as_device(input), _as_device(target)
    request = _validate.validate(family, outputs, x_array, y_array, **options)
    stream = _stream(input, x_array)
    dtype, shape, n = request.dtype, request.shape, request.size
    layouts = [
        _layout(name, value, shape, dtype, stream)
        for name, value in (
            ("weight", request.weight),
            ("pos_weight", request.pos_weight),
        )
    ]
    grad_output_array = not isinstance(request.grad_output, float)
    store_loss, reduce_loss = request.store_loss, request.reduce_loss
    loss_out = _empty(input, x_array, shape, stream) if store_loss else None
    grad_out = _empty(input, x_array, shape, stream) if outputs.grad else None
    hess_out = _empty(input, x_array, shape, stream) if outputs.hess else None

    total = 0.0
    if n:
        x = _flat(x_array, shape, n, stream)
        y = _flat(y_array, shape, n, stream)
        grad_output = None
        if grad_output_array and (outputs.grad or outputs.hess):
            grad_output = _layout(
                "grad_output", request.grad_output, shape, dtype, stream
            )[2]
        blocks = min(-(-n // _config.THREADS_PER_BLOCK), _max_blocks())
        partial = cuda.device_array(blocks, dtype=np.float64, stream=stream)
        first_bad = cuda.to_device(np.full(2, n, dtype=np.int64), stream=stream)
        dummy = partial  # stands for the arrays a variant does not read or write
        real = dtype.type
        params_type = np.float64 if family.float32_in_float64 else real
        variant = cpu.Variant(
            family=family.name,
            dtype=dtype.name,
            store_loss=store_loss,
            reduce_loss=reduce_loss,
            store_grad=outputs.grad,
            store_hess=outputs.hess,
            weight=layouts[0][0],
            pos_weight=layouts[1][0],
            grad_output_array=grad_output is not None,
            parallel=False,  # parallel and interleave: the CPU's
            interleave=0,
        )
        kernel = _kernel(family, variant, _config.THREADS_PER_BLOCK, _simulator())
        with warnings.catch_warnings():
            # Small inputs need few blocks: that is not the mistake Numba warns about.
            warnings.filterwarnings("ignore", "Grid size .* under-utilization")
            shared_bytes = _config.THREADS_PER_BLOCK * np.dtype(np.float64).itemsize
            launch = kernel[blocks, _config.THREADS_PER_BLOCK, stream, shared_bytes]
        launch(
            x,
            y,
            dummy if layouts[0][2] is None else layouts[0][2],
            dummy if layouts[1][2] is None else layouts[1][2],
            dummy if grad_output is None else grad_output,
            real(layouts[0][1]),
            real(layouts[1][1]),
            real(request.grad_scale),
            tuple(params_type(p) for p in request.params),
            shape[-1] if shape else 1,
            loss_out.reshape(n) if store_loss else dummy,
            grad_out.reshape(n) if outputs.grad else dummy,
            hess_out.reshape(n) if outputs.hess else dummy,
            partial,
            first_bad,
        )
        first_bad = _to_host(first_bad, stream)
        error = _range_error(family, first_bad, x, y, n, dtype, shape, stream)
        if error is not None:
            raise error
        if reduce_loss:
            total = _validate.exact_sum(_to_host(partial, stream))

    loss = loss_out
    if reduce_loss:
        loss = request.shaped(_validate.finish(total, n, request.reduction))
    return loss, grad_out, hess_out
