"""``out=``: the caller's buffers receive the array results, with the bits of a call that
allocates, for every family, function, dtype, shape and reduction; every misuse is refused
with its exception and message before anything runs."""

import re

import numpy as np
import pytest
from conftest import make_array

from numbce.functional import FUNCTIONS, VARIANTS
from numbce.losses import FAMILIES

FAMILY_NAMES = list(FAMILIES)
NAME = "binary_cross_entropy_with_logits"


def _inputs(rng, family, shape_name, dtype):
    low, high = (-12.0, 12.0) if family.input_grid == "logits" else (0.0, 1.0)
    x = make_array(rng, shape_name, dtype, low, high)
    return x, make_array(rng, shape_name, dtype, 0.0, 1.0)


def _array_results(suffix: str, reduction: str) -> list[bool]:
    """For each result of the function: is it an array (so it may take a buffer)?"""
    outputs = VARIANTS[suffix]
    flags = [outputs.loss and reduction == "none", outputs.grad, outputs.hess]
    asked = [outputs.loss, outputs.grad, outputs.hess]
    return [flag for flag, wanted in zip(flags, asked, strict=True) if wanted]


def _buffers(shape, dtype, arrays: list[bool], layout: str) -> list:
    def make():
        if layout == "c":
            return np.full(shape, np.nan, dtype=dtype)
        return np.full(shape[::-1], np.nan, dtype=dtype).T  # Fortran order: copied in

    return [make() if is_array else None for is_array in arrays]


CALLS = [(suffix, reduction) for suffix in VARIANTS for reduction in ("none", "mean")
         if any(_array_results(suffix, reduction))]  # fmt: skip
"""Every function and reduction with an array result."""


@pytest.mark.parametrize(
    "name, dtype",
    [(name, dtype) for name in FAMILY_NAMES for dtype in (np.float16, np.float32)]
    + [(NAME, np.float64)],
)  # float16 runs the float32 kernels; float64 compiles its own: one family of it
@pytest.mark.parametrize("suffix, reduction", CALLS)
@pytest.mark.parametrize(
    "shape_name, layout",
    [("0d", "c"), ("2d", "c"), ("2d", "fortran"), ("strided", "c")],
)
def test_buffers_receive_the_bits_of_an_allocating_call(
    rng, name, suffix, reduction, dtype, shape_name, layout
):
    family = FAMILIES[name]
    x, y = _inputs(rng, family, shape_name, dtype)
    arrays = _array_results(suffix, reduction)
    function = FUNCTIONS[name + suffix]
    expected = function(x, y, reduction=reduction)
    buffers = _buffers(x.shape, dtype, arrays, layout)
    out = buffers[0] if len(buffers) == 1 else tuple(buffers)
    got = function(x, y, reduction=reduction, out=out)
    if len(buffers) == 1:
        expected, got = (expected,), (got,)
    for buffer, want, have in zip(buffers, expected, got, strict=True):
        if buffer is not None:
            assert have is buffer
        assert np.asarray(have).dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(have, want, strict=True)


def test_reused_buffers_are_overwritten_not_accumulated(rng):
    x, y = _inputs(rng, FAMILIES[NAME], "2d", np.float32)
    grad = np.empty_like(x)
    first = FUNCTIONS[NAME + "_grad"](x, y, out=grad).copy()
    assert FUNCTIONS[NAME + "_grad"](x, y, out=grad) is grad
    np.testing.assert_array_equal(grad, first)


def test_loss_class_methods_take_out(rng):
    x, y = _inputs(rng, FAMILIES[NAME], "2d", np.float64)
    loss = __import__("numbce").BCEWithLogitsLoss(reduction="none")
    buffers = np.empty_like(x), np.empty_like(x)
    assert loss(x, y, out=buffers[0]) is buffers[0]
    assert loss.grad_hess(x, y, out=buffers) == buffers


def _call(out, reduction="mean", suffix="_grad", x=None, **options):
    x = np.zeros((3, 4), np.float32) if x is None else x
    return FUNCTIONS[NAME + suffix](x, np.zeros((3, 4)), reduction=reduction,
                                    out=out, **options)  # fmt: skip


BUFFER = np.zeros((3, 4), np.float32)


@pytest.mark.parametrize(
    "out, suffix, reduction, error, message",
    [
        (np.zeros((4, 3), np.float32), "_grad", "mean", ValueError,
         "out shape (4, 3) does not match input shape (3, 4)"),
        (np.zeros(12, np.float32), "_grad", "mean", ValueError,
         "out shape (12,) does not match input shape (3, 4)"),
        (np.zeros((3, 4)), "_grad", "mean", TypeError,
         "out must have the result dtype float32, got float64"),
        (np.zeros((3, 4), np.float16), "_hess", "mean", TypeError,
         "out must have the result dtype float32, got float16"),
        ([[0.0] * 4] * 3, "_grad", "mean", TypeError,
         "out must be a NumPy array, got list"),
        (np.zeros((3, 4), np.float32), "_value_and_grad", "mean", TypeError,
         "out must be a tuple of 2 arrays or None (one per result), got ndarray"),
        ((BUFFER,), "_grad_hess", "none", ValueError,
         "out must be a tuple of 2 arrays or None (one per result), got 1"),
        ((BUFFER, None), "_value_and_grad", "mean", ValueError,
         "out[0] must be None for reduction='mean': the loss is a scalar"),
        (BUFFER, "", "sum", ValueError,
         "out must be None for reduction='sum': the loss is a scalar"),
        ((BUFFER, BUFFER), "_grad_hess", "none", ValueError,
         "out[1] overlaps out[0]: a result may not overwrite an operand"),
        ((None, BUFFER[:, ::-1]), "_value_and_grad", "none", None, None),
    ],
)  # fmt: skip
def test_bad_buffers_are_refused(out, suffix, reduction, error, message):
    if error is None:  # a reversed view is a fine buffer
        _call(out, reduction, suffix)
        return
    with pytest.raises(error, match=re.escape(message)):
        _call(out, reduction, suffix)


@pytest.mark.parametrize(
    "operand", ["input", "target", "weight", "pos_weight", "grad_output"]
)
def test_a_buffer_overlapping_an_operand_is_refused(operand):
    shared = np.zeros((3, 4), np.float32)
    arrays = {name: np.ones((3, 4), np.float32)
              for name in ("input", "target", "weight", "grad_output")}  # fmt: skip
    arrays["pos_weight"] = np.ones(4, np.float32)
    arrays[operand] = shared[0] if operand == "pos_weight" else shared
    x, y = arrays.pop("input"), arrays.pop("target")
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"out overlaps {operand}: a result may not overwrite an operand"
        ),
    ):
        FUNCTIONS[NAME + "_grad"](x, y, reduction="none", out=shared, **arrays)


def test_a_read_only_buffer_is_refused():
    out = np.zeros((3, 4), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="^out is read-only$"):
        _call(out)


def test_dask_arrays_take_no_buffers():
    da = pytest.importorskip("dask.array")
    x = da.zeros((3, 4), dtype=np.float32, chunks=2)
    with pytest.raises(
        TypeError, match="^out= takes NumPy arrays only; dask arrays allocate"
    ):
        FUNCTIONS[NAME + "_grad"](x, x, out=np.zeros((3, 4), np.float32))
