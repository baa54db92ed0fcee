"""Every registered loss family, driven by the registry: values, gradients and second
derivatives against numbce.reference (every dtype x shape x reduction x option), fused
passes against separate calls, derivatives against finite differences and torch's double
autograd, and the focal loss against the torchvision formula."""

import itertools

import numpy as np
import pytest
from conftest import DTYPES, REDUCTIONS, SHAPES, eps, make_array, make_weight

import numbce
from numbce import reference
from numbce.functional import FUNCTIONS
from numbce.losses import FAMILIES

FAMILY_NAMES = list(FAMILIES)
WEIGHTS = ["none", "scalar", "full", "broadcast"]


def _inputs(rng, family, shape_name, dtype, hard=False):
    low, high = (-12.0, 12.0) if family.input_grid == "logits" else (0.0, 1.0)
    x = make_array(rng, shape_name, dtype, low, high)
    y = make_array(rng, shape_name, dtype, 0.0, 1.0)
    return x, (np.round(y) if hard else y)


def _options(family):
    """The first and the last option sets of the family's accuracy sweep (every set is
    measured against mpmath in test_accuracy.py)."""
    first, *_, last = (*family.accuracy_options, family.accuracy_options[-1])
    return [first] if first == last else [first, last]


def _call(family, suffix, x, y, **options):
    return FUNCTIONS[family.name + suffix](x, y, **options)


def _kernel_view(a, dtype):
    """What the kernel sees of an operand: rounded to the input dtype."""
    return None if a is None else np.asarray(a, dtype=dtype)


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize(
    "dtype, weight_kind",
    [(np.float32, kind) for kind in WEIGHTS]
    + [(np.float64, "scalar"), (np.float64, "broadcast")],
)  # every operand layout in float32; float64 with two (each layout compiles a kernel)
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(rng, name, dtype, shape_name, reduction, weight_kind):
    family = FAMILIES[name]
    for options in _options(family):
        x, y = _inputs(rng, family, shape_name, dtype)
        weight = make_weight(rng, weight_kind, x.shape, dtype)
        options = dict(options, weight=weight, reduction=reduction)
        if family.pos_weight:  # every pos_weight kind, paired with another weight kind
            pos_weight_kind = WEIGHTS[(WEIGHTS.index(weight_kind) + 1) % len(WEIGHTS)]
            options["pos_weight"] = make_weight(rng, pos_weight_kind, x.shape, dtype)
        expected_options = {
            k: _kernel_view(v, dtype) if k in ("weight", "pos_weight") else v
            for k, v in options.items()
        }
        n = max(x.size, 1) if reduction == "mean" else 1
        scale = 1.0 / n  # derivatives may cancel: absolute tolerance on their scale
        for suffix, atol in (("", 0.0), ("_grad", 8 * scale), ("_hess", 8 * scale)):
            got = _call(family, suffix, x, y, **options)
            expected = getattr(reference, family.name + suffix)(
                x, y, **expected_options
            )
            if isinstance(got, np.ndarray):
                assert got.shape == x.shape and got.dtype == dtype
            else:
                assert isinstance(got, dtype)
            np.testing.assert_allclose(
                got, expected, rtol=16 * eps(dtype), atol=atol * eps(dtype)
            )


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize(
    "dtype, n, reduction",
    [
        (np.float32, 7, "none"),
        (np.float64, 7, "none"),
        (np.float32, 4097, "sum"),
        (np.float64, 4097, "mean"),
        (np.float32, 20_000, "mean"),  # the parallel variants (compiling them is slow)
    ],
)
def test_fused_passes_equal_separate_calls(rng, name, dtype, n, reduction):
    """Serial and parallel (from 8,192 elements) variants, elementwise and reduced."""
    family = FAMILIES[name]
    x, y = _inputs(rng, family, "1d", dtype)
    x, y = np.resize(x, n), np.resize(y, n)
    options = dict(family.accuracy_options[-1], reduction=reduction)
    loss, grad = _call(family, "_value_and_grad", x, y, **options)
    grad_again, hess = _call(family, "_grad_hess", x, y, **options)
    np.testing.assert_array_equal(loss, _call(family, "", x, y, **options))
    np.testing.assert_array_equal(grad, _call(family, "_grad", x, y, **options))
    np.testing.assert_array_equal(grad_again, grad)
    np.testing.assert_array_equal(hess, _call(family, "_hess", x, y, **options))


