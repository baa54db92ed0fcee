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

Each layer type's math is written once, as the two functions of its *compiled form*
(``forward_form`` and ``backward_form``, of one signature for every type: see "the
compiled form of a layer" below), which its ``forward`` and ``backward`` call compiled and
which compiled training (:mod:`numbce.nn.compiled`) inlines into its epochs. A type is
declared in one place, its class, and registered with :func:`register` (:data:`LAYERS`):
nothing else in numbce names it. :class:`Flatten` is the identity on (n, features) data;
:class:`Dropout` draws its mask from a key that ``fit`` passes to ``forward`` in training.

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

__all__ = [
    "LAYERS",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "register",
]

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


@intrinsic
def matrix_view(typingctx, flat, offset, rows, columns):
    """The C-contiguous (rows, columns) array at element ``offset`` of the C-contiguous
    ``flat``, without reference counting (no bounds check: the caller sizes ``flat``);
    no other layout compiles."""
    if flat.layout != "C":
        return None
    result = nbtypes.Array(flat.dtype, 2, "C")
    return result(flat, offset, rows, columns), view_codegen(flat, result)


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
    ``totals``, at least out elements) and, unless ``grad_input`` has no rows,
    ``dx = g W``;
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
    if grad_input.shape[0] == 0:
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


# -- the compiled form of a layer --------------------------------------------------------
# Every layer type with a compiled form declares two functions of one signature, which its
# Python ``forward``/``backward`` and compiled training (numbce.nn.compiled) both call:
#
#   forward(x, out, params, work, work64, options, key)
#   backward(grad_output, x, out, params, grads, grad_input, work, work64, options)
#
# x, out, grad_output, grad_input: C-contiguous (n, features) matrices (grad_input with no
# rows: d loss / d input is not wanted); params, grads: the layer's segment of the flat
# parameter and gradient buffers; work (of the dtype) and work64 (float64): the layer's
# own workspace, kept from its forward to its backward pass; options: the layer's
# ``options()`` as float64; key: the random key of a training step (>= 0), or NO_NOISE.

_INLINE = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": False,
    "forceinline": True,
}
"""Functions the compiled forms call: inlined by LLVM (no call, no reference counts)."""

NO_NOISE = -1
"""The ``key`` of a forward pass outside training: random layers are the identity."""


def inlined(kernel):
    """The Python function of ``kernel`` (a Numba dispatcher), compiled to be inlined into
    its caller: the same code, without a call's reference counts on every array argument
    (atomic operations, a fifth of a small step's time)."""
    return numba.njit(**_INLINE)(kernel.py_func)


_linear_forward_inline = inlined(_linear_forward)
_linear_backward_inline = inlined(_linear_backward)


def _linear_forward_form(x, out, params, work, work64, options, key):
    """:func:`_linear_forward` on the layer's segment: W (out, in), then b (out,)."""
    fan_in, fan_out = x.shape[1], out.shape[1]
    weight = matrix_view(params, 0, fan_out, fan_in)
    bias = vector_view(params, fan_in * fan_out, fan_out)
    _linear_forward_inline(x, weight, bias, out, work)


def _linear_backward_form(grad_output, x, out, params, grads, grad_input, work, work64,
                          options):  # fmt: skip
    """:func:`_linear_backward` on the layer's segments (``work64``: the bias totals)."""
    fan_in, fan_out = x.shape[1], out.shape[1]
    weight = matrix_view(params, 0, fan_out, fan_in)
    weight_grad = matrix_view(grads, 0, fan_out, fan_in)
    bias_grad = vector_view(grads, fan_in * fan_out, fan_out)
    _linear_backward_inline(grad_output, x, weight, weight_grad, bias_grad, grad_input,
                            work, work64)  # fmt: skip


# Activations loop over the elements of their C-contiguous 2-d arrays as one run (the
# rows of a batch are not short loops each with its own remainder); a select of values
# loaded unconditionally vectorizes (a conditional load becomes a branch per element).


