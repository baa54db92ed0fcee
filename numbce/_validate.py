"""Input checks and normalisation, shared by every backend. No kernel lives here.

The checks that need only ``shape`` and ``dtype`` work on any array kind (NumPy, CUDA,
Dask); :func:`prepare_numpy` also lays NumPy arrays out flat for the CPU kernels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

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
            stacklevel=3,
        )
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}"
        )
    return reduction


def check_label_smoothing(label_smoothing) -> float:
    """Return ``label_smoothing`` as a float in [0, 1], else raise ValueError."""
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return value


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
        else ""
    )
    raise TypeError(
        f"{name} must be a float16, float32 or float64 array, got dtype {dtype}{hint}"
    )


def check_real_dtype(dtype, name: str) -> None:
    """Targets and weights may be float, integer or bool; anything else is a TypeError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _REAL_KINDS or dtype.itemsize > 8:
        raise TypeError(f"{name} must be a real or bool array, got dtype {dtype}")


def check_same_shape(input_shape: tuple, target_shape: tuple) -> None:
    if tuple(input_shape) != tuple(target_shape):
        raise ValueError(
            f"target shape {tuple(target_shape)} does not match input shape {tuple(input_shape)}"
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


def check_grad_output(grad_output, input_shape: tuple, reduction: str):
    """A scalar, or for ``'none'`` also an array of the input's shape."""
    if isinstance(grad_output, (int, float)) or np.ndim(grad_output) == 0:
        return grad_output
    if reduction != "none":
        raise ValueError(
            f"grad_output must be a scalar for reduction={reduction!r}, "
            f"got shape {np.shape(grad_output)}"
        )
    check_same_shape(input_shape, np.shape(grad_output))
    return grad_output


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


@dataclass(slots=True)
class Problem:
    """Validated NumPy inputs, flat and contiguous, in the compute dtype.

    ``weight``, ``pos_weight`` and ``grad_output`` are a float or a flat array of ``x.size``.
    """

    x: np.ndarray
    y: np.ndarray
    weight: float | np.ndarray
    pos_weight: float | np.ndarray
    grad_output: float | np.ndarray
    shape: tuple
    result_dtype: np.dtype
    reduction: str
    label_smoothing: float

    def shaped(self, result):
        """A flat kernel result in the user's shape and dtype (a NumPy scalar if reduced)."""
        if result is None:
            return None
        result_type = self.result_dtype.type
        if not isinstance(result, np.ndarray):
            return result_type(result)
        if result.shape != self.shape:
            result = result.reshape(self.shape)
        return (
            result if result.dtype == self.result_dtype else result.astype(result_type)
        )


def _flat(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if a.dtype == dtype and a.flags.c_contiguous:
        return a if a.ndim == 1 else a.reshape(-1)
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _scalar_or_flat(name: str, value, shape: tuple, dtype: np.dtype):
    """A float when ``value`` is None or holds one value, else a flat full-size array."""
    if value is None:
        return 1.0
    if isinstance(value, (int, float)):
        return float(value)
    value = np.asarray(value)
    check_real_dtype(value.dtype, name)
    check_broadcastable(name, value.shape, shape)
    if value.size == 1:
        return float(value.reshape(()))
    return _flat(np.broadcast_to(value, shape), dtype)


def prepare_numpy(
    input,
    target,
    *,
    weight=None,
    pos_weight=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output=1.0,
) -> Problem:
    """Check everything checkable without reading values; return the flat :class:`Problem`."""
    x = input if type(input) is np.ndarray else np.asarray(input)
    y = target if type(target) is np.ndarray else np.asarray(target)
    dtype = compute_dtype(x.dtype)
    if y.dtype != dtype:
        check_real_dtype(y.dtype, "target")
        if y.dtype.kind == "f" and y.dtype.itemsize > dtype.itemsize:
            check_unit_interval("target", y)  # before rounding could bring it inside
    if x.shape != y.shape:
        check_same_shape(x.shape, y.shape)
    if reduction not in REDUCTIONS:
        reduction = check_reduction(reduction)
    grad_output = check_grad_output(grad_output, x.shape, reduction)
    return Problem(
        x=_flat(x, dtype),
        y=_flat(y, dtype),
        weight=_scalar_or_flat("weight", weight, x.shape, dtype),
        pos_weight=_scalar_or_flat("pos_weight", pos_weight, x.shape, dtype),
        grad_output=_scalar_or_flat("grad_output", grad_output, x.shape, dtype),
        shape=x.shape,
        result_dtype=x.dtype if x.dtype.isnative else x.dtype.newbyteorder("="),
        reduction=reduction,
        label_smoothing=check_label_smoothing(label_smoothing),
    )
