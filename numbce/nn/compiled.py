"""Compiled training: whole epochs of a network of supported layers in one Numba call, and
the kernels the Python training loop shares with it.

:func:`plan` turns a network, its optimizer and the data of a ``fit`` into a
:class:`CompiledFit` when every part has a compiled form, else returns None (``fit`` then
runs its Python loop):

* the layers are :class:`~numbce.nn.layers.Linear`, :class:`~numbce.nn.layers.ReLU`,
  :class:`~numbce.nn.layers.Sigmoid`, :class:`~numbce.nn.layers.Tanh` and
  :class:`~numbce.nn.layers.Flatten` (exactly these classes: a subclass may redefine its
  math); neither the network's class nor the network redefines the forward pass,
  backpropagation or the loss (``loss_function`` is numbce's own);
* the optimizer is exactly :class:`~numbce.optim.Adam`, :class:`~numbce.optim.AdamW` or
  :class:`~numbce.optim.SGD`, built on the network's ``parameters()`` (its flat buffer).

Any registered loss family, sample, class and label weights, ``l2``, learning-rate
schedules (evaluated in Python before the epochs, one value per step), validation data
and shuffling are covered. One call of :func:`train_epochs` runs an epoch (or, when
nothing but the built-in History listens between epochs, many): gather each batch in
the drawn order, forward through the layers' own kernels
(``forward_kernel``/``backward_kernel`` of :mod:`numbce.nn.layers`: the one definition of
their math), the loss family's per-element formulas (``numbce.cpu._element``, the
function the loss kernels compile), backpropagation, the optimizer's own update kernel,
the epoch's metrics and the validation metrics, or a copy of the epoch's parameters
whose validation metrics :func:`validate_epochs` computes on a second thread while the
next call trains.

Same bits as the Python loop: every operation is the one the Python loop performs, on
arrays of the same shapes and layouts, in the same order: the same layer and optimizer
kernels, the loss's value reduced as ``numbce.cpu`` reduces it (per block of
``numbce._config.BLOCK`` elements, by ``numbce.cpu._tree_sum`` itself, the blocks'
partial sums added exactly as ``math.fsum``), its
gradient scaled by ``1 / size`` rounded to the dtype, the mean loss rounded to the dtype,
the ``l2`` penalty of :func:`add_l2`. So the parameters, the optimizer state and every
figure of the History are equal bit for bit (``tests/test_nn_compiled.py``). One
difference: a NaN reaching a loss on probabilities (parameters that became NaN inside an
epoch) raises FloatingPointError here, where the Python loop's loss kernel raises its
ValueError about the input's range.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pathlib
import types

import numba
import numpy as np
from numba.core import types as nbtypes
from numba.extending import intrinsic, overload

from numbce import _config, _validate, cpu
from numbce._cache import njit
from numbce.losses import FAMILIES
from numbce.nn.layers import (
    Flatten,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
    borrowed_view,
    flat_view,
    vector_view,
    view_codegen,
)
from numbce.optim import SGD, Adam, AdamW, _adam_kernel, _sgd_update

__all__ = ["CompiledFit", "add_l2", "count_correct", "gather_rows", "plan"]

_INLINE = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": False,
    "forceinline": True,
}
"""Functions the epochs call: inlined by LLVM (see :mod:`numbce._vectormath`)."""

LINEAR, IDENTITY, RELU, SIGMOID, TANH = range(5)
"""Layer kinds of the compiled network's table."""

LAYER_KINDS = {
    Linear: LINEAR,
    Flatten: IDENTITY,
    ReLU: RELU,
    Sigmoid: SIGMOID,
    Tanh: TANH,
}
"""The layer classes training compiles, and their kind."""

KIND, WIDTH_IN, WIDTH_OUT, PARAMS, INPUT, OUTPUT, GRAD_IN, GRAD_OUT = range(8)
"""Columns of the layer table: kind, input and output features, offset of the weight in
the flat parameters (Linear), offsets of the input and output in the activations
workspace (-1: the batch itself), offsets of d loss / d input (-1: not computed) and of
d loss / d output in the gradients workspace. Workspace segments hold ``rows`` rows."""

ADAM, ADAM_AMSGRAD, PLAIN_SGD = range(3)
"""Optimizer kinds."""

(L2, THRESHOLD, BATCH_SIZE, FIRST, WEIGHTING, OPTIMIZER, BETA1, BETA2, EPS,
 WEIGHT_DECAY, DECOUPLED, MOMENTUM, DAMPENING, NESTEROV, STEP0, ROWS,
 SETTINGS) = range(17)  # fmt: skip
"""Slots of the float64 settings array (SETTINGS: their count)."""

SAMPLE_WEIGHT, LABEL_WEIGHT = 1, 2
"""Bits of the weighting setting."""

