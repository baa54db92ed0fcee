"""Shared fixtures: input generators covering the spec's shapes, dtypes and options."""

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
SHAPES = {"0d": (), "1d": (7,), "2d": (5, 6), "4d": (2, 3, 2, 4), "strided": (4, 5)}
REDUCTIONS = ["none", "mean", "sum"]


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def make_array(rng, shape_name, dtype, low, high):
    """Uniform values of the named shape; 'strided' is a non-contiguous, read-only view."""
    shape = SHAPES[shape_name]
    if shape_name == "strided":
        base = rng.uniform(low, high, size=(shape[1] * 2, shape[0])).astype(dtype)
        view = base[::2].T
        view.flags.writeable = False
        assert not view.flags.c_contiguous
        return view
    return np.asarray(rng.uniform(low, high, size=shape), dtype=dtype)


def make_weight(rng, kind, shape, dtype):
    """None, a scalar, a full array, or an array broadcast along the last axis."""
    if kind == "none":
        return None
    if kind == "scalar":
        return 0.75
    if kind == "full":
        return rng.uniform(0.5, 2.0, size=shape).astype(dtype)
    last = shape[-1:] if shape else ()
    return rng.uniform(0.5, 2.0, size=last).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def torch_or_skip():
    return pytest.importorskip(
        "torch", reason="PyTorch (the 'compare' extra) is not installed"
    )


@pytest.fixture(autouse=True)
def no_background_compiles(monkeypatch):
    """Fits compile nothing in the background during the tests (one process per fit of
    an uncached family would compete with the tests for the cores); the tests of that
    feature switch it on."""
    from numbce import _config

    monkeypatch.setattr(_config, "BACKGROUND_COMPILE", False)
