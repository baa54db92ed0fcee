"""Optimizers that update NumPy parameters in place: :class:`Adam`, :class:`AdamW`, :class:`SGD`.

The formulas, defaults and order of operations are those of ``torch.optim`` (single-tensor
path), so runs agree with PyTorch to rounding; the layout is that of scikit-learn's
``_stochastic_optimizers``: a small class holding the parameters and their state, whose
``step(grads)`` updates every parameter in place. Each update rule is one Numba kernel that
makes a single pass over a parameter, reading its gradient and updating the parameter and
its state (moments, momentum) together, in the parameter's dtype (float32 or float64).

>>> import numpy as np
>>> w = np.array([1.0, -2.0])
>>> opt = Adam([w], lr=0.1)
>>> opt.step([np.array([0.5, -0.5])])
>>> w  # the first Adam step moves every coordinate by lr against its gradient's sign
array([ 0.9, -1.9])
"""

from __future__ import annotations

import functools
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numba.extending import overload

from numbce._cache import njit

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LearningRate",
    "Optimizer",
    "StepLR",
    "views_like",
]


def _elements(a):
    """``a.ravel()`` in the kernels: ``a`` itself when it is a 1-d C-contiguous array
    already (Numba's ``ravel`` of one calls its reshape helper, which took half of an
    Adam step over a small network's flat parameters)."""
    return a.ravel()


@overload(_elements, jit_options={"nogil": True})
def _elements_compiled(a):
    if a.ndim == 1 and a.layout == "C":
        return lambda a: a
    return lambda a: a.ravel()


@functools.cache
def _adam_kernel(amsgrad: bool):
    """The Adam/AdamW update, compiled with or without AMSGrad (a compile-time constant:
    without it the kernel never touches ``max_exp_avg_sq``, so that loop vectorizes)."""

    def adam_update(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        step,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled_weight_decay,
    ):
        """One Adam/AdamW step (``torch.optim.Adam``, ``torch.optim.AdamW``) over arrays of
        one shape, C-contiguous but for ``grad``. With ``t = step`` (1 for the first), for
        every element::

            p = p (1 - lr wd)                       (decoupled_weight_decay: AdamW)
            g = g + wd p                            (otherwise: L2 penalty)
            m = m + (1 - beta1) (g - m)
            v = beta2 v + (1 - beta2) g^2
            v_max = max(v_max, v)                   (amsgrad; then v_max replaces v below)
            p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

        eps is added to the bias-corrected sqrt(v), as in PyTorch (scikit-learn adds it
        to the uncorrected one). The scalar factors are computed in float64 and rounded to
        the parameter's dtype, the elementwise arithmetic is done in that dtype (as
        PyTorch does).
        """
        p, g, m, v, v_max = (
            _elements(param),
            _elements(grad),
            _elements(exp_avg),
            _elements(exp_avg_sq),
            _elements(max_exp_avg_sq),
        )
        real = p.dtype.type
        step_size = real(lr / (1.0 - beta1**step))
        bias_correction2_sqrt = real(math.sqrt(1.0 - beta2**step))
        decay, l2 = real(1.0 - lr * weight_decay), real(weight_decay)
        mix1, beta2_, mix2, eps_ = (
            real(1.0 - beta1),
            real(beta2),
            real(1.0 - beta2),
            real(eps),
        )
        for i in range(p.size):
            g_i = g[i]
            if weight_decay != 0.0:
                if decoupled_weight_decay:
                    p[i] *= decay
                else:
                    g_i = g_i + l2 * p[i]
            m[i] += mix1 * (g_i - m[i])
            v[i] = v[i] * beta2_ + mix2 * g_i * g_i
            v_i = v[i]
            if amsgrad:
                v_max[i] = max(v_max[i], v_i)
                v_i = v_max[i]
            p[i] -= step_size * (m[i] / (math.sqrt(v_i) / bias_correction2_sqrt + eps_))

    return njit(adam_update)


