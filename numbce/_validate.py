"""Input checks, and the one validated :class:`Request` every backend takes. No kernel here.

:func:`validate` checks everything checkable from ``shape`` and ``dtype`` (so it works on
NumPy, CUDA and Dask arrays alike) with one set of messages; reading values (the range
checks) is the kernels' business, except for a float target wider than the input, which
is checked before it is rounded (:func:`check_unit_interval`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from numbce.losses import Family
from numbce.losses._family import MAX_PARAMS

REDUCTIONS = ("none", "mean", "sum")
_REAL_KINDS = "fiub"


def is_cuda_array(a) -> bool:
    """A GPU array: Numba's (or the CUDA simulator's), a CUDA tensor, or any object with the
    CUDA array interface. (A PyTorch tensor that requires grad raises RuntimeError, not
    AttributeError, from ``__cuda_array_interface__``: ``is_cuda`` answers first.)"""
    if getattr(a, "__cuda_ndarray__", False):
        return True
    is_cuda = getattr(a, "is_cuda", None)
    if isinstance(is_cuda, bool):
        return is_cuda
    return hasattr(a, "__cuda_array_interface__")


def check_reduction(reduction: str, size_average=None, reduce=None) -> str:
    """Return the reduction name; map PyTorch's legacy ``size_average``/``reduce`` pair."""
    if size_average is not None or reduce is not None:
        warnings.warn(
            "size_average and reduce are deprecated, use reduction='none'|'mean'|'sum'",
            DeprecationWarning,
            stacklevel=4,
        )
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}"
        )
    return reduction


_COMPUTE_DTYPES = {
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.float32): np.dtype(np.float32),
    np.dtype(np.float64): np.dtype(np.float64),
}


def compute_dtype(dtype, name: str = "input") -> np.dtype:
    """The dtype the kernels compute in: float32 for float16 and float32, else float64."""
    if dtype in _COMPUTE_DTYPES:
        return _COMPUTE_DTYPES[dtype]
    dtype = np.dtype(dtype)
    if dtype.newbyteorder("=") in _COMPUTE_DTYPES:  # byte-swapped floats
        return _COMPUTE_DTYPES[dtype.newbyteorder("=")]
    hint = (
        " (cast integer or bool inputs to float explicitly)"
        if dtype.kind in "iub"
        else _LONG_DOUBLE_HINT
        if dtype.kind == "f"
        else ""
    )
    raise TypeError(
        f"{name} must be a float16, float32 or float64 array, got dtype {dtype}{hint}"
    )


_LONG_DOUBLE_HINT = " (long double is not supported: cast it to float64)"


