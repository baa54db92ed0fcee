"""numbce.cuda against the CPU kernels, on device arrays.

Without a CUDA driver these run on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set
here if numba.cuda is not imported yet), with 8 threads per block and at most 3 blocks, so
that a few dozen elements span several blocks and every thread loops. On a real GPU the
same tests run unchanged, plus the ``gpu`` ones (PyTorch tensors, streams, large N).
"""

import ctypes
import ctypes.util
import importlib
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REDUCTIONS, eps


def _gpu_present() -> bool:
    """A CUDA driver that reports at least one device (asked without importing Numba)."""
    name = ctypes.util.find_library("nvcuda" if sys.platform == "win32" else "cuda")
    try:
        driver = ctypes.CDLL(name) if name else None
    except OSError:
        driver = None
    count = ctypes.c_int(0)
    return (
        driver is not None
        and driver.cuInit(0) == 0
        and driver.cuDeviceGetCount(ctypes.byref(count)) == 0
        and count.value > 0
    )


if (
    "numba.cuda" not in sys.modules
    and "NUMBA_ENABLE_CUDASIM" not in os.environ
    and not _gpu_present()
):
    import numba.core.config

    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    numba.core.config.reload_config()  # numba itself may be imported already

cuda = pytest.importorskip(
    "numba.cuda", reason="numba-cuda (the 'cuda' extra) is not installed"
)
if not cuda.is_available():
    pytest.skip(
        "no usable GPU, and numba.cuda was imported before the simulator could be enabled",
        allow_module_level=True,
    )

import numbce
from numbce import _config
from numbce import cuda as backend
from numbce._validate import Outputs
from numbce.functional import array_kind
from numbce.losses import FAMILIES

SIMULATOR = backend._simulator()
DTYPES = [np.float32, np.float64]
SHAPE = (5, 7)
WEIGHTS = ["none", "scalar", "host-broadcast", "device-full", "device-broadcast"]
POS_WEIGHTS = ["none", "device-scalar", "host-full", "device-broadcast"]

LOGITS = [
    numbce.binary_cross_entropy_with_logits,
    numbce.binary_cross_entropy_with_logits_grad,
    numbce.binary_cross_entropy_with_logits_value_and_grad,
]
PROBS = [
    numbce.binary_cross_entropy,
    numbce.binary_cross_entropy_grad,
    numbce.binary_cross_entropy_value_and_grad,
]


