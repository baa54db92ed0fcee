"""CUDA benchmarks: numbce's fused value-and-grad and forward kernels against their memory
floor (a device-to-device copy moving the same bytes) and PyTorch CUDA, in one run.

Skipped without a real GPU (and under the CUDA simulator). Every timed call ends with a
device synchronisation, so the time is the work's, not the launch's.

    pytest bench/test_bench_cuda.py --benchmark-only --benchmark-json=cuda.json
"""

import numpy as np
import pytest
from numba.core import config

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
if config.ENABLE_CUDASIM or not cuda.is_available():
    pytest.skip("needs a real CUDA GPU", allow_module_level=True)

import numbce

SIZES = [10**6, 10**7, 10**8]
DTYPES = [np.float32, np.float64]
KINDS = {"fused": 3, "forward": 2}
"""Benchmark kind -> elements moved per input element: fused reads x, y and writes the
gradient; forward reads x and y."""


@pytest.fixture(
    scope="module",
    params=[(n, dtype) for n in SIZES for dtype in DTYPES],
    ids=lambda p: f"{np.dtype(p[1]).name}-{p[0]:.0e}",
)
def data(request):
    """Host logits and hard labels of one size and dtype."""
    n, dtype = request.param
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n, dtype=np.float32) * 4).astype(dtype)
    y = (rng.random(n, dtype=np.float32) < 0.5).astype(dtype)
    return x, y


def _numbce(x, y, fused):
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    if fused:
        function = numbce.binary_cross_entropy_with_logits_value_and_grad
    else:
        function = numbce.binary_cross_entropy_with_logits

    def run():
        function(dx, dy)
        cuda.synchronize()

    return run


def _copy_floor(x, y, fused):
    """Copy ``moved / 2`` elements: reads and writes the bytes the kernel moves."""
    count = x.size * KINDS["fused" if fused else "forward"] // 2
    source = cuda.device_array(count, dtype=x.dtype)
    target = cuda.device_array_like(source)

    def run():
        target.copy_to_device(source)
        cuda.synchronize()

    return run


def _torch(x, y, fused):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA")
    tx = torch.from_numpy(x).cuda().requires_grad_(fused)
    ty = torch.from_numpy(y).cuda()
    loss_of = torch.nn.functional.binary_cross_entropy_with_logits

    def run():
        loss = loss_of(tx, ty)
        if fused:
            torch.autograd.grad(loss, tx)
        torch.cuda.synchronize()

    return run


CONTESTANTS = {"numbce": _numbce, "d2d copy (floor)": _copy_floor, "torch": _torch}


@pytest.mark.parametrize("contestant", list(CONTESTANTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda(benchmark, data, kind, contestant):
    x, y = data
    run = CONTESTANTS[contestant](x, y, kind == "fused")
    run()  # warm-up: compiles the kernel variant, loads the libraries
    dtype = x.dtype.name
    benchmark.group = f"cuda {kind} {dtype} n={x.size:.0e}"
    benchmark.extra_info.update(
        suite="cuda",
        contestant=contestant,
        n=x.size,
        dtype=dtype,
        bytes=KINDS[kind] * x.nbytes,
    )
    benchmark(run)
