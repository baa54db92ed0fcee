"""Public loss functions and loss classes, generated from the registry of loss families.

For each family ``f`` of :data:`numbce.losses.FAMILIES` (``f`` is its name, e.g.
``binary_cross_entropy_with_logits``): ``f`` (the loss), ``f_grad`` (d loss / d input),
``f_value_and_grad`` (both from one pass), ``f_hess`` (the elementwise second derivative),
``f_grad_hess`` (both from one pass), and a loss class (``BCEWithLogitsLoss``...) holding
the options, with ``__call__``, ``grad``, ``value_and_grad``, ``hess`` and ``grad_hess``.

Conventions shared by every function:

* ``input`` float16/float32/float64 of any shape (float16 computed in float32); ``target``
  the same shape (float, int or bool, cast to the input's dtype); ``weight`` and
  ``pos_weight`` None, a scalar or an array broadcastable to the input's shape (an array
  along the last axis is indexed per column, never copied out).
* ``reduction`` ``'none'`` (an array of the input's shape), ``'sum'`` or ``'mean'`` (a NumPy
  scalar of the input's dtype; sums accumulate in float64 in a fixed order; the mean of
  nothing is nan, a sum beyond the dtype's range is +-inf).
* Derivatives are arrays of the input's shape and dtype; for ``'mean'`` they include 1/N;
  ``grad_output`` (a scalar, or for ``'none'`` an array of the input's shape) scales them.
* Probabilities and targets outside [0, 1] (or nan) raise ValueError naming the first
  offending flat index and value; nothing is returned and no input is modified.
* ``out`` (keyword, NumPy only) receives the array results instead of new arrays, as in
  NumPy: one array for a function with one array result, else a tuple with one array or
  None per result (``(loss, grad)``: the loss slot None unless ``reduction='none'``). Each
  must have the input's shape and the result dtype, be writeable and overlap no operand;
  the call returns it. Reusing buffers saves the allocation and first-touch page faults
  of large results. After a ValueError about values, its contents are unspecified.
* NumPy arrays run on the CPU (:mod:`numbce.cpu`), arrays exposing
  ``__cuda_array_interface__`` on the GPU (:mod:`numbce.cuda`), Dask arrays lazily on
  :mod:`numbce.dask`; the last two are imported only when such an array arrives.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from numbce import _validate, cpu
from numbce._validate import Outputs
from numbce.losses import FAMILIES, Family

ArrayLike = Any

VARIANTS = {
    "": Outputs(loss=True),
    "_grad": Outputs(grad=True),
    "_value_and_grad": Outputs(loss=True, grad=True),
    "_hess": Outputs(hess=True),
    "_grad_hess": Outputs(grad=True, hess=True),
}
"""Suffix of each public function -> the results it returns, in this order."""

_DEFAULTS = {
    "out": None,
    "weight": None,
    "pos_weight": None,
    "grad_output": 1.0,
    "size_average": None,
    "reduce": None,
}
_ANNOTATIONS = {
    "weight": "ArrayLike | None",
    "pos_weight": "ArrayLike | None",
    "grad_output": "ArrayLike",
    "reduction": "str",
    "size_average": "bool | None",
    "reduce": "bool | None",
    "out": "np.ndarray | tuple | None",
}


def array_kind(a) -> str:
    """``'dask'``, ``'cuda'`` or ``'numpy'``, judged from the type alone (imports nothing)."""
    if type(a) is np.ndarray:
        return "numpy"
    if type(a).__module__.startswith("dask."):
        return "dask"
    return "cuda" if _validate.is_cuda_array(a) else "numpy"


def _refuse_autograd(family: Family, *operands) -> None:
    """TypeError for a ``torch.Tensor`` operand that requires grad (NumPy cannot take
    it, and numbce's arrays would cut it out of the autograd graph)."""
    names = ("input", "target", "weight", "pos_weight")
    for name, value in zip(names, operands):
        if getattr(value, "requires_grad", False) and type(value).__module__.startswith(
            "torch"
        ):
            advice = (
                f"call numbce.torch.{family.name} (a PyTorch function with numbce's "
                f"backward pass), or pass {name}.detach() for the value alone"
                if name == "input"
                else f"numbce differentiates the input only: pass {name}.detach()"
            )
            raise TypeError(
                f"numbce's {family.name} functions take arrays, outside autograd, and "
                f"{name} is a torch.Tensor that requires grad: {advice}"
            )


def compute(family: Family, outputs: Outputs, input, target, *call) -> tuple:
    """Validate one call and run it on the backend of ``input``'s kind: ``(loss, grad,
    hess)``, each None unless asked for. ``call`` is ``(weight, pos_weight, reduction,
    grad_output, size_average, reduce, out, option_values)`` as
    :func:`numbce._validate.check` takes it (positional: the public functions call this on
    every call)."""
    if type(input) is not np.ndarray:
        _refuse_autograd(family, input, target, call[0], call[1])
    kind = array_kind(input)
    if kind == "numpy":
        x = input if type(input) is np.ndarray else np.asarray(input)
        y = target if type(target) is np.ndarray else np.asarray(target)
        request = _validate.check(family, outputs, x, y, *call)
        loss, grad, hess = cpu.run(request)
        loss_out, grad_out, hess_out = request.out
        shaped = request.shaped
        return (
            None if loss is None else shaped(loss, loss_out),
            None if grad is None else shaped(grad, grad_out),
            None if hess is None else shaped(hess, hess_out),
        )
    weight, pos_weight, reduction, grad_output, size_average, reduce, out, values = call
    if out is not None:
        raise TypeError(
            f"out= takes NumPy arrays only; {kind} arrays allocate their results"
        )
    if kind == "cuda":
        from numbce import cuda as backend
    else:
        from numbce import dask as backend
    options = dict(zip((option.name for option in family.options), values))
    return backend.compute(family, outputs, input, target, weight=weight,
                           pos_weight=pos_weight, reduction=reduction,
                           grad_output=grad_output, size_average=size_average,
                           reduce=reduce, **options)  # fmt: skip


def _defaults(family: Family) -> dict:
    return {
        **_DEFAULTS,
        "reduction": family.default_reduction,
        **{option.name: option.default for option in family.options},
    }


def _signature(family: Family, names: tuple, defaults: dict) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("input", kind, annotation="ArrayLike"),
        inspect.Parameter("target", kind, annotation="ArrayLike"),
    ]
    for name in names:
        if name == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        annotation = _ANNOTATIONS.get(name, "float | None")
        parameters.append(
            inspect.Parameter(name, kind, default=defaults[name], annotation=annotation)
        )
    return inspect.Signature(parameters)


