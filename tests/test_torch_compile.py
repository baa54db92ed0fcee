"""numbce.torch as PyTorch custom operators: torch.compile, torch.export, autocast,
torch.func, opcheck, for every registered loss family.

The compiled and exported programs run numbce's kernels through ``torch.ops.numbce.*``, so
the loss and the gradient are the eager bits; a model in front of the loss may round
differently once inductor fuses it, so training steps compare to a few ulps.
"""

import os
import shutil

import numpy as np
import pytest
from conftest import torch_or_skip

import numbce
from numbce.losses import FAMILIES

torch = torch_or_skip()
nt = pytest.importorskip("numbce.torch")
dynamo = pytest.importorskip("torch._dynamo")

REDUCTIONS = ["none", "mean", "sum"]
CXX = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
INDUCTOR = pytest.param(
    "inductor",
    marks=pytest.mark.skipif(
        not any(shutil.which(name) for name in CXX if name),
        reason="inductor compiles C++ for the CPU: no C++ compiler found",
    ),
)
SUFFIXES = ["", "_value_and_grad", "_grad", "_hess"]


def _data(family, shape=(6, 3), dtype=torch.float64, seed=0):
    """A prediction that requires grad, soft targets, and operands along the last axis."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype) * 3
    if family.input_in_unit_interval:
        x = torch.sigmoid(x) * 0.98 + 0.01
    y = torch.rand(shape, generator=generator, dtype=dtype)
    row = torch.rand(shape[-1:], generator=generator, dtype=dtype) + 0.5
    operands = {"weight": row}
    if family.pos_weight:
        operands["pos_weight"] = row.flip(0)
    return x.requires_grad_(), y, operands


CASES = [
    pytest.param(family, options, reduction,
                 id=f"{family.name}-{i}-{reduction}")
    for family in FAMILIES.values()
    for i, options in enumerate(family.accuracy_options)
    for reduction in REDUCTIONS
]  # fmt: skip


def _loss_and_grad(function, x, y, options, reduction, operands):
    x.grad = None
    loss = function(x, y, reduction=reduction, **operands, **options)
    loss.backward(torch.ones_like(loss))
    grad, x.grad = x.grad, None
    return loss.detach(), grad


@pytest.mark.parametrize(("family", "options", "reduction"), CASES)
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_loss_is_eagers_bits(backend, family, options, reduction):
    """fullgraph=True (no graph break), same loss and gradient bits as eager."""
    function = nt.FUNCTIONS_TORCH[family.name]
    x, y, operands = _data(family)
    dynamo.reset()
    compiled = torch.compile(function, fullgraph=True, backend=backend)
    ours = _loss_and_grad(compiled, x, y, options, reduction, operands)
    eager = _loss_and_grad(function, x, y, options, reduction, operands)
    for a, b in zip(ours, eager):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)


def _model(family):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)]
    if family.input_in_unit_interval:
        layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers).double()


def _train(step, family, data, steps=3):
    """Three SGD steps of a fresh model; the losses and the final weights."""
    model = _model(family)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = step(model, *data)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses), torch.cat(
        [p.detach().ravel() for p in model.parameters()]
    )


def _step_of(family, options):
    function = nt.FUNCTIONS_TORCH[family.name]

    def step(model, features, y, weight):
        return function(model(features), y, weight=weight, reduction="mean", **options)

    return step


OPTION_CASES = [
    pytest.param(family, options, id=f"{family.name}-{i}")
    for family in FAMILIES.values()
    for i, options in enumerate(family.accuracy_options)
]


@pytest.mark.parametrize(("family", "options"), OPTION_CASES)
@pytest.mark.parametrize("backend", [INDUCTOR, "aot_eager", "eager"])
def test_compiled_training_steps(backend, family, options):
    """A model + loss step compiles with fullgraph=True (no graph break) for three steps
    of training, with the eager results (inductor may fuse the model's own ops: a few
    ulps)."""
    step = _step_of(family, options)
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    y = (torch.rand(16, 3, generator=generator, dtype=torch.float64) > 0.5).double()
    weight = torch.rand(3, generator=generator, dtype=torch.float64) + 0.5
    data = (features, y, weight)
    dynamo.reset()
    compiled = _train(
        torch.compile(step, fullgraph=True, backend=backend), family, data
    )
    eager = _train(step, family, data)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_no_graph_breaks(family):
    step = _step_of(family, family.accuracy_options[-1])
    model = _model(family)
    features = torch.randn(5, 4, dtype=torch.float64)
    y = torch.rand(5, 3, dtype=torch.float64)
    dynamo.reset()
    explained = dynamo.explain(step)(
        model, features, y, torch.ones(3, dtype=torch.float64)
    )
    assert explained.graph_break_count == 0
    assert explained.graph_count == 1
    assert not explained.break_reasons


def test_a_failed_compile_leaves_eager_calls_working():
    """A compile that fails (here: its backend raises) changes nothing for the eager calls
    after it, nor for a later compile."""
    family = FAMILIES["binary_cross_entropy_with_logits"]
    function = nt.FUNCTIONS_TORCH[family.name]
    x, y, operands = _data(family, seed=2)
    expected = _loss_and_grad(function, x, y, {}, "mean", operands)

    def failing_backend(graph, example_inputs):
        raise RuntimeError("this backend fails")

    dynamo.reset()
    with pytest.raises(Exception, match="this backend fails"):
        torch.compile(function, backend=failing_backend)(x, y, **operands)
    after = _loss_and_grad(function, x, y, {}, "mean", operands)
    dynamo.reset()
    compiled = torch.compile(function, fullgraph=True, backend="aot_eager")
    recompiled = _loss_and_grad(compiled, x, y, {}, "mean", operands)
    for a, b, c in zip(expected, after, recompiled):
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_export(family, tmp_path):
    """torch.export of a module computing the loss: the program calls numbce's operator and
    gives the same loss, also saved and loaded."""

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _model(family)
            self.loss = nt.MODULES[family.class_name](reduction="sum")

        def forward(self, features, y):
            return self.loss(self.body(features), y)

    model = Model()
    features = torch.randn(7, 4, dtype=torch.float64)
    y = torch.rand(7, 3, dtype=torch.float64)
    exported = torch.export.export(model, (features, y))
    assert f"torch.ops.numbce.{family.name}.default" in exported.graph_module.code
    assert torch.equal(exported.module()(features, y), model(features, y))
    path = tmp_path / "loss.pt2"
    torch.export.save(exported, path)
    assert torch.equal(torch.export.load(path).module()(features, y), model(features, y))


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
@pytest.mark.parametrize("suffix", SUFFIXES, ids=lambda s: s or "loss")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck(family, suffix, reduction):
    """PyTorch's own checks of a custom operator: schema, autograd registration, fake
    implementation, AOT dispatch with dynamic shapes (differentiated but for the second
    derivative, which has no derivative)."""
    x, y, operands = _data(family, seed=3)
    if suffix == "_hess":
        x = x.detach()
    options = [option.default for option in family.options]
    op = getattr(torch.ops.numbce, family.name + suffix)
    arguments = (x, y, *operands.values(), reduction, *options)
    results = torch.library.opcheck(op, arguments)
    assert set(results.values()) == {"SUCCESS"}


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_losses_in_float32(family, dtype):
    """Under CPU autocast, as PyTorch's losses: half-precision inputs computed in float32,
    the loss in float32, the gradient in the input's dtype."""
    x, y, operands = _data(family, dtype=torch.float32, seed=4)
    low = x.detach().to(dtype).requires_grad_()
    function = nt.FUNCTIONS_TORCH[family.name]
    with torch.autocast("cpu", dtype=dtype):
        loss = function(low, y.to(dtype), reduction="mean", **operands)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == dtype
    wide = low.detach().float().requires_grad_()
    expected = function(wide, y.to(dtype).float(), reduction="mean", **operands)
    expected.backward()
    assert torch.equal(loss, expected)
    assert torch.equal(low.grad, wide.grad.to(dtype))