def check_real_dtype(dtype, name: str) -> None:
    """Targets and weights may be float, integer or bool of at most 64 bits; anything
    else is a TypeError."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise TypeError(
            f"{name} must be a real or bool array of at most 64 bits, got dtype "
            f"{dtype}{_LONG_DOUBLE_HINT}"
        )
    if dtype.kind not in _REAL_KINDS or dtype.itemsize > 8:
        raise TypeError(f"{name} must be a real or bool array, got dtype {dtype}")


def check_same_shape(name: str, shape: tuple, input_shape: tuple) -> None:
    if tuple(input_shape) != tuple(shape):
        raise ValueError(
            f"{name} shape {tuple(shape)} does not match input shape {tuple(input_shape)}"
        )


def check_broadcastable(name: str, shape: tuple, input_shape: tuple) -> None:
    """``name`` must broadcast to exactly ``input_shape`` (it may not add dimensions)."""
    try:
        ok = np.broadcast_shapes(tuple(shape), tuple(input_shape)) == tuple(input_shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {tuple(shape)} cannot be broadcast to input shape "
            f"{tuple(input_shape)}"
        )


class OutOfRangeError(ValueError):
    """A probability or target outside [0, 1] (or nan): names the first offender.

    ``name`` is what was checked, ``flat_index`` and ``value`` the offending element of an
    array of ``shape``.
    """

    def __init__(self, name: str, flat_index: int, value: float, shape: tuple) -> None:
        where = f"flat index {flat_index}"
        if len(shape) > 1:
            index = tuple(int(i) for i in np.unravel_index(flat_index, shape))
            where += f" (index {index})"
        super().__init__(f"{name} must be in [0, 1], got {value!r} at {where}")
        self.name = name
        self.flat_index = flat_index
        self.value = value
        self.shape = shape


def check_unit_interval(
    name: str, values: np.ndarray, offset: int = 0, shape=None
) -> None:
    """Raise :class:`OutOfRangeError` for the first element of ``values`` outside [0, 1]
    (or nan); its flat index is ``offset`` plus its index in ``values``, in ``shape``."""
    flat = values.reshape(-1)
    bad = np.flatnonzero(~((flat >= 0) & (flat <= 1)))
    if bad.size:
        index = int(bad[0])
        raise OutOfRangeError(
            name,
            offset + index,
            flat[index].item(),
            values.shape if shape is None else shape,
        )


def is_wider(dtype, than: np.dtype) -> bool:
    """A float ``dtype`` whose values could round into [0, 1] in the compute dtype."""
    return dtype.kind == "f" and dtype.itemsize > than.itemsize


class Outputs(NamedTuple):
    """Which results a call asks for (a tuple: a cheap dictionary key)."""

    loss: bool = False
    grad: bool = False
    hess: bool = False


@dataclass(slots=True)
class Request:
    """One validated call, for any backend.

    ``input`` and ``target`` are arrays of the caller's kind (checked: dtypes, same shape);
    ``weight``, ``pos_weight`` and ``grad_output`` are a float or an array of that kind (or
    NumPy) checked broadcastable (``grad_output``: the input's shape, 'none' only);
    ``params`` the family's kernel parameters (padded with zeros to :data:`MAX_PARAMS`);
    ``dtype`` the compute dtype and
    ``result_dtype`` the dtype of every result; ``out`` the caller's buffers for the
    ``(loss, grad, hess)`` arrays, each None (allocate) or a checked NumPy array.
    """

    family: Family
    outputs: Outputs
    input: Any
    target: Any
    weight: float | Any
    pos_weight: float | Any
    grad_output: float | Any
    shape: tuple
    size: int
    dtype: np.dtype
    result_dtype: np.dtype
    reduction: str
    params: tuple
    out: tuple = (None, None, None)

    @property
    def store_loss(self) -> bool:
        """The elementwise loss is a result ('none')."""
        return self.outputs.loss and self.reduction == "none"

    @property
    def reduce_loss(self) -> bool:
        """The loss is summed ('mean' or 'sum')."""
        return self.outputs.loss and self.reduction != "none"

    @property
    def grad_scale(self) -> float:
        """What every derivative is multiplied by besides an array ``grad_output``: a
        scalar ``grad_output`` (else 1), over the element count for 'mean'."""
        scale = self.grad_output if isinstance(self.grad_output, float) else 1.0
        return scale / self.size if self.reduction == "mean" and self.size else scale

    def shaped(self, result, out=None):
        """A flat NumPy result in the caller's shape and dtype (a NumPy scalar if reduced);
        with ``out`` (the caller's buffer), ``out`` holding it."""
        if result is None or result is out:
            return result
        result_type = self.result_dtype.type
        # Fast paths (no floating-point state to set): a scalar in range, an array of
        # the result dtype.
        if not isinstance(result, np.ndarray):
            if abs(result) <= _LARGEST[result_type]:
                return result_type(result)
        elif out is None and result.dtype == self.result_dtype:
            return result if result.shape == self.shape else result.reshape(self.shape)
        # A value beyond the result dtype's range (a sum, a float16 computed in float32)
        # is inf there: a result, not a warning.
        with np.errstate(over="ignore"):
            if not isinstance(result, np.ndarray):
                return result_type(result)
            if result.shape != self.shape:
                result = result.reshape(self.shape)
            if out is not None:  # computed aside: copied (and cast) in
                np.copyto(out, result, casting="unsafe")
                return out
            return (
                result
                if result.dtype == self.result_dtype
                else result.astype(result_type)
            )


_LARGEST = {t: float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}


def _operand(name: str, value, shape: tuple, check=check_broadcastable):
    """None is 1; one real number is a float; an array (any kind) is checked (``check(name,
    its shape, shape)``) and kept, a NumPy array of one element becoming a float."""
    if value is None:
        return 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        value = np.asarray(value)
    check_real_dtype(value.dtype, name)
    if isinstance(value, (np.ndarray, np.generic)) and value.ndim == 0:
        return float(value)
    check(name, tuple(value.shape), shape)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    return value


def check_out(request: Request, out) -> tuple:
    """The caller's ``out`` as ``(loss, grad, hess)`` buffers (None: allocate).

    ``out`` is None, one NumPy array for a function with one array result, or a tuple of
    one array-or-None per result (NumPy's ufunc convention). Each buffer must have the
    input's shape and the result dtype, be writeable, and share no memory with an operand
    or another buffer; a reduced loss has no buffer."""
    outputs = request.outputs
    slots = [i for i, asked in enumerate((outputs.loss, outputs.grad, outputs.hess))
             if asked]  # fmt: skip
    if type(out) is not tuple:
        if len(slots) != 1:
            raise TypeError(
                f"out must be a tuple of {len(slots)} arrays or None (one per result), "
                f"got {type(out).__name__}"
            )
        out = (out,)
    elif len(out) != len(slots):
        raise ValueError(
            f"out must be a tuple of {len(slots)} arrays or None (one per result), "
            f"got {len(out)}"
        )
    operands = {"input": request.input, "target": request.target}
    for name in ("weight", "pos_weight", "grad_output"):
        value = getattr(request, name)
        if type(value) is np.ndarray:
            operands[name] = value
    buffers = [None, None, None]
    for position, (slot, buffer) in enumerate(zip(slots, out)):
        if buffer is None:
            continue
        name = "out" if len(out) == 1 else f"out[{position}]"
        _check_buffer(request, name, buffer, slot == 0)
        for other, value in operands.items():
            if np.may_share_memory(buffer, value) and np.shares_memory(buffer, value):
                raise ValueError(
                    f"{name} overlaps {other}: a result may not overwrite an operand"
                )
        operands[name] = buffer
        buffers[slot] = buffer
    return tuple(buffers)


def _check_buffer(request: Request, name: str, buffer, loss: bool) -> None:
    """One ``out`` buffer: an array result's slot, shape, dtype, writeable."""
    if loss and request.reduction != "none":
        raise ValueError(
            f"{name} must be None for reduction={request.reduction!r}: the loss is a "
            "scalar"
        )
    if type(buffer) is not np.ndarray:
        raise TypeError(f"{name} must be a NumPy array, got {type(buffer).__name__}")
    if buffer.shape != request.shape:
        raise ValueError(
            f"{name} shape {buffer.shape} does not match input shape {request.shape}"
        )
    if buffer.dtype != request.result_dtype:
        raise TypeError(
            f"{name} must have the result dtype {request.result_dtype}, got "
            f"{buffer.dtype}"
        )
    if not buffer.flags.writeable:
        raise ValueError(f"{name} is read-only")


def validate(
    family: Family,
    outputs: Outputs,
    input,
    target,
    *,
    weight=None,
    pos_weight=None,
    reduction: str = "mean",
    grad_output=1.0,
    size_average=None,
    reduce=None,
    out=None,
    **options,
) -> Request:
    """Check one call of ``family``, options by name (``options``: the family's; others
    raise TypeError). See :func:`check`."""
    values = tuple(
        options.pop(option.name, option.default) for option in family.options
    )
    if options:
        raise TypeError(f"{family.name}() got unexpected options {sorted(options)}")
    return check(family, outputs, input, target, weight, pos_weight, reduction,
                 grad_output, size_average, reduce, out, values)  # fmt: skip


def check(
    family: Family,
    outputs: Outputs,
    input,
    target,
    weight,
    pos_weight,
    reduction: str,
    grad_output,
    size_average,
    reduce,
    out,
    option_values: tuple,
) -> Request:
    """Check one call of ``family``; ``input``/``target`` are arrays of one kind (NumPy
    arrays already converted), ``option_values`` the family's options in the order of
    ``family.options``. A NumPy float target wider than the input is range-checked here,
    before rounding could bring it into [0, 1]. ``out``: see :func:`check_out`."""
    dtype = compute_dtype(input.dtype)
    if target.dtype != dtype:
        check_real_dtype(target.dtype, "target")
        if isinstance(target, np.ndarray) and is_wider(target.dtype, dtype):
            check_unit_interval("target", target)
    shape = input.shape if type(input.shape) is tuple else tuple(input.shape)
    if target.shape != shape:
        check_same_shape("target", tuple(target.shape), shape)
    if reduction not in REDUCTIONS or size_average is not None or reduce is not None:
        reduction = check_reduction(reduction, size_average, reduce)
    if type(grad_output) is not float:
        if reduction != "none" and np.ndim(grad_output):
            raise ValueError(
                f"grad_output must be a scalar for reduction={reduction!r}, "
                f"got shape {tuple(np.shape(grad_output))}"
            )
        grad_output = _operand("grad_output", grad_output, shape, check_same_shape)
    params = _params(family, option_values) if option_values else _NO_PARAMS
    result_dtype = (
        input.dtype if input.dtype.isnative else input.dtype.newbyteorder("=")
    )
    request = Request(
        family,
        outputs,
        input,
        target,
        1.0 if weight is None else _operand("weight", weight, shape),
        1.0
        if pos_weight is None or not family.pos_weight
        else _operand("pos_weight", pos_weight, shape),
        grad_output,
        shape,
        math.prod(shape),
        dtype,
        result_dtype,
        reduction,
        params,
    )
    if out is not None:
        request.out = check_out(request, out)
    return request


_NO_PARAMS = (0.0,) * MAX_PARAMS
_PARAMS: dict[tuple, tuple] = {}
"""Kernel parameters of checked float option values, by family and values."""


def _params(family: Family, values: tuple) -> tuple:
    """The family's kernel parameters (padded to :data:`MAX_PARAMS`) from its option
    ``values``, each checked; kept by value and type (1.0 never answers for True)."""
    key = (family.name, values, tuple(map(type, values)))
    try:
        params = _PARAMS.get(key)
    except TypeError:  # an unhashable value (an array): checked every time
        key = params = None
    if params is None:
        checked = {option.name: option.check(value)
                   for option, value in zip(family.options, values)}  # fmt: skip
        params = (*family.params(**checked), *_NO_PARAMS)[:MAX_PARAMS]
        if key is not None and len(_PARAMS) < 1024:
            _PARAMS[key] = params
    return params


def exact_sum(partials) -> float:
    """``math.fsum`` of float64 partial sums; a total beyond the float64 range is +-inf
    (nan for inf - inf), never fsum's OverflowError: the partials are then summed scaled
    down by a power of two (exact) and the result scaled back."""
    try:
        return math.fsum(partials)
    except OverflowError:
        partials = np.asarray(partials, dtype=np.float64)
        scale = 2.0 ** (int(partials.size).bit_length() + 1)
        with np.errstate(over="ignore"):
            return float(np.float64(math.fsum(partials / scale)) * scale)


def finish(total: float, size: int, reduction: str) -> float:
    """The reduced loss from the exact float64 sum: itself, or over ``size`` (nan if 0)."""
    if reduction == "sum":
        return total
    return total / size if size else math.nan