OK, BAD_LOSS, BAD_PARAMETERS = range(3)
"""Statuses a compiled run returns."""

MAX_ORDER_ELEMENTS = 1 << 22
"""Most sample indices (8 bytes each) in one block of epochs' orders drawn ahead, and
most parameter values in one of the two buffers of epoch snapshots whose validation runs
beside training (see ``numbce.nn.training._compiled_epochs``)."""


_SOURCES = ("compiled.py", "layers.py", "../optim.py")
_SOURCE_HASH = hashlib.sha1(
    b"".join((pathlib.Path(__file__).parent / name).read_bytes() for name in _SOURCES)
    + cpu._SOURCE_HASH.encode()
).hexdigest()[:12]
"""Numba's cache checks only the file of the function it compiles; the epochs inline and
link code from these files and from the loss kernels' sources, so their hash keys the
cache entry."""


def _cached(function):
    """``function`` compiled, its cache entry named after the sources (it inlines code
    of layers.py, which Numba's cache does not watch)."""
    function.__qualname__ = f"{function.__name__}_{_SOURCE_HASH}"
    return njit(function)


def _inlined(kernel):
    """The Python function of ``kernel`` (a Numba dispatcher), inlined into the caller:
    the same code, without a call's reference counts on every array argument (atomic
    operations, a fifth of a small step's time)."""
    return numba.njit(**_INLINE)(kernel.py_func)


linear_forward = _inlined(Linear.forward_kernel)
linear_backward = _inlined(Linear.backward_kernel)
relu_forward = _inlined(ReLU.forward_kernel)
relu_backward = _inlined(ReLU.backward_kernel)
sigmoid_forward = _inlined(Sigmoid.forward_kernel)
sigmoid_backward = _inlined(Sigmoid.backward_kernel)
tanh_forward = _inlined(Tanh.forward_kernel)
tanh_backward = _inlined(Tanh.backward_kernel)
adam_update, adam_amsgrad_update = map(_inlined, map(_adam_kernel, (False, True)))
sgd_update = _inlined(_sgd_update)


# -- kernels shared with the Python loop ------------------------------------------------


@njit
def gather_rows(X, y, weight, rows, X_out, y_out, weight_out):
    """``X_out[k] = X[rows[k]]``, ``y_out[k] = y[rows[k]]`` and, unless ``weight`` is
    None, ``weight_out[k] = weight[rows[k]]``, for the 2-d ``X``, ``y``, ``weight``."""
    for k in range(rows.size):
        row = rows[k]
        for j in range(X.shape[1]):
            X_out[k, j] = X[row, j]
        for j in range(y.shape[1]):
            y_out[k, j] = y[row, j]
        if weight is not None:
            weight_out[k, 0] = weight[row, 0]


def _one_label_right(scores, y, threshold):
    """The count of ``(scores > threshold) == (y > 0.5)`` over (n, 1) arrays."""
    return int(np.count_nonzero((scores > threshold) == (y > 0.5)))


@overload(_one_label_right, jit_options={"nogil": True, "error_model": "numpy"})
def _one_label_right_compiled(scores, y, threshold):
    if scores.layout == "C" and y.layout == "C":

        def over_elements(scores, y, threshold):  # a loop that vectorizes
            scores, y = flat_view(scores), flat_view(y)
            right = 0
            for i in range(np.uint64(scores.size)):
                right += (scores[i] > threshold) == (y[i] > 0.5)
            return right

        return over_elements

    def over_rows(scores, y, threshold):
        right = 0
        for i in range(scores.shape[0]):
            right += (scores[i, 0] > threshold) == (y[i, 0] > 0.5)
        return right

    return over_rows


@_cached
def count_correct(scores, y, threshold):
    """(samples whose every label is right, labels right) for the predictions
    ``scores > threshold`` against the labels ``y > 0.5``; both arrays (n, C)."""
    if scores.shape[1] == 1:
        right = _one_label_right(scores, y, threshold)
        return right, right
    samples = labels = 0
    for i in range(scores.shape[0]):
        right = 0
        for j in range(scores.shape[1]):
            right += (scores[i, j] > threshold) == (y[i, j] > 0.5)
        labels += right
        samples += right == scores.shape[1]
    return samples, labels


@njit
def add_l2(parameters, gradients, ranges, scale):
    """Add ``scale * w`` to the gradient of every parameter ``w`` in the ``ranges``
    ((start, stop) rows) of the flat buffers; return the float64 sum of the ``w**2``, in
    order."""
    total = 0.0
    for r in range(ranges.shape[0]):
        for i in range(ranges[r, 0], ranges[r, 1]):
            w = parameters[i]
            gradients[i] += scale * w
            total += np.float64(w) * np.float64(w)
    return total


