"""Hand-derived gradients against central finite differences of the loss (float64)."""

import numpy as np
import pytest

import numbce


def _central_difference(loss_fn, x, h):
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (loss_fn(x + step) - loss_fn(x - step)) / (2 * h)
    return grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight": [0.5, 2.0, 1.0]},
        {"pos_weight": [3.0, 0.2, 1.0]},
        {"label_smoothing": 0.15},
        {"weight": 1.7, "pos_weight": 2.5, "label_smoothing": 0.05},
    ],
)
def test_with_logits_gradient_is_the_derivative(rng, reduction, options):
    x = rng.normal(scale=3, size=(4, 3))
    y = rng.uniform(size=(4, 3))

    def loss_fn(z):
        return numbce.binary_cross_entropy_with_logits(
            z, y, reduction=reduction, **options
        )

    grad = numbce.binary_cross_entropy_with_logits_grad(
        x, y, reduction=reduction, **options
    )
    np.testing.assert_allclose(
        grad, _central_difference(loss_fn, x, 1e-6), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weight", [None, [0.5, 2.0, 1.0], 3.0])
def test_probabilities_gradient_is_the_derivative(rng, reduction, weight):
    p = rng.uniform(0.05, 0.95, size=(4, 3))
    y = rng.uniform(size=(4, 3))

    def loss_fn(z):
        return numbce.binary_cross_entropy(z, y, weight, reduction)

    grad = numbce.binary_cross_entropy_grad(p, y, weight, reduction)
    np.testing.assert_allclose(
        grad, _central_difference(loss_fn, p, 1e-7), rtol=1e-6, atol=1e-9
    )
