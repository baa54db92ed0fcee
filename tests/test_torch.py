"""Parity with PyTorch (the 'compare' extra): values, autograd gradients, tutorial figures."""

import numpy as np
import pytest
from conftest import DTYPES, REDUCTIONS, eps, torch_or_skip

import numbce

torch = torch_or_skip()
F = torch.nn.functional


def _torch_value_and_grad(fn, x, y, **options):
    xt = torch.tensor(x, requires_grad=True)
    loss = fn(xt, torch.tensor(y), **options)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


def _tensor(a, dtype):
    return None if a is None else torch.tensor(np.asarray(a, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_with_logits_matches_torch(rng, dtype, reduction, weighted, pos_weighted):
    x = rng.normal(scale=5, size=(6, 4)).astype(dtype)
    y = rng.uniform(size=(6, 4)).astype(dtype)
    w = rng.uniform(0.5, 2, size=(6, 1)).astype(dtype) if weighted else None
    q = rng.uniform(0.5, 3, size=(4,)).astype(dtype) if pos_weighted else None
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, weight=w, pos_weight=q, reduction=reduction
    )
    expected_loss, expected_grad = _torch_value_and_grad(
        F.binary_cross_entropy_with_logits,
        x,
        y,
        weight=_tensor(w, dtype),
        pos_weight=_tensor(q, dtype),
        reduction=reduction,
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=64 * eps(dtype))
    np.testing.assert_allclose(
        grad, expected_grad, rtol=64 * eps(dtype), atol=64 * eps(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_probabilities_match_torch(rng, dtype, reduction, weighted):
    p = rng.uniform(0.01, 0.99, size=(5, 3)).astype(dtype)
    p[0, :2] = [0.0, 1.0]
    y = rng.uniform(size=(5, 3)).astype(dtype)
    w = rng.uniform(0.5, 2, size=(3,)).astype(dtype) if weighted else None
    loss, grad = numbce.binary_cross_entropy_value_and_grad(
        p, y, weight=w, reduction=reduction
    )
    expected_loss, expected_grad = _torch_value_and_grad(
        F.binary_cross_entropy, p, y, weight=_tensor(w, dtype), reduction=reduction
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=64 * eps(dtype))
    np.testing.assert_allclose(grad[1:], expected_grad[1:], rtol=64 * eps(dtype))
    # At p = 0 or 1 the 1e-12 floor decides; PyTorch's floor is 1e-12 rounded to float32.
    np.testing.assert_allclose(
        grad[0], expected_grad[0], rtol=max(1e-8, 64 * eps(dtype))
    )


def test_label_smoothing_equals_torch_on_smoothed_targets(rng):
    x, y = rng.normal(size=20), (rng.uniform(size=20) > 0.5).astype(np.float64)
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, label_smoothing=0.2
    )
    expected = _torch_value_and_grad(
        F.binary_cross_entropy_with_logits, x, y * 0.8 + 0.1
    )
    np.testing.assert_allclose(loss, expected[0], rtol=1e-14)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-14)


def test_tutorial_bce_on_probabilities_prints_1_2200():
    p = np.array([0.3440, 0.7944, 0.8919, 0.3551, 0.9817, 0.8871], dtype=np.float32)
    y = np.array([0.1639, 0.4745, 0.1537, 0.5444, 0.6933, 0.1129], dtype=np.float32)
    loss = numbce.BCELoss()(p, y)
    assert f"{loss:.4f}" == "1.2200"
    assert loss == pytest.approx(
        F.binary_cross_entropy(torch.tensor(p), torch.tensor(y)).item(),
        rel=4 * eps(np.float32),
    )


def test_tutorial_with_logits_pos_weight_prints_0_2014():
    x = np.full((10, 64), 1.5, dtype=np.float32)
    y = np.ones((10, 64), dtype=np.float32)
    loss = numbce.BCEWithLogitsLoss(pos_weight=np.ones(64, dtype=np.float32))(x, y)
    assert f"{loss:.4f}" == "0.2014"
    assert isinstance(loss, np.float32)


def test_torch_gives_nan_where_numbce_gives_the_limit():
    x, y = np.array([-np.inf]), np.array([0.0])
    assert np.isnan(
        F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(y)).item()
    )
    assert numbce.binary_cross_entropy_with_logits(x, y) == 0.0