def _relu(x, out, params, work, work64, options, key):
    """``out = max(x, 0)`` elementwise."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        out[i] = max(x[i], 0.0)


def _relu_backward(grad_output, x, out, params, grads, grad_input, work, work64,
                   options):  # fmt: skip
    """``grad_input = grad_output * (out > 0)``."""
    g, out, grad = flat_view(grad_output), flat_view(out), flat_view(grad_input)
    zero = grad.dtype.type(0)
    for i in range(np.uint64(grad.size)):
        value = g[i]
        grad[i] = value if out[i] > 0 else zero


def _leaky_relu(x, out, params, work, work64, options, key):
    """``out = x if x > 0 else x * slope`` elementwise (the slope in the dtype)."""
    x, out = flat_view(x), flat_view(out)
    slope = out.dtype.type(options[0])
    for i in range(np.uint64(x.size)):
        value = x[i]
        out[i] = value if value > 0 else value * slope


def _leaky_relu_backward(grad_output, x, out, params, grads, grad_input, work, work64,
                         options):  # fmt: skip
    """``grad_input = grad_output if x > 0 else grad_output * slope``."""
    g, x, grad = flat_view(grad_output), flat_view(x), flat_view(grad_input)
    slope = grad.dtype.type(options[0])
    for i in range(np.uint64(grad.size)):
        value = g[i]
        grad[i] = value if x[i] > 0 else value * slope


def _sigmoid(x, out, params, work, work64, options, key):
    """``out = 1 / (1 + exp(-x))`` elementwise, from ``e = exp(-|x|)`` so that no
    exponential overflows: ``1 / (1 + e)`` for x >= 0, ``e / (1 + e)`` below."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        e = math.exp(-abs(x[i]))
        out[i] = 1 / (1 + e) if x[i] >= 0 else e / (1 + e)


def _sigmoid_backward(grad_output, x, out, params, grads, grad_input, work, work64,
                      options):  # fmt: skip
    """``grad_input = grad_output * out * (1 - out)`` (``out`` is the sigmoid)."""
    g, out, grad = flat_view(grad_output), flat_view(out), flat_view(grad_input)
    for i in range(np.uint64(grad.size)):
        grad[i] = g[i] * out[i] * (1 - out[i])


def _tanh(x, out, params, work, work64, options, key):
    """``out = tanh(x)`` elementwise."""
    x, out = flat_view(x), flat_view(out)
    for i in range(np.uint64(x.size)):
        out[i] = math.tanh(x[i])


def _tanh_backward(grad_output, x, out, params, grads, grad_input, work, work64,
                   options):  # fmt: skip
    """``grad_input = grad_output * (1 - out**2)`` (``out`` is the tanh)."""
    g, out, grad = flat_view(grad_output), flat_view(out), flat_view(grad_input)
    for i in range(np.uint64(grad.size)):
        grad[i] = g[i] * (1 - out[i] * out[i])


