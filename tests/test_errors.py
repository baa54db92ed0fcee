"""Every row of the spec's bad-input table: the exception, its message, inputs untouched."""

import inspect
import re

import numpy as np
import pytest
from conftest import torch_or_skip

import numbce

LOGITS_FUNCTIONS = [
    numbce.binary_cross_entropy_with_logits,
    numbce.binary_cross_entropy_with_logits_grad,
    numbce.binary_cross_entropy_with_logits_value_and_grad,
]
PROBS_FUNCTIONS = [
    numbce.binary_cross_entropy,
    numbce.binary_cross_entropy_grad,
    numbce.binary_cross_entropy_value_and_grad,
]
ALL_FUNCTIONS = LOGITS_FUNCTIONS + PROBS_FUNCTIONS


def _call_unchanged(fn, *arrays, **options):
    """Call ``fn`` and assert that no argument array was modified, whatever happens."""
    copies = [np.array(a, copy=True) for a in arrays]
    try:
        return fn(*arrays, **options)
    finally:
        for before, after in zip(copies, arrays, strict=True):
            np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("fn", PROBS_FUNCTIONS)
@pytest.mark.parametrize(
    "bad, where", [(-0.25, 3), (1.5, 0), (np.nan, 4097), (-np.inf, 9)]
)
def test_probability_outside_unit_interval(fn, bad, where):
    p = np.full(5000, 0.5)
    p[where] = bad
    y = np.zeros(5000)
    message = (
        f"input (probabilities) must be in [0, 1], got {bad!r} at flat index {where}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        _call_unchanged(fn, p, y)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
@pytest.mark.parametrize("bad", [-1.0, 2.0, np.nan])
def test_target_outside_unit_interval_names_index(fn, bad):
    x = np.full((3, 4), 0.5, dtype=np.float32)
    y = np.zeros((3, 4), dtype=np.float32)
    y[2, 1] = bad
    message = f"target must be in [0, 1], got {float(np.float32(bad))!r} at flat index 9 (index (2, 1))"
    with pytest.raises(ValueError, match=re.escape(message)):
        _call_unchanged(fn, x, y)


def test_first_offending_index_is_reported():
    p = np.full(10_000, 0.5)
    p[[7000, 8000]] = 3.0
    p[9000] = -1.0
    with pytest.raises(ValueError, match="got 3.0 at flat index 7000"):
        numbce.binary_cross_entropy(p, np.ones_like(p))


def test_integer_label_two_is_a_range_error():
    with pytest.raises(
        ValueError, match="target must be in \\[0, 1\\], got 2.0 at flat index 1"
    ):
        numbce.binary_cross_entropy_with_logits(np.zeros(3), np.array([0, 2, 1]))


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_shape_mismatch_names_both_shapes(fn):
    with pytest.raises(
        ValueError,
        match=re.escape("target shape (3, 2) does not match input shape (2, 3)"),
    ):
        _call_unchanged(fn, np.full((2, 3), 0.5), np.zeros((3, 2)))


@pytest.mark.parametrize("name", ["weight", "pos_weight"])
@pytest.mark.parametrize("shape", [(3,), (2, 2, 4), (4, 1, 1)])
def test_bad_broadcast_names_both_shapes(name, shape):
    message = f"{name} of shape {shape} cannot be broadcast to input shape (2, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        numbce.binary_cross_entropy_with_logits(
            np.zeros((2, 4)), np.zeros((2, 4)), **{name: np.ones(shape)}
        )


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
@pytest.mark.parametrize(
    "bad_input",
    [
        np.zeros(3, dtype=np.complex128),
        np.array([0.5, None, 0.5], dtype=object),
        np.array(["a", "b", "c"]),
        np.array(["2026-01-01"] * 3, dtype="datetime64[D]"),
        np.array([0, 1, 0]),
        np.array([True, False, True]),
    ],
    ids=["complex", "object", "string", "datetime", "integer", "bool"],
)
def test_unsupported_input_dtypes_are_type_errors(fn, bad_input):
    with pytest.raises(
        TypeError,
        match=re.escape(
            f"input must be a float16, float32 or float64 array, got dtype {bad_input.dtype}"
        ),
    ):
        fn(bad_input, np.zeros(3))


