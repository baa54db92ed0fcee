"""CUDA benchmarks: numbce's kernels against their memory floor (a device-to-device copy
moving the same bytes) and PyTorch CUDA, in one run.

    pytest bench/test_bench_cuda.py --benchmark-only --benchmark-json=cuda.json
    bash bench/gpu_check.sh            # the whole GPU check: versions, tests, these, report

Cases (``reduction='mean'``, float32 and float64, N from ``--cuda-sizes``, default 1e8 then
1e6): every family of the registry (``numbce.losses.FAMILIES``), each forward, grad, fused
value-and-grad and grad_hess. Contestants:

* ``numbce``: the whole call, then ``cuda.synchronize()``: the time is the work's, not the
  launch's.
* ``numbce-nosync`` (cases returning device arrays): the same call without the final
  synchronisation, each round starting on an idle device. A call that does not wait for its
  kernel returns in the launch's time, far below ``numbce``'s at N = 1e8; one that copies
  something back waits for the kernel. ``extra_info['kernel_pending_on_return']`` records
  whether the device was still busy when one call returned (an event query; ``None`` on the
  simulator): True shows no host synchronisation inside the call (meaningful where a kernel
  outlasts a Python call, i.e. N = 1e8).
* ``floor``: a device-to-device copy of ``bytes / 2``: it reads and writes the bytes the
  kernel must move (read x and y, write each output array).
* ``torch``: PyTorch CUDA on the same device memory: the family's own PyTorch formula
  (``Family.torch``: ``torch.nn.functional``'s losses, the torchvision formula of the focal
  loss) with its default options, averaged, forward (fetching the scalar) or
  forward+backward (for grad and fused). No peer for grad_hess. Skipped when PyTorch has
  no CUDA.

Skipped without a real GPU; ``--cuda-sim`` runs it on Numba's CUDA simulator (with
``NUMBA_ENABLE_CUDASIM=1``) as a smoke test of this file, whose times mean nothing.
"""

import sys

import numpy as np
import pytest
from contestants import size_id
from numba.core import config

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
SIMULATOR = bool(config.ENABLE_CUDASIM)
if not SIMULATOR and not cuda.is_available():
    pytest.skip("needs a real CUDA GPU", allow_module_level=True)

import numbce
from numbce import cuda as backend
from numbce.losses import FAMILIES

DTYPES = ["float32", "float64"]
OPS = {"forward": "", "grad": "_grad", "fused": "_value_and_grad",
       "grad_hess": "_grad_hess"}  # fmt: skip
"""op -> the suffix of numbce's public function (``family + suffix``), called with
``reduction='mean'``."""
WRITES = {"forward": 0, "grad": 1, "fused": 1, "grad_hess": 2}
"""Arrays an op writes, besides reading x and y (the 'mean' loss is a scalar)."""
CONTESTANTS = ["numbce", "numbce-nosync", "floor", "torch"]
NOSYNC_ROUNDS = 2 if SIMULATOR else 20


def parse_sizes(text: str) -> list[int]:
    """``"1e6,1e8"`` -> ``[1000000, 100000000]``."""
    return [int(float(part)) for part in text.split(",") if part.strip()]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        sizes = parse_sizes(metafunc.config.getoption("--cuda-sizes"))
        cases = [
            (family, op, dtype, n)
            for n in sizes
            for dtype in DTYPES
            for family in FAMILIES
            for op in OPS
        ]
        ids = [f"{family}-{op}-{dtype}-{size_id(n)}" for family, op, dtype, n in cases]
        metafunc.parametrize("case", cases, ids=ids)


@pytest.fixture(scope="module", autouse=True)
def gpu_or_simulator(pytestconfig):
    """A real GPU, or the simulator when ``--cuda-sim`` asks for it, with 8 threads per
    block and a short GIL switch interval (its threads wait for each other at every
    ``syncthreads``), so that the suite takes seconds there."""
    if not SIMULATOR:
        yield
        return
    if not pytestconfig.getoption("--cuda-sim"):
        pytest.skip("the CUDA simulator runs this suite only with --cuda-sim")
    grid, interval = _grid_settings(), sys.getswitchinterval()
    threads = getattr(grid, "THREADS_PER_BLOCK", None)
    if threads is not None:
        grid.THREADS_PER_BLOCK = 8
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(interval)
    if threads is not None:
        grid.THREADS_PER_BLOCK = threads