def gpu(test):
    """Marks a test 'gpu' and skips it under the simulator."""
    skip = pytest.mark.skipif(SIMULATOR, reason="needs a real GPU")
    return pytest.mark.gpu(skip(test))


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    monkeypatch.setattr(_config, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(_config, "MAX_BLOCKS", 3)


@pytest.fixture(autouse=True, scope="module")
def fast_simulator_threads():
    """The simulator runs a block's threads as Python threads that wait for each other at
    every ``syncthreads``; a short GIL switch interval makes that 10x faster."""
    interval = sys.getswitchinterval()
    if SIMULATOR:
        sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(interval)


def _weight(rng, kind, dtype):
    """(device-side argument, the same value for the CPU) for a weight kind."""
    if kind == "none":
        return None, None
    if kind == "scalar":
        return 0.75, 0.75
    if kind == "device-scalar":
        value = np.array([1.5], dtype=dtype)
        return cuda.to_device(value), value
    shape = SHAPE if kind.endswith("full") else SHAPE[-1:]
    value = rng.uniform(0.5, 2.0, size=shape).astype(dtype)
    return (value if kind.startswith("host") else cuda.to_device(value)), value


def _tolerance(dtype) -> float:
    """float64: 1e-12 relative; float32/16: a few ulp (the exp/log differ by an ulp or two)."""
    return 1e-12 if dtype == np.float64 else 8 * eps(dtype)


def _check(got, expected, atol=None):
    """``got`` (from the GPU) matches ``expected`` (from the CPU): kind, shape, dtype, value.

    Elementwise within the tolerance, relative, or (default ``atol``) relative to the
    largest value (gradients of soft targets cancel near their root)."""
    if isinstance(expected, np.ndarray):
        assert array_kind(got) == "cuda"
        got = got.copy_to_host()
        assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    if not isinstance(expected, np.ndarray):
        assert type(got) is type(expected)
    tol = _tolerance(expected.dtype)
    finite = np.abs(expected[np.isfinite(expected)]) if expected.size else []
    scale = float(np.max(finite, initial=0.0))
    np.testing.assert_allclose(
        np.asarray(got, np.float64),
        np.asarray(expected, np.float64),
        rtol=tol,
        atol=tol * scale if atol is None else atol,
    )


def _check_pair(got, expected, atol=None):
    for g, e in zip(got, expected, strict=True):
        _check(g, e, atol)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("pos_weight_kind", POS_WEIGHTS)
@pytest.mark.parametrize("weight_kind", WEIGHTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_with_logits_matches_cpu(
    rng, reduction, dtype, weight_kind, pos_weight_kind, label_smoothing
):
    x = rng.uniform(-8.0, 8.0, size=SHAPE).astype(dtype)
    y = np.round(rng.uniform(0.0, 1.0, size=SHAPE)).astype(dtype)
    w, w_host = _weight(rng, weight_kind, dtype)
    q, q_host = _weight(rng, pos_weight_kind, dtype)
    options = {"reduction": reduction, "label_smoothing": label_smoothing}
    got = numbce.binary_cross_entropy_with_logits_value_and_grad(
        cuda.to_device(x), cuda.to_device(y), weight=w, pos_weight=q, **options
    )
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, weight=w_host, pos_weight=q_host, **options
    )
    _check_pair(got, expected)


@pytest.mark.parametrize("weight_kind", WEIGHTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probabilities_match_cpu(rng, reduction, dtype, weight_kind):
    p = rng.uniform(0.0, 1.0, size=SHAPE).astype(dtype)
    y = rng.uniform(0.0, 1.0, size=SHAPE).astype(dtype)
    w, w_host = _weight(rng, weight_kind, dtype)
    got = numbce.binary_cross_entropy_value_and_grad(
        cuda.to_device(p), cuda.to_device(y), weight=w, reduction=reduction
    )
    expected = numbce.binary_cross_entropy_value_and_grad(
        p, y, weight=w_host, reduction=reduction
    )
    _check_pair(got, expected)


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("fn", LOGITS + PROBS, ids=lambda fn: fn.__name__)
def test_every_public_function_matches_cpu(rng, fn, reduction):
    x = rng.uniform(0.01, 0.99, size=SHAPE)
    y = rng.uniform(0.0, 1.0, size=SHAPE)
    got = fn(cuda.to_device(x), cuda.to_device(y), reduction=reduction)
    expected = fn(x, y, reduction=reduction)
    if isinstance(expected, tuple):
        _check_pair(got, expected)
    else:
        _check(got, expected)


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_match_cpu(dtype, target):
    big = np.finfo(dtype).max
    subnormal = 100 if dtype == np.float32 else 740  # exp(-x) is subnormal
    x = np.array(
        [-np.inf, -big, -800, -subnormal, -40, -30, -1, -1e-8, -1e-30, 0.0, 1e-30, 1e-8]
        + [1, 30, 40, subnormal, 800, big, np.inf],
        dtype=dtype,
    )
    y = np.full_like(x, target)
    got = numbce.binary_cross_entropy_with_logits_value_and_grad(
        cuda.to_device(x), cuda.to_device(y), reduction="none"
    )
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="none"
    )
    # Hard labels: relative accuracy down to a few subnormal ulps (no flush to zero).
    ulps = 4 * np.finfo(dtype).smallest_subnormal if target != 0.3 else None
    _check_pair(got, expected, ulps)
    loss, grad = (a.copy_to_host() for a in got)
    assert not np.isnan(loss).any() and not np.isnan(grad).any()
    if target == 1.0:  # -sigmoid(-30): full relative accuracy, not 0
        assert grad[x == 30][0] == pytest.approx(-np.exp(-30.0), rel=4 * eps(dtype))


def test_nan_logit_propagates():
    x = np.array([0.5, np.nan, -2.0])
    y = np.array([1.0, 0.0, 1.0])
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        cuda.to_device(x), cuda.to_device(y)
    )
    assert np.isnan(loss)
    assert np.isnan(grad.copy_to_host()).tolist() == [False, True, False]


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_probabilities_match_cpu(dtype):
    tiny = np.finfo(dtype).tiny
    p = np.array([0.0, tiny, 1e-30, 0.5, 1 - eps(dtype), 1.0] * 2, dtype=dtype)
    y = np.repeat([0.0, 1.0], 6).astype(dtype)
    got = numbce.binary_cross_entropy_value_and_grad(
        cuda.to_device(p), cuda.to_device(y), reduction="none"
    )
    expected = numbce.binary_cross_entropy_value_and_grad(p, y, reduction="none")
    _check_pair(got, expected)
    assert np.isfinite(got[0].copy_to_host()).all()
    assert np.isfinite(got[1].copy_to_host()).all()