@njit
def _sgd_update(
    param,
    grad,
    momentum_buffer,
    first_step,
    lr,
    momentum,
    dampening,
    weight_decay,
    nesterov,
):
    """One SGD step (``torch.optim.SGD``) over arrays of one shape, C-contiguous but for
    ``grad``; for every element::

        g = g + wd p
        b = g on the first step, else momentum b + (1 - dampening) g      (momentum > 0)
        g = g + momentum b (nesterov), else g = b                          (momentum > 0)
        p = p - lr g

    ``momentum_buffer`` is read and written only when ``momentum > 0``. The arithmetic is
    done in the parameter's dtype, the scalars rounded to it (as PyTorch does).
    """
    p, g, b = _elements(param), _elements(grad), _elements(momentum_buffer)
    real = p.dtype.type
    lr_, momentum_, mix, l2 = (
        real(lr),
        real(momentum),
        real(1.0 - dampening),
        real(weight_decay),
    )
    for i in range(p.size):
        g_i = g[i]
        if weight_decay != 0.0:
            g_i = g_i + l2 * p[i]
        if momentum != 0.0:
            b[i] = g_i if first_step else momentum_ * b[i] + mix * g_i
            g_i = g_i + momentum_ * b[i] if nesterov else b[i]
        p[i] -= lr_ * g_i


def _check_range(name: str, value: float, low: float, high: float = math.inf) -> float:
    value = float(value)
    if not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
    return value


def _check_parameter(name: str, param) -> None:
    """A parameter must be a writable, C-contiguous float32 or float64 ndarray (the
    kernels update it in place, in its own precision); each failure named as such."""
    if not isinstance(param, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(param).__name__}")
    if param.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {param.dtype}")
    if not param.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (the optimizer updates it in place), got a "
            f"view with strides {param.strides}: pass the array it views"
        )
    if not param.flags.writeable:
        raise ValueError(f"{name} must be writable (it is updated in place)")


def _check_gradient(name: str, grad, shape: tuple) -> None:
    """A gradient must be an array of the parameter's ``shape`` holding real numbers
    (float32, float64 or integers: what the update kernels compute with)."""
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(grad).__name__}")
    if grad.dtype.kind not in "biu" and grad.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name} must hold float32, float64 or integer values, got {grad.dtype}"
        )
    if grad.shape != shape:
        raise ValueError(f"{name} has shape {grad.shape}, its parameter {shape}")