def binder(name: str, signature: inspect.Signature) -> Callable[[tuple, dict], dict]:
    """A fast ``(args, kwargs) -> {parameter: value}`` for ``signature`` (defaults filled
    in), raising Python's TypeErrors for wrong calls."""
    positional = [p.name for p in signature.parameters.values()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]  # fmt: skip
    allowed = set(signature.parameters)
    defaults = {p.name: p.default for p in signature.parameters.values()
                if p.default is not inspect.Parameter.empty}  # fmt: skip
    required = [p for p in positional if p not in defaults]

    def bind(args: tuple, kwargs: dict) -> dict:
        if len(args) > len(positional):
            raise TypeError(
                f"{name}() takes at most {len(positional)} positional arguments "
                f"({len(args)} given)"
            )
        values = dict(zip(positional, args))
        for key in kwargs:
            if key not in allowed:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
        values.update(kwargs)
        for key in required:
            if key not in values:
                raise TypeError(f"{name}() missing required argument: {key!r}")
        return {**defaults, **values}

    return bind


_RETURNS = {
    "": "the loss: an array of the input's shape for ``'none'``, else a NumPy scalar",
    "_grad": "d loss / d input, an array of the input's shape",
    "_value_and_grad": "``(loss, grad)`` from one fused pass",
    "_hess": "d2 loss / d input2 elementwise (the Hessian is diagonal), scaled like the "
    "gradient",
    "_grad_hess": "``(grad, hess)`` from one fused pass",
}


def _define(name: str, signature: inspect.Signature, body: str, namespace: dict):
    """A Python function ``name`` with exactly ``signature`` (so Python binds its
    arguments: no binder on the hot path) returning the expression ``body`` evaluated
    with the parameters and ``namespace``, as :mod:`dataclasses` generates ``__init__``."""
    defaults = {p.name: p.default for p in signature.parameters.values()
                if p.default is not inspect.Parameter.empty}  # fmt: skip
    parameters, star = [], False
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parameters.append("*")
            star = True
        parameters.append(f"{p.name}=_defaults[{p.name!r}]" if p.name in defaults
                          else p.name)  # fmt: skip
    source = f"def {name}({', '.join(parameters)}):\n    return {body}\n"
    scope = {**namespace, "_defaults": defaults}
    exec(compile(source, f"<numbce.functional {name}>", "exec"), scope)  # noqa: S102
    return scope[name]