@pytest.mark.skipif(
    np.dtype(np.longdouble).itemsize <= 8, reason="long double is double here"
)
def test_long_double_is_said_to_be_unsupported():
    wide = np.zeros(3, np.longdouble)
    for x, y, name in ((np.zeros(3), wide, "target"), (wide, np.zeros(3), "input")):
        with pytest.raises(TypeError, match=re.escape(
            f"got dtype {wide.dtype} (long double is not supported: cast it to float64)"
        )) as error:  # fmt: skip
            numbce.binary_cross_entropy_with_logits(x, y)
        assert str(error.value).startswith(name)
    with pytest.raises(
        TypeError, match="weight must be a real or bool array of at most"
    ):
        numbce.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3), weight=wide)


@pytest.mark.parametrize(
    "bad_target",
    [
        np.zeros(3, dtype=np.complex64),
        np.array(["a", "b", "c"]),
        np.array(["2026-01-01"] * 3, dtype="datetime64[D]"),
    ],
    ids=["complex", "string", "datetime"],
)
def test_unsupported_target_dtypes_are_type_errors(bad_target):
    with pytest.raises(
        TypeError,
        match=re.escape(
            f"target must be a real or bool array, got dtype {bad_target.dtype}"
        ),
    ):
        numbce.binary_cross_entropy_with_logits(np.zeros(3), bad_target)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", None])
def test_unknown_reduction_lists_the_choices(fn, reduction):
    message = f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fn(np.full(3, 0.5), np.zeros(3), reduction=reduction)


@pytest.mark.parametrize("fn", LOGITS_FUNCTIONS)
@pytest.mark.parametrize("value", [-0.1, 1.5, np.nan])
def test_label_smoothing_outside_unit_interval(fn, value):
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\]"):
        fn(np.zeros(3), np.zeros(3), label_smoothing=value)


def test_grad_output_array_needs_reduction_none():
    with pytest.raises(
        ValueError, match="grad_output must be a scalar for reduction='mean'"
    ):
        numbce.binary_cross_entropy_with_logits_grad(
            np.zeros(3), np.zeros(3), grad_output=np.ones(3)
        )
    with pytest.raises(
        ValueError,
        match=re.escape("grad_output shape (2,) does not match input shape (3,)"),
    ):
        numbce.binary_cross_entropy_with_logits_grad(
            np.zeros(3), np.zeros(3), reduction="none", grad_output=np.ones(2)
        )


def test_loss_objects_check_options_at_construction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        numbce.BCELoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        numbce.BCEWithLogitsLoss(label_smoothing=2.0)


def test_wide_target_is_checked_before_it_is_rounded_to_the_input_dtype():
    y = np.array([0.0, 1.0 + 1e-12, 1.0])  # rounds to 1.0 in float32
    message = f"target must be in [0, 1], got {1.0 + 1e-12!r} at flat index 1"
    with pytest.raises(ValueError, match=re.escape(message)):
        numbce.binary_cross_entropy_with_logits(np.zeros(3, dtype=np.float32), y)


SUFFIXES = ["", "_grad", "_value_and_grad", "_hess", "_grad_hess"]


@pytest.mark.parametrize("family", sorted(numbce.losses.FAMILIES))
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("operand", ["input", "target", "weight", "pos_weight"])
def test_a_tensor_that_requires_grad_names_numbce_torch(family, suffix, operand):
    """The plain API refuses a tensor in autograd with a TypeError that says what to
    call instead (PyTorch's own error, "Can't call numpy() on Tensor that requires
    grad", gave no hint); detached, the call works."""
    torch = torch_or_skip()
    function = getattr(numbce, family + suffix)
    tensors = {
        "input": torch.full((4,), 0.25, dtype=torch.float64),
        "target": torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
        "weight": torch.full((4,), 2.0, dtype=torch.float64),
        "pos_weight": torch.full((4,), 3.0, dtype=torch.float64),
    }
    if "pos_weight" not in inspect.signature(function).parameters:
        tensors.pop("pos_weight")
        if operand == "pos_weight":
            pytest.skip(f"{family} takes no pos_weight")
    tensors[operand].requires_grad_(True)
    advice = (
        f"call numbce.torch.{family} "
        if operand == "input"
        else "numbce differentiates the input only"
    )
    message = (
        f"numbce's {family} functions take arrays, outside autograd, and {operand} is "
        f"a torch.Tensor that requires grad: {advice}"
    )
    args = (tensors.pop("input"), tensors.pop("target"))
    with pytest.raises(TypeError, match=re.escape(message)):
        function(*args, **tensors)
    # Detached: the tensors work (weights as NumPy arrays: the plain API takes
    # NumPy-convertible data and NumPy operands).
    operands = {name: value.detach().numpy() for name, value in tensors.items()}
    function(*(a.detach() for a in args), **operands)
