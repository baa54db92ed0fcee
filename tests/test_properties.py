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


FLOATS = st.sampled_from([np.float16, np.float32, np.float64])
REDUCTION = st.sampled_from(["none", "mean", "sum"])


@st.composite
def _focal_case(draw):
    """Logits and targets of one dtype (hard, or soft without weights: where the focal
    loss is built on exactly BCE with logits' terms), and a weight (None unless hard)."""
    dtype = draw(FLOATS)
    x = draw(hnp.arrays(dtype, st.integers(1, 40),
                        elements=st.floats(-100, 100, width=np.finfo(dtype).bits)))  # fmt: skip
    hard = draw(st.booleans())
    targets = st.sampled_from([0.0, 1.0]) if hard else units
    y = np.resize(np.asarray(draw(st.lists(targets, min_size=1)), dtype), x.shape)
    weight = None
    if hard and draw(st.booleans()):
        weight = draw(st.floats(0.0, 1e3, width=np.finfo(dtype).bits))
    return x, y, weight


@SETTINGS
@given(_focal_case(), REDUCTION)
def test_focal_with_gamma_0_and_no_alpha_has_the_bits_of_bce_with_logits(
    case, reduction
):
    x, y, weight = case
    for suffix in ("", "_grad", "_hess"):
        focal = getattr(numbce, "sigmoid_focal_loss" + suffix)(
            x, y, alpha=None, gamma=0.0, reduction=reduction, weight=weight
        )
        bce = getattr(numbce, "binary_cross_entropy_with_logits" + suffix)(
            x, y, reduction=reduction, weight=weight
        )
        assert focal.dtype == bce.dtype == x.dtype
        np.testing.assert_array_equal(focal, bce)


@SETTINGS
@given(
    _focal_case(),
    st.floats(0.0, 1000.0),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.sampled_from(["none", "sum"]),
)
def test_focal_never_exceeds_bce_with_logits(case, gamma, alpha, reduction):
    """torchvision's ``test_correct_ratio``, with no tolerance: the focusing factors are
    at most 1, and rounding is monotone."""
    x, y, weight = case
    focal = numbce.sigmoid_focal_loss(
        x, y, alpha=alpha, gamma=gamma, reduction=reduction, weight=weight
    )
    bce = numbce.binary_cross_entropy_with_logits(
        x, y, reduction=reduction, weight=weight
    )
    assert np.all(focal <= bce)
