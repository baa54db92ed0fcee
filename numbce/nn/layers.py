"""Layers with hand-derived backward passes, in PyTorch's layout, on preallocated buffers.

Every layer follows one protocol (in the style of scikit-learn's MLP, whose activation and
delta arrays are allocated once per fit):

* ``allocate(rows, input_shape, dtype, input_grad) -> output_shape``: size the buffers for
  batches of up to ``rows`` samples of ``input_shape`` features (ValueError if the features
  do not fit the layer); with ``input_grad=False`` :meth:`Layer.backward` skips d loss / d
  input (the first trainable layer of a network needs none).
* ``forward(x)``: ``x`` of shape (n, *input_shape) -> the output, of shape
  (n, *output_shape), in the layer's buffer: the next call overwrites it.
* ``backward(grad_output)``: d loss / d output -> d loss / d input (None without
  ``input_grad``); fills ``gradients()``, the d loss / d parameter arrays that match
  ``parameters()`` one to one. Call it after the ``forward`` whose output it differentiates.
* ``bind(parameters, gradients)``: adopt other arrays (a network's views) as its own.

Each layer's math is written once, as Numba kernels on 2-d C-contiguous arrays that its
``forward`` and ``backward`` call and that compiled training (:mod:`numbce.nn.compiled`)
calls from its own loop: :class:`Linear`'s ``forward_kernel(x, weight, bias, out, work)``
and ``backward_kernel(grad_output, x, weight, weight_grad, bias_grad, grad_input, work,
totals)`` (``grad_input`` None: not computed; ``work`` and ``totals`` the workspaces its
loops use instead of allocating: in * out elements of the dtype and out float64 ones);
an activation's ``forward_kernel(x, out)`` and
``backward_kernel(grad_output, out, grad_input)`` (``out`` its output); :class:`Flatten` is
the identity on (n, features) data.

A layer allocates its own buffers on the first ``forward`` if nobody did; ``forward`` and
``backward`` validate nothing (that is the model's job) and compute in the dtype of their
buffers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numba
import numpy as np
from numba.core import types as nbtypes
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from numbce._cache import njit

__all__ = ["Flatten", "Layer", "Linear", "ReLU", "Sigmoid", "Tanh"]

INITS = ("kaiming_uniform", "glorot_uniform")
"""Weight initialisations of :class:`Linear`: PyTorch's default and Keras' default."""


SMALL_PRODUCT = 1 << 18
"""Multiply-adds of a product at and below which :class:`Linear` multiplies in its own
loops rather than calling BLAS: a BLAS call costs 0.15-0.4 us before any arithmetic, and
a step of a small network makes several (the loops vectorize along a row, summing every
element's terms in a fixed order)."""

NARROW = 8
"""Features below which a small product of :class:`Linear` is a Numba loop rather than
BLAS (BLAS spends 0.2-0.6 us on the product of a 2-feature layer): with fewer inputs,
the forward pass and the weight gradient (their loops run along the outputs, W or dW
transposed in a workspace); with fewer outputs, the weight gradient and d loss / d input
(along the inputs). The forward pass of few outputs stays BLAS (a dot product per
output, which a loop cannot vectorize without reordering its sum)."""


# -- views ------------------------------------------------------------------------------
# Arrays over the data of another, without its meminfo: no reference counting (an atomic
# operation per view), and no reshape helper call. Only for use inside a kernel whose
# caller keeps the source alive; never returned.


def borrowed_view(context, builder, source_type, source, data, shape, strides, result):
    """An array of type ``result`` over ``data`` (a pointer into ``source``'s buffer)
    with no meminfo: Numba's reference counts of it are null checks."""
    view = context.make_array(result)(context, builder)
    populate_array(view, data=data, shape=shape, strides=strides,
                   itemsize=source.itemsize, meminfo=None)  # fmt: skip
    return view._getvalue()


def view_codegen(flat, result):
    """Code of a view of type ``result`` at an element offset of the C-contiguous
    ``flat``, of the sizes that follow the offset among the arguments."""

    def codegen(context, builder, signature, args):
        source = context.make_array(flat)(context, builder, args[0])
        values = [
            context.cast(builder, value, kind, nbtypes.intp)
            for value, kind in zip(args[1:], signature.args[1:])
        ]
        offset, shape = values[0], values[1:]
        strides, stride = [], source.itemsize
        for size in reversed(shape):
            strides.insert(0, stride)
            stride = builder.mul(stride, size)
        data = builder.gep(source.data, [offset])
        return borrowed_view(context, builder, flat, source, data, shape, strides,
                             result)  # fmt: skip

    return codegen


@intrinsic
def vector_view(typingctx, flat, offset, size):
    """The ``size`` elements from ``offset`` of the C-contiguous ``flat`` (see
    :func:`numbce.nn.compiled._matrix`); no other layout compiles."""
    if flat.layout != "C":
        return None
    result = nbtypes.Array(flat.dtype, 1, "C")
    return result(flat, offset, size), view_codegen(flat, result)


@numba.njit(nogil=True, error_model="numpy", fastmath=False, forceinline=True)
def flat_view(a):
    """The C-contiguous ``a`` as 1-d, without reshape's helper call."""
    return vector_view(a, 0, a.size)


# The loops index with unsigned integers: a signed index computed in the loop (k + 1,
# start + j) costs a wraparound test per element that keeps the loop from vectorizing.


@njit
def _linear_forward(x, weight, bias, out, work):
    """``out = x W^T + b``: x (n, in), W (out, in), b (out,), out (n, out); ``work`` a
    buffer of at least in * out elements of the dtype. BLAS, but for a narrow input (see
    :data:`NARROW`): then each output sums its terms in order of the inputs, W
    transposed into ``work``, in a loop along the outputs. Then the bias is added."""
    n, fan_in = x.shape
    fan_out = weight.shape[0]
    rows, inputs, outputs = np.uint64(n), np.uint64(fan_in), np.uint64(fan_out)
    if fan_in >= NARROW or n * fan_in * fan_out > SMALL_PRODUCT:
        np.dot(x, weight.T, out)
    else:
        for k in range(inputs):
            start = k * outputs
            for j in range(outputs):
                work[start + j] = weight[j, k]
        # The first two terms in one pass, the bias with the last: the same roundings
        # as one pass per term and one for the bias, fewer loads and stores.
        one, two = np.uint64(1), np.uint64(2)
        last = inputs - one
        paired = np.uint64(0)
        if inputs == two:  # two rows per pass: W and b loaded once for both
            paired = rows - rows % two
            for i in range(np.uint64(0), paired, two):
                a, c = x[i, 0], x[i, 1]
                d, e = x[i + one, 0], x[i + one, 1]
                for j in range(outputs):
                    w, v, b = work[j], work[outputs + j], bias[j]
                    out[i, j] = (a * w + c * v) + b
                    out[i + one, j] = (d * w + e * v) + b
        for i in range(paired, rows):
            a = x[i, 0]
            if inputs == one:
                for j in range(outputs):
                    out[i, j] = a * work[j] + bias[j]
                continue
            c = x[i, 1]
            if inputs == two:
                for j in range(outputs):
                    out[i, j] = (a * work[j] + c * work[outputs + j]) + bias[j]
                continue
            for j in range(outputs):
                out[i, j] = a * work[j] + c * work[outputs + j]
            for k in range(two, last):
                a = x[i, k]
                start = k * outputs
                for j in range(outputs):
                    out[i, j] += a * work[start + j]
            a = x[i, last]
            start = last * outputs
            for j in range(outputs):
                out[i, j] = (out[i, j] + a * work[start + j]) + bias[j]
        return
    for i in range(rows):
        for j in range(outputs):
            out[i, j] += bias[j]


@njit
def _linear_backward(grad_output, x, weight, weight_grad, bias_grad, grad_input, work,
                     totals):  # fmt: skip
    """``dW = g^T x``, ``db = column sums of g`` (accumulated in float64, in
    ``totals``, at least out elements) and, unless ``grad_input`` is None, ``dx = g W``;
    g (n, out), x (n, in), W (out, in); ``work`` as for :func:`_linear_forward`. BLAS,
    but for a narrow input or output (see :data:`NARROW`): then each element of dW sums
    its terms over the samples in order (in a loop along the outputs, in ``work``
    transposed, for a narrow input; else along the inputs), and each element of dx its
    terms over the outputs in order (in a loop along the inputs)."""
    n, fan_out = grad_output.shape
    fan_in = x.shape[1]
    rows, inputs, outputs = np.uint64(n), np.uint64(fan_in), np.uint64(fan_out)
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    small = n * fan_in * fan_out <= SMALL_PRODUCT
    if not small or (fan_in >= NARROW and fan_out >= NARROW):
        np.dot(grad_output.T, x, weight_grad)
    elif fan_in >= NARROW:
        # Few outputs: along the inputs, four samples per pass.
        for j in range(outputs):
            a = grad_output[0, j]
            for k in range(inputs):
                weight_grad[j, k] = a * x[0, k]
            i = one
            while i + three < rows:
                a, b = grad_output[i, j], grad_output[i + one, j]
                c, d = grad_output[i + two, j], grad_output[i + three, j]
                for k in range(inputs):
                    weight_grad[j, k] = (
                        ((weight_grad[j, k] + a * x[i, k]) + b * x[i + one, k])
                        + c * x[i + two, k]
                    ) + d * x[i + three, k]
                i += four
            for row in range(i, rows):
                a = grad_output[row, j]
                for k in range(inputs):
                    weight_grad[j, k] += a * x[row, k]
    else:
        # Four samples per pass (the same roundings as one pass per sample).
        for k in range(inputs):
            start = k * outputs
            a = x[0, k]
            for j in range(outputs):
                work[start + j] = a * grad_output[0, j]
            i = one
            while i + three < rows:
                a, b, c, d = x[i, k], x[i + one, k], x[i + two, k], x[i + three, k]
                for j in range(outputs):
                    work[start + j] = (
                        ((work[start + j] + a * grad_output[i, j])
                         + b * grad_output[i + one, j])
                        + c * grad_output[i + two, j]
                    ) + d * grad_output[i + three, j]  # fmt: skip
                i += four
            for row in range(i, rows):
                a = x[row, k]
                for j in range(outputs):
                    work[start + j] += a * grad_output[row, j]
        # Transposed in W's element order k, j (a strided store per element, which
        # vectorizes; the j, k order does not).
        flat_grad = flat_view(weight_grad)
        for k in range(inputs):
            start = k * outputs
            for j in range(outputs):
                flat_grad[j * inputs + k] = work[start + j]
    for j in range(outputs):
        totals[j] = 0.0
    i = np.uint64(0)
    while i + three < rows:
        for j in range(outputs):
            totals[j] = (
                ((totals[j] + grad_output[i, j]) + grad_output[i + one, j])
                + grad_output[i + two, j]
            ) + grad_output[i + three, j]
        i += four
    for row in range(i, rows):
        for j in range(outputs):
            totals[j] += grad_output[row, j]
    for j in range(outputs):
        bias_grad[j] = totals[j]
    if grad_input is None:
        return
    if fan_out >= NARROW or not small:
        np.dot(grad_output, weight, grad_input)
        return
    for i in range(rows):
        value = grad_output[i, 0]
        for k in range(inputs):
            grad_input[i, k] = value * weight[0, k]
        for j in range(one, outputs):
            value = grad_output[i, j]
            for k in range(inputs):
                grad_input[i, k] += value * weight[j, k]


# Activations loop over the elements of their C-contiguous 2-d arrays as one run (the
# rows of a batch are not short loops each with its own remainder).


@njit
def _relu(x, out):
    """``out = max(x, 0)`` elementwise."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        out[i] = max(x[i], 0.0)


@njit
def _relu_backward(grad_output, out, grad_input):
    """``grad_input = grad_output * (out > 0)`` (``out`` is the ReLU's output): a select
    of values loaded unconditionally, which vectorizes (a conditional load becomes a
    branch per element)."""
    grad_output, out, grad_input = (
        flat_view(grad_output),
        flat_view(out),
        flat_view(grad_input),
    )
    zero = grad_input.dtype.type(0)
    for i in range(np.uint64(out.size)):
        value = grad_output[i]
        grad_input[i] = value if out[i] > 0 else zero


@njit
def sigmoid(x, out):
    """``out = 1 / (1 + exp(-x))`` elementwise, from ``e = exp(-|x|)`` so that no
    exponential overflows: ``1 / (1 + e)`` for x >= 0, ``e / (1 + e)`` below."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        e = math.exp(-abs(x[i]))
        out[i] = 1 / (1 + e) if x[i] >= 0 else e / (1 + e)


@njit
def _sigmoid_backward(grad_output, out, grad_input):
    """``grad_input = grad_output * out * (1 - out)`` (``out`` is the sigmoid)."""
    grad_output, out, grad_input = (
        flat_view(grad_output),
        flat_view(out),
        flat_view(grad_input),
    )
    for i in range(np.uint64(out.size)):
        grad_input[i] = grad_output[i] * out[i] * (1 - out[i])


@njit
def _tanh(x, out):
    """``out = tanh(x)`` elementwise."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        out[i] = math.tanh(x[i])


@njit
def _tanh_backward(grad_output, out, grad_input):
    """``grad_input = grad_output * (1 - out**2)`` (``out`` is the tanh)."""
    grad_output, out, grad_input = (
        flat_view(grad_output),
        flat_view(out),
        flat_view(grad_input),
    )
    for i in range(np.uint64(out.size)):
        grad_input[i] = grad_output[i] * (1 - out[i] * out[i])


_BUFFERS = ("_output", "_grad_input", "_input", "_out", "_work", "_totals")
"""Attributes that hold a batch's data: a layer's workspace, never pickled."""


class Layer(ABC):
    """Base class: the protocol of the module docstring; no parameters by default."""

    _rows = 0
    """Batch rows the buffers hold (0: not allocated yet)."""

    def parameters(self) -> list[np.ndarray]:
        """The live parameter arrays (none here)."""
        return []

    def gradients(self) -> list[np.ndarray]:
        """The live d loss / d parameter arrays, matching :meth:`parameters`."""
        return []

    def get_config(self) -> dict:
        """The keyword arguments that rebuild this layer (its weights apart)."""
        return {}

    @classmethod
    def parameter_count(cls, config: dict) -> int:
        """How many parameters the layer built from ``config`` holds, computed without
        building it (none here)."""
        return 0

    def bind(self, parameters: list[np.ndarray], gradients: list[np.ndarray]) -> None:
        """Adopt ``parameters`` and ``gradients`` (same shapes and order as this layer's,
        the parameters holding the same values) as the layer's own arrays; a network binds
        views of its flat buffers. A layer without parameters has nothing to adopt."""

    @abstractmethod
    def allocate(
        self, rows: int, input_shape: tuple, dtype: np.dtype, input_grad: bool
    ) -> tuple:
        """Size the buffers for ``rows`` samples of ``input_shape``; return the output shape."""

    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The output for the batch ``x``, in the layer's buffer."""

    @abstractmethod
    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """d loss / d input from d loss / d output; fills ``gradients()``."""

    def __getstate__(self) -> dict:
        """Pickle without the buffers (scratch space, allocated again on first use)."""
        state = {k: v for k, v in vars(self).items() if k not in _BUFFERS}
        state["_rows"] = 0
        return state

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({options})"


class Linear(Layer):
    """Fully connected layer ``y = x W^T + b`` (``torch.nn.Linear``, Keras' ``Dense``).

    Shapes: x (n, in_features), W (out_features, in_features), b (out_features,),
    y (n, out_features). Backward, with ``g = dL/dy`` of shape (n, out_features)::

        dL/dW = g^T x        dL/db = sum over rows of g        dL/dx = g W

    ``init``: ``"kaiming_uniform"`` (PyTorch's default) draws W and b from
    U(-1/sqrt(in_features), 1/sqrt(in_features)); ``"glorot_uniform"`` (Keras' default) draws
    W from U(-a, a) with a = sqrt(6 / (in_features + out_features)) and sets b = 0. Draws
    are made in float64 from ``seed`` (an int, a ``numpy.random.Generator`` or None) and
    rounded to ``dtype`` (float32 or float64).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "kaiming_uniform",
        seed: int | np.random.Generator | None = None,
        dtype: type | np.dtype = np.float32,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear needs positive sizes, got ({in_features}, {out_features})"
            )
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.in_features, self.out_features, self.init = (
            int(in_features),
            int(out_features),
            init,
        )
        rng = np.random.default_rng(seed)
        shape = (self.out_features, self.in_features)
        if init == "kaiming_uniform":
            bound = 1 / math.sqrt(in_features)
            weight = rng.uniform(-bound, bound, size=shape)
            bias = rng.uniform(-bound, bound, size=out_features)
        else:
            bound = math.sqrt(6 / (in_features + out_features))
            weight = rng.uniform(-bound, bound, size=shape)
            bias = np.zeros(out_features)
        self.weight = weight.astype(dtype)
        self.bias = bias.astype(dtype)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias_grad = np.zeros_like(self.bias)

    def parameters(self) -> list[np.ndarray]:
        return [self.weight, self.bias]

    def gradients(self) -> list[np.ndarray]:
        return [self.weight_grad, self.bias_grad]

    def bind(self, parameters, gradients):
        self.weight, self.bias = parameters
        self.weight_grad, self.bias_grad = gradients

    def get_config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init,
            "dtype": self.weight.dtype.name,
        }

    @classmethod
    def parameter_count(cls, config: dict) -> int:
        """``out_features * (in_features + 1)``: the weight and the bias."""
        sizes = config["in_features"], config["out_features"]
        if not all(isinstance(size, int) and size >= 1 for size in sizes):
            raise ValueError(f"Linear needs positive integer sizes, got {sizes}")
        return sizes[1] * (sizes[0] + 1)

    def allocate(self, rows, input_shape, dtype, input_grad):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expects "
                f"{self.in_features} features per sample, got shape {tuple(input_shape)}"
            )
        self._rows = rows
        self._output = np.empty((rows, self.out_features), dtype)
        self._grad_input = (
            np.empty((rows, self.in_features), dtype) if input_grad else None
        )
        self._work = np.empty(self.in_features * self.out_features, dtype)
        self._totals = np.empty(self.out_features)
        return (self.out_features,)

    forward_kernel = staticmethod(_linear_forward)
    backward_kernel = staticmethod(_linear_backward)

    def forward(self, x):
        n = x.shape[0]
        if n > self._rows:
            self.allocate(n, x.shape[1:], x.dtype, True)
        out = self._output[:n]
        self.forward_kernel(x, self.weight, self.bias, out, self._work)
        self._input = x
        return out

    def backward(self, grad_output):
        grad_input = self._grad_input
        if grad_input is not None:
            grad_input = grad_input[: grad_output.shape[0]]
        self.backward_kernel(
            grad_output,
            self._input,
            self.weight,
            self.weight_grad,
            self.bias_grad,
            grad_input,
            self._work,
            self._totals,
        )
        return grad_input


class _Elementwise(Layer):
    """An activation ``y = f(x)``, elementwise, whose derivative is a function of ``y``:
    ``dL/dx = dL/dy * f'(x)``. Subclasses name the two Numba kernels
    ``forward_kernel(x, out)`` and ``backward_kernel(grad_output, out, grad_input)`` (2-d
    C-contiguous arrays)."""

    def allocate(self, rows, input_shape, dtype, input_grad):
        self._rows = rows
        features = math.prod(input_shape)
        self._output = np.empty((rows, features), dtype)
        self._grad_input = np.empty((rows, features), dtype) if input_grad else None
        return tuple(input_shape)

    def forward(self, x):
        n = x.shape[0]
        if n > self._rows:
            self.allocate(n, x.shape[1:], x.dtype, True)
        out = self._output[:n]
        self.forward_kernel(np.ascontiguousarray(x).reshape(n, -1), out)
        self._out = out
        return out.reshape(x.shape) if x.ndim != 2 else out

    def backward(self, grad_output):
        if self._grad_input is None:
            return None
        n = grad_output.shape[0]
        grad_input = self._grad_input[:n]
        flat_grad = np.ascontiguousarray(grad_output).reshape(n, -1)
        self.backward_kernel(flat_grad, self._out, grad_input)
        return (
            grad_input.reshape(grad_output.shape)
            if grad_output.ndim != 2
            else grad_input
        )


class ReLU(_Elementwise):
    """``y = max(x, 0)``; ``dL/dx = dL/dy * (y > 0)`` (``torch.nn.ReLU``). Any shape."""

    forward_kernel = staticmethod(_relu)
    backward_kernel = staticmethod(_relu_backward)


class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``, overflow-free; ``dL/dx = dL/dy * y (1 - y)``
    (``torch.nn.Sigmoid``). Any shape. As a network's last layer it makes the network's
    output a probability, trained with BCE on probabilities."""

    forward_kernel = staticmethod(sigmoid)
    backward_kernel = staticmethod(_sigmoid_backward)


class Tanh(_Elementwise):
    """``y = tanh(x)``; ``dL/dx = dL/dy * (1 - y**2)`` (``torch.nn.Tanh``). Any shape."""

    forward_kernel = staticmethod(_tanh)
    backward_kernel = staticmethod(_tanh_backward)


class Flatten(Layer):
    """(n, d1, d2, ...) -> (n, d1 * d2 * ...), a view when the input is C-contiguous
    (``torch.nn.Flatten``); the backward pass reshapes the gradient back."""

    def allocate(self, rows, input_shape, dtype, input_grad):
        return (math.prod(input_shape),)

    def forward(self, x):
        self._input_shape = x.shape[1:]
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        return grad_output.reshape((grad_output.shape[0], *self._input_shape))