def views_like(flat: np.ndarray, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Consecutive views of the 1-d ``flat``, shaped like ``arrays`` (which it must fit)."""
    views, start = [], 0
    for array in arrays:
        views.append(flat[start : start + array.size].reshape(array.shape))
        start += array.size
    return views


def _tiled_buffer(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The 1-d array of which ``arrays`` are consecutive views, in order and covering it
    whole (as :func:`views_like` makes them), else None."""
    base = arrays[0].base
    if (
        not isinstance(base, np.ndarray)
        or base.ndim != 1
        or not base.flags.c_contiguous
    ):
        return None
    address = base.ctypes.data
    for array in arrays:
        if array.base is not base or array.ctypes.data != address:
            return None
        address += array.nbytes
    return base if address == base.ctypes.data + base.nbytes else None


LearningRate = float | Callable[[int], float]
"""A learning rate: a number, or a schedule ``lr(t)`` giving the rate of the step that
follows ``t`` steps (``t = 0`` for the first), e.g. :class:`StepLR`, :class:`CosineAnnealingLR`
or any function of ``t``."""


@dataclass(frozen=True)
class StepLR:
    """``lr * gamma ** (t // step_size)`` after ``t`` steps: ``torch.optim.lr_scheduler.StepLR``
    stepped once per optimizer step (``step_size`` counts optimizer steps)."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __call__(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class CosineAnnealingLR:
    """``eta_min + (lr - eta_min) (1 + cos(pi t / T_max)) / 2`` after ``t`` steps: the
    closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` stepped once per
    optimizer step (``T_max`` counts optimizer steps)."""

    lr: float
    T_max: int
    eta_min: float = 0.0

    def __call__(self, t: int) -> float:
        cosine = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return self.eta_min + (self.lr - self.eta_min) * cosine


class Optimizer(ABC):
    """Holds the parameters (the live arrays, updated in place), their state and the step
    count; a subclass names its update rule (a Numba kernel), makes its state arrays with
    ``_zeros`` and gives the kernel's scalar arguments for each step.

    ``params``: C-contiguous, writable float32 or float64 arrays, e.g. ``model.parameters()``.
    ``lr``: a number or a schedule (see :data:`LearningRate`), called before each step.
    ``state_dict()`` / ``load_state_dict()`` save and restore the step count and state.
    ``step(grads)`` takes one gradient per parameter, of the same shape (any dtype), and
    makes one kernel call per parameter. When the parameters are consecutive views of one
    1-d buffer, ``flat_params`` (a :class:`~numbce.nn.Sequential`'s are), the state is laid
    out alike and ``step_flat(flat_grad)`` updates them all in a single kernel call.
    """

    _kernel: Callable[..., None]
    """The update rule, ``(param, grad, *state, *scalars)``, in place."""
    _options: tuple[str, ...] = ("lr",)
    """Attributes shown by ``repr``."""
    _state_names: tuple[str, ...]
    """Attributes holding the state arrays (lists like ``params``), for ``state_dict``."""

    def __init__(self, params: Iterable[np.ndarray], lr: LearningRate) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for index, param in enumerate(self.params):
            _check_parameter(f"parameter {index}", param)
        self.lr = lr if callable(lr) else _check_range("lr", lr, 0.0)
        self.step_count = 0
        self._step_lr = self.lr if not callable(lr) else math.nan
        self.flat_params = _tiled_buffer(self.params)
        self._states: list[tuple[np.ndarray, ...]] = []
        self._flat_state: tuple[np.ndarray, ...] = ()

    def _zeros(self) -> list[np.ndarray]:
        """One zero array per parameter, of its shape and dtype: views of one flat buffer
        when the parameters are."""
        if self.flat_params is None:
            return [np.zeros_like(param) for param in self.params]
        return views_like(np.zeros_like(self.flat_params), self.params)

    def _set_state(self, *state: list[np.ndarray]) -> None:
        """Hand the kernel its state arrays: each a list made by ``_zeros``."""
        self._states = list(zip(*state))
        if self.flat_params is not None:
            self._flat_state = tuple(arrays[0].base for arrays in state)

    @abstractmethod
    def _kernel_scalars(self) -> tuple:
        """The kernel's scalar arguments for the current step (after the arrays); the
        learning rate is ``self._step_lr``."""

    def _scheduled_lr(self, t: int) -> float:
        """The learning rate of the step that follows ``t`` steps: the schedule's value
        (checked), or the constant rate."""
        if not callable(self.lr):
            return self._step_lr
        return _check_range(f"the learning rate at step {t}", self.lr(t), 0.0)

    def _count_step(self) -> None:
        """Take the learning rate of the coming step (from the schedule, called with the
        number of steps taken so far), then count the step."""
        self._step_lr = self._scheduled_lr(self.step_count)
        self.step_count += 1

    def state_dict(self) -> dict:
        """What resumes training (``torch.optim.Optimizer.state_dict``): the step count
        and copies of the state arrays by name, one list per name in the order of
        ``params``. The hyperparameters are the constructor's, not part of the state."""
        return {
            "step_count": self.step_count,
            "state": {
                name: [array.copy() for array in getattr(self, name)]
                for name in self._state_names
            },
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue from ``state_dict`` (made by :meth:`state_dict` of an optimizer of
        the same class over parameters of the same shapes): its step count and state
        are copied in; a mismatch raises ValueError and changes nothing."""
        state = state_dict["state"]
        if set(state) != set(self._state_names):
            raise ValueError(
                f"the state holds {sorted(state)}, {type(self).__name__} needs "
                f"{sorted(self._state_names)}"
            )
        for name in self._state_names:
            ours, theirs = getattr(self, name), state[name]
            shapes = [np.shape(array) for array in theirs]
            if shapes != [array.shape for array in ours]:
                raise ValueError(
                    f"{name} has shapes {shapes}, the parameters "
                    f"{[array.shape for array in ours]}"
                )
        step_count = operator.index(state_dict["step_count"])
        if step_count < 0:
            raise ValueError(f"step_count must be >= 0, got {step_count}")
        for name in self._state_names:
            for ours, theirs in zip(getattr(self, name), state[name]):
                np.copyto(ours, theirs)
        self.step_count = step_count

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Update every parameter in place from its gradient ``grads[i]``: one kernel
        call, one pass, per parameter. Nothing is updated and no step is counted if a
        gradient is misshapen or not a real array."""
        if len(grads) != len(self.params):
            raise ValueError(
                f"step got {len(grads)} gradients for {len(self.params)} parameters"
            )
        for index, (param, grad) in enumerate(zip(self.params, grads)):
            _check_gradient(f"gradient {index}", grad, param.shape)
        self._count_step()
        scalars = self._kernel_scalars()
        for param, grad, state in zip(self.params, grads, self._states):
            self._kernel(param, grad, *state, *scalars)

    def step_flat(self, flat_grad: np.ndarray) -> None:
        """Update all parameters in place, in one kernel call, from ``flat_grad``: the
        gradients laid out like ``flat_params`` (1-d, same size)."""
        if self.flat_params is None:
            raise ValueError("step_flat needs parameters that are views of one buffer")
        _check_gradient("flat_grad", flat_grad, self.flat_params.shape)
        self._count_step()
        self._kernel(
            self.flat_params, flat_grad, *self._flat_state, *self._kernel_scalars()
        )

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._options)
        return f"{type(self).__name__}({len(self.params)} parameters, {options})"


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) exactly as ``torch.optim.Adam``: bias-corrected moments, eps
    added to the bias-corrected sqrt(v) (PyTorch's convention; scikit-learn adds it to the
    uncorrected one), optional L2 ``weight_decay`` added to the gradient, optional AMSGrad.
    The update of each element, with t the step number (see ``_adam_kernel``)::

        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    _options = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: LearningRate = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.betas = (
            _check_range("betas[0]", betas[0], 0.0, 1.0),
            _check_range("betas[1]", betas[1], 0.0, 1.0),
        )
        self.eps = _check_range("eps", eps, 0.0)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0)
        self.amsgrad = bool(amsgrad)  # fixed: it chooses the compiled kernel
        self._kernel = _adam_kernel(self.amsgrad)
        self.exp_avg = self._zeros()
        self.exp_avg_sq = self._zeros()
        # Without amsgrad the kernel never touches its max_exp_avg_sq argument.
        self.max_exp_avg_sq = self._zeros() if self.amsgrad else self.exp_avg_sq
        self._state_names = ("exp_avg", "exp_avg_sq") + (
            ("max_exp_avg_sq",) if self.amsgrad else ()
        )
        self._set_state(self.exp_avg, self.exp_avg_sq, self.max_exp_avg_sq)

    def _kernel_scalars(self):
        return (
            self.step_count,
            self._step_lr,
            self.betas[0],
            self.betas[1],
            self.eps,
            self.weight_decay,
            self._decoupled_weight_decay,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``:
    each step first shrinks the parameter, ``p = p (1 - lr weight_decay)``, then applies
    :class:`Adam`'s update to the undecayed gradient. PyTorch's default decay: 1e-2."""

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: LearningRate = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
    L2 ``weight_decay``, exactly as ``torch.optim.SGD`` (see ``_sgd_update``)::

        g = g + weight_decay p
        b = g on the first step, then b = momentum b + (1 - dampening) g
        p = p - lr (g + momentum b) with nesterov,   p = p - lr b without
    """

    _kernel = staticmethod(_sgd_update)
    _options = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    _state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: LearningRate = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_range("momentum", momentum, 0.0)
        self.dampening = float(dampening)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum_buffer = self._zeros()
        self._set_state(self.momentum_buffer)

    def _kernel_scalars(self):
        return (
            self.step_count == 1,
            self._step_lr,
            self.momentum,
            self.dampening,
            self.weight_decay,
            self.nesterov,
        )