def _central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("hard", [False, True])
def test_derivatives_are_central_differences(rng, name, hard):
    """grad is the slope of the loss and hess the slope of grad (float64, elementwise)."""
    family = FAMILIES[name]
    x, y = _inputs(rng, family, "2d", np.float64, hard)
    if family.input_grid == "probabilities":
        x = np.clip(x, 0.05, 0.95)
    else:
        x = np.clip(x, -8, 8)
    for options in _options(family):
        options = dict(options, reduction="none", weight=1.5)

        def loss(z, options=options):
            return _call(family, "", z, y, **options)

        def grad(z, options=options):
            return _call(family, "_grad", z, y, **options)

        h = 1e-6
        np.testing.assert_allclose(
            grad(x), _central_difference(loss, x, h), rtol=1e-6, atol=1e-8
        )
        np.testing.assert_allclose(
            _call(family, "_hess", x, y, **options),
            _central_difference(grad, x, h),
            rtol=1e-5,
            atol=1e-7,
        )


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_grad_output_scales_every_derivative(rng, name, reduction):
    family = FAMILIES[name]
    x, y = _inputs(rng, family, "2d", np.float64)
    scale = rng.uniform(0.5, 2.0, size=x.shape) if reduction == "none" else 2.5
    for suffix in ("_grad", "_hess"):
        plain = _call(family, suffix, x, y, reduction=reduction)
        scaled = _call(family, suffix, x, y, reduction=reduction, grad_output=scale)
        np.testing.assert_allclose(scaled, plain * scale, rtol=4 * eps(np.float64))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_loss_classes_hold_options_and_reduction(rng, name):
    family = FAMILIES[name]
    cls = getattr(numbce, family.class_name)
    x, y = _inputs(rng, family, "2d", np.float64)
    options = dict(family.accuracy_options[-1], reduction="sum")
    loss = cls(**options)
    assert loss.reduction == "sum" and family.class_name in repr(loss)
    assert cls().reduction == family.class_reduction
    assert loss(x, y) == _call(family, "", x, y, **options)
    for method, suffix in (
        ("grad", "_grad"),
        ("value_and_grad", "_value_and_grad"),
        ("hess", "_hess"),
        ("grad_hess", "_grad_hess"),
    ):
        got = getattr(loss, method)(x, y, grad_output=0.5)
        expected = _call(family, suffix, x, y, grad_output=0.5, **options)
        pairs = (
            zip(got, expected, strict=True)
            if isinstance(got, tuple)
            else [(got, expected)]
        )
        for got_part, expected_part in pairs:
            np.testing.assert_array_equal(got_part, expected_part)


def test_public_names_come_from_the_registry():
    for family in FAMILIES.values():
        assert isinstance(getattr(numbce, family.class_name), type)
        for suffix in ("", "_grad", "_value_and_grad", "_hess", "_grad_hess"):
            function = getattr(numbce, family.name + suffix)
            assert function.__name__ == family.name + suffix
            assert function.__name__ in numbce.__all__
            assert "d" in function.__doc__  # the family's formulas are in the docstring


# --- PyTorch: second derivatives through double autograd --------------------------------


def _torch_derivatives(family, x, y, q, options):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    loss = family.torch(xt, torch.tensor(y), torch.tensor(q), **options)
    (grad,) = torch.autograd.grad(loss.sum(), xt, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), xt)
    return loss.detach().numpy(), grad.detach().numpy(), hess.numpy()


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("hard", [False, True])
def test_derivatives_match_torch_double_autograd(rng, name, hard):
    family = FAMILIES[name]
    x, y = _inputs(rng, family, "2d", np.float64, hard)
    if family.input_grid == "probabilities":
        x = np.clip(x, 1e-3, 1 - 1e-3)
    q = rng.uniform(0.5, 3.0, size=x.shape) if family.pos_weight else np.ones(x.shape)
    for options in _options(family):
        expected = _torch_derivatives(family, x, y, q, options)
        if family.pos_weight:
            options = dict(options, pos_weight=q)
        loss, grad = _call(family, "_value_and_grad", x, y, reduction="none", **options)
        hess = _call(family, "_hess", x, y, reduction="none", **options)
        # torch's double backward of BCE on probabilities adds its 1e-12 to p (1 - p)
        hess_rtol = 1e-9 if family.input_grid == "probabilities" else 1e-12
        for got, want, rtol in zip((loss, grad, hess), expected, (1e-12, 1e-12, hess_rtol),
                                   strict=True):  # fmt: skip
            np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-14)