@numba.njit(**_INLINE)
def _mix(z):
    """SplitMix64's finalizer: a bijection of the uint64 ``z`` whose outputs pass
    BigCrush as a counter-based generator."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_GOLDEN = 0x9E3779B97F4A7C15


@njit
def step_key(seed, step, layer):
    """The random key (>= 0) of layer ``layer`` at training step ``step`` of a fit whose
    seed (drawn from the fit's generator) is ``seed``: the same in both training loops."""
    z = _mix(np.uint64(seed) + np.uint64(step) * np.uint64(_GOLDEN))
    return np.int64(_mix(z + np.uint64(layer) * np.uint64(_GOLDEN)) >> np.uint64(1))


def _dropout(x, out, params, work, work64, options, key):
    """Inverted dropout (``torch.nn.functional.dropout``): with ``key`` >= 0, element i
    is kept where ``u_i >= p``, ``u_i`` uniform in [0, 1) from 53 bits of
    ``mix(key + i * golden)``, and ``out = x * f`` with ``f = 1 / (1 - p)`` (rounded to
    the dtype) where kept, else 0, ``f`` kept in ``work`` for the backward pass; with
    NO_NOISE, ``out = x``."""
    x, out = flat_view(x), flat_view(out)
    size = np.uint64(x.size)
    if key < 0:
        for i in range(size):
            out[i] = x[i]
        return
    real = out.dtype.type
    p, scale, zero = options[0], real(1.0) / real(1.0 - options[0]), real(0.0)
    start, unit = np.uint64(key), 2.0**-53
    for i in range(size):
        bits = _mix(start + i * np.uint64(_GOLDEN)) >> np.uint64(11)
        factor = scale if np.float64(bits) * unit >= p else zero
        work[i] = factor
        out[i] = x[i] * factor


def _dropout_backward(grad_output, x, out, params, grads, grad_input, work, work64,
                      options):  # fmt: skip
    """``grad_input = grad_output * f`` (the forward pass's factors)."""
    g, grad = flat_view(grad_output), flat_view(grad_input)
    for i in range(np.uint64(grad.size)):
        grad[i] = g[i] * work[i]


# -- layers -----------------------------------------------------------------------------

_BUFFERS = ("_output", "_grad_input", "_input", "_out", "_work", "_work64", "_totals")
"""Attributes that hold a batch's data: a layer's workspace, never pickled."""

LAYERS: dict[str, type[Layer]] = {}
"""Every layer type with a compiled form, by class name (a saved network names them): its
kind in compiled training is its position here."""


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: declare ``cls`` a layer type (saved and loaded by name; trained
    compiled where it has a compiled form, ``cls.forward_form`` and
    ``cls.backward_form``). Its kernels ``forward_kernel`` and ``backward_kernel`` are
    the forms compiled (cached), called by its Python ``forward`` and ``backward``."""
    if cls.forward_form is not None:
        cls.forward_kernel = staticmethod(njit(cls.forward_form))
        cls.backward_kernel = staticmethod(njit(cls.backward_form))
    LAYERS[cls.__name__] = cls
    return cls


class Layer(ABC):
    """Base class: the protocol of the module docstring; no parameters by default.

    A layer type's declaration, besides its Python methods: ``forward_form`` and
    ``backward_form`` (the two functions of the signature above; None: no compiled form,
    trained in the Python loop only), ``identity`` (no computation: the input is the
    output, as :class:`Flatten`), ``random`` (its forward pass takes a random key in
    training), and the methods :meth:`output_features`, :meth:`workspace` and
    :meth:`options`. A type registered with :func:`register` is saved and loaded by name
    and trained compiled."""

    _rows = 0
    """Batch rows the buffers hold (0: not allocated yet)."""

    forward_form = backward_form = None
    identity = False
    random = False

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

    def output_features(self, features: int) -> int:
        """Output features per sample for ``features`` input features (the same here)."""
        return features

    def workspace(self, rows: int, features: int) -> tuple[int, int]:
        """Elements of the dtype and of float64 the compiled form's ``work`` and
        ``work64`` hold for ``rows`` samples of ``features`` (none here)."""
        return 0, 0

    def options(self) -> tuple[float, ...]:
        """The compiled form's ``options`` (none here)."""
        return ()

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


@register
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

    forward_form = staticmethod(_linear_forward_form)
    backward_form = staticmethod(_linear_backward_form)

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

    def output_features(self, features):
        return self.out_features

    def workspace(self, rows, features):
        """W transposed (in * out) and the bias gradient's float64 totals (out)."""
        return self.in_features * self.out_features, self.out_features

    def allocate(self, rows, input_shape, dtype, input_grad):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expects "
                f"{self.in_features} features per sample, got shape {tuple(input_shape)}"
            )
        self._rows = rows
        self._output = np.empty((rows, self.out_features), dtype)
        self._grad_input = np.empty(
            (rows if input_grad else 0, self.in_features), dtype
        )
        work, work64 = self.workspace(rows, self.in_features)
        self._work, self._totals = np.empty(work, dtype), np.empty(work64)
        return (self.out_features,)

    def forward(self, x):
        n = x.shape[0]
        if n > self._rows:
            self.allocate(n, x.shape[1:], x.dtype, True)
        out = self._output[:n]
        _linear_forward(x, self.weight, self.bias, out, self._work)
        self._input = x
        return out

    def backward(self, grad_output):
        grad_input = self._grad_input[: grad_output.shape[0]]
        _linear_backward(
            grad_output,
            self._input,
            self.weight,
            self.weight_grad,
            self.bias_grad,
            grad_input,
            self._work,
            self._totals,
        )
        return grad_input if grad_input.shape[0] else None