def test_autocast_leaves_float32_and_float64_alone():
    family = FAMILIES["binary_cross_entropy"]
    for dtype in (torch.float32, torch.float64):
        x, y, _ = _data(family, dtype=dtype, seed=5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nt.binary_cross_entropy(x, y)
        assert loss.dtype == dtype
        assert torch.equal(loss, nt.binary_cross_entropy(x, y))


def test_vmap_gives_each_entrys_own_loss():
    family = FAMILIES["sigmoid_focal_loss"]
    x, y, _ = _data(family, shape=(5, 4), seed=6)
    x = x.detach()
    losses = torch.func.vmap(nt.sigmoid_focal_loss, in_dims=(0, 0))(x, y)
    expected = [
        numbce.sigmoid_focal_loss(x[i].numpy(), y[i].numpy(), reduction="none")
        for i in range(5)
    ]
    assert torch.equal(losses, torch.from_numpy(np.stack(expected)))
    means = torch.func.vmap(
        lambda a, b: nt.sigmoid_focal_loss(a, b, reduction="mean"), in_dims=(1, 1)
    )(x, y)
    for i in range(4):
        assert means[i].item() == numbce.sigmoid_focal_loss(
            x[:, i].numpy(), y[:, i].numpy(), reduction="mean"
        )


@pytest.mark.parametrize(
    "transform",
    [
        lambda f, x: torch.func.grad(f)(x),
        lambda f, x: torch.func.vjp(f, x),
        lambda f, x: torch.func.jacrev(f)(x),
        lambda f, x: torch.func.jvp(f, (x,), (x,)),
        lambda f, x: torch.func.hessian(f)(x),
        lambda f, x: torch.func.vmap(torch.func.grad(f))(x.unsqueeze(1)),
    ],
    ids=["grad", "vjp", "jacrev", "jvp", "hessian", "vmap-grad"],
)
def test_func_derivatives_raise_a_clear_error(transform):
    x, y, _ = _data(FAMILIES["binary_cross_entropy_with_logits"], shape=(3,))
    x = x.detach()

    def loss(z):
        return nt.binary_cross_entropy_with_logits(z, y[: z.shape[-1]], reduction="sum")

    with pytest.raises(
        RuntimeError, match=r"torch.func.grad, vjp, jacrev and jvp do not"
    ):
        transform(loss, x)


def test_every_family_has_its_operators():
    for family in FAMILIES.values():
        for suffix in SUFFIXES:
            op = getattr(torch.ops.numbce, family.name + suffix).default
            schema = str(op._schema)
            assert schema.startswith(f"numbce::{family.name}{suffix}(Tensor input")
            for option in family.options:
                assert f"float? {option.name}" in schema


def test_compiled_options_and_shapes_may_change():
    """Options traced as symbolic floats once they change (PyTorch's automatic dynamic),
    batch sizes as symbolic sizes: each call the eager bits; a bad option raises the
    eager error when the compiled program runs."""
    family = FAMILIES["sigmoid_focal_loss"]

    def loss(x, y, gamma, reduction):
        return nt.sigmoid_focal_loss(x, y, gamma=gamma, reduction=reduction)

    dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    for rows, gamma in ((5, 1.0), (5, 2.0), (7, 3.5), (9, 0.25)):
        x, y, _ = _data(family, shape=(rows, 3), seed=rows)
        ours = _loss_and_grad(compiled, x, y, {"gamma": gamma}, "sum", {})
        eager = _loss_and_grad(nt.sigmoid_focal_loss, x, y, {"gamma": gamma}, "sum", {})
        assert all(torch.equal(a, b) for a, b in zip(ours, eager))
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1000\], got -1.0"):
        compiled(x, y, -1.0, "sum")


