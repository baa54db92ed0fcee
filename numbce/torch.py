"""PyTorch autograd for every numbce loss family: tensors in, tensors out.

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
(tensor(0.2201, grad_fn=<_LossBackward>), tensor([-0.0596,  0.1345]))

Autograd: the loss is a :class:`torch.autograd.Function` whose forward runs numbce's fused
``*_value_and_grad`` kernel (one pass over the data) and keeps the gradient; its backward
returns that gradient times ``grad_output``. Double backward (``create_graph=True``,
``torch.autograd.gradgradcheck``, Hessian-vector products) uses the ``*_hess`` kernel;
asking for a third derivative raises RuntimeError. Only ``input`` is differentiated: a ``target``,
``weight`` or ``pos_weight`` that requires grad raises RuntimeError when the loss is
called with grad enabled (pass ``.detach()``, as for a teacher's output).

Devices: CPU tensors are handed to the CPU kernels as NumPy views (no copy), and the
results come back as tensors over the kernels' arrays (no copy). CUDA tensors go to
:mod:`numbce.cuda` through ``__cuda_array_interface__``, on PyTorch's current stream, and
the results come back as CUDA tensors over the same memory (a ``'mean'``/``'sum'`` loss
is computed as a host float and copied to the device). ``weight`` and ``pos_weight`` may
be host values for a CUDA input; the target must be on the input's device.

dtypes: float16, float32 and float64 as in numbce (float16 computed in float32);
bfloat16, which NumPy lacks, is computed in float32 and the results rounded to bfloat16.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

try:
    import torch
except ImportError as error:  # pragma: no cover - the 'compare' extra installs it
    raise ImportError(
        "numbce.torch needs PyTorch >= 2.0: pip install torch (or 'numbce[compare]')"
    ) from error

from numbce import _validate
from numbce.functional import FUNCTIONS, binder
from numbce.losses import FAMILIES, Family

TORCH_SIGNATURES: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {
    "binary_cross_entropy": (
        ("input", "target"),
        ("weight", "size_average", "reduce", "reduction"),
    ),
    "binary_cross_entropy_with_logits": (
        ("input", "target"),
        ("weight", "size_average", "reduce", "reduction", "pos_weight"),
    ),
    "sigmoid_focal_loss": (("inputs", "targets"), ("alpha", "gamma", "reduction")),
}
"""Per family: PyTorch's (or torchvision's) names of the prediction and the target, and its
positional parameters after them. The family's other numbce parameters follow, keyword-only.
A family not listed keeps numbce's signature."""

_OPERANDS = ("weight", "pos_weight")
_DEFAULTS = {"weight": None, "pos_weight": None, "size_average": None, "reduce": None}


