"""The vectorizable primitives of numbce._vectormath against mpmath: within 1 ulp in
float64 and 1.5 ulp in float32 (each step rounds to 24 bits there)."""

import math

import numba
import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")

from numbce import _vectormath
from numbce.accuracy import ulps

FORMATS = {np.float32: _vectormath.FLOAT32, np.float64: _vectormath.FLOAT64}
EXACT = {
    "exp": mpmath.exp,
    "log": mpmath.log,
    "log1p": mpmath.log1p,
    "log1p_unit": mpmath.log1p,
}


def _elementwise(function):
    @numba.njit(error_model="numpy")
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = function(values[i])
        return out

    return apply


def _grid(name, dtype, rng):
    """Random and edge arguments over the domain the formulas call each primitive on."""
    tiny = float(np.finfo(dtype).tiny)
    if name == "exp":
        low = -110.0 if dtype == np.float32 else -750.0
        values = np.concatenate(
            [
                rng.uniform(low, 0.0, 4000),
                -np.exp(rng.uniform(-60, 6, 2000)),
                [0.0, -0.0, low, -1e-30],
            ]
        )
    elif name == "log":
        values = np.concatenate(
            [
                rng.uniform(0.0, 1.0, 4000),
                np.exp(rng.uniform(-80, 0, 2000)),
                [tiny, tiny / 7, 1.0, 0.5],
            ]
        )
    elif name == "log1p_unit":  # exp(-|x|): [0, 1], both sides of the split at 1/2
        values = np.concatenate(
            [
                rng.uniform(0.0, 1.0, 4000),
                np.exp(rng.uniform(-80, 0, 2000)),
                [0.0, tiny, 0.5, np.nextafter(dtype(0.5), dtype(1)), 1.0],
            ]
        )
    else:
        values = np.concatenate(
            [
                rng.uniform(-1.0, 1.0, 4000),
                np.exp(rng.uniform(-80, 0, 1500)),
                -np.exp(rng.uniform(-80, 0, 1500)),
                [1.0, -0.5, 1e-30],
            ]
        )
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(EXACT))
def test_within_one_ulp(name, dtype):
    functions = dict(zip(EXACT, _vectormath.make(FORMATS[dtype]), strict=True))
    values = _grid(name, dtype, np.random.default_rng(3))
    got = _elementwise(functions[name])(values)
    worst = max(
        ulps(g, EXACT[name](mpmath.mpf(float(v))), dtype)
        for g, v in zip(got, values, strict=True)
        if math.isfinite(v)
    )
    assert worst <= (1.0 if dtype == np.float64 else 1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    exp, log, log1p, log1p_unit = map(_elementwise, _vectormath.make(FORMATS[dtype]))
    inf, nan = np.inf, np.nan
    np.testing.assert_array_equal(
        exp(np.array([-inf, 0.0, -0.0, -1e4, nan], dtype)),
        [0.0, 1.0, 1.0, 0.0, nan],
    )
    np.testing.assert_array_equal(
        log(np.array([0.0, 1.0, inf, nan], dtype)), [-inf, 0.0, inf, nan]
    )
    np.testing.assert_array_equal(
        log1p(np.array([-1.0, 0.0, nan], dtype)), [-inf, 0.0, nan]
    )
    np.testing.assert_array_equal(
        log1p_unit(np.array([0.0, 1.0, nan], dtype)),
        np.array([0.0, math.log(2.0), nan], dtype),
    )
