"""numbce on Dask arrays: lazy results equal to the in-memory ones, on the threaded scheduler
and on a two-process ``dask.distributed`` cluster on loopback."""

import re
import subprocess
import sys

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import numbce
from numbce import cpu

RTOL = 1e-12
SHAPE = (53, 7)
CHUNKS = ((10, 25, 18), (3, 4))
TARGET_CHUNKS = ((20, 33), (7,))

LOGITS = (
    numbce.binary_cross_entropy_with_logits,
    numbce.binary_cross_entropy_with_logits_grad,
    numbce.binary_cross_entropy_with_logits_value_and_grad,
)
PROBS = (
    numbce.binary_cross_entropy,
    numbce.binary_cross_entropy_grad,
    numbce.binary_cross_entropy_value_and_grad,
)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(params=["threads", "distributed"])
def scheduler(request):
    """What ``dask.compute`` runs on: the threaded scheduler or the cluster's client."""
    if request.param == "threads":
        return "threads"
    return request.getfixturevalue("client").get


def _in_memory(value):
    """The NumPy counterpart of an option (Dask arrays computed, the rest as is)."""
    return np.asarray(value) if isinstance(value, da.Array) else value


def _inputs(logits, dtype=np.float64):
    rng = np.random.default_rng(6)
    x = rng.normal(scale=4.0, size=SHAPE) if logits else rng.uniform(size=SHAPE)
    return x.astype(dtype), rng.uniform(size=SHAPE)


def _options(name):
    """Keyword options by name: NumPy and Dask weights of full and broadcast shapes."""
    rng = np.random.default_rng(7)
    return {
        "plain": {},
        "weight-full-numpy": {"weight": rng.uniform(0.5, 2.0, size=SHAPE)},
        "weight-row-dask": {"weight": da.from_array(rng.uniform(0.5, 2.0, size=7))},
        "weight-column-dask": {
            "weight": da.from_array(
                rng.uniform(0.5, 2.0, size=(53, 1)), chunks=((30, 23), 1)
            ),
            "grad_output": 0.6,
        },
        "pos_weight-row-numpy": {
            "pos_weight": rng.uniform(0.5, 3.0, size=7),
            "label_smoothing": 0.1,
        },
        "pos_weight-full-dask": {
            "pos_weight": da.from_array(rng.uniform(0.5, 3.0, size=SHAPE), chunks=9),
            "weight": 1.5,
            "grad_output": 2.0,
        },
    }[name]


def _call_all(functions, x, y, options):
    """``(loss, grad, (loss, grad))`` from the loss, grad and value_and_grad functions."""
    loss, grad, value_and_grad = functions
    loss_options = {k: v for k, v in options.items() if k != "grad_output"}
    return (
        loss(x, y, **loss_options),
        grad(x, y, **options),
        value_and_grad(x, y, **options),
    )


def _assert_close(got, expected, rtol=RTOL):
    assert type(got) is type(expected)
    assert got.dtype == expected.dtype and np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "logits, option_name",
    [
        (True, "plain"),
        (True, "weight-full-numpy"),
        (True, "weight-row-dask"),
        (True, "pos_weight-row-numpy"),
        (True, "pos_weight-full-dask"),
        (False, "plain"),
        (False, "weight-column-dask"),
    ],
)
def test_equals_in_memory(scheduler, logits, option_name, reduction):
    x, y = _inputs(logits)
    options = {**_options(option_name), "reduction": reduction}
    dx = da.from_array(x, chunks=CHUNKS)
    dy = da.from_array(y, chunks=TARGET_CHUNKS)
    functions = LOGITS if logits else PROBS
    lazy = _call_all(functions, dx, dy, options)
    expected = _call_all(
        functions, x, y, {k: _in_memory(v) for k, v in options.items()}
    )
    (loss, grad, (both_loss, both_grad)) = dask.compute(*lazy, scheduler=scheduler)
    for got, want in [
        (loss, expected[0]),
        (both_loss, expected[2][0]),
        (grad, expected[1]),
        (both_grad, expected[2][1]),
    ]:
        _assert_close(got, want)