def _grid_settings():
    """The module holding ``THREADS_PER_BLOCK``: ``numbce._config``, or ``numbce.cuda``
    before that existed; None if neither does."""
    try:
        from numbce import _config
    except ImportError:
        _config = None
    for module in (_config, backend):
        if hasattr(module, "THREADS_PER_BLOCK"):
            return module
    return None


_INPUTS: dict[tuple, tuple] = {}


def _inputs(family: str, n: int, dtype: str):
    """Device ``(x, y)``: logits ~ 4 N(0, 1) or, for a family on probabilities, U(0, 1),
    with hard 0/1 targets; made once per (data, n, dtype), the previous size freed."""
    data = "probs" if FAMILIES[family].input_in_unit_interval else "logits"
    key = (data, n, dtype)
    if key not in _INPUTS:
        for old in [k for k in _INPUTS if k[1] != n]:
            del _INPUTS[old]
        rng = np.random.default_rng(0)
        if data == "logits":
            x = rng.standard_normal(n, dtype=np.float32) * np.float32(4)
        else:
            x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32) < 0.5
        _INPUTS[key] = (
            cuda.to_device(x.astype(dtype)),
            cuda.to_device(y.astype(dtype)),
        )
    return _INPUTS[key]


def _device_name() -> str:
    if SIMULATOR:
        return "CUDA simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def _idle() -> None:
    """Wait for the device (a pedantic setup must return None)."""
    cuda.synchronize()


def _numbce_call(family: str, op: str, x, y):
    function = getattr(numbce, family + OPS[op])
    return lambda: function(x, y, reduction="mean")


def _kernel_pending_on_return(call) -> bool | None:
    """Whether the device was still busy when ``call()`` returned, on an idle device with
    no deallocation pending (a free waits for the device); None where events cannot be
    queried, as on the simulator."""
    cuda.synchronize()
    with cuda.defer_cleanup():
        result = call()
        event = cuda.event()
        event.record()
        query = getattr(event, "query", None)
        pending = None if query is None else not query()
        cuda.synchronize()
        del result
    return pending


def _copy_floor(count: int, dtype: str):
    """Copy ``count`` elements: reads and writes ``2 * count`` elements."""
    source = cuda.device_array(count, dtype=dtype)  # a copy's speed ignores the values
    target = cuda.device_array_like(source)

    def run():
        target.copy_to_device(source)
        cuda.synchronize()

    return run


def _torch_peer(family: str, op: str, x, y):
    """PyTorch CUDA on the same device memory: forward fetches the scalar, grad and fused
    run forward+backward."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA")
    if op == "grad_hess":
        pytest.skip("PyTorch has no grad_hess peer")
    formula = FAMILIES[family].torch
    if formula is None:
        pytest.skip(f"{family} has no PyTorch formula")
    tx = torch.as_tensor(x, device="cuda")
    ty = torch.as_tensor(y, device="cuda")

    def loss_of(inputs, targets):
        return formula(inputs, targets, None).mean()

    if op == "forward":
        return lambda: loss_of(tx, ty).item()
    leaf = tx.detach().requires_grad_()

    def run():
        loss = loss_of(leaf, ty)
        torch.autograd.grad(loss, leaf)
        torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("contestant", CONTESTANTS)
def test_cuda(benchmark, case, contestant):
    family, op, dtype, n = case
    x, y = _inputs(family, n, dtype)
    call = _numbce_call(family, op, x, y)
    moved = (2 + WRITES[op]) * x.nbytes
    benchmark.group = f"cuda {family} {op} {dtype} {size_id(n)}"
    benchmark.extra_info.update(
        suite="cuda",
        family=family,
        op=op,
        dtype=dtype,
        n=n,
        contestant=contestant,
        bytes=moved,
        device=_device_name(),
    )
    if contestant == "floor":
        run = _copy_floor(moved // 2 // x.dtype.itemsize, dtype)
    elif contestant == "torch":
        run = _torch_peer(family, op, x, y)
    else:
        if contestant == "numbce-nosync":
            if WRITES[op] == 0:
                pytest.skip("a 'mean' forward returns a host scalar: it must wait")
            call()  # compile
            pending = _kernel_pending_on_return(call)
            benchmark.extra_info["kernel_pending_on_return"] = pending
            benchmark.pedantic(call, setup=_idle, rounds=NOSYNC_ROUNDS, iterations=1)
            cuda.synchronize()
            return

        def run():
            call()
            cuda.synchronize()

    run()  # warm-up: compiles the kernel variant, loads the libraries
    benchmark(run)