# -- the loss reduction, as numbce.cpu computes it ---------------------------------------


@njit
def exact_sum(values, count, partials):
    """``math.fsum(values[:count])`` (Shewchuk's algorithm and CPython's correction of
    the final rounding; ``partials`` a float64 buffer of ``count + 1``); with an
    infinite or nan value, their plain sum (fsum's inf or nan: the values are losses,
    never -inf). The partial sums of at most ``BLOCK`` float32 or float64 losses cannot
    overflow float64 (fsum's OverflowError)."""
    plain = 0.0
    for k in range(count):
        plain += values[k]
    if not math.isfinite(plain):
        return plain
    used = 0
    for k in range(count):
        x = values[k]
        i = 0
        for j in range(used):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        used = i
        if x != 0.0:
            partials[used] = x
            used += 1
    hi = 0.0
    if used > 0:
        used -= 1
        hi = partials[used]
        lo = 0.0
        while used > 0:
            x = hi
            used -= 1
            y = partials[used]
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                break
        if used > 0 and (
            (lo < 0.0 and partials[used - 1] < 0.0)
            or (lo > 0.0 and partials[used - 1] > 0.0)
        ):
            y = lo * 2.0
            x = hi + y
            if y == x - hi:
                hi = x
    return hi


def _loss_sum(scores, targets, sample_weight, label_weight, pos_weight,
              weighting, params, grad, store_grad, work):  # fmt: skip
    """The float64 sum of the losses of ``scores`` (n, C) against ``targets``, reduced
    as ``numbce.cpu`` reduces a mean; with ``store_grad``, ``grad`` = each element's
    d loss / d score times ``1 / (n C)`` rounded to the dtype (the mean's gradient).
    Weights: ``sample_weight[i, 0]`` (bit SAMPLE_WEIGHT), ``label_weight[j]`` (bit
    LABEL_WEIGHT), their product in the dtype with both, else 1. ``element`` is the
    loss family's formulas, a global of each family's compiled copy (see
    :func:`_train_kernel`)."""
    losses, scratch, partials, fsum_buffer = work
    n, columns = scores.shape
    size = n * columns
    real = scores.dtype.type
    scale = real(1.0 / size)
    one = real(1.0)
    x, t, g = flat_view(scores), flat_view(targets), flat_view(grad)
    block = losses.size
    blocks = (size + block - 1) // block
    row = column = 0  # of element i, counted (a division per element costs more)
    # One label, no weights (every validation pass, the usual training): a loop the
    # compiler vectorizes, as numbce.cpu's kernels (unsigned indices: no wraparound
    # checks); the same formulas, the same bits.
    plain = weighting == 0 and columns == 1
    q = pos_weight[0]
    for b in range(blocks):
        start = b * block
        stop = min(start + block, size)
        if plain:
            first = np.uint64(start)
            for i in range(first, np.uint64(stop)):
                loss, derivative, _ = element(x[i], t[i], one, q, params)  # noqa: F821
                losses[i - first] = loss
                if store_grad:
                    g[i] = derivative * scale
            partials[b] = cpu._tree_sum(losses, stop - start, scratch)
            continue
        for i in range(start, stop):
            if weighting == SAMPLE_WEIGHT | LABEL_WEIGHT:
                w = sample_weight[row, 0] * label_weight[column]
            elif weighting == SAMPLE_WEIGHT:
                w = sample_weight[row, 0]
            elif weighting == LABEL_WEIGHT:
                w = label_weight[column]
            else:
                w = one
            loss, derivative, _ = element(x[i], t[i], w, pos_weight[column], params)  # noqa: F821
            losses[i - start] = loss
            if store_grad:
                g[i] = derivative * scale
            column += 1
            if column == columns:
                row, column = row + 1, 0
        partials[b] = cpu._tree_sum(losses, stop - start, scratch)
    return partials[0] if blocks == 1 else exact_sum(partials, blocks, fsum_buffer)


# -- the network ---------------------------------------------------------------------------
# Every array the epochs touch is a borrowed view (no reference count: see _borrow) made
# where it is used from the layer table's offsets: a step makes no reference count, no
# allocation and no list access.


@intrinsic
def _borrow(typingctx, array):
    """``array`` without its meminfo: the same data, shape and strides, no reference
    counting (each count of a view is otherwise an atomic operation). Used on the epoch
    function's arguments, which its caller keeps alive for the whole call; never
    returned."""

    def codegen(context, builder, signature, args):
        source = context.make_array(array)(context, builder, args[0])
        return borrowed_view(context, builder, array, source, source.data,
                              source.shape, source.strides, array)  # fmt: skip

    return array(array), codegen


