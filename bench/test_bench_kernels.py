"""Loss kernels against the memory floor, NumPy, PyTorch and scikit-learn, in one run.

Every contestant of :mod:`contestants` runs on the same arrays with the same thread count,
warmed up (compiled) before timing. ``python bench/report.py`` turns the JSON into
bench/RESULTS.md and the plot.
"""

import numpy as np
import pytest
from contestants import FAMILIES, OPS, bytes_moved, contestants, make_inputs

NAMES = ["floor", "numbce", "numbce-out", "numpy", "pytorch", "scikit-learn"]


@pytest.mark.parametrize("contestant", NAMES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("family", FAMILIES)
def test_kernel(benchmark, family, dtype, op, n, contestant, threads):
    x, y = make_inputs(family, n, np.dtype(dtype))
    racers = contestants(family, op, x, y)
    if contestant not in racers:
        pytest.skip(f"{contestant} has no {family} {op} here")
    if contestant == "numpy" and n > 10_000_000:
        pytest.skip("the NumPy closed form needs too much memory at this size")
    run = racers[contestant]
    run()  # compile / warm up
    benchmark.group = f"{family} {op} {dtype} n={n:.0e}"
    benchmark.extra_info.update(
        suite="kernels",
        family=family,
        op=op,
        dtype=dtype,
        n=n,
        contestant=contestant,
        threads=threads,
        bytes=bytes_moved(op, x),
    )
    benchmark(run)