# --- The sigmoid focal loss ---------------------------------------------------------------

FOCAL = FAMILIES["sigmoid_focal_loss"]
BCE_LOGITS = FAMILIES["binary_cross_entropy_with_logits"]
ALPHAS = [None, 0.0, 0.25, 1.0, -1.0]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.7]


@pytest.mark.parametrize(
    "alpha, gamma", list(itertools.product(ALPHAS, GAMMAS)), ids=str
)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_matches_the_torchvision_formula(rng, alpha, gamma, hard, reduction):
    torch = pytest.importorskip("torch")
    x, y = _inputs(rng, FOCAL, "2d", np.float64, hard)
    x = np.clip(x, -10, 10)  # where the torchvision formula is accurate
    w = rng.uniform(0.5, 2.0, size=x.shape[-1:])
    xt = torch.tensor(x, requires_grad=True)
    elementwise = torch.tensor(w) * FOCAL.torch(xt, torch.tensor(y), None, alpha, gamma)
    reduced = {
        "none": elementwise,
        "sum": elementwise.sum(),
        "mean": elementwise.mean(),
    }
    expected = reduced[reduction]
    (grad,) = torch.autograd.grad(expected.sum(), xt, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), xt)
    options = {"alpha": alpha, "gamma": gamma, "reduction": reduction, "weight": w}
    loss, got_grad = numbce.sigmoid_focal_loss_value_and_grad(x, y, **options)
    got_hess = numbce.sigmoid_focal_loss_hess(x, y, **options)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_grad, grad.detach().numpy(), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(got_hess, hess.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, *DTYPES])
def test_focal_with_gamma_0_and_no_alpha_is_bce_with_logits(rng, dtype, hard):
    """The same bits, extreme logits included: focal is built on BCE with logits' terms,
    computed in the data's dtype (see also test_properties.py)."""
    x, y = _inputs(rng, FOCAL, "2d", np.float64, hard)
    x = np.concatenate([x.ravel(), [0.0, 30.0, -30.0, 700.0, -700.0, 1e30, -1e30]])
    y = np.resize(y.ravel(), x.size).astype(dtype)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    for suffix in ("", "_grad", "_hess"):
        focal = _call(FOCAL, suffix, x, y, alpha=None, gamma=0.0, reduction="none")
        bce = _call(BCE_LOGITS, suffix, x, y, reduction="none")
        np.testing.assert_array_equal(focal, bce)


EDGE_INPUTS = {
    "logits": [
        -np.inf,
        -1e308,
        -40.0,
        -1.0,
        -1e-3,
        0.0,
        1e-300,
        1.0,
        40.0,
        1e308,
        np.inf,
    ],
    "probabilities": [0.0, 1e-300, 1e-3, 0.5, 1.0 - 1e-16, 1.0],
}
EDGE_TARGETS = [0.0, 0.25, 0.5, 1.0]
EDGE_SCALES = [
    0.0,
    1.0,
    2.5,
    1e308,
    np.inf,
]  # weight, and pos_weight where there is one
EDGE_OPTIONS = {
    "sigmoid_focal_loss": [{"alpha": 0.0}, {"alpha": 1.0, "gamma": 0.0},
                           {"alpha": None, "gamma": 1000.0}],
    "binary_cross_entropy_with_logits": [{"label_smoothing": 1.0}],
}  # fmt: skip


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_reference_and_kernels_agree_on_every_edge(name):
    """Every combination of extreme inputs, targets, zero and infinite weights and
    pos_weights, and the family's options: the oracle gives the kernels' limits (inf,
    0 where a coefficient has a factor 0), nan exactly where they do."""
    family = FAMILIES[name]
    scales = EDGE_SCALES if family.pos_weight else [1.0]
    grid = np.array(list(itertools.product(
        EDGE_INPUTS[family.input_grid], EDGE_TARGETS, EDGE_SCALES, scales
    ))).T  # fmt: skip
    x, y, w, q = grid
    operands = {"weight": w} | ({"pos_weight": q} if family.pos_weight else {})
    # soft-target derivatives cancel: absolute errors in ulps of the terms' scale w max(1, q)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = w * np.maximum(1.0, q)
    scale[~np.isfinite(scale)] = 0.0
    for options in (*family.accuracy_options, *EDGE_OPTIONS.get(name, [])):
        ulps = 64 * eps(np.float64) * max(1.0, options.get("gamma", 0.0))
        for suffix in ("", "_grad", "_hess"):
            got = _call(family, suffix, x, y, reduction="none", **operands, **options)
            expected = getattr(reference, name + suffix)(
                x, y, reduction="none", **operands, **options
            )
            wrong = ~np.isclose(
                got, expected, ulps, ulps * scale + 1e-300, equal_nan=True
            )
            assert not wrong.any(), (
                f"{name}{suffix} {options}: at (x, y, w, q) = {grid.T[wrong][:5]} "
                f"got {got[wrong][:5]}, expected {expected[wrong][:5]}"
            )