def _function(family: Family, suffix: str) -> Callable:
    outputs = VARIANTS[suffix]
    name = family.name + suffix
    names = family.signature if suffix == "" else family.derivative_signature
    names = (*names, "out") if "*" in names else (*names, "*", "out")
    signature = _signature(family, names, _defaults(family))
    picks = [i for i, wanted in enumerate(outputs) if wanted]
    common = ("weight", "pos_weight", "reduction", "grad_output", "size_average",
              "reduce", "out")  # fmt: skip
    defaults = _defaults(family)
    passed = [name if name in signature.parameters else repr(defaults[name])
              for name in common]  # fmt: skip
    option_values = "".join(f"{option.name}, " for option in family.options)
    body = (
        f"_pick(compute(_family, _outputs, input, target, {', '.join(passed)}, "
        f"({option_values})))"
    )
    namespace = {"compute": compute, "_family": family, "_outputs": outputs,
                 "_pick": operator.itemgetter(*picks)}  # fmt: skip
    function = _define(name, signature, body, namespace)
    function.__name__ = function.__qualname__ = name
    function.__module__ = "numbce"
    function.__signature__ = signature
    function.__doc__ = (
        f"{family.title}: {_RETURNS[suffix]}.\n\n{family.doc}\n\n"
        "Reductions, shapes, dtypes and errors: see :mod:`numbce.functional`."
    )
    return function


class _Loss:
    """Base of the generated loss classes: options held once, checked at construction."""

    family: Family
    _options: tuple[str, ...]

    def __init__(self, *args, **kwargs) -> None:
        values = self._bind(args, kwargs)
        values["reduction"] = _validate.check_reduction(values["reduction"])
        for option in self.family.options:
            values[option.name] = option.check(values[option.name])
        self.__dict__.update(values)

    def _call(self, suffix: str, input, target, grad_output, out):
        options = {name: getattr(self, name) for name in self._options}
        if suffix:
            options["grad_output"] = grad_output
        return FUNCTIONS[self.family.name + suffix](input, target, out=out, **options)

    def __call__(
        self,
        input: ArrayLike,
        target: ArrayLike,
        *,
        out: np.ndarray | tuple | None = None,
    ):
        """The loss (see the family's function)."""
        return self._call("", input, target, None, out)

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._options)
        return f"{type(self).__name__}({options})"


def _derivative_method(suffix: str) -> Callable:
    """The loss classes' method for the function ``f + suffix``: the held options, with
    ``grad_output`` and ``out`` per call."""

    def method(
        self,
        input: ArrayLike,
        target: ArrayLike,
        grad_output: ArrayLike = 1.0,
        *,
        out: np.ndarray | tuple | None = None,
    ):
        return self._call(suffix, input, target, grad_output, out)

    method.__name__ = method.__qualname__ = suffix[1:]
    method.__doc__ = f"Returns {_RETURNS[suffix]}."
    return method


for _suffix in [suffix for suffix in VARIANTS if suffix]:
    setattr(_Loss, _suffix[1:], _derivative_method(_suffix))
del _suffix


def _loss_class(family: Family) -> type:
    defaults = {**_defaults(family), "reduction": family.class_reduction}
    signature = _signature(family, family.class_signature, defaults)
    parameters = list(signature.parameters.values())[2:]  # no input, target
    init_signature = inspect.Signature(parameters)

    def __init__(self, *args, **kwargs) -> None:
        _Loss.__init__(self, *args, **kwargs)

    __init__.__signature__ = init_signature
    cls = type(
        family.class_name,
        (_Loss,),
        {
            "__init__": __init__,
            "__doc__": f"{family.title}, as a loss object holding its options.\n\n"
            f"{family.doc}\n\n``loss(input, target)`` returns the loss; ``.grad``, "
            "``.value_and_grad``, ``.hess`` and ``.grad_hess`` the derivatives.",
            "__module__": "numbce",
            "family": family,
            "_options": tuple(p.name for p in parameters),
            "_bind": staticmethod(binder(family.class_name, init_signature)),
        },
    )
    return cls


FUNCTIONS: dict[str, Callable] = {
    family.name + suffix: _function(family, suffix)
    for family in FAMILIES.values()
    for suffix in VARIANTS
}
"""Every public function by name."""

CLASSES: dict[str, type] = {
    family.class_name: _loss_class(family) for family in FAMILIES.values()
}
"""Every loss class by name."""

globals().update(FUNCTIONS)
globals().update(CLASSES)
__all__ = sorted(FUNCTIONS) + sorted(CLASSES)  # noqa: PLE0605
