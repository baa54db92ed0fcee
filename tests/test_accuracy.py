"""Accuracy against 50-digit mpmath on extreme grids (every family, its options, both
dtypes, hard and soft targets), the exact forms against mpmath's own differentiation, and
exact reductions."""

import math

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")

import numbce
from numbce import accuracy, reference
from numbce.losses import FAMILIES

BOUNDS = {
    # family: (loss, first derivative, second derivative), in ulps; derivatives of soft
    # targets (or smoothed ones) in ulps of the sum of their terms' magnitudes
    "binary_cross_entropy": (4, 4, 8),
    "binary_cross_entropy_with_logits": (4, 4, 8),
    "sigmoid_focal_loss": (8, 8, 8),
}


def _cases():
    for family, dtype, soft, options in accuracy.cases():
        label = ",".join(f"{k}={v}" for k, v in options.items())
        yield pytest.param(
            family, dtype, soft, options,
            id=f"{family.name}-{np.dtype(dtype).name}-{'soft' if soft else 'hard'}-{label}",
        )  # fmt: skip


@pytest.mark.parametrize("family, dtype, soft, options", list(_cases()))
def test_elementwise_within_bounds_of_mpmath(family, dtype, soft, options):
    worst = accuracy.max_ulps(family, dtype, soft, options)
    loss_bound, grad_bound, hess_bound = BOUNDS[family.name]
    smoothed = soft or options.get("label_smoothing", 0) > 0
    assert worst["loss"] <= loss_bound
    assert worst["grad_vs_terms" if smoothed else "grad"] <= grad_bound
    assert worst["hess_vs_terms"] <= hess_bound


@pytest.mark.parametrize("name", list(FAMILIES))
def test_exact_forms_are_the_derivatives_of_the_exact_loss(name):
    """The hand-derived exact derivatives against mpmath's numerical differentiation of the
    exact loss (so a derivation error shared by the kernels and the exact form shows)."""
    family = FAMILIES[name]
    points = [(0.3, 0.0), (0.3, 1.0), (0.7, 0.25), (0.9, 0.6)]
    if family.input_grid == "logits":
        points = [(x, y) for x in (-3.0, -0.5, 0.0, 0.7, 4.0) for y in (0.0, 1.0, 0.3)]
    q = 2.0 if family.pos_weight else 1.0
    for options in family.accuracy_options:
        for x, y in points:
            _, grad, hess, _, _ = family.exact(x, y, q, **options)

            def loss(z, y=y, options=options):
                return family.exact(z, y, q, **options)[0]

            assert abs(grad - mpmath.diff(loss, x)) <= 1e-30 * max(1, abs(grad))
            assert abs(hess - mpmath.diff(loss, x, 2)) <= 1e-30 * max(1, abs(hess))


def test_hard_label_gradient_keeps_relative_accuracy_when_saturated():
    x = np.array([30.0, 40.0, 700.0], dtype=np.float64)
    grad = numbce.binary_cross_entropy_with_logits_grad(x, np.ones(3), reduction="none")
    logits = FAMILIES["binary_cross_entropy_with_logits"]
    for got, xi in zip(grad, x, strict=True):
        assert accuracy.ulps(got, logits.exact(xi, 1.0, 1.0)[1], np.float64) <= 1.0
    assert grad[0] == pytest.approx(-9.357622968839299e-14, rel=1e-15)


def test_label_smoothing_does_not_cancel_for_confident_logits():
    """1 - y' formed directly: at x = 40, y = 1, eps = 1e-9 the loss is 2.0000000004e-8
    (1 - (y (1 - eps) + eps / 2) would give 1.99999972e-8, 8e8 ulps off)."""
    loss = numbce.binary_cross_entropy_with_logits(
        np.array([40.0]), np.array([1.0]), label_smoothing=1e-9
    )
    exact = FAMILIES["binary_cross_entropy_with_logits"].exact(
        40.0, 1.0, 1.0, label_smoothing=1e-9
    )[0]
    assert accuracy.ulps(loss, exact, np.float64) <= 2
    x = np.full(10_000, 20.0, dtype=np.float32)
    mean = numbce.binary_cross_entropy_with_logits(
        x, np.ones_like(x), label_smoothing=1e-4
    )
    exact = FAMILIES["binary_cross_entropy_with_logits"].exact(
        20.0, 1.0, 1.0, label_smoothing=1e-4
    )[0]
    assert accuracy.ulps(mean, exact, np.float32) <= 2


def test_float64_mean_of_1e7_matches_fsum():
    rng = np.random.default_rng(7)
    x = rng.normal(scale=6, size=10_000_000)
    y = rng.uniform(size=x.size)
    exact = (
        math.fsum(reference.binary_cross_entropy_with_logits(x, y, reduction="none"))
        / x.size
    )
    assert abs(numbce.binary_cross_entropy_with_logits(x, y) - exact) <= 1e-12 * exact


def test_float32_mean_of_1e7_is_correctly_rounded_or_one_ulp_away():
    rng = np.random.default_rng(8)
    x = rng.normal(scale=6, size=10_000_000).astype(np.float32)
    y = (rng.uniform(size=x.size) > 0.5).astype(np.float32)
    exact = (
        math.fsum(reference.binary_cross_entropy_with_logits(x, y, reduction="none"))
        / x.size
    )
    got = numbce.binary_cross_entropy_with_logits(x, y)
    assert isinstance(got, np.float32)
    assert abs(float(got) - exact) <= float(np.spacing(np.float32(exact))) * 1.5