@intrinsic
def _matrix(typingctx, flat, offset, rows, columns):
    """The C-contiguous (rows, columns) array at element ``offset`` of the C-contiguous
    ``flat``, without reference counting (no bounds check: the layer table sizes the
    workspaces); no other layout compiles."""
    if flat.layout != "C":
        return None
    result = nbtypes.Array(flat.dtype, 2, "C")
    return result(flat, offset, rows, columns), view_codegen(flat, result)


@numba.njit(**_INLINE)
def _weight(layers, index, flat):
    """The (out, in) weight of Linear layer ``index`` in ``flat`` (parameters or
    gradients)."""
    fan_in, fan_out = layers[index, WIDTH_IN], layers[index, WIDTH_OUT]
    return _matrix(flat, layers[index, PARAMS], fan_out, fan_in)


@numba.njit(**_INLINE)
def _bias(layers, index, flat):
    fan_in, fan_out = layers[index, WIDTH_IN], layers[index, WIDTH_OUT]
    return vector_view(flat, layers[index, PARAMS] + fan_in * fan_out, fan_out)


@numba.njit(**_INLINE)
def _side(layers, index, column, activations, batch, n):
    """The input (``column`` INPUT) or output (OUTPUT) of layer ``index`` for a batch of
    ``n`` rows: in the activations workspace, or the batch itself."""
    offset = layers[index, column]
    if offset < 0:
        return batch
    width = layers[index, WIDTH_IN if column == INPUT else WIDTH_OUT]
    return _matrix(activations, offset, n, width)


@numba.njit(**_INLINE)
def _delta(layers, index, column, deltas, n):
    """d loss / d output (``column`` GRAD_OUT) or d loss / d input (GRAD_IN) of layer
    ``index`` for ``n`` rows."""
    width = layers[index, WIDTH_OUT if column == GRAD_OUT else WIDTH_IN]
    return _matrix(deltas, layers[index, column], n, width)


@numba.njit(**_INLINE)
def _forward(layers, parameters, activations, batch, n, linear_work):
    """Every layer's forward kernel in turn on the ``n`` rows of ``batch``; the scores
    are the last layer's output."""
    for index in range(layers.shape[0]):
        kind = layers[index, KIND]
        if kind == IDENTITY:
            continue
        x = _side(layers, index, INPUT, activations, batch, n)
        out = _side(layers, index, OUTPUT, activations, batch, n)
        if kind == LINEAR:
            linear_forward(x, _weight(layers, index, parameters),
                           _bias(layers, index, parameters), out, linear_work[0])  # fmt: skip
        elif kind == RELU:
            relu_forward(x, out)
        elif kind == SIGMOID:
            sigmoid_forward(x, out)
        elif kind == TANH:
            tanh_forward(x, out)


@numba.njit(**_INLINE)
def _backward(layers, first, parameters, gradients, activations, deltas, batch, n,
              linear_work):  # fmt: skip
    """Backpropagate d loss / d scores (the last layer's GRAD_OUT) from the last layer
    down to the first trainable one (``first``: no d loss / d input there), filling the
    gradients."""
    for index in range(layers.shape[0] - 1, first - 1, -1):
        kind = layers[index, KIND]
        if kind == IDENTITY:
            continue
        grad_output = _delta(layers, index, GRAD_OUT, deltas, n)
        if kind == LINEAR:
            x = _side(layers, index, INPUT, activations, batch, n)
            weight = _weight(layers, index, parameters)
            weight_grad = _weight(layers, index, gradients)
            bias_grad = _bias(layers, index, gradients)
            work, totals = linear_work
            if layers[index, GRAD_IN] < 0:
                linear_backward(grad_output, x, weight, weight_grad, bias_grad, None,
                                work, totals)  # fmt: skip
            else:
                linear_backward(grad_output, x, weight, weight_grad, bias_grad,
                                _delta(layers, index, GRAD_IN, deltas, n), work,
                                totals)  # fmt: skip
            continue
        out = _side(layers, index, OUTPUT, activations, batch, n)
        grad_input = _delta(layers, index, GRAD_IN, deltas, n)
        if kind == RELU:
            relu_backward(grad_output, out, grad_input)
        elif kind == SIGMOID:
            sigmoid_backward(grad_output, out, grad_input)
        elif kind == TANH:
            tanh_backward(grad_output, out, grad_input)


@numba.njit(**_INLINE)
def _update(settings, parameters, gradients, state, step, lr):
    """One step of the optimizer's own update kernel over the flat buffers."""
    kind = settings[OPTIMIZER]
    state0, state1, state2 = state
    if kind == PLAIN_SGD:
        sgd_update(parameters, gradients, state0, step == 1, lr, settings[MOMENTUM],
                   settings[DAMPENING], settings[WEIGHT_DECAY],
                   settings[NESTEROV] != 0.0)  # fmt: skip
        return
    beta1, beta2, eps = settings[BETA1], settings[BETA2], settings[EPS]
    weight_decay, decoupled = settings[WEIGHT_DECAY], settings[DECOUPLED] != 0.0
    if kind == ADAM:
        adam_update(parameters, gradients, state0, state1, state2, step, lr, beta1,
                    beta2, eps, weight_decay, decoupled)  # fmt: skip
    else:
        adam_amsgrad_update(parameters, gradients, state0, state1, state2, step, lr,
                            beta1, beta2, eps, weight_decay, decoupled)  # fmt: skip


