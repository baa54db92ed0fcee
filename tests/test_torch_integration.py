"""numbce.torch: autograd through the numbce kernels, for every registered loss family.

gradcheck and gradgradcheck for every family, reduction and option set; values and
gradients equal to PyTorch's where PyTorch is accurate, finite where it gives nan; no copy
of CPU tensors; a training loop; PyTorch's signatures; the CUDA path on a real GPU.
"""

import inspect

import numpy as np
import pytest
from conftest import torch_or_skip

import numbce
from numbce import functional
from numbce.losses import FAMILIES

torch = torch_or_skip()
nt = pytest.importorskip("numbce.torch")
F = torch.nn.functional

REDUCTIONS = ["none", "mean", "sum"]


def _inputs(family, shape, dtype=torch.float64, seed=0):
    """A prediction that requires grad (probabilities away from 0 and 1, or logits) and
    soft targets."""
    generator = torch.Generator().manual_seed(seed)
    if family.input_in_unit_interval:
        x = torch.rand(shape, generator=generator, dtype=dtype) * 0.9 + 0.05
    else:
        x = torch.randn(shape, generator=generator, dtype=dtype) * 3
    y = torch.rand(shape, generator=generator, dtype=dtype)
    return x.requires_grad_(), y


def _operand_cases(family):
    """(weight, pos_weight) layouts: none, per column, full."""
    cases = [("none", "none"), ("row", "none"), ("full", "none")]
    if family.pos_weight:
        cases += [("none", "row"), ("full", "row")]
    return cases


def _operand(kind, shape, seed):
    if kind == "none":
        return None
    generator = torch.Generator().manual_seed(seed)
    size = shape[-1:] if kind == "row" else shape
    return torch.rand(size, generator=generator, dtype=torch.float64) * 2 + 0.25


def _call_options(family, weight, pos_weight, options, reduction):
    kwargs = {"reduction": reduction, **options}
    if weight is not None:
        kwargs["weight"] = weight
    if pos_weight is not None:
        kwargs["pos_weight"] = pos_weight
    return kwargs


CASES = [
    pytest.param(
        family, options, weight, pos_weight, reduction,
        id=f"{family.name}-{i}-w_{weight}-q_{pos_weight}-{reduction}",
    )
    for family in FAMILIES.values()
    for i, options in enumerate(family.accuracy_options)
    for weight, pos_weight in _operand_cases(family)
    for reduction in REDUCTIONS
]  # fmt: skip


@pytest.mark.parametrize(
    ("family", "options", "weight", "pos_weight", "reduction"), CASES
)
def test_gradcheck_and_gradgradcheck(family, options, weight, pos_weight, reduction):
    shape = (4, 3)
    x, y = _inputs(family, shape)
    kwargs = _call_options(
        family, _operand(weight, shape, 1), _operand(pos_weight, shape, 2), options,
        reduction,
    )  # fmt: skip
    function = nt.FUNCTIONS_TORCH[family.name]

    def loss(x):
        return function(x, y, **kwargs)

    assert torch.autograd.gradcheck(loss, (x,))
    assert torch.autograd.gradgradcheck(loss, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_value_and_grad_equal_torch(family, reduction, dtype):
    """Against each family's PyTorch formula (``Family.torch``: torch.nn.functional, or
    torchvision's focal loss written in torch), weighted and reduced in PyTorch, with
    PyTorch's autograd for the gradient."""
    shape = (64, 5)
    for options in family.accuracy_options:
        x, y = _inputs(family, shape, dtype, seed=3)
        if not family.input_in_unit_interval:
            y = (y > 0.5).to(
                dtype
            )  # hard labels: torch is accurate for moderate logits
        w = _operand("row", shape, 4).to(dtype)
        q = _operand("row", shape, 5).to(dtype) if family.pos_weight else None
        kwargs = _call_options(family, w, q, options, reduction)
        ours = nt.FUNCTIONS_TORCH[family.name](x, y, **kwargs)
        ours.backward(torch.ones_like(ours))
        grad, x.grad = x.grad, None
        elementwise = family.torch(x, y, q, **options) * w
        expected = {"none": elementwise, "mean": elementwise.mean()}.get(
            reduction, elementwise.sum()
        )
        expected.backward(torch.ones_like(expected))
        assert ours.dtype == dtype and grad.dtype == dtype
        tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
        torch.testing.assert_close(ours, expected.detach(), **tolerance)
        torch.testing.assert_close(grad, x.grad, **tolerance)
        x.grad = None


def test_positional_arguments_follow_torch():
    """Called positionally as PyTorch's functions are, the same loss and gradient."""
    x, y = _inputs(FAMILIES["binary_cross_entropy_with_logits"], (8, 3), seed=6)
    w, q = _operand("full", (8, 3), 7), _operand("row", (8, 3), 8)
    for ours, theirs, args in (
        (nt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
         (w, None, None, "sum", q)),
        (nt.binary_cross_entropy, F.binary_cross_entropy, (w, None, None, "sum")),
    ):  # fmt: skip

        def prediction(x=x, logits=ours is nt.binary_cross_entropy_with_logits):
            return x if logits else torch.sigmoid(x)

        value = ours(prediction(), y, *args)
        (grad,) = torch.autograd.grad(value, x)
        expected = theirs(prediction(), y, *args)
        (expected_grad,) = torch.autograd.grad(expected, x)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)


