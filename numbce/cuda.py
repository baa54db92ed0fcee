"""CUDA kernels: grid-stride loops over device arrays, generated from one definition.

:func:`compute` is the GPU backend of :mod:`numbce.functional`: it takes arrays exposing
``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA tensors) or the
CUDA simulator's arrays, checks them with :mod:`numbce._validate` (the CPU's messages) and
runs one fused pass of a kernel from :func:`_kernel`. The per-element math is
:mod:`numbce._formulas`, compiled with ``cuda.jit(device=True)`` over ``math.exp``,
``math.log`` and ``math.log1p`` (libdevice): the CPU kernels' formulas, not a copy.

One pass, one launch of at most :data:`BLOCKS_PER_SM` blocks per multiprocessor of
:data:`THREADS_PER_BLOCK` threads; each thread walks the data with the grid's stride:

* it reads ``x[i]`` and ``y[i]`` once (casting them, and the weights, to the compute dtype
  in registers), writes ``grad[i]`` (and the elementwise loss for ``'none'``) once, and adds
  its losses into a float64 register;
* each block sums its threads' float64 sums with a fixed shared-memory tree into
  ``partial[block]``; the host adds the partials with ``math.fsum`` (as the CPU does), so a
  result is the same on every call on the same device, and no second pass reads the data;
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
from typing import Any

import numpy as np

from numbce import _formulas, _validate

THREADS_PER_BLOCK = 256
"""Threads per block (a power of two: the block sum is a halving tree). Tests patch it."""

BLOCKS_PER_SM = 8
"""Blocks per multiprocessor: 8 x 256 threads fill an SM of 2048; the threads then stride."""

MAX_BLOCKS: int | None = None
"""If set, the grid's size limit instead of ``BLOCKS_PER_SM`` x the SM count (tests patch it
so that tiny arrays still span several blocks and each thread loops)."""

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
    """The NumPy ufunc ``function`` on scalars, silent about -inf and nan (simulator only)."""

    def call(z):
        with np.errstate(divide="ignore", invalid="ignore"):
            return function(z)

    return call


@functools.cache
def _device_formulas(single: bool, simulator: bool):
    """:func:`numbce._formulas.make` for one dtype, compiled as CUDA device functions."""
    if simulator:
        primitives = _ieee(np.exp), _ieee(np.log), _ieee(np.log1p)
    else:
        primitives = math.exp, math.log, math.log1p
    real = np.float32 if single else np.float64
    formulas = _formulas.make(real, *primitives)
    return {
        name: cuda.jit(device=True)(function)
        for name, function in vars(formulas).items()
    }


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
    threads: int,
    simulator: bool,
):
    """The kernel for one combination of flags, compiled per argument types on first launch.

    Arguments (arrays flat, of ``n`` elements; one whose flag is off is never touched):
    ``x`` (float16/32/64), ``y`` (any real or bool dtype), ``weight``, ``pos_weight``,
    ``grad_output`` (any real dtype; each value is cast to the compute dtype, float32 if
    ``single`` else float64, as on the CPU); the scalars ``pos_weight_value``,
    ``weight_value`` (used where those operands are not arrays), ``label_smoothing``,
    ``grad_scale`` of the compute dtype; outputs
    ``loss_out`` and ``grad_out`` (of ``x``'s dtype), ``partial`` (float64, one per block)
    and ``first_bad`` (int64: first bad probability index, first bad target index; set to
    ``n`` before the launch). Launch with ``threads`` threads per block.
    """
    if threads < 1 or threads & (threads - 1):
        raise ValueError(f"threads per block must be a power of two, got {threads}")
    real = np.float32 if single else np.float64
    f = _device_formulas(single, simulator)
    smooth_target, is_unit_interval = f["smooth_target"], f["is_unit_interval"]
    logits_loss_grad, probs_loss_grad = f["logits_loss_grad"], f["probs_loss_grad"]

    def kernel(
        x,
        y,
        weight,
        pos_weight,
        grad_output,
        pos_weight_value,
        weight_value,
        label_smoothing,
        grad_scale,
        loss_out,
        grad_out,
        partial,
        first_bad,
    ):
        n = x.size
        bad_input = n
        bad_target = n
        total = 0.0  # float64, whatever the dtype
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            # The flags are compile-time constants: the other branches are compiled out.
            xi = real(x[i])
            yi = real(y[i])
            w = real(weight[i]) if weight_array else weight_value
            if logits:
                q = real(pos_weight[i]) if pos_weight_array else pos_weight_value
                loss, grad = logits_loss_grad(
                    xi, smooth_target(yi, label_smoothing), q, w
                )
            else:
                loss, grad = probs_loss_grad(xi, yi, w)
                if not is_unit_interval(xi):
                    bad_input = min(bad_input, i)
            if not is_unit_interval(yi):
                bad_target = min(bad_target, i)
            if reduce_loss:
                total += loss
            if store_loss:
                loss_out[i] = loss
            if store_grad:
                if grad_output_array:
                    grad *= real(grad_output[i])
                grad_out[i] = grad * grad_scale
        if bad_input < n:
            cuda.atomic.min(first_bad, 0, bad_input)
        if bad_target < n:
            cuda.atomic.min(first_bad, 1, bad_target)
        if reduce_loss:
            sums = cuda.shared.array(threads, np.float64)
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


def _operand(name: str, value, shape: tuple, dtype: np.dtype, stream):
    """``(flat device array of n elements, 1.0)`` or ``(None, scalar)`` for ``value``.

    None is 1; one value (host or device) is a scalar, as on the CPU. A host array is
    broadcast on the host and copied to the device once; a device array is used in place
    if it has the full shape and is C-contiguous, else broadcast on the device into a
    new array of ``dtype``.
    """
    if value is None:
        return None, 1.0
    n = math.prod(shape)
    if not _validate.is_cuda_array(value):
        value = _validate._scalar_or_flat(name, value, shape, dtype)
        if isinstance(value, float):
            return None, value
        return cuda.to_device(value, stream=stream), 1.0
    value = _as_device(value)
    _validate.check_real_dtype(value.dtype, name)
    _validate.check_broadcastable(name, value.shape, shape)
    if value.size == 1:
        return None, float(_to_host(value, stream).reshape(()))
    return _flat(value, shape, n, stream, dtype), 1.0


def _empty(like, array, shape: tuple, stream):
    """A device array of ``array``'s dtype and ``shape``: from PyTorch's caching allocator
    (on its current stream) when the input ``like`` is a tensor, else from Numba."""
    if _is_torch(like):
        return cuda.as_cuda_array(like.detach().new_empty(shape), sync=False)
    return cuda.device_array(shape, dtype=array.dtype, stream=stream)


def _range_error(first_bad: np.ndarray, x, y, n: int, dtype, shape: tuple, stream):
    """The CPU's ValueError for the first bad probability, else the first bad target."""
    for index, values, name in (
        (first_bad[0], x, "input (probabilities)"),
        (first_bad[1], y, "target"),
    ):
        if index < n:
            index = int(index)
            value = _to_host(values[index : index + 1], stream)[0]
            return _validate.OutOfRangeError(
                name, index, dtype.type(value).item(), shape
            )
    return None


def _max_blocks() -> int:
    if MAX_BLOCKS is not None:
        return MAX_BLOCKS
    # The simulator's device has no multiprocessor count: one block per "SM" there.
    device = cuda.get_current_device()
    return BLOCKS_PER_SM * getattr(device, "MULTIPROCESSOR_COUNT", 1)


def compute(
    logits: bool,
    input,
    target,
    *,
    weight=None,
    pos_weight=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output=1.0,
    want_loss: bool = True,
    want_grad: bool = True,
) -> tuple[Any, Any]:
    """Loss and/or gradient of binary cross-entropy for GPU arrays; ``(loss, grad)``.

    ``logits`` picks the family (``shared/spec/bce.md``): BCE-with-logits
    ``l = w * (q * y' * softplus(-x) + (1 - y') * softplus(x))``,
    ``dl/dx = w * ((1 - y') * sigmoid(x) - q * y' * sigmoid(-x))``, or BCE on probabilities
    ``l = -w * (y * max(log p, -100) + (1 - y) * max(log1p(-p), -100))``,
    ``dl/dp = w * (p - y) / max(p * (1 - p), 1e-12)`` (``pos_weight`` and
    ``label_smoothing`` are ignored there).

    ``input`` and ``target`` are device arrays of one shape (``input`` float16/32/64, float16
    computed in float32; ``target`` any real or bool dtype), used in place; ``weight``,
    ``pos_weight`` and ``grad_output`` may be host or device values (see :func:`_operand`).
    The launch goes on the stream ``input`` carries (a Numba array's ``stream``, e.g. set
    with ``.bind(stream)``; PyTorch's current stream for a tensor); other device operands
    must be ready on it.

    Returns ``loss`` (None unless ``want_loss``): for ``'none'`` a Numba device array of the
    input's shape and dtype, for ``'mean'``/``'sum'`` a NumPy scalar of the input's dtype
    (sums in float64); ``grad`` (None unless ``want_grad``): a Numba device array of the
    input's shape and dtype, times 1/N for ``'mean'`` and times ``grad_output``.
    Raises TypeError/ValueError exactly as the CPU path does, and ValueError for a
    probability or target outside [0, 1] naming the first offending index and value.
    """
    _require_cuda()
    if not _validate.is_cuda_array(target):
        raise TypeError(
            "target must be a CUDA array when input is one, got "
            f"{type(target).__module__}.{type(target).__name__}; copy it to the device "
            "first (e.g. numba.cuda.to_device(target))"
        )
    x_array, y_array = _as_device(input), _as_device(target)
    stream = _stream(input, x_array)
    dtype = _validate.compute_dtype(x_array.dtype)
    _validate.check_real_dtype(y_array.dtype, "target")
    shape = tuple(x_array.shape)
    _validate.check_same_shape(shape, tuple(y_array.shape))
    reduction = _validate.check_reduction(reduction)
    grad_output = _validate.check_grad_output(grad_output, shape, reduction)
    weight, weight_scalar = _operand("weight", weight, shape, dtype, stream)
    pos_weight, pos_weight_value = _operand(
        "pos_weight", pos_weight if logits else None, shape, dtype, stream
    )
    grad_output, grad_output_scalar = _operand(
        "grad_output", grad_output, shape, dtype, stream
    )
    label_smoothing = _validate.check_label_smoothing(label_smoothing)

    n = math.prod(shape)
    x = _flat(x_array, shape, n, stream)
    y = _flat(y_array, shape, n, stream)
    store_loss = want_loss and reduction == "none"
    reduce_loss = want_loss and not store_loss
    grad_scale = grad_output_scalar
    if reduction == "mean" and n:
        grad_scale /= n
    loss_out = _empty(input, x, shape, stream) if store_loss else None
    grad_out = _empty(input, x, shape, stream) if want_grad else None

    total = 0.0
    if n:
        blocks = min(-(-n // THREADS_PER_BLOCK), _max_blocks())
        partial = cuda.device_array(blocks, dtype=np.float64, stream=stream)
        first_bad = cuda.to_device(np.full(2, n, dtype=np.int64), stream=stream)
        dummy = partial  # stands for the arrays a variant does not read or write
        real = dtype.type
        kernel = _kernel(
            dtype == np.float32,
            logits,
            store_loss,
            reduce_loss,
            want_grad,
            weight is not None,
            pos_weight is not None,
            grad_output is not None and want_grad,
            THREADS_PER_BLOCK,
            _simulator(),
        )
        with warnings.catch_warnings():
            # Small inputs need few blocks: that is not the mistake Numba warns about.
            warnings.filterwarnings("ignore", "Grid size .* under-utilization")
            launch = kernel[blocks, THREADS_PER_BLOCK, stream]
        launch(
            x,
            y,
            dummy if weight is None else weight,
            dummy if pos_weight is None else pos_weight,
            dummy if grad_output is None else grad_output,
            real(pos_weight_value),
            real(weight_scalar),
            real(label_smoothing),
            real(grad_scale),
            loss_out.reshape(n) if store_loss else dummy,
            grad_out.reshape(n) if want_grad else dummy,
            partial,
            first_bad,
        )
        first_bad = _to_host(first_bad, stream)
        error = _range_error(first_bad, x, y, n, dtype, shape, stream)
        if error is not None:
            raise error
        if reduce_loss:
            total = math.fsum(_to_host(partial, stream))

    loss = loss_out
    if reduce_loss:
        loss = x_array.dtype.type(
            total if reduction == "sum" else (total / n if n else math.nan)
        )
    return loss, grad_out