def train_epochs(data, validation, model, state, work, settings, params, lrs, orders,
                 snapshots, logs):  # fmt: skip
    """Train one epoch per row of ``orders`` (the sample order of each); write each
    epoch's (loss sum, samples right, labels right, validation loss, validation samples
    right, validation labels right) to ``logs``, or, where ``snapshots`` has rows (one
    per epoch), the first three and the epoch's parameters to its row, validation left
    to :func:`validate_epochs`. Returns (epochs completed, steps taken,
    status, batch, loss): status OK, or BAD_LOSS at ``batch`` (1-based) with its
    ``loss``, or BAD_PARAMETERS; the parameters at the failing epoch's start are in
    ``model[3]``. ``batch_X`` and ``X_val`` are 1-d (rows of ``features``)."""
    X, y = _borrow(data[0]), _borrow(data[1])
    sample_weight, label_weight = _borrow(data[2]), _borrow(data[3])
    pos_weight = _borrow(data[4])
    X_val, y_val = _borrow(validation[0]), _borrow(validation[1])
    val_scores = _borrow(validation[2])
    layers = model[0]
    parameters, gradients = _borrow(model[1]), _borrow(model[2])
    epoch_start, l2_ranges = _borrow(model[3]), model[4]
    state = (_borrow(state[0]), _borrow(state[1]), _borrow(state[2]))
    activations, deltas = _borrow(work[0]), _borrow(work[1])
    batch_X, batch_y, batch_weight = (
        _borrow(work[2]),
        _borrow(work[3]),
        _borrow(work[4]),
    )
    loss_work = (_borrow(work[5]), _borrow(work[6]), _borrow(work[7]), _borrow(work[8]))
    linear_work = (_borrow(work[9]), _borrow(work[10]))
    lrs, orders, logs = _borrow(lrs), _borrow(orders), _borrow(logs)
    real = parameters.dtype.type
    n, columns = y.shape
    features = layers[0, WIDTH_IN]
    batch_size, first = int(settings[BATCH_SIZE]), int(settings[FIRST])
    weighting = int(settings[WEIGHTING])
    l2, threshold = settings[L2], settings[THRESHOLD]
    step = int(settings[STEP0])
    steps = 0
    last = layers.shape[0] - 1
    m = y_val.shape[0]
    for epoch in range(orders.shape[0]):
        for i in range(parameters.size):
            epoch_start[i] = parameters[i]
        total_loss = 0.0
        samples_right = labels_right = 0
        batch = 0
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            batch += 1
            rows = vector_view(orders, epoch * n + start, count)
            x = _matrix(batch_X, 0, count, features)
            if weighting & SAMPLE_WEIGHT:
                gather_rows(X, y, sample_weight, rows, x, batch_y, batch_weight)
            else:
                gather_rows(X, y, None, rows, x, batch_y, None)
            targets = _matrix(batch_y, 0, count, columns)
            _forward(layers, parameters, activations, x, count, linear_work)
            scores = _side(layers, last, OUTPUT, activations, x, count)
            delta = _delta(layers, last, GRAD_OUT, deltas, count)
            total = _loss_sum(scores, targets, batch_weight,
                              label_weight, pos_weight, weighting, params, delta, True,
                              loss_work)  # fmt: skip
            loss = real(total / (count * columns))
            if not math.isfinite(loss):
                return epoch, steps, BAD_LOSS, batch, np.float64(loss)
            samples, labels = count_correct(scores, targets, threshold)
            samples_right += samples
            labels_right += labels
            _backward(layers, first, parameters, gradients, activations, deltas, x,
                      count, linear_work)  # fmt: skip
            if l2 != 0.0:
                squares = add_l2(parameters, gradients, l2_ranges, real(l2 / count))
                loss = loss + real(l2 / (2 * count) * squares)
            step += 1
            _update(settings, parameters, gradients, state, step, lrs[steps])
            steps += 1
            total_loss += np.float64(loss) * count
        for i in range(parameters.size):
            if not math.isfinite(parameters[i]):
                return epoch, steps, BAD_PARAMETERS, batch, 0.0
        logs[epoch, 0] = total_loss
        logs[epoch, 1] = samples_right
        logs[epoch, 2] = labels_right
        if snapshots.shape[0]:
            snapshot = snapshots[epoch]
            for i in range(parameters.size):
                snapshot[i] = parameters[i]
        elif m:
            _validation_metrics(layers, parameters, (X_val, y_val, val_scores),
                                (activations, linear_work, loss_work),
                                (label_weight, pos_weight), params, settings,
                                logs[epoch])  # fmt: skip
    return orders.shape[0], steps, OK, 0, 0.0