def _cpu_message(fn, *args, **options) -> str:
    with pytest.raises(ValueError) as error:
        fn(*args, **options)
    return str(error.value)


def _raises_like_cpu(fn, x, y, **options):
    """The device call raises the CPU's ValueError and leaves its inputs as they were."""
    message = _cpu_message(fn, x, y, **options)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fn(dx, dy, **options)
    np.testing.assert_array_equal(dx.copy_to_host(), x)
    np.testing.assert_array_equal(dy.copy_to_host(), y)
    return message


@pytest.mark.parametrize(
    "bad, where", [(-0.25, 3), (1.5, 0), (np.nan, 41), (-np.inf, 9)]
)
@pytest.mark.parametrize("fn", PROBS, ids=lambda fn: fn.__name__)
def test_probability_outside_unit_interval(fn, bad, where):
    p = np.full(50, 0.5)
    p[where] = bad
    message = _raises_like_cpu(fn, p, np.zeros(50))
    assert message.endswith(f"got {bad!r} at flat index {where}")


@pytest.mark.parametrize("bad", [-1.0, np.nan])
@pytest.mark.parametrize("fn", LOGITS + PROBS, ids=lambda fn: fn.__name__)
def test_target_outside_unit_interval(fn, bad):
    x = np.full((3, 4), 0.5, dtype=np.float32)
    y = np.zeros((3, 4), dtype=np.float32)
    y[2, 1] = bad
    message = _raises_like_cpu(fn, x, y, reduction="none")
    assert message.endswith("at flat index 9 (index (2, 1))")


def test_first_offending_index_across_threads_and_blocks():
    p = np.full(60, 0.5)
    # 44 is seen in the grid's first sweep, 13 in its second; 13 and 37 by one thread
    p[[44, 13, 37, 30, 59]] = 3.0
    message = _raises_like_cpu(numbce.binary_cross_entropy, p, np.ones(60))
    assert message.endswith("got 3.0 at flat index 13")


def test_bad_probability_is_reported_before_bad_target():
    p, y = np.full(30, 0.5), np.zeros(30)
    p[20], y[2] = 2.0, -1.0
    message = _raises_like_cpu(numbce.binary_cross_entropy_grad, p, y)
    assert message.startswith("input (probabilities) must be in [0, 1], got 2.0")