@pytest.mark.parametrize(
    "n, chunk", [(20_000, 400), (300_000, 110_000)], ids=["many-blocks", "parallel"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_over_many_and_large_blocks(scheduler, n, chunk, dtype):
    """More blocks than one tree level sums (dask's split_every), and blocks large
    enough for the parallel kernel."""
    rng = np.random.default_rng(8)
    x = rng.normal(scale=3.0, size=n).astype(dtype)
    y = (rng.uniform(size=n) < 0.3).astype(np.int8)
    dx = da.from_array(x, chunks=chunk)
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(dx, y)
    loss, grad = dask.compute(loss, grad, scheduler=scheduler)
    expected_loss, expected_grad = (
        numbce.binary_cross_entropy_with_logits_value_and_grad(x, y)
    )
    rtol = RTOL if dtype == np.float64 else float(np.finfo(dtype).eps)
    _assert_close(loss, expected_loss, rtol)
    _assert_close(grad, expected_grad, rtol)


def test_grad_output_array_for_reduction_none(scheduler):
    x, y = _inputs(True)
    grad_output = np.random.default_rng(9).normal(size=SHAPE)
    lazy = numbce.binary_cross_entropy_with_logits_grad(
        da.from_array(x, chunks=CHUNKS),
        y,
        reduction="none",
        grad_output=da.from_array(grad_output, chunks=11),
    )
    (got,) = dask.compute(lazy, scheduler=scheduler)
    expected = numbce.binary_cross_entropy_with_logits_grad(
        x, y, reduction="none", grad_output=grad_output
    )
    _assert_close(got, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_lazy_results_keep_dtype_and_chunks(dtype):
    x, y = _inputs(True, dtype)
    dx = da.from_array(x, chunks=CHUNKS)
    dy = da.from_array(y, chunks=TARGET_CHUNKS)
    mean = numbce.binary_cross_entropy_with_logits(dx, dy)
    none, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        dx, dy, reduction="none"
    )
    assert isinstance(mean, da.Array) and mean.shape == () and mean.dtype == dtype
    for lazy in (none, grad):
        assert lazy.dtype == dtype and lazy.chunks == dx.chunks
    got = mean.compute(scheduler="threads")
    assert type(got) is np.dtype(dtype).type
    # float64 block sums grouped by chunk, not by 4,096 elements: equal to rounding
    expected = numbce.binary_cross_entropy_with_logits(x, y)
    assert abs(got - expected) <= np.spacing(expected)


def test_value_and_grad_persisted_reads_each_block_once(monkeypatch):
    calls = []

    def counting_run(request):
        calls.append(request.size)
        return cpu_run(request)

    cpu_run = cpu.run
    monkeypatch.setattr(cpu, "run", counting_run)
    x, y = _inputs(True)
    dx = da.from_array(x, chunks=CHUNKS)
    loss, grad = dask.persist(
        *numbce.binary_cross_entropy_with_logits_value_and_grad(dx, y),
        scheduler="threads",
    )
    assert sorted(calls) == sorted(np.multiply.outer(*CHUNKS).ravel().tolist())
    calls.clear()
    loss, grad = dask.compute(loss, grad, scheduler="threads")
    assert calls == []
    _assert_close(loss, numbce.binary_cross_entropy_with_logits(x, y))


@pytest.mark.parametrize(
    "functions, array, index",
    [
        (PROBS, "input", (47, 5)),
        (PROBS, "target", (12, 0)),
        (LOGITS, "target", (52, 6)),
    ],
)
def test_range_error_in_one_block(scheduler, functions, array, index):
    x, y = _inputs(functions is LOGITS)
    (x if array == "input" else y)[index] = 1.5
    with pytest.raises(ValueError) as in_memory:
        functions[0](x, y)
    for function in functions:
        lazy = function(
            da.from_array(x, chunks=CHUNKS), da.from_array(y, chunks=TARGET_CHUNKS)
        )
        with pytest.raises(ValueError, match=re.escape(str(in_memory.value))):
            dask.compute(lazy, scheduler=scheduler)


@pytest.mark.parametrize("shape, chunks", [((0,), 4), ((0, 3), (5, 2)), ((), ())])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_empty_and_0d_as_in_memory(scheduler, shape, chunks, reduction):
    x = np.full(shape, 0.25)
    y = np.ones(shape)
    for functions in (LOGITS, PROBS):
        lazy = functions[2](da.from_array(x, chunks=chunks), y, reduction=reduction)
        (loss, grad) = dask.compute(lazy, scheduler=scheduler)[0]
        expected_loss, expected_grad = functions[2](x, y, reduction=reduction)
        for got, want in [(loss, expected_loss), (grad, expected_grad)]:
            assert type(got) is type(want) and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "options",
    [
        {"target": np.zeros((7, 53))},
        {"input": np.zeros(SHAPE, dtype=np.int64)},
        {"target": np.zeros(SHAPE, dtype=np.complex64)},
        {"reduction": "avg"},
        {"label_smoothing": 1.5},
        {"weight": np.ones((3,))},
        {"pos_weight": np.ones((53, 2))},
        {"reduction": "mean", "grad_output": np.ones(SHAPE)},
        {"reduction": "none", "grad_output": np.ones((53, 1))},
    ],
    ids=lambda options: "-".join(options),
)
def test_checks_at_call_time_with_in_memory_messages(options):
    """Shape, dtype and option errors come from the call, before anything is computed."""
    x, y = _inputs(True)
    arguments = {"input": x, "target": y, **options}
    with pytest.raises((TypeError, ValueError)) as in_memory:
        numbce.binary_cross_entropy_with_logits_value_and_grad(**arguments)
    lazy = {
        k: da.from_array(v, chunks=5) if k in ("input", "target", "weight") else v
        for k, v in arguments.items()
    }
    with pytest.raises(in_memory.type, match=re.escape(str(in_memory.value))):
        numbce.binary_cross_entropy_with_logits_value_and_grad(**lazy)


def test_unknown_chunk_sizes_are_refused():
    x = da.from_array(np.linspace(-3, 3, 40), chunks=7)
    kept = x[x > 0]
    with pytest.raises(ValueError, match="input has unknown chunk sizes"):
        numbce.binary_cross_entropy_with_logits(kept, np.ones(20))
    with pytest.raises(ValueError, match="target has unknown chunk sizes"):
        numbce.binary_cross_entropy_with_logits(x[:20], kept)


def test_importing_numbce_does_not_import_dask():
    code = "import sys, numbce; assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(numbce.functional.FUNCTIONS))
@pytest.mark.parametrize("chunks", [CHUNKS, ((1,) * 53, (7,)), ((53,), (1,) * 7)])
def test_elementwise_results_have_the_in_memory_bits_under_any_chunking(name, chunks):
    """Every public function of every registered family; 'none' losses and derivatives
    are computed element by element, so the chunking cannot change a bit."""
    x, y = _inputs("logits" in name or "focal" in name)
    function = numbce.functional.FUNCTIONS[name]
    got = function(da.from_array(x, chunks=chunks), y, reduction="none")
    expected = function(x, y, reduction="none")
    pairs = (
        zip(got, expected, strict=True) if isinstance(got, tuple) else [(got, expected)]
    )
    for lazy, in_memory in pairs:
        np.testing.assert_array_equal(lazy.compute(scheduler="threads"), in_memory)


def test_overflowing_sum_is_inf_not_an_exception():
    x = np.zeros(8192)
    x[0] = x[4096] = -1e308
    dx = da.from_array(x, chunks=4096)
    for reduction in ("sum", "mean"):
        got = numbce.binary_cross_entropy_with_logits(
            dx, np.ones(8192), reduction=reduction
        )
        assert got.compute(scheduler="threads") == np.inf


def test_wide_target_error_names_the_index_in_the_whole_array():
    x = np.zeros((100, 50), dtype=np.float32)
    y = np.zeros((100, 50))
    y[97, 43] = 1.0 + 1e-9  # rounds to 1.0 in float32: rejected before rounding
    in_memory = (
        "target must be in [0, 1], got 1.000000001 at flat index 4893 (index (97, 43))"
    )
    with pytest.raises(ValueError, match=re.escape(in_memory)):
        numbce.binary_cross_entropy_with_logits(x, y)
    lazy = numbce.binary_cross_entropy_with_logits(
        da.from_array(x, chunks=(10, 10)), da.from_array(y, chunks=(10, 10))
    )
    with pytest.raises(ValueError, match=re.escape(in_memory)):
        lazy.compute(scheduler="threads")


def test_grad_output_none_means_one_as_in_memory():
    x, y = _inputs(True)
    for reduction in ("mean", "none"):
        lazy = numbce.binary_cross_entropy_with_logits_grad(
            da.from_array(x, chunks=CHUNKS), y, reduction=reduction, grad_output=None
        )
        np.testing.assert_array_equal(
            lazy.compute(scheduler="threads"),
            numbce.binary_cross_entropy_with_logits_grad(x, y, reduction=reduction),
        )