def _parameters(family: Family, reduction: str) -> list[inspect.Parameter]:
    """The parameters after the prediction and the target, PyTorch's order first."""
    defaults = {**_DEFAULTS, "reduction": reduction}
    defaults.update((option.name, option.default) for option in family.options)
    ours = [name for name in family.signature if name != "*"]
    _, positional = TORCH_SIGNATURES.get(family.name, ((), ()))
    if not positional:
        positional = tuple(family.signature[: family.signature.index("*")])
    keyword = [name for name in ours if name not in positional]
    kinds = [(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in positional]
    kinds += [(name, inspect.Parameter.KEYWORD_ONLY) for name in keyword]
    return [
        inspect.Parameter(name, kind, default=defaults[name]) for name, kind in kinds
    ]


class _Call:
    """One call's family, options and reduction, run on tensors."""

    __slots__ = ("family", "options", "reduction")

    def __init__(self, family: Family, options: dict, reduction: str) -> None:
        self.family = family
        self.options = options
        self.reduction = reduction

    def run(self, suffix: str, input: torch.Tensor, target, operands: dict) -> tuple:
        """``FUNCTIONS[family + suffix]`` on tensors; its results as tensors on
        ``input``'s device, in ``input``'s dtype."""
        cuda = input.is_cuda
        values = {
            name: _to_numbce(name, value, input, cuda)
            for name, value in operands.items()
        }
        results = FUNCTIONS[self.family.name + suffix](
            _to_numbce(None, input, input, cuda),
            _to_numbce("target", target, input, cuda),
            reduction=self.reduction,
            **self.options,
            **values,
        )
        if not isinstance(results, tuple):
            results = (results,)
        return tuple(_to_torch(result, input) for result in results)


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


def _scale(grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """``grad * grad_output``; the saved gradient itself for a CPU scalar 1 (``loss.
    backward()``), which skips a pass over the data."""
    if (
        grad_output.dim() == 0
        and not grad_output.is_cuda
        and not grad_output.requires_grad
        and grad_output.item() == 1.0
    ):
        return grad
    return grad * grad_output


def _save(ctx, *values) -> None:
    """Keep tensors with ``save_for_backward`` (in-place changes are then caught), the
    rest on ``ctx``."""
    ctx.save_for_backward(*(v if isinstance(v, torch.Tensor) else None for v in values))
    ctx.others = [None if isinstance(v, torch.Tensor) else v for v in values]


def _load(ctx) -> list:
    return [s if o is None else o for s, o in zip(ctx.saved_tensors, ctx.others)]


class _Loss(torch.autograd.Function):
    """The loss: forward by the fused value+grad kernel; backward from the saved gradient."""

    @staticmethod
    def forward(ctx, input, target, call: _Call, names: tuple, *operands):
        loss, grad = call.run(
            "_value_and_grad", input, target, dict(zip(names, operands))
        )
        ctx.call, ctx.names = call, names
        # Saved, not kept on ctx: freed once backward has run (unless retain_graph), so
        # that autograd can take it as input.grad instead of copying it.
        _save(ctx, input, target, *operands, grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        input, target, *operands, grad = _load(ctx)
        if (
            torch.is_grad_enabled()
        ):  # create_graph=True: the gradient as a function of x
            grad = (
                _Derivative.apply(input, grad, target, ctx.call, ctx.names, *operands)
                * grad_output
            )
        else:
            grad = _scale(grad, grad_output)
        return (grad, None, None, None, *(None for _ in ctx.names))


class _Derivative(torch.autograd.Function):
    """The first derivative (given, as the forward computed it) or, ``given`` None, the
    second (the ``*_hess`` kernel), as a function of ``input``: the first's backward is the
    second; the second's raises (numbce has no third-derivative kernel)."""

    @staticmethod
    def forward(ctx, input, given, target, call, names, *operands):
        ctx.call, ctx.names, ctx.first = call, names, given is not None
        _save(ctx, input, target, *operands)
        if given is not None:
            return given
        (hess,) = call.run("_hess", input, target, dict(zip(names, operands)))
        return hess

    @staticmethod
    def backward(ctx, outer):
        if not ctx.first:
            raise RuntimeError(
                f"numbce.torch.{ctx.call.family.name}: third derivatives are not "
                "implemented (numbce has kernels for the first and second only)"
            )
        input, target, *operands = _load(ctx)
        hess = _Derivative.apply(input, None, target, ctx.call, ctx.names, *operands)
        return (outer * hess, None, None, None, None, *(None for _ in operands))


def _check_no_grad(function: str, target, operands: dict) -> None:
    if not torch.is_grad_enabled():
        return
    for name, value in (("target", target), *operands.items()):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise RuntimeError(
                f"numbce.torch.{function} differentiates the input only, but {name} "
                f"requires grad: pass {name}.detach() (numbce has no gradient with "
                f"respect to {name})"
            )


def _function(family: Family) -> Callable:
    names, _ = TORCH_SIGNATURES.get(family.name, (("input", "target"), ()))
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.Signature(
        [inspect.Parameter(name, kind) for name in names]
        + _parameters(family, family.default_reduction)
    )
    bind = binder(family.name, signature)
    operand_names = tuple(n for n in _OPERANDS if n in signature.parameters)
    option_names = [option.name for option in family.options]

    def function(*args, **kwargs):
        values = bind(args, kwargs)
        input, target = values[names[0]], values[names[1]]
        reduction = _validate.check_reduction(
            values["reduction"], values.get("size_average"), values.get("reduce")
        )
        operands = {name: values[name] for name in operand_names}
        _check_no_grad(family.name, target, operands)
        options = {name: values[name] for name in option_names}
        call = _Call(family, options, reduction)
        return _Loss.apply(input, target, call, operand_names, *operands.values())

    function.__name__ = function.__qualname__ = family.name
    function.__module__ = __name__
    function.__signature__ = signature
    function.__doc__ = (
        f"{family.title}, on tensors, differentiable with respect to ``{names[0]}`` "
        f"(twice).\n\n{family.doc}\n\nSee :mod:`numbce.torch` and "
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
            value = values[name]
            if value is not None and not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value)
            self.register_buffer(name, value)

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


FUNCTIONS_TORCH: dict[str, Callable] = {
    family.name: _function(family) for family in FAMILIES.values()
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