def test_integer_label_two_is_a_range_error():
    x, y = np.zeros(3), np.array([0, 2, 1])
    message = _raises_like_cpu(numbce.binary_cross_entropy_with_logits, x, y)
    assert message.endswith("got 2.0 at flat index 1")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: numbce.binary_cross_entropy(
                cuda.to_device(np.full((2, 3), 0.5)), cuda.to_device(np.zeros((3, 2)))
            ),
            ValueError,
            "target shape (3, 2) does not match input shape (2, 3)",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros((2, 4))),
                cuda.to_device(np.zeros((2, 4))),
                weight=cuda.to_device(np.ones((4, 1, 1))),
            ),
            ValueError,
            "weight of shape (4, 1, 1) cannot be broadcast to input shape (2, 4)",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros((2, 4))),
                cuda.to_device(np.zeros((2, 4))),
                pos_weight=np.ones(3),
            ),
            ValueError,
            "pos_weight of shape (3,) cannot be broadcast to input shape (2, 4)",
        ),
        (
            lambda: numbce.binary_cross_entropy_grad(
                cuda.to_device(np.array([0, 1, 0])), cuda.to_device(np.zeros(3))
            ),
            TypeError,
            (
                "input must be a float16, float32 or float64 array, got dtype int64 "
                "(cast integer or bool inputs to float explicitly)"
            ),
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros(3, dtype=np.complex128)),
                cuda.to_device(np.zeros(3)),
            ),
            TypeError,
            "input must be a float16, float32 or float64 array, got dtype complex128",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros(3)),
                cuda.to_device(np.zeros(3, dtype=np.complex64)),
            ),
            TypeError,
            "target must be a real or bool array, got dtype complex64",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros(3)),
                cuda.to_device(np.zeros(3)),
                weight=cuda.to_device(np.zeros(3, dtype=np.complex64)),
            ),
            TypeError,
            "weight must be a real or bool array, got dtype complex64",
        ),
        (
            lambda: numbce.binary_cross_entropy(
                cuda.to_device(np.zeros(3)),
                cuda.to_device(np.zeros(3)),
                reduction="avg",
            ),
            ValueError,
            "reduction must be one of 'none', 'mean', 'sum', got 'avg'",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros(3)),
                cuda.to_device(np.zeros(3)),
                label_smoothing=1.5,
            ),
            ValueError,
            "label_smoothing must be in [0, 1], got 1.5",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits_grad(
                cuda.to_device(np.zeros(3)),
                cuda.to_device(np.zeros(3)),
                grad_output=cuda.to_device(np.ones(3)),
            ),
            ValueError,
            "grad_output must be a scalar for reduction='mean', got shape (3,)",
        ),
        (
            lambda: numbce.binary_cross_entropy_with_logits(
                cuda.to_device(np.zeros(3)), np.zeros(3)
            ),
            TypeError,
            (
                "target must be a CUDA array when input is one, got numpy.ndarray; "
                "copy it to the device first (e.g. numba.cuda.to_device(target))"
            ),
        ),
    ],
    ids=[
        "shape",
        "device-weight-broadcast",
        "host-pos-weight-broadcast",
        "integer-input",
        "complex-input",
        "complex-target",
        "complex-weight",
        "reduction",
        "label-smoothing",
        "grad-output",
        "host-target",
    ],
)
def test_bad_inputs_raise_the_cpu_errors(call, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


def test_operands_of_other_dtypes_are_cast_like_on_the_cpu(rng):
    x = rng.uniform(-4.0, 4.0, size=SHAPE).astype(np.float32)
    y = rng.uniform(0.0, 1.0, size=SHAPE).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=SHAPE)  # float64
    q = rng.integers(1, 4, size=SHAPE[-1:])
    g = rng.uniform(-2.0, 2.0, size=SHAPE)
    options = {"reduction": "none", "label_smoothing": 0.1}
    got = numbce.binary_cross_entropy_with_logits_value_and_grad(
        cuda.to_device(x),
        cuda.to_device(y),
        weight=cuda.to_device(w),
        pos_weight=cuda.to_device(q),
        grad_output=cuda.to_device(g),
        **options,
    )
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, weight=w, pos_weight=q, grad_output=g, **options
    )
    _check_pair(got, expected)


