"""Dask backend: the CPU kernels run block by block on Dask arrays, lazily.

:mod:`numbce.functional` sends Dask inputs here (and imports this module, and so Dask, only
then). Everything checkable from ``shape`` and ``dtype`` is checked at call time with the
messages of :mod:`numbce._validate`; the values are read only when the result is computed,
on whatever scheduler computes it (threads, processes, ``dask.distributed``).

* The target, and weight, pos_weight and grad_output arrays (NumPy or Dask), are rechunked
  to the input's chunks (a broadcast axis of length 1 stays one chunk), so every block sees
  exactly the slices it would see in memory and the results are chunked like the input.
* Each block runs :func:`numbce.cpu.run` once, for every result asked for together.
  'mean' and 'sum' are a tree reduction of the blocks' float64 sums (``math.fsum`` at every
  node) divided, for 'mean', by the element count, which is known from the shape: inputs
  with unknown chunk sizes are refused.
* A probability or target outside [0, 1] raises, when computed, the in-memory ValueError
  with the flat index in the whole array (the first offending element of the first block
  that fails, which on a parallel scheduler need not be the first block).
* Elementwise results are computed element by element with the same formulas as in memory,
  so they have the same bits whatever the chunking; 'mean'/'sum' equal the in-memory
  result to float64 rounding (the block sums are grouped by chunk).
"""

from __future__ import annotations

import functools
import math
import operator

import dask.array as da
import numpy as np

from numbce import _validate, cpu
from numbce._validate import Outputs
from numbce.losses import Family

_OUTPUTS = ("loss", "grad", "hess")


def compute(
    family: Family, outputs: Outputs, input, target, **options
) -> tuple[da.Array | None, da.Array | None, da.Array | None]:
    """Lazy ``(loss, grad, hess)`` of ``family`` on Dask arrays (None where not asked for).

    ``loss`` is a 0-d array of ``input.dtype`` for 'mean'/'sum' (computing to a NumPy scalar:
    ``fsum`` of the blocks' float64 sums, divided by ``input.size`` for 'mean', nan if empty)
    and an array of ``input``'s shape, dtype and chunks for 'none'; the derivatives are
    arrays of ``input``'s shape, dtype and chunks, with ``grad_output / input.size`` as the
    scale for 'mean'. All come from one task per block, so computing or persisting them
    together reads the data once.
    """
    x = _known("input", da.asarray(input))
    y = _known("target", da.asarray(target))
    request = _validate.validate(family, outputs, x, y, **options)
    dtype = request.result_dtype
    grad_output = request.grad_output
    if isinstance(grad_output, float):
        grad_output = request.grad_scale  # blocks sum: 'mean' scales here
    operands = [
        value if isinstance(value, float) else _like(_known(name, da.asarray(value)), x)
        for name, value in (
            ("weight", request.weight),
            ("pos_weight", request.pos_weight),
            ("grad_output", grad_output),
        )
    ]
    family_options = {option.name: options[option.name]
                      for option in family.options if option.name in options}  # fmt: skip
    empty = np.empty((0,) * x.ndim, dtype=dtype)
    results = da.map_blocks(
        _block,
        x,
        _like(y, x),
        *operands,
        family=family,
        outputs=outputs,
        reduction="none" if request.reduction == "none" else "sum",
        options=family_options,
        token=family.name,
        dtype=object,
        meta=empty.astype(object),
    )
    loss = grad = hess = None
    if outputs.loss and request.reduction == "none":
        loss = results.map_blocks(operator.getitem, 0, token="loss", meta=empty)
    elif outputs.loss:
        partials = results.map_blocks(
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
                _finish, size=request.size, reduction=request.reduction, dtype=dtype
            ),
            dtype=dtype,
            name=f"loss-{request.reduction}",
        )
    if outputs.grad:
        grad = results.map_blocks(operator.getitem, 1, token="grad", meta=empty)
    if outputs.hess:
        hess = results.map_blocks(operator.getitem, 2, token="hess", meta=empty)
    return loss, grad, hess


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


def _block(
    x: np.ndarray,
    y: np.ndarray,
    weight,
    pos_weight,
    grad_output,
    *,
    family: Family,
    outputs: Outputs,
    reduction: str,
    options: dict,
    block_info: dict,
) -> tuple:
    """One block through the CPU kernel: ``(loss, grad, hess)``, the loss as a float64 sum
    in an array of one element per axis for 'sum', else like the derivatives an array of
    ``x``'s shape and dtype (None when not asked for). Range errors name the index in the
    whole array."""
    try:
        request = _validate.validate(
            family,
            outputs,
            x,
            y,
            weight=weight,
            pos_weight=pos_weight if family.pos_weight else None,
            reduction=reduction,
            grad_output=grad_output,
            **options,
        )
        loss, grad, hess = cpu.run(request)
    except _validate.OutOfRangeError as error:
        info = block_info[0]
        raise _in_array(error, info["array-location"], info["shape"]) from None
    if reduction == "sum" and loss is not None:
        return np.full((1,) * x.ndim, loss), request.shaped(grad), request.shaped(hess)
    return request.shaped(loss), request.shaped(grad), request.shaped(hess)


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
    """One node of the tree: the exact sum of float64 partial sums (kept as one element per
    axis with ``keepdims``, as :func:`dask.array.reduction` passes them on)."""
    total = _validate.exact_sum(np.ravel(partials))
    return np.full((1,) * partials.ndim, total) if keepdims else total


def _finish(
    partials: np.ndarray, axis=None, keepdims: bool = False, *, size, reduction, dtype
) -> np.floating:
    """The root: the total, over ``size`` for a mean (nan if empty), as a ``dtype`` scalar."""
    with np.errstate(over="ignore"):
        return dtype.type(_validate.finish(_sum_partials(partials), size, reduction))
