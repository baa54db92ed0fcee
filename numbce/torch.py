"""PyTorch operators and autograd for every numbce loss family: tensors in, tensors out.

For each family of :data:`numbce.losses.FAMILIES` this module defines the loss function
with PyTorch's signature (``torch.nn.functional`` for the BCE families, torchvision's
``sigmoid_focal_loss`` for the focal loss, numbce's own options such as
``label_smoothing`` and the focal ``weight`` keyword-only after them) and a
``torch.nn.Module`` with PyTorch's constructor (``BCEWithLogitsLoss``, ``BCELoss``,
``SigmoidFocalLoss``):

>>> import torch, numbce.torch as nt
>>> x = torch.tensor([2.0, -1.0], requires_grad=True)
>>> loss = nt.binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0]))
>>> loss.backward()
>>> loss, x.grad
(tensor(0.2201, grad_fn=<_EagerLossBackward>), tensor([-0.0596,  0.1345]))

Operators: each family's kernels are PyTorch custom operators (``torch.library.custom_op``)
in the namespace ``numbce``: ``torch.ops.numbce.<family>`` (the loss),
``<family>_value_and_grad`` (the loss and its gradient from one pass), ``<family>_grad``
and ``<family>_hess``, each with its fake implementation (shapes and dtypes), derivative,
``vmap`` rule and autocast policy. So ``torch.compile`` (``fullgraph=True``, any backend)
and ``torch.export`` see one opaque operator, with no graph break, and run the same
kernels: the eager bits. A loss whose input requires grad calls ``value_and_grad`` and
keeps the gradient; its backward returns that gradient times ``grad_output`` (after a
plain ``loss.backward()`` autograd takes it as ``x.grad``, no copy). Double backward
(``create_graph=True``, ``torch.autograd.gradgradcheck``, Hessian-vector products)
differentiates the ``_grad`` operator by the ``_hess`` one; a third derivative raises
RuntimeError. In plain eager mode (no compiler, autocast, ``torch.func`` transform or
dispatch mode) the loss skips the dispatcher: the same kernel and backward as a
:class:`torch.autograd.Function` (``_EagerLoss``): about 60 us less per call (loss +
backward at N = 2,000 on a 2-core Xeon: 53 us instead of 114). There, calls of one kind
(CPU, one float32/float64 dtype, no weights) reuse the request numbce checked for the
first; the kernel checks the values of every call.

Only ``input`` is differentiated: a ``target``, ``weight`` or ``pos_weight`` that requires
grad raises RuntimeError when the loss is called with grad enabled (pass ``.detach()``, as
for a teacher's output). ``torch.func.vmap`` works (a call per batch entry); ``torch.func``'s
derivatives (``grad``, ``vjp``, ``jacrev``, ``jvp``) raise RuntimeError, as for any custom
operator of PyTorch 2.13: use autograd.

Autocast: as PyTorch's own losses, under ``torch.autocast`` (CPU or CUDA) float16 and
bfloat16 inputs are computed in float32 and the loss is float32; the gradient reaches the
input in its own dtype. ``binary_cross_entropy`` works under CUDA autocast too (PyTorch
refuses its own there, as half-precision ``log`` of probabilities is unsafe; numbce's
arithmetic is float32). It cannot restore what the probabilities lost when they were
rounded to half precision: prefer logits (``binary_cross_entropy_with_logits``).

Devices: CPU tensors are handed to the CPU kernels as NumPy views (no copy), and the
results come back as tensors over the kernels' arrays (no copy). CUDA tensors go to
:mod:`numbce.cuda` through ``__cuda_array_interface__``, on PyTorch's current stream, and
the results come back as CUDA tensors over the same memory (a ``'mean'``/``'sum'`` loss
is computed as a host float and copied to the device). ``weight`` and ``pos_weight`` may
be host values for a CUDA input; the target must be on the input's device. The CUDA path
has not run on a GPU yet.

dtypes: float16, float32 and float64 as in numbce (float16 computed in float32);
bfloat16, which NumPy lacks, is computed in float32 and the results rounded to bfloat16.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

try:
    import torch
except ImportError as error:  # pragma: no cover - the 'compare' extra installs it
    raise ImportError(
        "numbce.torch needs PyTorch >= 2.0: pip install torch (or 'numbce[compare]')"
    ) from error

from numbce import _config, _validate, cpu, functional
from numbce.functional import VARIANTS, _define, binder
from numbce.losses import FAMILIES, Family

_OPERANDS = ("weight", "pos_weight")
_DEFAULTS = {"weight": None, "pos_weight": None, "size_average": None, "reduce": None}


def _parameters(family: Family, reduction: str) -> list[inspect.Parameter]:
    """The parameters after the prediction and the target, PyTorch's order first."""
    defaults = {**_DEFAULTS, "reduction": reduction}
    defaults.update((option.name, option.default) for option in family.options)
    ours = [name for name in family.signature if name != "*"]
    if family.torch_signature:
        _, positional = family.torch_signature
    else:
        positional = tuple(family.signature[: family.signature.index("*")])
    keyword = [name for name in ours if name not in positional]
    kinds = [(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in positional]
    kinds += [(name, inspect.Parameter.KEYWORD_ONLY) for name in keyword]
    return [
        inspect.Parameter(name, kind, default=defaults[name]) for name, kind in kinds
    ]


OP_NAMESPACE = "numbce"
"""The namespace of numbce's PyTorch operators: ``torch.ops.numbce.<name>``."""

_OP_RESULTS = {
    "": "Tensor",
    "_value_and_grad": "(Tensor, Tensor)",
    "_grad": "Tensor",
    "_hess": "Tensor",
}
"""The kernels each family has an operator for (suffix -> the operator's results): the
loss, the loss and its gradient from one pass, the gradient, the second derivative."""


@dataclasses.dataclass(frozen=True)
class _Arguments:
    """A family's operator arguments after ``input, target``: its tensor operands
    (``weight``, and ``pos_weight`` where it takes one), ``reduction``, its options."""

    family: Family
    operands: tuple[str, ...]
    options: tuple[str, ...]

    @classmethod
    def of(cls, family: Family) -> _Arguments:
        operands = tuple(name for name in _OPERANDS if name in family.signature)
        return cls(family, operands, tuple(option.name for option in family.options))

    def schema(self, results: str) -> str:
        """The operator's schema: options are ``float?`` (None for focal's alpha)."""
        arguments = ["Tensor input", "Tensor target"]
        arguments += [f"Tensor? {name}" for name in self.operands]
        arguments += ["str reduction", *(f"float? {name}" for name in self.options)]
        return f"({', '.join(arguments)}) -> {results}"

    def reduction(self, rest: tuple) -> str:
        """The reduction, from the arguments after the target."""
        return rest[len(self.operands)]


def _kernel_impl(arguments: _Arguments, suffix: str) -> Callable:
    """The operator's implementation: numbce's function ``family + suffix`` (through
    :func:`numbce.functional.compute`, which it calls) on NumPy views of CPU tensors, or
    on CUDA tensors through :mod:`numbce.cuda`."""
    family, outputs = arguments.family, VARIANTS[suffix]
    count = len(arguments.operands)
    slots = [arguments.operands.index(name) if name in arguments.operands else None
             for name in _OPERANDS]  # fmt: skip

    def impl(input, target, *rest):
        cuda = input.is_cuda
        weight, pos_weight = (
            None if slot is None else _to_numbce(name, rest[slot], input, cuda)
            for name, slot in zip(_OPERANDS, slots)
        )
        results = functional.compute(
            family, outputs, _to_numbce(None, input, input, cuda),
            _to_numbce("target", target, input, cuda), weight, pos_weight, rest[count],
            1.0, None, None, None, rest[count + 1 :],
        )  # fmt: skip
        results = [_to_torch(result, input) for result in results if result is not None]
        return tuple(results) if len(results) > 1 else results[0]

    return impl


def _fake_impl(arguments: _Arguments, suffix: str) -> Callable:
    """The operator's results as shapes and dtypes (for ``torch.compile`` and
    ``torch.export``): the input's dtype; a scalar loss unless ``'none'``; arrays
    contiguous, as numbce allocates them."""

    def fake(input, target, *rest):
        reduction = arguments.reduction(rest)
        elementwise = input.new_empty(input.shape)
        if suffix == "_value_and_grad":
            loss = elementwise if reduction == "none" else input.new_empty(())
            return loss, input.new_empty(input.shape)
        if suffix == "":
            return elementwise if reduction == "none" else input.new_empty(())
        return elementwise

    return fake


def _vmap_rule(op) -> Callable:
    """``vmap`` of an operator: one call per batch entry, results stacked (every entry
    gets the bits of a call on it alone, its reduction over its own elements)."""

    def rule(info, in_dims, *args):
        def entry(i):
            return [a if d is None else a.select(d, i) for a, d in zip(args, in_dims)]

        results = [op(*entry(i)) for i in range(info.batch_size)]
        if isinstance(results[0], tuple):
            stacked = tuple(torch.stack(parts) for parts in zip(*results))
            return stacked, (0,) * len(stacked)
        return torch.stack(results), 0

    return rule


def _scale(grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """``grad * grad_output``; the saved gradient itself for a CPU scalar 1 (``loss.
    backward()``), which skips a pass over the data. Traced (fake) tensors multiply."""
    if (
        type(grad_output) is torch.Tensor
        and grad_output.dim() == 0
        and grad_output.device.type == "cpu"
        and not grad_output.requires_grad
        and grad_output.item() == 1.0
    ):
        return grad
    return grad * grad_output


class _Ops(NamedTuple):
    """A family's operators (``torch.ops.numbce.<family><suffix>``), its tensor operands'
    names, and the operators' implementations by suffix (``kernels``: what
    :class:`_EagerLoss` and the no-grad eager call run directly)."""

    family: Family
    operands: tuple[str, ...]
    value: Callable
    value_and_grad: Callable
    grad: Callable
    hess: Callable
    kernels: dict[str, Callable]
    requests: dict[tuple, tuple]


def _setup(ctx, ops: _Ops, inputs: tuple, grad: torch.Tensor | None = None) -> None:
    """Keep an operator's arguments for its backward: the tensors (input, target, weight,
    pos_weight) with ``save_for_backward``, which catches in-place changes; the gradient
    too (saved, it is freed once backward has run, unless retain_graph, so that autograd
    can take it as input.grad instead of copying it)."""
    tensors = 2 + len(ops.operands)
    saved = inputs[:tensors] if grad is None else (*inputs[:tensors], grad)
    ctx.save_for_backward(*saved)
    ctx.ops, ctx.scalars = ops, inputs[tensors:]


def _arguments(ctx) -> tuple:
    """The operator's arguments, from :func:`_setup`."""
    tensors = ctx.saved_tensors[: 2 + len(ctx.ops.operands)]
    return (*tensors, *ctx.scalars)


def _others(ctx) -> tuple:
    """No derivative for the arguments after ``input`` (numbce has none)."""
    return (None,) * (1 + len(ctx.ops.operands) + len(ctx.scalars))


def _value_backward(ctx, grad_output):
    """Of the loss: ``grad_output`` times the gradient operator's result."""
    return (grad_output * ctx.ops.grad(*_arguments(ctx)), *_others(ctx))


def _fused_backward(ctx, grad_output, _=None):
    """Of the loss computed with its gradient: that gradient times ``grad_output``; with
    ``create_graph=True``, the gradient operator's (a function of ``input``)."""
    if torch.is_grad_enabled():
        return (grad_output * ctx.ops.grad(*_arguments(ctx)), *_others(ctx))
    return (_scale(ctx.saved_tensors[-1], grad_output), *_others(ctx))


def _grad_backward(ctx, outer):
    """Of the gradient: the second derivative (double backward, Hessian-vector
    products)."""
    return (outer * ctx.ops.hess(*_arguments(ctx)), *_others(ctx))


def _hess_backward(ctx, outer):
    raise RuntimeError(
        f"numbce.torch.{ctx.ops.family.name}: third derivatives are not implemented "
        "(numbce has kernels for the first and second only)"
    )


def _register_autograd(ops: _Ops) -> None:
    """Derivatives with respect to ``input`` (the other arguments have none)."""

    def setup(ctx, inputs, output) -> None:
        _setup(ctx, ops, inputs)

    def setup_fused(ctx, inputs, output) -> None:
        _setup(ctx, ops, inputs, output[1])
        ctx.mark_non_differentiable(output[1])

    ops.value.register_autograd(_value_backward, setup_context=setup)
    ops.value_and_grad.register_autograd(_fused_backward, setup_context=setup_fused)
    ops.grad.register_autograd(_grad_backward, setup_context=setup)
    ops.hess.register_autograd(_hess_backward, setup_context=setup)


class _EagerLoss(torch.autograd.Function):
    """``value_and_grad``'s loss in plain eager mode: the operator's kernel and backward
    without the dispatcher's per-call work (about 60 us; see :func:`_eager`)."""

    @staticmethod
    def forward(ctx, ops: _Ops, input, target, *arguments):
        loss, grad = _value_and_grad(ops, input, target, arguments)
        _setup(ctx, ops, (input, target, *arguments), grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *_fused_backward(ctx, grad_output))


_KEPT_DTYPES = {torch.float32, torch.float64}
"""The dtypes whose calls :func:`_value_and_grad` keeps a checked request for (NumPy's,
computed in themselves)."""


def _value_and_grad(ops: _Ops, input, target, arguments: tuple) -> tuple:
    """What the ``value_and_grad`` operator computes. For CPU tensors of one float32 or
    float64 dtype without weights, the request numbce checked for the first call of
    that kind (family, options, reduction, dtype, shape) is kept with its kernel plan and
    reused: everything checked depends on those alone, and the kernel checks the values
    (a bad value raises the same ValueError)."""
    count = len(ops.operands)
    if (
        input.is_cuda
        or target.is_cuda
        or input.dtype not in _KEPT_DTYPES
        or target.dtype != input.dtype
        or arguments[:count].count(None) != count  # weights
    ):
        return ops.kernels["_value_and_grad"](input, target, *arguments)
    x, y = input.detach().numpy(), target.detach().numpy()
    key = (input.dtype, input.shape, target.shape, arguments, _config.BLOCK,
           _config.PARALLEL_THRESHOLD, _config.STREAMING_THRESHOLD)  # fmt: skip
    kept = ops.requests.get(key)
    if kept is None:
        request = _validate.check(
            ops.family, VARIANTS["_value_and_grad"], x, y, None, None,
            arguments[count], 1.0, None, None, None, arguments[count + 1 :],
        )  # fmt: skip
        if len(ops.requests) >= 256:
            ops.requests.clear()
        # Kept without the first call's data, which it would keep alive.
        request = dataclasses.replace(request, input=None, target=None)
        kept = ops.requests[key] = (cpu.plan_for(request), request)
    plan, request = kept
    loss, grad, _ = cpu.execute(plan, request, x, y)
    return (
        torch.from_numpy(np.asarray(request.shaped(loss))),
        torch.from_numpy(request.shaped(grad)),
    )


_eager_loss = super(torch.autograd.Function, _EagerLoss).apply
"""``_EagerLoss.apply`` without ``Function.apply``'s Python preamble (about 4 us), which
only handles ``torch.func`` transforms and ``setup_context`` (:func:`_eager` rules out
the first, :class:`_EagerLoss` has no second)."""


def _eager(input) -> bool:
    """Whether a call (not being compiled) may take :class:`_EagerLoss`: a plain CPU or
    CUDA tensor, no ``torch.func`` transform, dispatch mode or autocast in play (those
    need the operator)."""
    return (
        type(input) is torch.Tensor
        and not torch._C._are_functorch_transforms_active()
        and not torch._C._len_torch_dispatch_stack()
        and not torch._C._is_any_autocast_enabled()
        and input.device.type in ("cpu", "cuda")
    )


def _define_ops(family: Family) -> _Ops:
    """``torch.library.custom_op`` operators for ``family``'s kernels, each with its
    fake implementation, derivative, ``vmap`` rule and autocast policy (float16 and
    bfloat16 computed in float32, as PyTorch computes its losses)."""
    arguments = _Arguments.of(family)
    ops, kernels = {}, {}
    for suffix, results in _OP_RESULTS.items():
        kernel = _kernel_impl(arguments, suffix)
        op = torch.library.custom_op(
            f"{OP_NAMESPACE}::{family.name}{suffix}",
            kernel,
            mutates_args=(),
            schema=arguments.schema(results),
        )
        op.register_fake(_fake_impl(arguments, suffix))
        op.register_vmap(_vmap_rule(op))
        for device in ("cpu", "cuda"):
            op.register_autocast(device, torch.float32)
        ops[suffix[1:] or "value"], kernels[suffix] = op, kernel
    ops = _Ops(family, arguments.operands, kernels=kernels, requests={}, **ops)
    _register_autograd(ops)
    return ops


def _to_numbce(name: str | None, value, input: torch.Tensor, cuda: bool):
    """A tensor as numbce takes it: a NumPy view of a CPU tensor, a detached CUDA tensor
    (bfloat16 widened to float32); anything else unchanged."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_cuda != cuda and (value.is_cuda or name == "target"):
        raise RuntimeError(
            f"{name or 'input'} is on {value.device} but input is on {input.device}: "
            "put the target on the input's device (weight and pos_weight may be CPU "
            "tensors for a CUDA input)"
        )
    value = value.detach()
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value if value.is_cuda else value.numpy()


def _to_torch(result, input: torch.Tensor) -> torch.Tensor:
    """A numbce result (NumPy array or scalar, or Numba device array) as a tensor on
    ``input``'s device, in ``input``'s dtype; arrays are viewed, not copied."""
    if input.is_cuda:
        if isinstance(result, np.generic):
            tensor = torch.tensor(result.item(), dtype=input.dtype, device=input.device)
        else:
            tensor = torch.as_tensor(result, device=input.device)
    else:
        tensor = torch.from_numpy(np.asarray(result))
    return tensor if tensor.dtype == input.dtype else tensor.to(input.dtype)


def _as_operand(value):
    """``weight``/``pos_weight`` as the operators take them: None or a tensor (a number
    as a float64 scalar, an array in its own dtype: numbce checks and casts it)."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64, device="cpu")
    return torch.from_numpy(np.asarray(value))


_DIFFERENTIATING = {
    torch._C._functorch.TransformType.Grad,
    torch._C._functorch.TransformType.Jvp,
}


def _check_no_func_derivatives(function: str) -> None:
    """RuntimeError under ``torch.func.grad`` (or ``vjp``, ``jacrev``, ``jvp``...):
    PyTorch's custom operators are differentiable by autograd, not by those transforms.
    ``vmap`` alone works (see :func:`_vmap_rule`)."""
    if torch._C._are_functorch_transforms_active() and any(
        interpreter.key() in _DIFFERENTIATING
        for interpreter in torch._C._functorch.get_interpreter_stack()
    ):
        raise RuntimeError(
            f"numbce.torch.{function} is a PyTorch custom operator: autograd "
            "(loss.backward(), torch.autograd.grad, create_graph=True for second "
            "derivatives) differentiates it, torch.func.grad, vjp, jacrev and jvp do "
            "not (PyTorch's custom_op has no functorch autograd); for per-sample "
            f"gradients call numbce.{function}_grad with reduction='none'"
        )


def _check_no_grad(ops: _Ops, target, operands: tuple) -> None:
    """RuntimeError for a target or operand that requires grad (grad enabled)."""
    for name, value in zip(("target", *ops.operands), (target, *operands)):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise RuntimeError(
                f"numbce.torch.{ops.family.name} differentiates the input only, but "
                f"{name} requires grad: pass {name}.detach() (numbce has no gradient "
                f"with respect to {name})"
            )


def _loss(
    ops: _Ops,
    input,
    target,
    operands: tuple,
    reduction,
    size_average,
    reduce,
    options: tuple,
) -> torch.Tensor:
    """One call of a family's loss function: arguments checked, then the operator (or,
    in plain eager mode, :class:`_EagerLoss`); ``value_and_grad`` where ``input``
    requires grad, the loss alone otherwise."""
    if (
        reduction not in _validate.REDUCTIONS
        or size_average is not None
        or reduce is not None
    ):
        reduction = _validate.check_reduction(reduction, size_average, reduce)
    if operands.count(None) != len(operands):
        operands = tuple(map(_as_operand, operands))
    grad_enabled = torch.is_grad_enabled()
    if grad_enabled:
        _check_no_grad(ops, target, operands)
    compiling = torch.compiler.is_compiling()
    if not compiling:
        _check_no_func_derivatives(ops.family.name)
        options = tuple([o.check(v) for o, v in zip(ops.family.options, options)])
    # Compiling, the options may be symbolic floats: the operator checks them when it
    # runs, with the same errors.
    call = (input, target, *operands, reduction, *options)
    if compiling and torch.compiler.is_exporting():  # a program to run, not to train
        return ops.value(*call)
    differentiated = grad_enabled and input.requires_grad
    if not compiling and _eager(input):
        return _eager_loss(ops, *call) if differentiated else ops.kernels[""](*call)
    return ops.value_and_grad(*call)[0] if differentiated else ops.value(*call)


def _function(family: Family, ops: _Ops) -> Callable:
    names, _ = family.torch_signature or (("input", "target"), ())
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.Signature(
        [inspect.Parameter(name, kind) for name in names]
        + _parameters(family, family.default_reduction)
    )
    parameters = signature.parameters
    operands = "".join(f"{name}, " for name in ops.operands)
    options = "".join(f"{option.name}, " for option in family.options)
    legacy = ", ".join(name if name in parameters else "None"
                       for name in ("size_average", "reduce"))  # fmt: skip
    body = (
        f"_loss(_ops, {names[0]}, {names[1]}, ({operands}), reduction, {legacy}, "
        f"({options}))"
    )
    function = _define(family.name, signature, body, {"_loss": _loss, "_ops": ops})
    function.__name__ = function.__qualname__ = family.name
    function.__module__ = __name__
    function.__signature__ = signature
    function.__doc__ = (
        f"{family.title}, on tensors, differentiable with respect to ``{names[0]}`` "
        f"(twice): the operator ``torch.ops.{OP_NAMESPACE}.{family.name}``."
        f"\n\n{family.doc}\n\nSee :mod:`numbce.torch` and "
        f":func:`numbce.{family.name}`."
    )
    return function


def _module(family: Family, function: Callable) -> type:
    parameters = _parameters(family, family.class_reduction)
    signature = inspect.Signature(parameters)
    bind = binder(family.class_name, signature)
    option_names = [option.name for option in family.options]
    operand_names = [n for n in _OPERANDS if n in signature.parameters]

    def __init__(self, *args, **kwargs) -> None:
        torch.nn.Module.__init__(self)
        values = bind(args, kwargs)
        self.reduction = _validate.check_reduction(
            values["reduction"], values.get("size_average"), values.get("reduce")
        )
        for option in family.options:
            setattr(self, option.name, option.check(values[option.name]))
        for name in operand_names:
            self.register_buffer(name, _as_operand(values[name]))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        options = {name: getattr(self, name) for name in option_names + operand_names}
        return function(input, target, reduction=self.reduction, **options)

    def extra_repr(self) -> str:
        shown = [f"reduction={self.reduction!r}"]
        shown += [f"{name}={getattr(self, name)!r}" for name in option_names]
        return ", ".join(shown)

    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = signature.replace(parameters=[self_parameter, *parameters])
    return type(
        family.class_name,
        (torch.nn.Module,),
        {
            "__init__": __init__,
            "forward": forward,
            "extra_repr": extra_repr,
            "__module__": __name__,
            "__doc__": f"{family.title}, as a ``torch.nn.Module`` (PyTorch's constructor "
            f"arguments; ``weight`` and ``pos_weight`` are buffers).\n\n{family.doc}",
        },
    )


OPS: dict[str, _Ops] = {
    family.name: _define_ops(family) for family in FAMILIES.values()
}
"""Every family's operators, by family name."""

FUNCTIONS_TORCH: dict[str, Callable] = {
    family.name: _function(family, OPS[family.name]) for family in FAMILIES.values()
}
"""The loss function of every family, by name."""

MODULES: dict[str, type] = {
    family.class_name: _module(family, FUNCTIONS_TORCH[family.name])
    for family in FAMILIES.values()
}
"""The ``torch.nn.Module`` of every family, by class name."""

globals().update(FUNCTIONS_TORCH)
globals().update(MODULES)
__all__ = sorted(FUNCTIONS_TORCH) + sorted(MODULES)  # noqa: PLE0605