def test_unwanted_results_are_none(rng):
    x = cuda.to_device(rng.uniform(0.01, 0.99, size=SHAPE))
    y = cuda.to_device(rng.uniform(0.0, 1.0, size=SHAPE))
    logits, probabilities = (
        FAMILIES[name]
        for name in ("binary_cross_entropy_with_logits", "binary_cross_entropy")
    )
    loss, grad, hess = backend.compute(logits, Outputs(loss=True), x, y)
    assert isinstance(loss, np.float64) and grad is None and hess is None
    loss, grad, hess = backend.compute(
        probabilities, Outputs(grad=True), x, y, reduction="none"
    )
    assert loss is None and array_kind(grad) == "cuda" and hess is None


def test_float16_and_integer_targets(rng):
    x = rng.uniform(-4.0, 4.0, size=SHAPE).astype(np.float16)
    y = rng.integers(0, 2, size=SHAPE)
    for target in (y, y.astype(bool)):
        for reduction in ("none", "mean"):
            got = numbce.binary_cross_entropy_with_logits_value_and_grad(
                cuda.to_device(x), cuda.to_device(target), reduction=reduction
            )
            expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
                x, target, reduction=reduction
            )
            _check_pair(got, expected)


def test_strided_device_arrays(rng):
    x = rng.uniform(-4.0, 4.0, size=(7, 5))
    y = rng.uniform(0.0, 1.0, size=(7, 5))
    dx, dy = cuda.to_device(x).T, cuda.to_device(y)[::-1].T
    assert not dx.is_c_contiguous()
    got = numbce.binary_cross_entropy_with_logits_value_and_grad(
        dx, dy, reduction="none"
    )
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x.T, y[::-1].T, reduction="none"
    )
    _check_pair(got, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_and_zero_dimensional_inputs(reduction):
    for x, y in [(np.zeros((0, 3)), np.zeros((0, 3))), (np.array(0.25), np.array(1.0))]:
        got = numbce.binary_cross_entropy_with_logits_value_and_grad(
            cuda.to_device(x), cuda.to_device(y), reduction=reduction
        )
        expected = numbce.binary_cross_entropy_with_logits_value_and_grad(
            x, y, reduction=reduction
        )
        if reduction == "mean" and not x.size:
            assert np.isnan(got[0]) and isinstance(got[0], np.float64)
            _check(got[1], expected[1])
        else:
            _check_pair(got, expected)


@pytest.mark.parametrize("where", ["scalar", "host", "device"])
def test_grad_output(rng, where):
    x = rng.uniform(-4.0, 4.0, size=SHAPE)
    y = rng.uniform(0.0, 1.0, size=SHAPE)
    scale = 0.5 if where == "scalar" else rng.uniform(-2.0, 2.0, size=SHAPE)
    got = numbce.binary_cross_entropy_with_logits_grad(
        cuda.to_device(x),
        cuda.to_device(y),
        reduction="none",
        grad_output=cuda.to_device(scale) if where == "device" else scale,
    )
    expected = numbce.binary_cross_entropy_with_logits_grad(
        x, y, reduction="none", grad_output=scale
    )
    _check(got, expected)


def test_repeated_calls_are_bit_identical(rng):
    x = cuda.to_device(rng.uniform(-4.0, 4.0, size=50).astype(np.float32))
    y = cuda.to_device(rng.uniform(0.0, 1.0, size=50).astype(np.float32))
    first = numbce.binary_cross_entropy_with_logits(x, y, reduction="sum")
    second = numbce.binary_cross_entropy_with_logits(x, y, reduction="sum")
    assert first.tobytes() == second.tobytes()


def test_launches_on_the_stream_of_the_input(rng):
    stream = cuda.stream()
    x = cuda.to_device(rng.uniform(-4.0, 4.0, size=SHAPE)).bind(stream)
    y = cuda.to_device(rng.uniform(0.0, 1.0, size=SHAPE))
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="none"
    )
    assert loss.stream is stream and grad.stream is stream
    stream.synchronize()
    _check_pair(
        (loss, grad),
        numbce.binary_cross_entropy_with_logits_value_and_grad(
            x.copy_to_host(), y.copy_to_host(), reduction="none"
        ),
    )