def _validation_metrics(
    layers, parameters, validation, work, weights, params, settings, log
):
    """``log[3:6]`` = the mean loss, samples right and labels right of the network with
    ``parameters`` on ``validation = (X_val (1-d), y_val, scores buffer)``: its forward
    pass in chunks of the workspace's rows (``settings[ROWS]``), the loss reduced as
    ``numbce.cpu`` reduces a mean (``_loss_sum``, a global of each family's compiled
    copy)."""
    X_val, y_val, val_scores = validation
    activations, linear_work, loss_work = work
    label_weight, pos_weight = weights
    real = parameters.dtype.type
    m, columns = y_val.shape
    features, last = layers[0, WIDTH_IN], layers.shape[0] - 1
    chunk = min(m, int(settings[ROWS]))
    for start in range(0, m, chunk):
        count = min(chunk, m - start)
        x = _matrix(X_val, start * features, count, features)
        _forward(layers, parameters, activations, x, count, linear_work)
        scores = _side(layers, last, OUTPUT, activations, x, count)
        if count < m:
            val_scores[start : start + count] = scores
    if chunk < m:
        scores = _matrix(val_scores, 0, m, columns)
    total = _loss_sum(scores, y_val, y_val, label_weight, pos_weight, 0, params,
                      scores, False, loss_work)  # fmt: skip
    log[3] = real(total / (m * columns))
    log[4], log[5] = count_correct(scores, y_val, settings[THRESHOLD])


def validate_epochs(snapshots, validation, model, work, settings, params, data, logs):
    """:func:`_validation_metrics` of each row of ``snapshots`` (the parameters at the
    end of an epoch, which :func:`train_epochs` kept) into the same row of ``logs``;
    ``work`` is this call's own (activations, linear_work, loss_work): it runs beside
    training."""
    X_val, y_val = _borrow(validation[0]), _borrow(validation[1])
    val_scores = _borrow(validation[2])
    activations = _borrow(work[0])
    linear_work = (_borrow(work[1]), _borrow(work[2]))
    loss_work = (_borrow(work[3]), _borrow(work[4]), _borrow(work[5]), _borrow(work[6]))
    snapshots, logs = _borrow(snapshots), _borrow(logs)
    label_weight, pos_weight = _borrow(data[3]), _borrow(data[4])
    for epoch in range(snapshots.shape[0]):
        _validation_metrics(model[0], snapshots[epoch], (X_val, y_val, val_scores),
                            (activations, linear_work, loss_work),
                            (label_weight, pos_weight), params, settings,
                            logs[epoch])  # fmt: skip


def _with_globals(function, **names):
    """A copy of the Python ``function`` that sees ``names`` as globals."""
    return types.FunctionType(
        function.__code__, dict(function.__globals__, **names), function.__name__,
        function.__defaults__, function.__closure__,
    )  # fmt: skip


@functools.cache
def _train_kernel(family: str, dtype: str):
    """:func:`train_epochs` and :func:`validate_epochs` compiled for one loss family
    and dtype: the family's formulas are a global of its :func:`_loss_sum` copy (a
    kernel closing over a dispatcher, or taking one as an argument, is never found in
    Numba's cache), their names keyed by the family, the dtype and the sources."""
    element = cpu._element(family, dtype)
    loss_sum = numba.njit(nogil=True, error_model="numpy")(
        _with_globals(_loss_sum, element=element)
    )
    key = hashlib.sha1(repr((family, dtype, _SOURCE_HASH)).encode()).hexdigest()

    def compiled(function, **names):
        function = _with_globals(function, _loss_sum=loss_sum, **names)
        function.__qualname__ = f"{function.__name__}_{family}_{dtype}_{key[:16]}"
        return njit(function)

    # Called, not inlined, by both kernels: its code is compiled once.
    metrics = compiled(_validation_metrics)
    return tuple(
        compiled(function, _validation_metrics=metrics)
        for function in (train_epochs, validate_epochs)
    )