def test_errors_found_while_tracing_are_numbces():
    family = FAMILIES["binary_cross_entropy_with_logits"]
    x, y, _ = _data(family, seed=7)
    dynamo.reset()
    compiled = torch.compile(nt.binary_cross_entropy_with_logits, backend="aot_eager")
    with pytest.raises(RuntimeError, match="target requires grad: pass target.detach"):
        compiled(x, y.requires_grad_())
    with pytest.raises(ValueError, match="reduction must be one of"):
        compiled(x, y.detach(), reduction="avg")


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
def test_meta_and_fake_tensors_give_shapes(family):
    """Meta tensors and FakeTensorMode (shape inference, as for model-size estimates)
    run the fake implementations, forward and backward."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    function = nt.FUNCTIONS_TORCH[family.name]
    x = torch.empty(5, 3, device="meta", requires_grad=True)
    loss = function(x, torch.empty(5, 3, device="meta"), reduction="mean")
    loss.backward()
    assert loss.shape == () and loss.device.type == "meta"
    assert x.grad.shape == (5, 3) and x.grad.device.type == "meta"
    with FakeTensorMode():
        x = torch.rand(4, 2, requires_grad=True)
        loss = function(x, torch.rand(4, 2), reduction="none")
        loss.sum().backward()
        assert loss.shape == (4, 2) and x.grad.shape == (4, 2)


@pytest.mark.parametrize("family", FAMILIES.values(), ids=lambda f: f.name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_through_the_operators(family, reduction):
    """The operators' own autograd (what compiled code and autocast use), once and twice:
    the loss, and the loss of ``value_and_grad``."""
    x, y, operands = _data(family, shape=(4, 3), seed=8)
    options = [option.default for option in family.options]
    for name in (family.name, family.name + "_value_and_grad"):
        op = getattr(torch.ops.numbce, name)

        def loss(z, op=op):
            result = op(z, y, *operands.values(), reduction, *options)
            return result[0] if isinstance(result, tuple) else result

        assert torch.autograd.gradcheck(loss, (x,))
        assert torch.autograd.gradgradcheck(loss, (x,))
