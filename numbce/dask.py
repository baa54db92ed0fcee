"""Dask backend: the CPU kernels run block by block on Dask arrays, lazily.

:mod:`numbce.functional` sends Dask inputs here (and imports this module, and so Dask, only
then). Everything checkable from ``shape`` and ``dtype`` is checked at call time with the
messages of :mod:`numbce._validate`; the values are read only when the result is computed,
on whatever scheduler computes it (threads, processes, ``dask.distributed``).

* The target, and weight, pos_weight and grad_output arrays (NumPy or Dask), are rechunked
  to the input's chunks (a broadcast axis of length 1 stays one chunk), so every block sees
  exactly the slices it would see in memory and the results are chunked like the input.
* Each block runs :func:`numbce.cpu.run` once, for the loss and the gradient together.
  'mean' and 'sum' are a tree reduction of the blocks' float64 sums (``math.fsum`` at every
  node) divided, for 'mean', by the element count, which is known from the shape: inputs
  with unknown chunk sizes are refused.
* A probability or target outside [0, 1] raises, when computed, the in-memory ValueError
  with the flat index in the whole array (the first offending element of the first block
  that fails, which on a parallel scheduler need not be the first block).
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import threading

import dask.array as da
import numpy as np

from numbce import _validate, cpu

_PARALLEL_KERNEL = threading.Lock()
"""Held by a block while it runs the parallel kernel, which already uses every thread Numba
has: blocks on Dask's threaded scheduler then do not oversubscribe the cores, and Numba's
'workqueue' threading layer, which aborts the process when two threads launch parallel
kernels at once, is safe."""


def compute(
    logits: bool,
    input: da.Array,
    target,
    *,
    weight,
    pos_weight,
    reduction: str,
    label_smoothing: float,
    grad_output,
    want_loss: bool,
    want_grad: bool,
) -> tuple[da.Array | None, da.Array | None]:
    """Lazy ``(loss, grad)`` of BCE (``logits=False``) or BCE-with-logits on Dask arrays.

    ``loss`` is a 0-d array of ``input.dtype`` for 'mean'/'sum' (computing to a NumPy scalar:
    ``fsum`` of the blocks' float64 sums, divided by ``input.size`` for 'mean', nan if empty)
    and an array of ``input``'s shape, dtype and chunks for 'none'; ``grad`` is an array of
    ``input``'s shape, dtype and chunks, with ``grad_output / input.size`` as the scale for
    'mean'. Either is None when not wanted. Both come from one task per block, so computing
    or persisting them together reads the data once.
    """
    x = _known("input", da.asarray(input))
    dtype = x.dtype
    _validate.compute_dtype(dtype)
    y = _known("target", da.asarray(target))
    _validate.check_real_dtype(y.dtype, "target")
    _validate.check_same_shape(x.shape, y.shape)
    reduction = _validate.check_reduction(reduction)
    grad_output = _validate.check_grad_output(grad_output, x.shape, reduction)
    weight = _operand("weight", weight, x)
    pos_weight = _operand("pos_weight", pos_weight, x)
    grad_output = _operand("grad_output", grad_output, x)
    label_smoothing = _validate.check_label_smoothing(label_smoothing)
    count = math.prod(x.shape)
    if reduction == "mean" and count:
        grad_output = grad_output / count

    empty = np.empty((0,) * x.ndim, dtype=dtype)
    pairs = da.map_blocks(
        _block,
        x,
        _like(y, x),
        weight,
        pos_weight,
        grad_output,
        logits=logits,
        reduction="none" if reduction == "none" else "sum",
        label_smoothing=label_smoothing,
        want_loss=want_loss,
        want_grad=want_grad,
        token="bce-with-logits" if logits else "bce",
        dtype=object,
        meta=empty.astype(object),
    )
    loss = grad = None
    if want_loss and reduction == "none":
        loss = pairs.map_blocks(operator.getitem, 0, token="loss", meta=empty)
    elif want_loss:
        partials = pairs.map_blocks(
            operator.getitem,
            0,
            token="loss-partial",
            chunks=tuple((1,) * len(c) for c in x.chunks),
            meta=empty.astype(np.float64),
        )
        loss = da.reduction(
            partials,
            chunk=_sum_partials,
            combine=_sum_partials,
            aggregate=functools.partial(
                _finish, count=count, mean=reduction == "mean", dtype=dtype
            ),
            dtype=dtype,
            name=f"loss-{reduction}",
        )
    if want_grad:
        grad = pairs.map_blocks(operator.getitem, 1, token="grad", meta=empty)
    return loss, grad


def _known(name: str, a: da.Array) -> da.Array:
    """``a`` itself; ValueError if its chunk sizes are unknown (nan)."""
    if any(math.isnan(size) for size in a.shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {a.shape}); "
            f"call {name}.compute_chunk_sizes() first"
        )
    return a


def _like(a: da.Array, x: da.Array) -> da.Array:
    """``a`` (broadcastable to ``x``) rechunked to ``x``'s chunks along its trailing axes;
    a broadcast axis (length 1 against a longer one) stays one chunk."""
    offset = x.ndim - a.ndim
    return a.rechunk(
        tuple(
            x.chunks[offset + axis] if size == x.shape[offset + axis] else (size,)
            for axis, size in enumerate(a.shape)
        )
    )


def _operand(name: str, value, x: da.Array):
    """None or a scalar as is (each block takes it whole); an array as a Dask array, checked
    and chunked like ``x`` by :func:`_like`."""
    if value is None or (not isinstance(value, da.Array) and np.ndim(value) == 0):
        if value is not None:
            _validate.check_real_dtype(np.asarray(value).dtype, name)
        return value
    a = _known(name, da.asarray(value))
    _validate.check_real_dtype(a.dtype, name)
    _validate.check_broadcastable(name, a.shape, x.shape)
    return _like(a, x)


def _block(
    x: np.ndarray,
    y: np.ndarray,
    weight,
    pos_weight,
    grad_output,
    *,
    logits: bool,
    reduction: str,
    label_smoothing: float,
    want_loss: bool,
    want_grad: bool,
    block_info: dict,
) -> tuple:
    """One block through the CPU kernel: ``(loss, grad)``, the loss as a float64 sum in an
    array of one element per axis for 'sum', else like the gradient an array of ``x``'s
    shape and dtype (None when not wanted)."""
    problem = _validate.prepare_numpy(
        x,
        y,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=grad_output,
    )
    parallel = problem.x.size >= cpu.PARALLEL_THRESHOLD
    try:
        with _PARALLEL_KERNEL if parallel else contextlib.nullcontext():
            loss, grad = cpu.run(
                problem, logits=logits, want_loss=want_loss, want_grad=want_grad
            )
    except _validate.OutOfRangeError as error:
        info = block_info[0]
        raise _in_array(error, info["array-location"], info["shape"]) from None
    if reduction == "sum" and loss is not None:
        return np.full((1,) * x.ndim, loss), problem.shaped(grad)
    return problem.shaped(loss), problem.shaped(grad)


def _in_array(
    error: _validate.OutOfRangeError, location: list, shape: tuple
) -> _validate.OutOfRangeError:
    """A block's range error restated with the flat index in the whole array of ``shape``
    (``location``: the block's ``(start, stop)`` per axis)."""
    block_shape = tuple(stop - start for start, stop in location)
    in_block = np.unravel_index(error.flat_index, block_shape)
    index = np.ravel_multi_index(
        tuple(i + start for i, (start, _) in zip(in_block, location, strict=True)),
        shape,
    )
    return _validate.OutOfRangeError(error.name, int(index), error.value, shape)


def _sum_partials(partials: np.ndarray, axis=None, keepdims: bool = False):
    """One node of the tree: ``fsum`` of float64 partial sums (kept as one element per axis
    with ``keepdims``, as :func:`dask.array.reduction` passes them on)."""
    total = math.fsum(np.ravel(partials))
    return np.full((1,) * partials.ndim, total) if keepdims else total


def _finish(
    partials: np.ndarray, axis=None, keepdims: bool = False, *, count, mean, dtype
) -> np.floating:
    """The root: the total, over ``count`` for a mean (nan if empty), as a ``dtype`` scalar."""
    total = _sum_partials(partials)
    if mean:
        total = total / count if count else math.nan
    return dtype.type(total)
