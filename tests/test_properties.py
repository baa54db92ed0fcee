"""Properties that hold for every input (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numbce

logits = hnp.arrays(
    np.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6, allow_nan=False)
)
units = st.floats(0.0, 1.0)
SETTINGS = settings(max_examples=60, deadline=None)


def _pair(draw_x, draw_y):
    return draw_x, np.resize(np.asarray(draw_y, dtype=np.float64), draw_x.shape)


@SETTINGS
@given(logits, st.lists(units, min_size=1, max_size=40), st.floats(0.0, 5.0), units)
def test_with_logits_loss_is_non_negative(x, targets, q, smoothing):
    x, y = _pair(x, targets)
    loss = numbce.binary_cross_entropy_with_logits(
        x, y, pos_weight=q, label_smoothing=smoothing, reduction="none"
    )
    assert (loss >= 0).all()


@SETTINGS
@given(logits, st.lists(units, min_size=1, max_size=40))
def test_with_logits_is_symmetric_under_flipping_sign_and_label(x, targets):
    x, y = _pair(x, targets)
    y = 1.0 - (1.0 - y)  # targets whose complement is exact, so the flip loses nothing
    loss = numbce.binary_cross_entropy_with_logits(x, y, reduction="none")
    flipped = numbce.binary_cross_entropy_with_logits(-x, 1.0 - y, reduction="none")
    np.testing.assert_allclose(loss, flipped, rtol=4 * np.finfo(float).eps)


@SETTINGS
@given(
    logits,
    st.lists(units, min_size=1, max_size=40),
    st.floats(0.0, 4.0),
    st.sampled_from(["none", "mean", "sum"]),
)
def test_value_and_grad_equals_separate_calls(x, targets, q, reduction):
    x, y = _pair(x, targets)
    options = {"pos_weight": q, "reduction": reduction}
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(x, y, **options)
    np.testing.assert_array_equal(
        loss, numbce.binary_cross_entropy_with_logits(x, y, **options)
    )
    np.testing.assert_array_equal(
        grad, numbce.binary_cross_entropy_with_logits_grad(x, y, **options)
    )


@SETTINGS
@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=units),
    st.lists(units, min_size=1, max_size=40),
    st.floats(0.01, 100.0),
)
def test_weight_scales_linearly(p, targets, scale):
    p, y = _pair(p, targets)
    base_loss, base_grad = numbce.binary_cross_entropy_value_and_grad(
        p, y, reduction="none"
    )
    loss, grad = numbce.binary_cross_entropy_value_and_grad(
        p, y, weight=scale, reduction="none"
    )
    np.testing.assert_allclose(loss, scale * base_loss, rtol=4 * np.finfo(float).eps)
    np.testing.assert_allclose(grad, scale * base_grad, rtol=4 * np.finfo(float).eps)
