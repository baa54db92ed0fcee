"""The CPU backend: limits, dtypes, blocks, threads and vectorization (every family's
values against numbce.reference: tests/test_families.py)."""

import dataclasses
import itertools

import numpy as np
import pytest
from conftest import DTYPES, eps, make_array

import numbce
from numbce import reference
from numbce.losses import FAMILIES

WEIGHTS = ["none", "scalar", "full", "broadcast"]


def _cast(a, dtype):
    """What the kernel sees: weights/targets rounded to the input dtype."""
    return None if a is None or np.ndim(a) == 0 else np.asarray(a, dtype=dtype)


def _check(got, expected, dtype, shape, scale):
    """Elementwise within 8 eps relative, or 8 eps of the terms' scale (gradients cancel)."""
    if isinstance(got, np.ndarray):
        assert got.shape == shape
        assert got.dtype == dtype
    else:
        assert isinstance(got, dtype)
    np.testing.assert_allclose(
        got, expected, rtol=8 * eps(dtype), atol=8 * eps(dtype) * scale
    )


def _targets(rng, shape_name, dtype, hard):
    y = make_array(rng, shape_name, dtype, 0.0, 1.0)
    return np.round(y) if hard else y


@pytest.mark.parametrize("logits", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_output_scales_the_chain_rule(rng, logits, dtype):
    x = rng.uniform(0.05, 0.95, size=(3, 4)).astype(dtype)
    y = rng.uniform(0.0, 1.0, size=(3, 4)).astype(dtype)
    g = rng.normal(size=(3, 4)).astype(dtype)
    grad_fn = (
        numbce.binary_cross_entropy_with_logits_grad
        if logits
        else numbce.binary_cross_entropy_grad
    )
    plain = grad_fn(x, y, reduction="none")
    np.testing.assert_allclose(
        grad_fn(x, y, reduction="none", grad_output=g), plain * g, rtol=2 * eps(dtype)
    )
    np.testing.assert_allclose(
        grad_fn(x, y, reduction="sum", grad_output=2.5),
        plain * 2.5,
        rtol=2 * eps(dtype),
    )
    np.testing.assert_allclose(
        grad_fn(x, y, reduction="mean"), plain / x.size, rtol=2 * eps(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_limits_at_infinite_logits(dtype):
    inf = np.inf
    x = np.array([-inf, inf, inf, -inf, 30.0], dtype=dtype)
    y = np.array([0.0, 0.0, 1.0, 1.0, 1.0], dtype=dtype)
    loss = numbce.binary_cross_entropy_with_logits(x, y, reduction="none")
    grad = numbce.binary_cross_entropy_with_logits_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss[:4], [0.0, inf, 0.0, inf])
    np.testing.assert_array_equal(grad[:4], [0.0, 1.0, 0.0, -1.0])
    np.testing.assert_allclose(
        grad[4], -np.exp(-30.0) / (1 + np.exp(-30.0)), rtol=eps(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturated_probabilities_are_finite(dtype):
    p = np.array([0.0, 1.0, 0.0, 1.0], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    np.testing.assert_array_equal(
        numbce.binary_cross_entropy(p, y, reduction="none"), [100.0, 100.0, 0.0, 0.0]
    )
    np.testing.assert_allclose(
        numbce.binary_cross_entropy_grad(p, y, reduction="none"),
        [-1e12, 1e12, 0.0, 0.0],
        rtol=eps(dtype),
    )


def test_nan_logit_propagates():
    x = np.array([0.5, np.nan, -1.0])
    y = np.array([1.0, 0.0, 1.0])
    loss = numbce.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all()
    assert np.isnan(numbce.binary_cross_entropy_with_logits(x, y))
    assert np.isnan(numbce.binary_cross_entropy_with_logits_grad(x, y)[1])


@pytest.mark.parametrize("target_dtype", [np.int64, np.int8, np.uint8, bool])
def test_integer_and_bool_targets_are_cast(rng, target_dtype):
    x = rng.normal(size=20)
    y = (rng.uniform(size=20) > 0.5).astype(target_dtype)
    assert numbce.binary_cross_entropy_with_logits(
        x, y
    ) == numbce.binary_cross_entropy_with_logits(x, y.astype(np.float64))


def test_float16_computed_in_float32_returned_as_float16(rng):
    x = rng.normal(size=50).astype(np.float16)
    y = (rng.uniform(size=50) > 0.5).astype(np.float16)
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(x, y)
    assert isinstance(loss, np.float16) and grad.dtype == np.float16
    expected = numbce.binary_cross_entropy_with_logits(
        x.astype(np.float32), y.astype(np.float32)
    )
    assert loss == np.float16(expected)


@pytest.mark.parametrize("reduction, expected", [("mean", np.nan), ("sum", 0.0)])
def test_empty_input(reduction, expected):
    empty = np.zeros((0, 3), dtype=np.float32)
    loss = numbce.binary_cross_entropy_with_logits(empty, empty, reduction=reduction)
    assert isinstance(loss, np.float32)
    np.testing.assert_array_equal(loss, expected)
    assert numbce.binary_cross_entropy_grad(
        empty + 0.5, empty, reduction=reduction
    ).shape == (0, 3)


@pytest.mark.parametrize("n", [4095, 4096, 4097, 70_001])
def test_block_boundaries_and_parallel_path(rng, n):
    x = rng.normal(scale=4, size=n)
    y = rng.uniform(size=n)
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="sum"
    )
    np.testing.assert_allclose(
        loss,
        reference.binary_cross_entropy_with_logits(x, y, reduction="sum"),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        grad,
        reference.binary_cross_entropy_with_logits_grad(x, y, reduction="sum"),
        rtol=1e-13,
        atol=1e-15,
    )


def test_a_new_block_size_compiles_its_own_kernels(rng, monkeypatch):
    """The block size is compiled into a kernel: after ``_config.BLOCK`` changes, a call
    of the same shape runs a kernel of the new size (not the cached one with a block
    count of the new size), and only its reduction order may differ."""
    from numbce import _config

    x, y = rng.normal(scale=4, size=20_000), rng.uniform(size=20_000)
    f = numbce.binary_cross_entropy_with_logits_value_and_grad
    expected = f(x, y, reduction="sum")
    monkeypatch.setattr(_config, "BLOCK", 4 * _config.BLOCK)
    loss, grad = f(x, y, reduction="sum")
    np.testing.assert_array_equal(grad, expected[1])
    np.testing.assert_allclose(loss, expected[0], rtol=1e-14)


def test_same_result_for_any_thread_count(rng):
    import numba

    x = rng.normal(size=300_000).astype(np.float32)
    y = rng.uniform(size=300_000).astype(np.float32)
    results = []
    for threads in itertools.islice(
        itertools.cycle([1, numba.config.NUMBA_NUM_THREADS]), 4
    ):
        numba.set_num_threads(threads)
        results.append(numbce.binary_cross_entropy_with_logits(x, y).tobytes())
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert len(set(results)) == 1


def test_loss_objects_hold_options(rng):
    x = rng.normal(size=(4, 3))
    y = rng.uniform(size=(4, 3))
    q = np.array([1.0, 2.0, 3.0])
    loss_fn = numbce.BCEWithLogitsLoss(
        pos_weight=q, reduction="sum", label_smoothing=0.1
    )
    options = {"pos_weight": q, "reduction": "sum", "label_smoothing": 0.1}
    assert loss_fn(x, y) == numbce.binary_cross_entropy_with_logits(x, y, **options)
    np.testing.assert_array_equal(
        loss_fn.grad(x, y),
        numbce.binary_cross_entropy_with_logits_grad(x, y, **options),
    )
    assert "pos_weight" in repr(loss_fn)
    p = 1 / (1 + np.exp(-x))
    bce = numbce.BCELoss(reduction="none")
    np.testing.assert_array_equal(
        bce.value_and_grad(p, y)[1],
        numbce.binary_cross_entropy_grad(p, y, reduction="none"),
    )


def test_legacy_size_average_reduce_maps_to_reduction(rng):
    x, y = rng.normal(size=5), rng.uniform(size=5)
    with pytest.warns(DeprecationWarning):
        summed = numbce.binary_cross_entropy_with_logits(x, y, size_average=False)
    assert summed == numbce.binary_cross_entropy_with_logits(x, y, reduction="sum")
    with pytest.warns(DeprecationWarning):
        none = numbce.binary_cross_entropy(1 / (1 + np.exp(-x)), y, reduce=False)
    assert none.shape == (5,)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outputs", ["value_and_grad", "grad_hess"])
def test_fused_kernel_loop_is_vectorized(family, dtype, outputs):
    """The fused serial kernel's loop body runs on SIMD registers of the target's width
    (checked in the LLVM IR, not assumed): at least 4 float32 or 2 float64 lanes. A target
    without FMA (``NUMBA_CPU_NAME=generic``) computes the polynomials' explicit fma with a
    libm call, exact but scalar, so the loop stays scalar there (about 3x slower)."""
    import re

    import numba
    from llvmlite import binding

    features = numba.config.CPU_FEATURES
    if features is None:
        has_fma = bool(binding.get_host_cpu_features().get("fma"))
    else:
        has_fma = "+fma" in features.split(",")
    if not has_fma:
        pytest.skip("the target CPU has no FMA: the fma is a scalar libm call there")

    from numbce import cpu

    variant = cpu.Variant(
        family=family,
        dtype=np.dtype(dtype).name,
        store_loss=outputs == "value_and_grad",  # elementwise: no lane sum in the IR
        reduce_loss=False,
        store_grad=True,
        store_hess=outputs == "grad_hess",
        weight=cpu.SCALAR,
        pos_weight=cpu.SCALAR,
        grad_output_array=False,
        parallel=False,
        interleave=0,
    )
    kernel = numba.njit(nogil=True, error_model="numpy")(cpu._kernel_body(variant))
    n, one, out = 100, np.ones(1, dtype), np.empty(100, dtype)
    scalars = np.array([1.0, 1.0, 1.0, n, 0.1, 0.0, 0.0])
    kernel(np.full(n, 0.5, dtype), np.ones(n, dtype), one, one, one, scalars,
           out, out, out, np.empty((2, 1)))  # fmt: skip
    ir = kernel.inspect_llvm(kernel.signatures[0])
    element = "float" if dtype == np.float32 else "double"
    lanes = [int(k) for k in re.findall(rf"<(\d+) x {element}>", ir)]
    assert lanes and max(lanes) >= (4 if dtype == np.float32 else 2)


def _assert_same_bits(got, expected):
    """Equal bits, except that a nan need only be a nan (its sign may differ)."""
    got, expected = np.atleast_1d(got), np.atleast_1d(expected)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    unsigned = f"u{got.itemsize}"
    np.testing.assert_array_equal(
        got[~nan].view(unsigned), expected[~nan].view(unsigned)
    )


def _key_column(field: str) -> int:
    """The position of a Variant field in the keys of ``cpu._KERNELS``."""
    from numbce import cpu

    return [f.name for f in dataclasses.fields(cpu.Variant)].index(field)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_interleave_changes_no_bit(rng, dtype, monkeypatch):
    """A family with ``vector_interleave`` compiles its kernel with LLVM's interleave count
    set, then put back to LLVM's default; the kernel gives the same bits (a nan stays a
    nan) as the same loop compiled without it, on a length that leaves a remainder after
    the interleaved vectors, with extreme and special logits."""
    import numba

    from numbce import cpu

    family = FAMILIES["binary_cross_entropy_with_logits"]
    interleave = family.vector_interleave[0]
    assert interleave > 1
    settings, set_interleave = [], cpu._set_interleave

    def record(count):
        settings.append(count)
        set_interleave(count)

    monkeypatch.setattr(cpu, "_set_interleave", record)
    variant = cpu.Variant(family.name, np.dtype(dtype).name, True, False, True, True,
                          cpu.SCALAR, cpu.SCALAR, False, False, interleave)  # fmt: skip
    interleaved = cpu._kernel(variant)
    plain = numba.njit(nogil=True, error_model="numpy")(cpu._kernel_body(variant))
    n = 1000 + 37
    x = rng.normal(scale=30, size=n).astype(dtype)
    x[:6] = [np.inf, -np.inf, np.nan, 0.0, 1e30, -1e30]
    y = rng.uniform(size=n).astype(dtype)
    scalars = np.array([1.0, 1.0, 1.0, n, 0.9, 0.05, 0.0])
    one = np.ones(1, dtype)
    results = []
    for kernel, arguments in ((interleaved, cpu.kernel_arguments(variant)),
                              (plain, cpu.ARGUMENTS)):  # fmt: skip
        outputs = {
            name: np.empty(n, dtype) for name in ("loss_out", "grad_out", "hess_out")
        }
        values = {"x": x, "y": y, "weight": one, "pos_weight": one, "grad_output": one,
                  "scalars": scalars, "blocks_out": np.empty((2, 1)), **outputs}  # fmt: skip
        kernel(*(values[name] for name in arguments))
        results.append(list(outputs.values()))
    assert settings == [interleave, 0]
    for got, expected in zip(*results):
        # A nan's sign may differ (without FMA, x86 makes a new nan negative, and LLVM may
        # order the operands of one operation differently): nan, nothing more, is kept.
        _assert_same_bits(got, expected)


def test_streamed_inputs_take_the_second_interleave(rng, monkeypatch):
    """From ``STREAMING_THRESHOLD`` elements on, a call runs the kernel compiled with the
    family's second ``vector_interleave``; the results keep their bits."""
    from numbce import _config, cpu

    family = FAMILIES["binary_cross_entropy_with_logits"]
    in_cache, streamed = family.vector_interleave
    assert in_cache != streamed
    x = rng.normal(scale=5, size=300).astype(np.float32)
    y = rng.uniform(size=300).astype(np.float32)
    f = numbce.binary_cross_entropy_with_logits_value_and_grad
    expected = f(x, y)
    monkeypatch.setattr(_config, "STREAMING_THRESHOLD", 256)
    got = f(x, y)
    column = _key_column("interleave")
    used = {key[column] for key in cpu._KERNELS if key[0] == family.name}
    assert {in_cache, streamed} <= used
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAMILIES)
def test_defaults_kernel_gives_the_general_kernels_bits(rng, name, dtype):
    """Without weights and with the default options, a call runs the kernel that has
    them compiled in as constants (``Variant.defaults``); it gives the bits of the
    general kernel (run here by weights given as arrays of ones), with extreme and
    special inputs, elementwise and reduced."""
    from numbce import cpu

    family = FAMILIES[name]
    n = 1000 + 37
    if family.input_in_unit_interval:
        x = rng.uniform(size=n)
        x[:5] = [0.0, 1.0, -0.0, 1e-300, 1 - 1e-16]
    else:
        x = rng.normal(scale=30, size=n)
        x[:7] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30]
    y = rng.uniform(size=n)
    y[7:12] = [0.0, 1.0, -0.0, 0.5, 1e-300]
    x, y = x.astype(dtype), y.astype(dtype)
    ones = {"weight": np.ones(n, dtype)}
    if family.pos_weight:
        ones["pos_weight"] = np.ones(n, dtype)
    # An option of -0.0 where the default is 0.0 equals the default: the defaults kernel
    # (its +0.0) must give the bits of the general kernel's -0.0.
    negative_zeros = {o.name: -0.0 for o in family.options if o.default == 0.0}
    for suffix in ("_value_and_grad", "_grad_hess"):
        function = getattr(numbce, name + suffix)
        for reduction, options in itertools.product(
            ("none", "mean"), ({}, negative_zeros) if negative_zeros else ({},)
        ):
            for got, expected in zip(
                function(x, y, reduction=reduction, **options),
                function(x, y, reduction=reduction, **options, **ones),
            ):
                _assert_same_bits(got, expected)
    column = _key_column("defaults")
    assert {key[column] for key in cpu._KERNELS if key[0] == name} == {False, True}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_zeros_sign_does_not_depend_on_earlier_calls(rng, name, monkeypatch):
    """Calls are remembered by value (their kernel plan, their options' parameters), and
    0.0 == -0.0: a zero weight or grad_output gives the bits it gives with nothing
    remembered, whatever was called before. An option's zero has no sign: -0.0 gives
    the bits of 0.0."""
    from numbce import _validate, cpu

    def forget():
        monkeypatch.setattr(_validate, "_PARAMS", {})
        monkeypatch.setattr(cpu, "_PLANS", {})

    family = FAMILIES[name]
    x = (
        rng.uniform(0.1, 0.9, size=50)
        if family.input_in_unit_interval
        else (rng.normal(size=50))
    )
    y = (rng.uniform(size=50) < 0.5).astype(float)
    loss, grad = getattr(numbce, name), getattr(numbce, name + "_grad")

    def results(zero):
        return (
            loss(x, y, weight=zero, reduction="none"),
            grad(x, y, reduction="sum", grad_output=zero),
        )

    fresh = {}  # by the zero's sign (keyed by the zeros, it would have one key)
    for zero in (-0.0, 0.0):
        forget()
        fresh[np.signbit(zero)] = results(zero)
    np.testing.assert_array_equal(
        np.signbit(fresh[True][1]), ~np.signbit(fresh[False][1])
    )
    for zero in (0.0, -0.0, 0.0, -0.0):
        for got, expected in zip(results(zero), fresh[np.signbit(zero)]):
            _assert_same_bits(got, expected)
    for option in family.options:
        assert not np.signbit(option.check(-0.0))
        options = []
        for zero in (-0.0, 0.0):
            forget()
            options.append(loss(x, y, reduction="none", **{option.name: zero}))
        _assert_same_bits(*options)


@pytest.mark.parametrize("weight", [0.0, np.array([0.0, 0.0, 1.0])])
def test_zero_weight_zeroes_even_an_infinite_term(weight):
    x = np.array([np.inf, -np.inf, 1.0])
    y = np.array([0.0, 1.0, 1.0])
    loss = numbce.binary_cross_entropy_with_logits(
        x, y, weight=weight, reduction="none"
    )
    expected = [0.0, 0.0, 0.0 if np.ndim(weight) == 0 else np.log1p(np.exp(-1.0))]
    np.testing.assert_allclose(loss, expected, rtol=eps(np.float64))
    assert (
        numbce.binary_cross_entropy_with_logits(x, y, weight=weight, reduction="sum")
        >= 0
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_byte_swapped_input_and_target(rng, dtype):
    x = rng.normal(size=(3, 5)).astype(dtype)
    y = rng.uniform(size=(3, 5)).astype(dtype)
    swapped = np.dtype(dtype).newbyteorder()
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x.astype(swapped), y.astype(swapped), reduction="none"
    )
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="none"
    )
    assert loss.dtype.isnative and grad.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loss, expected[0])
    np.testing.assert_array_equal(grad, expected[1])