class _YieldingEmpty:
    """NumPy, except that ``empty`` lets other threads run first: it widens the window
    between the simulator's look-up and insert of a static shared array (``FakeCUDAShared
    .array`` in ``numba/cuda/simulator/kernelapi.py``, unlocked), the race that lost partial
    sums once in a few hundred launches under load."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(*args, **kwargs):
        time.sleep(1e-4)
        return np.empty(*args, **kwargs)


@pytest.mark.skipif(not SIMULATOR, reason="a race of the CUDA simulator")
@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda family: family.name)
def test_block_sums_survive_thread_switches_in_the_simulator(rng, monkeypatch, family):
    kernelapi = importlib.import_module("numba.cuda.simulator.kernelapi")
    monkeypatch.setattr(kernelapi, "np", _YieldingEmpty())
    monkeypatch.setattr(_config, "MAX_BLOCKS", 2)
    x = rng.uniform(0.01, 0.99, size=SHAPE)
    y = rng.uniform(0.0, 1.0, size=SHAPE)
    fn = getattr(numbce, family.name)
    expected = fn(x, y, reduction="sum")
    for _ in range(3):
        _check(fn(cuda.to_device(x), cuda.to_device(y), reduction="sum"), expected)


def test_threads_per_block_must_be_a_power_of_two(monkeypatch):
    monkeypatch.setattr(_config, "THREADS_PER_BLOCK", 12)
    with pytest.raises(ValueError, match="power of two, got 12"):
        numbce.binary_cross_entropy(
            cuda.to_device(np.full(3, 0.5)), cuda.to_device(np.zeros(3))
        )


def test_missing_numba_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba.cuda", None)
    with pytest.raises(
        backend.CudaUnavailableError, match=r"pip install 'numbce\[cuda\]'"
    ):
        backend.compute(
            FAMILIES["binary_cross_entropy"], Outputs(loss=True), object(), object()
        )


def test_missing_driver_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda, "cuda_error", lambda: "no driver", raising=False)
    with pytest.raises(
        backend.CudaUnavailableError,
        match=r"no CUDA driver or GPU is usable \(no driver\)",
    ):
        numbce.binary_cross_entropy(
            cuda.to_device(np.full(3, 0.5)), cuda.to_device(np.zeros(3))
        )


def test_import_numbce_does_not_import_numba_cuda():
    code = "import sys, numbce, numbce.cuda; assert 'numba.cuda' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def default_grid(monkeypatch):
    monkeypatch.setattr(_config, "THREADS_PER_BLOCK", 256)
    monkeypatch.setattr(_config, "MAX_BLOCKS", None)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA")
    return torch


@gpu
@pytest.mark.usefixtures("default_grid")
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_arrays_on_the_default_grid(rng, dtype):
    n = (1 << 22) + 123
    x = rng.uniform(-8.0, 8.0, size=n).astype(dtype)
    y = rng.uniform(0.0, 1.0, size=n).astype(dtype)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    got = numbce.binary_cross_entropy_with_logits_value_and_grad(dx, dy)
    _check_pair(got, numbce.binary_cross_entropy_with_logits_value_and_grad(x, y))
    losses = numbce.binary_cross_entropy_with_logits(x, y, reduction="none")
    total = numbce.binary_cross_entropy_with_logits(dx, dy, reduction="sum")
    assert total == pytest.approx(math.fsum(losses.astype(np.float64)), rel=eps(dtype))


@gpu
def test_torch_tensors_that_require_grad():
    torch = _torch_cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    options = {"dtype": torch.float64, "device": "cuda", "generator": generator}
    x = torch.randn(64, 7, **options).mul_(4.0).requires_grad_()
    y = torch.rand(64, 7, **options)
    q = torch.rand(7, **options).add_(0.5)
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, pos_weight=q
    )
    expected = torch.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=q)
    expected.backward()
    assert x.requires_grad and isinstance(loss, np.float64)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    view = torch.as_tensor(grad, device="cuda")
    assert view.data_ptr() == grad.__cuda_array_interface__["data"][0]
    torch.testing.assert_close(view, x.grad, rtol=1e-10, atol=1e-16)
    host = [t.detach().cpu().numpy() for t in (x, y, q)]
    _check_pair(
        (loss, grad),
        numbce.binary_cross_entropy_with_logits_value_and_grad(
            host[0], host[1], pos_weight=host[2]
        ),
    )


@gpu
def test_torch_current_stream_is_used(monkeypatch):
    torch = _torch_cuda()
    streams = []
    choose = backend._stream
    monkeypatch.setattr(
        backend, "_stream", lambda *args: streams.append(choose(*args)) or streams[-1]
    )
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.linspace(-5.0, 5.0, 1000, device="cuda")
        y = torch.rand(1000, device="cuda")
        grad = numbce.binary_cross_entropy_with_logits_grad(x, y, reduction="none")
    side.synchronize()
    assert int(streams[0].handle) == side.cuda_stream
    _check(
        grad,
        numbce.binary_cross_entropy_with_logits_grad(
            x.cpu().numpy(), y.cpu().numpy(), reduction="none"
        ),
    )


@pytest.mark.parametrize("suffix", ["_value_and_grad", "_grad_hess"])
@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_every_family_and_derivative_matches_cpu(rng, suffix, name, dtype, reduction):
    """Driven by the registry: every family's loss, gradient and second derivative (the
    two fused passes hold all three), with its last accuracy option set and a per-class
    weight (read at i % C on the device)."""
    family = FAMILIES[name]
    low, high = (-8.0, 8.0) if family.input_grid == "logits" else (0.01, 0.99)
    x = rng.uniform(low, high, size=SHAPE).astype(dtype)
    y = rng.uniform(0.0, 1.0, size=SHAPE).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=SHAPE[-1:]).astype(dtype)
    options = dict(family.accuracy_options[-1], reduction=reduction)
    function = getattr(numbce, name + suffix)
    got = function(
        cuda.to_device(x), cuda.to_device(y), weight=cuda.to_device(w), **options
    )
    expected = function(x, y, weight=w, **options)
    if isinstance(expected, tuple):
        _check_pair(got, expected)
    else:
        _check(got, expected)


def test_wide_target_is_checked_before_rounding_as_on_the_cpu():
    """A float64 target of 1 + 1e-9 rounds to 1.0 in float32: rejected, as on the CPU."""
    x = np.zeros(3, dtype=np.float32)
    y = np.array([0.0, 1.0 + 1e-9, 1.0])
    message = _cpu_message(numbce.binary_cross_entropy_with_logits, x, y)
    assert "1.000000001" in message
    with pytest.raises(ValueError, match=re.escape(message)):
        numbce.binary_cross_entropy_with_logits(cuda.to_device(x), cuda.to_device(y))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_sum_is_inf_not_an_exception(dtype):
    x = np.zeros(64, dtype)
    x[0] = x[40] = -np.finfo(dtype).max  # two blocks each hold the largest loss
    got = numbce.binary_cross_entropy_with_logits(
        cuda.to_device(x), cuda.to_device(np.ones(64, dtype)), reduction="sum"
    )
    assert got == np.inf and got.dtype == dtype
