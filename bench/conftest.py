"""Benchmark options: sizes, threads. Run: pytest bench/ --benchmark-only [--big]."""

import contextlib

# PyTorch first: if Numba's OpenMP threads start before PyTorch loads its own, PyTorch runs
# about 2x slower here (measured), which would flatter numbce.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401

import numba
import pytest
from contestants import set_threads


def pytest_addoption(parser):
    parser.addoption("--big", action="store_true", help="also run N = 1e8")
    parser.addoption(
        "--threads",
        type=int,
        default=numba.config.NUMBA_NUM_THREADS,
        help="threads for every contestant (numba and torch alike)",
    )


def pytest_configure(config):
    set_threads(config.getoption("--threads"))


def pytest_generate_tests(metafunc):
    if "n" in metafunc.fixturenames:
        sizes = [1_000, 100_000, 10_000_000]
        if metafunc.config.getoption("--big"):
            sizes.append(100_000_000)
        metafunc.parametrize("n", sizes, ids=[f"n={n:.0e}" for n in sizes])


@pytest.fixture
def threads(request):
    return request.config.getoption("--threads")