def test_infinite_pos_weight_on_a_negative_target_is_no_weight():
    x, y = np.array([1.0, -3.0]), np.array([0.0, 0.0])
    for suffix in ("", "_grad", "_hess"):
        got = _call(BCE_LOGITS, suffix, x, y, pos_weight=np.inf, reduction="none")
        np.testing.assert_array_equal(
            got, _call(BCE_LOGITS, suffix, x, y, reduction="none")
        )
    assert np.isfinite(_call(BCE_LOGITS, "", x, y, pos_weight=np.inf)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
def test_focal_is_finite_where_torch_autograd_gives_nan(dtype, gamma):
    """Saturated logits (m rounds to 0): torch's m**gamma has an infinite derivative there
    for gamma < 1; numbce's form has none. Infinite logits give the limits."""
    x = np.array([17.0, -17.0, 40.0, -40.0, 1e30, -1e30], dtype=dtype)
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype=dtype)
    for suffix in ("", "_grad", "_hess"):
        assert np.isfinite(_call(FOCAL, suffix, x, y, gamma=gamma)).all()
    inf = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    loss, grad = numbce.sigmoid_focal_loss_value_and_grad(
        inf, y, alpha=None, gamma=gamma
    )
    hess = numbce.sigmoid_focal_loss_hess(inf, y, alpha=None, gamma=gamma)
    np.testing.assert_array_equal(loss, [0.0, 0.0, np.inf, np.inf])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])
    np.testing.assert_array_equal(hess, [0.0, 0.0, 0.0, 0.0])


def test_torch_focal_formula_gives_nan_gradients_there():
    torch = pytest.importorskip("torch")
    xt = torch.tensor([17.0], dtype=torch.float32, requires_grad=True)
    FOCAL.torch(xt, torch.tensor([1.0]), None, alpha=None, gamma=0.5).sum().backward()
    assert torch.isnan(xt.grad).all()


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"alpha": 1.5}, ValueError, "alpha must be None, negative (no weighting) or <= 1, got 1.5"),
        ({"alpha": float("nan")}, ValueError, "alpha must be None, negative (no weighting) or <= 1, got nan"),
        ({"alpha": "0.25"}, TypeError, "alpha must be a real number, got '0.25'"),
        ({"gamma": -0.5}, ValueError, "gamma must be in [0, 1000], got -0.5"),
        ({"gamma": float("nan")}, ValueError, "gamma must be in [0, 1000], got nan"),
        ({"gamma": float("inf")}, ValueError, "gamma must be in [0, 1000], got inf"),
        ({"gamma": 1e155}, ValueError, "gamma must be in [0, 1000], got 1e+155"),
        ({"gamma": None}, TypeError, "gamma must be a real number, got None"),
    ],
)  # fmt: skip
def test_bad_focal_options(options, error, message):
    import re

    for function in (numbce.sigmoid_focal_loss, numbce.sigmoid_focal_loss_grad_hess):
        with pytest.raises(error, match=re.escape(message)):
            function(np.zeros(3), np.zeros(3), **options)
    with pytest.raises(error, match=re.escape(message)):
        numbce.SigmoidFocalLoss(**options)


def test_focal_defaults_follow_torchvision_and_torch_loss_classes(rng):
    x, y = _inputs(rng, FOCAL, "2d", np.float64)
    assert numbce.sigmoid_focal_loss(x, y).shape == x.shape  # reduction='none'
    expected = numbce.sigmoid_focal_loss(x, y, 0.25, 2.0, "mean")
    assert numbce.SigmoidFocalLoss()(x, y) == expected  # loss class: 'mean'
