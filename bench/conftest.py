"""Benchmark options: sizes, threads; compact JSON; the load each benchmark ran under.

Run: ``pytest bench/ --benchmark-only --benchmark-json=bench/results.json [--big]``.

``--deadline SECONDS`` skips what would start later, so that a time-boxed run still writes
its JSON. Test ids name sizes as ``n1e3`` ... ``n1e8`` (no ``=``), so ``-k "not n1e7"`` selects by
size. The JSON keeps each benchmark's statistics, not every round's time (pytest-benchmark
writes all rounds: 86 MB for the kernel suite), and each benchmark's ``extra_info`` records
the 1-minute load average around it, which ``report.py`` uses to flag rows measured on a
busy machine.
"""

import contextlib
import os
import time

# PyTorch first: if Numba's OpenMP threads start before PyTorch loads its own, PyTorch runs
# about 2x slower here (measured), which would flatter numbce.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401

import numba
import pytest
from contestants import set_threads, size_id

CUDA_SIZES = "1e8,1e6"
START = pytest.StashKey[float]()


def pytest_addoption(parser):
    parser.addoption("--big", action="store_true", help="also run N = 1e8")
    parser.addoption(
        "--threads",
        type=int,
        default=numba.config.NUMBA_NUM_THREADS,
        help="threads for every contestant (numba and torch alike)",
    )
    parser.addoption(
        "--cuda-sizes",
        default=CUDA_SIZES,
        help=f"comma-separated N of the CUDA suite (default {CUDA_SIZES})",
    )
    parser.addoption(
        "--deadline",
        type=float,
        default=None,
        help="skip the tests that would start more than this many seconds after the "
        "session began (the JSON of those that ran is still written)",
    )
    parser.addoption(
        "--cuda-sim",
        action="store_true",
        help="run the CUDA suite on Numba's CUDA simulator (a smoke run: its times mean "
        "nothing); without it the suite needs a real GPU",
    )


def pytest_benchmark_update_machine_info(config, machine_info):
    """The CPU as LLVM compiles for it, and the widest SIMD it may use (the kernels'
    speed depends on it; their bits do not)."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    cpu = numba.config.CPU_NAME or binding.get_host_cpu_name()
    widest = next(
        (name for name, flag in (("AVX-512", "avx512f"), ("AVX2", "avx2"), ("SSE2", "sse2"))
         if features.get(flag)), "none"
    )  # fmt: skip
    machine_info["llvm_cpu"] = cpu
    machine_info["simd"] = widest if not numba.config.CPU_NAME else f"{cpu} target"
    machine_info["blas"] = _blas()


def _blas() -> str:
    """The BLAS libraries loaded (threadpoolctl: OpenBLAS's kernel set for this CPU) and
    the environment variables that steer OpenBLAS's choice, where set."""
    import numpy  # noqa: F401  (its BLAS)
    import scipy.linalg  # noqa: F401  (its BLAS, which Numba's products call)
    from threadpoolctl import threadpool_info

    libraries = sorted(
        {
            f"{info.get('internal_api')} {info.get('version')} "
            f"{info.get('architecture') or ''}".strip()
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        }
    )
    steering = [
        f"{name}={os.environ[name]}"
        for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_ENABLE_INSTRUCTIONS")
        if name in os.environ
    ]
    return "; ".join(libraries) + (
        f" (environment: {', '.join(steering)})" if steering else " (no OPENBLAS_* set)"
    )


def pytest_configure(config):
    set_threads(config.getoption("--threads"))
    config.stash[START] = time.monotonic()


def pytest_runtest_setup(item):
    deadline = item.config.getoption("--deadline")
    if deadline is not None and time.monotonic() - item.config.stash[START] > deadline:
        pytest.skip(f"--deadline of {deadline:g} s reached")


def pytest_generate_tests(metafunc):
    if "n" in metafunc.fixturenames:
        sizes = [1_000, 100_000, 10_000_000]
        if metafunc.config.getoption("--big"):
            sizes.append(100_000_000)
        metafunc.parametrize("n", sizes, ids=[size_id(n) for n in sizes])


@pytest.fixture
def threads(request):
    return request.config.getoption("--threads")


@pytest.fixture(autouse=True)
def record_load(request):
    """``extra_info['load']``: the larger 1-minute load average before and after a
    benchmark; ``extra_info['cores']``: the logical cores it shared."""
    if "benchmark" not in request.fixturenames or not hasattr(os, "getloadavg"):
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    before = os.getloadavg()[0]
    yield
    load = max(before, os.getloadavg()[0])
    benchmark.extra_info.update(load=round(load, 2), cores=os.cpu_count())


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Drop the per-round times from the JSON: the statistics stay (min, median, ...)."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)