def test_signatures_are_torchs():
    """The parameters of torch.nn.functional and torch.nn (and torchvision's focal loss)
    in their order, numbce's extra options after them, keyword-only."""
    pairs = [
        (nt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
        (nt.binary_cross_entropy, F.binary_cross_entropy),
        (nt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss),
        (nt.BCELoss, torch.nn.BCELoss),
    ]
    for ours, theirs in pairs:
        ours_parameters = list(inspect.signature(ours).parameters.values())
        theirs_names = list(inspect.signature(theirs).parameters)
        assert [p.name for p in ours_parameters[: len(theirs_names)]] == theirs_names
        extra = ours_parameters[len(theirs_names) :]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    focal = inspect.signature(nt.sigmoid_focal_loss).parameters
    # torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction)
    assert list(focal)[:5] == ["inputs", "targets", "alpha", "gamma", "reduction"]
    assert focal["reduction"].default == "none" and focal["gamma"].default == 2
    assert "label_smoothing" in inspect.signature(nt.BCEWithLogitsLoss).parameters


def test_every_family_has_a_function_and_a_module():
    for family in FAMILIES.values():
        assert getattr(nt, family.name) is nt.FUNCTIONS_TORCH[family.name]
        module = getattr(nt, family.class_name)
        assert issubclass(module, torch.nn.Module)
        assert family.name in nt.__all__ and family.class_name in nt.__all__


def test_finite_where_torch_gives_nan():
    # x = -inf with y = 0: the limit (loss 0, gradient 0); PyTorch: nan.
    x = torch.tensor([-np.inf, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64)
    theirs = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    (their_grad,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.isnan(theirs[0]) or torch.isnan(their_grad[0])
    loss = nt.binary_cross_entropy_with_logits(x, y, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert loss[0] == 0 and grad[0] == 0 and torch.isfinite(loss).all()

    # Focal loss with gamma < 1 at saturated logits: torchvision's autograd gives nan.
    x = torch.tensor([40.0, -40.0, 20.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    focal = FAMILIES["sigmoid_focal_loss"]
    theirs = focal.torch(x, y, None, alpha=0.25, gamma=0.5)
    (their_grad,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.isnan(their_grad).any()
    loss = nt.sigmoid_focal_loss(x, y, 0.25, 0.5)
    (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert torch.isfinite(second).all()
    assert (grad[:3].abs() < 1e-8).all()  # saturated, correctly classified: ~0


def test_second_derivative_is_numbces_hessian():
    """Double backward gives the elementwise second derivative of the ``*_hess`` kernel
    (the Hessian of a sum of per-element losses is diagonal)."""
    for family in FAMILIES.values():
        x, y = _inputs(family, (6,), seed=9)
        function = nt.FUNCTIONS_TORCH[family.name]
        hessian = torch.autograd.functional.hessian(
            lambda x, f=function, y=y: f(x, y, reduction="sum"), x.detach()
        )
        expected = functional.FUNCTIONS[family.name + "_hess"](
            x.detach().numpy(), y.numpy(), reduction="sum"
        )
        np.testing.assert_array_equal(hessian.numpy(), np.diag(expected))


def test_cpu_tensors_are_not_copied(monkeypatch):
    """The kernel reads the tensors' memory through NumPy, and the gradient it writes is the
    one autograd stores in ``x.grad``."""
    family = FAMILIES["binary_cross_entropy_with_logits"]
    original = functional.compute
    seen = {}

    def spy(family, outputs, input, target, weight, *call):
        seen.update(input=input, target=target, weight=weight)
        seen["results"] = original(family, outputs, input, target, weight, *call)
        return seen["results"]

    monkeypatch.setattr(functional, "compute", spy)
    x, y = _inputs(family, (1000,), torch.float32)
    w = torch.rand(1000)
    loss = nt.binary_cross_entropy_with_logits(x, y, w)
    loss.backward()
    assert isinstance(seen["input"], np.ndarray)
    assert seen["input"].ctypes.data == x.data_ptr()
    assert seen["target"].ctypes.data == y.data_ptr()
    assert seen["weight"].ctypes.data == w.data_ptr()
    assert x.grad.data_ptr() == seen["results"][1].ctypes.data


def test_grad_output_scales_and_retain_graph():
    family = FAMILIES["sigmoid_focal_loss"]
    x, y = _inputs(family, (5, 2), seed=10)
    loss = nt.sigmoid_focal_loss(x, y, reduction="mean")
    (3.0 * loss).backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()  # accumulates: the saved gradient was not handed out and changed
    expected = numbce.sigmoid_focal_loss_grad(
        x.detach().numpy(), y.numpy(), reduction="mean"
    )
    np.testing.assert_allclose(first.numpy(), 3.0 * expected, rtol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), 4.0 * expected, rtol=1e-15)
    upstream = torch.rand(5, 2, dtype=torch.float64)
    x.grad = None
    nt.sigmoid_focal_loss(x, y).backward(upstream)
    np.testing.assert_allclose(
        x.grad.numpy(),
        numbce.sigmoid_focal_loss_grad(
            x.detach().numpy(), y.numpy(), grad_output=upstream.numpy()
        ),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(dtype):
    family = FAMILIES["binary_cross_entropy_with_logits"]
    x, y = _inputs(family, (50,), torch.float32, seed=11)
    low = x.detach().to(dtype).requires_grad_()
    loss = nt.binary_cross_entropy_with_logits(low, y.to(dtype))
    loss.backward()
    assert loss.dtype == dtype and low.grad.dtype == dtype
    reference = nt.binary_cross_entropy_with_logits(
        low.detach().float(), y.to(dtype).float()
    )
    torch.testing.assert_close(loss.float(), reference, rtol=1e-2, atol=1e-3)


def test_gradients_of_target_or_weights_raise():
    x, y = _inputs(FAMILIES["binary_cross_entropy_with_logits"], (4,))
    for name in ("target", "weight", "pos_weight"):
        operands = {"target": y.clone(), "weight": torch.ones(4),
                    "pos_weight": torch.ones(4)}  # fmt: skip
        operands[name].requires_grad_()
        target = operands.pop("target")
        with pytest.raises(RuntimeError, match=f"{name} requires grad.*{name}.detach"):
            nt.binary_cross_entropy_with_logits(x, target, **operands)
        with torch.no_grad():  # no graph, nothing to differentiate: fine
            nt.binary_cross_entropy_with_logits(x, target, **operands)


def test_third_derivative_raises():
    x, y = _inputs(FAMILIES["sigmoid_focal_loss"], (4,))
    loss = nt.sigmoid_focal_loss(x, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives are not implemented"):
        torch.autograd.grad(second.sum(), x)
    # Not silently dropped when another term carries the graph either.
    (grad,) = torch.autograd.grad(loss + 0.0, x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum() + x.pow(3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives are not implemented"):
        torch.autograd.grad(second.sum(), x)


def test_modules():
    q = torch.tensor([1.0, 2.0, 3.0])
    module = nt.BCEWithLogitsLoss(pos_weight=q, label_smoothing=0.1, reduction="sum")
    assert "pos_weight" in dict(module.named_buffers())
    assert module.to(torch.float64).pos_weight.dtype == torch.float64
    assert "label_smoothing=0.1" in repr(module)
    x, y = _inputs(FAMILIES["binary_cross_entropy_with_logits"], (5, 3))
    torch.testing.assert_close(
        module(x, y),
        nt.binary_cross_entropy_with_logits(
            x, y, pos_weight=q.double(), reduction="sum", label_smoothing=0.1
        ),
    )
    assert nt.SigmoidFocalLoss().reduction == "mean"  # numbce's class default
    with pytest.raises(ValueError, match="gamma"):
        nt.SigmoidFocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        nt.BCELoss(reduction="avg")
    with pytest.warns(DeprecationWarning):
        assert nt.BCELoss(size_average=False).reduction == "sum"
    with pytest.raises(TypeError, match="unexpected keyword"):
        nt.BCELoss(pos_weight=q)


def _train(loss_module, steps=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(512, 8, generator=generator)
    labels = (features[:, :1] + 0.5 * features[:, 1:2] > 0.2).float()
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_module(model(features), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def test_training_loop_matches_torch():
    ours, our_losses = _train(nt.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0])))
    theirs, their_losses = _train(
        torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    )
    assert our_losses[-1] < 0.5 * our_losses[0]
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-4)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    _, focal_losses = _train(nt.SigmoidFocalLoss(alpha=0.25, gamma=2.0))
    assert focal_losses[-1] < 0.5 * focal_losses[0]


# The CUDA path needs a PyTorch build with CUDA and a GPU: CUDA tensors cannot be made with
# a CPU build, so Numba's simulator cannot stand in here (tests/test_cuda.py runs the
# kernels themselves on it).


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with CUDA and a GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_cuda_tensors(family):
    _cuda()
    x, y = _inputs(family, (300, 7), seed=12)
    w = _operand("row", (300, 7), 13)
    kwargs = {"weight": w} | ({"pos_weight": w} if family.pos_weight else {})
    function = nt.FUNCTIONS_TORCH[family.name]
    for reduction in REDUCTIONS:
        loss = function(x, y, reduction=reduction, **kwargs)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        xc = x.detach().cuda().requires_grad_()
        cuda_kwargs = {k: v.cuda() for k, v in kwargs.items()}
        cuda_loss = function(xc, y.cuda(), reduction=reduction, **cuda_kwargs)
        assert cuda_loss.device.type == "cuda"
        (cuda_grad,) = torch.autograd.grad(cuda_loss.sum(), xc, create_graph=True)
        assert cuda_grad.device.type == "cuda"
        torch.testing.assert_close(cuda_loss.cpu(), loss.detach(), rtol=1e-12, atol=0)
        torch.testing.assert_close(cuda_grad.detach().cpu(), grad, rtol=1e-12, atol=0)
        (second,) = torch.autograd.grad(cuda_grad.sum(), xc)
        assert second.device.type == "cuda" and torch.isfinite(second).all()
    small = x.detach()[:3, :2].cuda().requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda v: function(v, y[:3, :2].cuda(), reduction="sum"), (small,)
    )


@pytest.mark.gpu
def test_cuda_training_step_on_a_side_stream():
    _cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        model = torch.nn.Linear(8, 1).cuda()
        features = torch.randn(256, 8, device="cuda")
        labels = (features[:, :1] > 0).float()
        loss = nt.BCEWithLogitsLoss()(model(features), labels)
        loss.backward()
    stream.synchronize()
    assert torch.isfinite(model.weight.grad).all()


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_cuda_operators_compile_and_autocast(family):
    """CUDA tensors through the custom operators: compiled (inductor) as eager, and under
    CUDA autocast in float32 (binary_cross_entropy too, which PyTorch refuses there)."""
    _cuda()
    x, y = _inputs(family, (64, 5), torch.float32, seed=14)
    xc, yc = x.detach().cuda().requires_grad_(), y.cuda()
    function = nt.FUNCTIONS_TORCH[family.name]
    compiled = torch.compile(function, fullgraph=True)
    for f in (function, compiled):
        loss = f(xc, yc, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xc)
        expected = function(x, y, reduction="sum")
        torch.testing.assert_close(loss.cpu(), expected.detach(), rtol=1e-6, atol=0)
        assert grad.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.float16):
        half = xc.detach().half().requires_grad_()
        loss = function(half, yc.half(), reduction="mean")
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.float16


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_repeated_calls_of_one_kind_are_checked_and_exact(family):
    """Calls of one kind (dtype, shape, options) reuse the request checked for the first:
    every call still gives the plain API's bits, with or without weights, and a bad value
    in a later call raises the same ValueError."""
    function = nt.FUNCTIONS_TORCH[family.name]
    plain = functional.FUNCTIONS[family.name + "_value_and_grad"]
    for options in family.accuracy_options:
        for seed, shape, dtype in ((0, (6, 4), torch.float32), (1, (6, 4), torch.float32),
                                   (2, (3, 5), torch.float64), (3, (6, 4), torch.float32)):  # fmt: skip
            x, y = _inputs(family, shape, dtype, seed=seed)
            w = _operand("row", shape, seed).to(dtype) if seed == 1 else None
            kwargs = {"weight": w} if w is not None else {}
            loss = function(x, y, reduction="mean", **kwargs, **options)
            loss.backward()
            expected = plain(x.detach().numpy(), y.numpy(), weight=None if w is None
                             else w.numpy(), reduction="mean", **options)  # fmt: skip
            assert loss.item() == expected[0]
            np.testing.assert_array_equal(x.grad.numpy(), expected[1])
        strided = x.detach().t().requires_grad_()
        function(strided, y.t(), reduction="sum", **options).backward()
        np.testing.assert_array_equal(
            strided.grad.numpy(),
            plain(strided.detach().numpy(), y.t().numpy(), reduction="sum", **options)[
                1
            ],
        )
        bad = y.clone()
        bad[1, 2] = 1.5
        with pytest.raises(ValueError, match=r"target must be in \[0, 1\].*1\.5"):
            function(x, bad, reduction="mean", **options)


def test_a_kept_request_keeps_no_data_alive():
    """What is kept for calls of one kind holds none of the first call's arrays (they
    would stay in memory as long as the kind is kept)."""
    family = FAMILIES["binary_cross_entropy_with_logits"]
    x, y = _inputs(family, (999,), torch.float32)
    nt.binary_cross_entropy_with_logits(x, y).backward()
    kept = nt.OPS[family.name].requests.values()
    assert kept
    for _, request in kept:
        assert request.input is None and request.target is None