class _Elementwise(Layer):
    """A layer ``y = f(x)`` of any input shape, elementwise on its (n, features) view,
    computed by its compiled form (``forward_form``/``backward_form``), which gets the
    input and the output."""

    def allocate(self, rows, input_shape, dtype, input_grad):
        self._rows = rows
        features = math.prod(input_shape)
        self._output = np.empty((rows, features), dtype)
        self._grad_input = np.empty((rows if input_grad else 0, features), dtype)
        work, work64 = self.workspace(rows, features)
        self._work, self._work64 = np.empty(work, dtype), np.empty(work64)
        self._options = np.array(self.options(), dtype=np.float64)
        return tuple(input_shape)

    def forward(self, x, key: int = NO_NOISE) -> np.ndarray:
        n = x.shape[0]
        if n > self._rows:
            self.allocate(n, x.shape[1:], x.dtype, True)
        out = self._output[:n]
        flat_x = np.ascontiguousarray(x).reshape(n, -1)
        self.forward_kernel(flat_x, out, self._work, self._work, self._work64,
                            self._options, key)  # fmt: skip
        self._input, self._out = flat_x, out
        return out.reshape(x.shape) if x.ndim != 2 else out

    def backward(self, grad_output):
        if self._grad_input.shape[0] == 0:
            return None
        n = grad_output.shape[0]
        grad_input = self._grad_input[:n]
        flat_grad = np.ascontiguousarray(grad_output).reshape(n, -1)
        self.backward_kernel(flat_grad, self._input, self._out, self._work, self._work,
                             grad_input, self._work, self._work64, self._options)  # fmt: skip
        return (
            grad_input.reshape(grad_output.shape)
            if grad_output.ndim != 2
            else grad_input
        )


@register
class ReLU(_Elementwise):
    """``y = max(x, 0)``; ``dL/dx = dL/dy * (y > 0)`` (``torch.nn.ReLU``). Any shape."""

    forward_form = staticmethod(_relu)
    backward_form = staticmethod(_relu_backward)


@register
class LeakyReLU(_Elementwise):
    """``y = x`` for x > 0, else ``negative_slope * x``; ``dL/dx = dL/dy`` for x > 0,
    else ``negative_slope * dL/dy`` (``torch.nn.LeakyReLU``: the slope is rounded to the
    dtype, the same bits). Any shape."""

    forward_form = staticmethod(_leaky_relu)
    backward_form = staticmethod(_leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01) -> None:
        if not math.isfinite(negative_slope):
            raise ValueError(
                f"negative_slope must be a finite number, got {negative_slope!r}"
            )
        self.negative_slope = float(negative_slope)

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def options(self):
        return (self.negative_slope,)


@register
class Sigmoid(_Elementwise):
    """``y = 1 / (1 + exp(-x))``, overflow-free; ``dL/dx = dL/dy * y (1 - y)``
    (``torch.nn.Sigmoid``). Any shape. As a network's last layer it makes the network's
    output a probability, trained with BCE on probabilities."""

    forward_form = staticmethod(_sigmoid)
    backward_form = staticmethod(_sigmoid_backward)


@register
class Tanh(_Elementwise):
    """``y = tanh(x)``; ``dL/dx = dL/dy * (1 - y**2)`` (``torch.nn.Tanh``). Any shape."""

    forward_form = staticmethod(_tanh)
    backward_form = staticmethod(_tanh_backward)


@register
class Dropout(_Elementwise):
    """Inverted dropout (``torch.nn.Dropout``): in training, each element is zeroed with
    probability ``p`` and the others multiplied by ``1 / (1 - p)`` (rounded to the
    dtype), so that the expected output is the input; ``dL/dx = dL/dy`` times the same
    factor. Outside training (``predict``, ``evaluate``, validation) the identity. Any
    shape.

    The draws are a counter-based generator (SplitMix64) keyed by a seed that ``fit``
    draws from its generator, the step and the layer's position: the same ``fit(seed=)``
    drops the same elements in both training loops, on any machine."""

    forward_form = staticmethod(_dropout)
    backward_form = staticmethod(_dropout_backward)
    random = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)

    def get_config(self) -> dict:
        return {"p": self.p}

    def options(self):
        return (self.p,)

    def workspace(self, rows, features):
        """The factor of every element of the batch (0 or ``1 / (1 - p)``)."""
        return rows * features, 0


@register
class Flatten(Layer):
    """(n, d1, d2, ...) -> (n, d1 * d2 * ...), a view when the input is C-contiguous
    (``torch.nn.Flatten``); the backward pass reshapes the gradient back."""

    identity = True

    def allocate(self, rows, input_shape, dtype, input_grad):
        return (math.prod(input_shape),)

    def forward(self, x):
        self._input_shape = x.shape[1:]
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output):
        return grad_output.reshape((grad_output.shape[0], *self._input_shape))


_NOTHING = np.empty(0)


def sigmoid(x: np.ndarray, out: np.ndarray) -> None:
    """``out = sigmoid(x)`` for the C-contiguous (n, C) ``x`` (the layer's kernel)."""
    Sigmoid.forward_kernel(x, out, out, out, _NOTHING, _NOTHING, NO_NOISE)