# -- planning ---------------------------------------------------------------------------


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of training data, which the epochs only read (gathering batches
    from it): writeable and read-only arrays (a memory map opened ``'r'``) then share one
    compiled epoch function instead of compiling two."""
    view = a.view()
    view.flags.writeable = False
    return view


def _offset(view: np.ndarray, flat: np.ndarray) -> int:
    return (view.ctypes.data - flat.ctypes.data) // flat.itemsize


def _layer_table(network, rows: int, features: int) -> tuple[np.ndarray, int, int]:
    """(layer table, activations size, deltas size)."""
    table = np.full((len(network.layers), 8), -1, dtype=np.int64)
    flat = network._flat_parameters
    width, current, used = features, -1, 0
    for index, layer in enumerate(network.layers):
        kind = LAYER_KINDS[type(layer)]
        out_width = layer.out_features if kind == LINEAR else width
        table[index, :INPUT] = kind, width, out_width, -1
        if kind == LINEAR:
            table[index, PARAMS] = _offset(layer.weight, flat)
        table[index, INPUT] = current
        if kind != IDENTITY:
            current, used = used, used + rows * out_width
        table[index, OUTPUT] = current
        width = out_width
    current, used_deltas = 0, rows * width  # d loss / d scores first
    for index in range(len(network.layers) - 1, network._first_trainable - 1, -1):
        table[index, GRAD_OUT] = current
        if table[index, KIND] == IDENTITY:
            table[index, GRAD_IN] = current
        elif index > network._first_trainable:
            current, used_deltas = (
                used_deltas,
                used_deltas + rows * table[index, WIDTH_IN],
            )
            table[index, GRAD_IN] = current
    return table, used, used_deltas


def _optimizer_settings(optimizer) -> list[float]:
    """[kind, beta1, beta2, eps, weight decay, decoupled, momentum, dampening, nesterov]."""
    if isinstance(optimizer, SGD):
        return [PLAIN_SGD, 0.0, 0.0, 0.0, optimizer.weight_decay, 0.0,
                optimizer.momentum, optimizer.dampening, optimizer.nesterov]  # fmt: skip
    return [ADAM_AMSGRAD if optimizer.amsgrad else ADAM, *optimizer.betas,
            optimizer.eps, optimizer.weight_decay, optimizer._decoupled_weight_decay,
            0.0, 0.0, 0.0]  # fmt: skip


def supported(network, optimizer) -> bool:
    """Whether :func:`plan` compiles training of ``network`` by ``optimizer`` (the rule
    of the module docstring)."""
    import numbce
    from numbce.nn.network import Sequential

    cls, own = type(network), vars(network)
    return (
        all(type(layer) in LAYER_KINDS for layer in network.layers)
        and all(
            getattr(cls, name) is getattr(Sequential, name) and name not in own
            for name in ("_forward_pass", "_backprop", "loss_value_and_grad")
        )
        and network.loss in FAMILIES
        and network.loss_function
        is getattr(numbce, f"{network.loss}_value_and_grad", None)
        and type(optimizer) in (Adam, AdamW, SGD)
        and optimizer.flat_params is network._flat_parameters
    )


class CompiledFit:
    """The buffers and settings of one compiled ``fit``; :meth:`run` trains epochs."""

    def __init__(self, network, optimizer, data, validation, batch_size, l2) -> None:
        X, y, weight, label_weight = data
        dtype, columns = network.dtype, network.outputs
        self.network, self.optimizer = network, optimizer
        n = X.shape[0]
        X = X.reshape(n, -1)
        rows = max(network._rows, batch_size)
        table, used, used_deltas = _layer_table(network, rows, X.shape[1])
        # The options the Python loop's first loss call would check, checked alike.
        network.loss_value_and_grad(
            np.full((1, columns), 0.5, dtype), np.zeros((1, columns), dtype)
        )
        options = dict(network.loss_options)
        family = FAMILIES[network.loss]
        request = _validate.validate(
            family,
            _validate.Outputs(loss=True, grad=True),
            np.zeros((1, columns), dtype),
            np.zeros((1, columns), dtype),
            **options,
        )
        param = np.float64 if family.float32_in_float64 else dtype.type
        self.params = tuple(param(value) for value in request.params)
        pos_weight = np.broadcast_to(
            np.asarray(request.pos_weight, dtype=np.float64), (1, columns)
        )
        placeholder = np.ones((1, 1), dtype)
        self.data = tuple(map(_read_only, (
            X,
            y,
            placeholder if weight is None else weight,
            np.ones(1, dtype) if label_weight is None else label_weight,
            pos_weight.reshape(columns).astype(dtype),
        )))  # fmt: skip
        if validation is None:
            X_val, y_val = (
                np.empty((0, X.shape[1]), dtype),
                np.empty((0, columns), dtype),
            )
        else:
            X_val, y_val = (
                validation[0].reshape(validation[0].shape[0], -1),
                validation[1],
            )
        val_scores = np.empty(
            (X_val.shape[0] if X_val.shape[0] > rows else 0, columns), dtype
        )
        self.validation = (np.ascontiguousarray(X_val).reshape(-1), y_val, val_scores)
        flat = network._flat_parameters
        self.epoch_start = np.empty_like(flat)
        self.model = (
            table,
            flat,
            network._flat_gradients,
            self.epoch_start,
            network._weight_ranges,
        )
        linear = [layer for layer in network.layers if type(layer) is Linear]
        state = optimizer._flat_state
        self.state = (state + (state[-1],) * 3)[:3]
        blocks = -(-max(rows, X_val.shape[0]) * columns // _config.BLOCK)
        self.work = (
            np.empty(used, dtype),
            np.empty(used_deltas, dtype),
            np.empty(rows * X.shape[1], dtype),
            np.empty((rows, columns), dtype),
            np.empty((rows, 1), dtype) if weight is not None else placeholder,
            np.empty(_config.BLOCK, dtype),
            np.empty(_config.BLOCK // 2),
            np.empty(blocks),
            np.empty(blocks + 1),
            np.empty(
                max(layer.in_features * layer.out_features for layer in linear), dtype
            ),
            np.empty(max((layer.out_features for layer in linear), default=1)),
        )
        settings = np.zeros(SETTINGS)
        settings[[L2, THRESHOLD, BATCH_SIZE, FIRST, ROWS]] = (
            l2,
            network._threshold,
            batch_size,
            network._first_trainable,
            rows,
        )
        settings[WEIGHTING] = (weight is not None) * SAMPLE_WEIGHT + (
            label_weight is not None
        ) * LABEL_WEIGHT
        settings[OPTIMIZER : NESTEROV + 1] = _optimizer_settings(optimizer)
        self.settings = settings
        self.n, self.batch_size = n, batch_size
        self.steps_per_epoch = -(-n // batch_size)
        self.kernel, self.validator = _train_kernel(network.loss, dtype.name)
        self.no_snapshots = np.empty((0, flat.size), dtype)
        activations, linear_work, loss_work = (
            self.work[0],
            self.work[9:],
            self.work[5:9],
        )
        self.validation_work = tuple(
            np.empty_like(a) for a in (activations, *linear_work, *loss_work)
        )

    def run(
        self, orders: np.ndarray, snapshots: np.ndarray | None = None
    ) -> tuple[np.ndarray, str | None]:
        """Train one epoch per row of ``orders``; return the raw logs of the epochs
        completed, (loss, samples right, labels right, validation loss, validation
        samples right, validation labels right), and None or the reason training
        stopped (the parameters then are those of the failing epoch's start). With
        ``snapshots`` (one row per epoch, of the parameters' size), each epoch's
        parameters are kept there instead of validated: :meth:`validate` fills the
        validation columns later (and may run beside the next call)."""
        optimizer = self.optimizer
        steps = orders.shape[0] * self.steps_per_epoch
        first = optimizer.step_count
        if callable(optimizer.lr):
            lrs = np.array(
                [optimizer._scheduled_lr(t) for t in range(first, first + steps)]
            )
        else:
            lrs = np.full(steps, optimizer._step_lr)
        self.settings[STEP0] = first
        logs = np.zeros((orders.shape[0], 6))
        if snapshots is None:
            snapshots = self.no_snapshots
        elif snapshots.shape != (len(orders), self.no_snapshots.shape[1]) or (
            snapshots.dtype != self.no_snapshots.dtype
        ):
            raise ValueError("snapshots must hold one row of parameters per epoch")
        done, taken, status, batch, loss = self.kernel(
            self.data, self.validation, self.model, self.state, self.work,
            self.settings, self.params, lrs, orders, snapshots, logs,
        )  # fmt: skip
        optimizer.step_count += taken
        if taken:
            optimizer._step_lr = float(lrs[taken - 1])
        reason = None
        if status == BAD_LOSS:
            reason = f"the loss is {self.network.dtype.type(loss)} at batch {batch}"
        elif status == BAD_PARAMETERS:
            reason = "the update of the last batch left non-finite parameters"
        if reason is not None:
            np.copyto(self.network._flat_parameters, self.epoch_start)
        return logs[:done], reason

    def validate(self, snapshots: np.ndarray, logs: np.ndarray) -> np.ndarray:
        """Fill the validation columns of ``logs`` (of :meth:`run`) from the parameters
        in ``snapshots``, on this object's own validation workspace; return ``logs``."""
        self.validator(
            snapshots, self.validation, self.model, self.validation_work,
            self.settings, self.params, self.data, logs,
        )  # fmt: skip
        return logs


def plan(network, optimizer, data, validation, batch_size, l2) -> CompiledFit | None:
    """A :class:`CompiledFit` for this ``fit``, or None where the Python loop must run
    (see the module docstring)."""
    if not supported(network, optimizer):
        return None
    return CompiledFit(network, optimizer, data, validation, batch_size, l2)
