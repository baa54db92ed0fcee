"""Compiled training: whole epochs of a network of registered layers in one Numba call (and
:func:`add_l2`, which the Python training loop calls too).

:func:`plan` turns a network, its optimizer and the data of a ``fit`` into a
:class:`CompiledFit` when every part has a compiled form, else returns None (``fit`` then
runs its Python loop):

* every layer's class is a type of :data:`numbce.nn.layers.LAYERS` (exactly: a subclass
  may redefine its math) with a compiled form or ``identity``; neither the network's class
  nor the network redefines the forward pass, backpropagation or the loss
  (``loss_function`` is numbce's own);
* the optimizer is exactly :class:`~numbce.optim.Adam`, :class:`~numbce.optim.AdamW` or
  :class:`~numbce.optim.SGD`, built on the network's ``parameters()`` (its flat buffer).

Any registered loss family, sample, class and label weights, ``l2``, learning-rate
schedules (evaluated in Python before the epochs, one value per step), validation data,
shuffling, random layers and an :class:`~numbce.nn.callbacks.EarlyStopping` rule are
covered. One call of :func:`train_epochs` runs an epoch (or, when no callback but the
built-in ones listens between epochs, many): gather each batch in the drawn order,
forward through the layers' compiled forms (``forward_form``/``backward_form`` of
:mod:`numbce.nn.layers`: the one definition of their math, dispatched by a function
generated from the registry, :func:`_layer_calls`), the loss family's per-element
formulas (``numbce.cpu._element``, the function the loss kernels compile),
backpropagation, the optimizer's own update kernel, the epoch's metrics and the
validation metrics, or a copy of the epoch's parameters whose validation metrics
:func:`validate_epochs` computes on a second thread while the next call trains.

The arguments are named structures: the layer table is a record array
(:data:`LAYER_RECORD`, one row per layer), the settings a record (:data:`SETTINGS`), the
arrays named tuples (:class:`TrainingData`, :class:`Model`, :class:`Workspace`...). The
two record arrays travel as their bytes (``uint8``), viewed as records inside: Numba
types a record array's argument anew on every call (0.25 ms each), bytes at once.

Same bits as the Python loop: every operation is the one the Python loop performs, on
arrays of the same shapes and layouts, in the same order: the same layer and optimizer
kernels, the loss's value reduced as ``numbce.cpu`` reduces it (per block of
``numbce._config.BLOCK`` elements, by ``numbce.cpu._tree_sum`` itself, the blocks'
partial sums added exactly as ``math.fsum``: :func:`exact_sum`), its gradient scaled by
``1 / size`` rounded to the dtype, the mean loss rounded to the dtype, the ``l2`` penalty
of :func:`add_l2`, the random layers' keys of ``numbce.nn.layers.step_key``. So the
parameters, the optimizer state and every figure of the History are equal bit for bit
(``tests/test_nn_compiled.py``). One difference: a NaN reaching a loss on probabilities
(parameters that became NaN inside an epoch) raises FloatingPointError here, where the
Python loop's loss kernel raises its ValueError about the input's range.

When: compiling the epochs takes 15-30 s, a few hundred milliseconds of Python loop
for a short fit, so ``fit`` runs them only where they are compiled already (in this
process or Numba's cache: :meth:`CompiledFit.ready`) unless
``numbce._config.COMPILED_EPOCHS`` says otherwise, and then has a background process
compile them for later fits (:func:`compile_in_background`;
``numbce.nn.network.compile_epochs(family, dtype)`` does the same in the foreground).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import types
from typing import NamedTuple

import numba
import numpy as np
from numba.extending import intrinsic, overload

from numbce import _config, _validate, cpu
from numbce._cache import load_compiled, njit
from numbce.losses import FAMILIES
from numbce.nn.layers import (
    LAYERS,
    NO_NOISE,
    borrowed_view,
    flat_view,
    inlined,
    matrix_view,
    step_key,
    vector_view,
)
from numbce.optim import SGD, Adam, AdamW, _adam_kernel, _sgd_update, views_like

__all__ = [
    "CompiledFit",
    "add_l2",
    "compile_in_background",
    "count_correct",
    "gather_rows",
    "lock_path",
    "plan",
]

_INLINE = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": False,
    "forceinline": True,
}
"""Functions the epochs call: inlined by LLVM (see :mod:`numbce._vectormath`)."""

LAYER_RECORD = np.dtype(
    [
        ("kind", np.int64),  # the type's position in LAYERS
        ("identity", np.int64),  # 1: the output is the input (no computation)
        ("width_in", np.int64),  # features in and out
        ("width_out", np.int64),
        ("params", np.int64),  # offset and size of its segment of the flat parameters
        ("params_size", np.int64),
        (
            "input",
            np.int64,
        ),  # offsets of input and output in the activations (-1: batch)
        ("output", np.int64),
        ("grad_in", np.int64),  # offsets of d loss / d input (-1: none) and d loss / d
        ("grad_out", np.int64),  # output in the deltas workspace
        ("work", np.int64),  # offset and size of its workspace of the dtype
        ("work_size", np.int64),
        ("work64", np.int64),  # offset and size of its float64 workspace
        ("work64_size", np.int64),
        ("options", np.int64),  # offset and count of its options (float64)
        ("options_size", np.int64),
    ]
)
"""A row of the layer table. Workspace segments of activations and deltas hold ``rows``
rows."""

ADAM, ADAM_AMSGRAD, PLAIN_SGD = range(3)
"""Optimizer kinds."""

SETTINGS = np.dtype(
    [
        ("l2", np.float64),
        ("threshold", np.float64),  # predictions: score > threshold
        ("batch_size", np.int64),
        ("rows", np.int64),  # rows of the workspaces (validation chunks)
        ("first", np.int64),  # first trainable layer: no d loss / d input there
        ("weighting", np.int64),  # bits SAMPLE_WEIGHT, LABEL_WEIGHT
        ("optimizer", np.int64),  # ADAM, ADAM_AMSGRAD or PLAIN_SGD
        ("beta1", np.float64),
        ("beta2", np.float64),
        ("eps", np.float64),
        ("weight_decay", np.float64),
        ("decoupled", np.bool_),
        ("momentum", np.float64),
        ("dampening", np.float64),
        ("nesterov", np.bool_),
        ("step", np.int64),  # the optimizer's step count before the call
        ("noise_seed", np.int64),  # random layers' seed (step_key); -1: none
        ("fit_step", np.int64),  # steps of this fit before the call
        ("fit_epoch", np.int64),  # epochs of this fit before the call
        (
            "monitor",
            np.int64,
        ),  # early stopping: the metric's column of a log row (-1: none)
        ("sign", np.float64),  # 1: lower is better, -1: higher
        ("min_delta", np.float64),
        ("patience", np.int64),
        ("restore", np.bool_),  # keep the best epoch's parameters in Model.best
        ("best", np.float64),  # the rule's state: the best value, its epoch, the wait
        ("best_epoch", np.int64),
        ("wait", np.int64),
    ]
)
"""The settings record of a compiled fit (one element, updated between calls)."""

SAMPLE_WEIGHT, LABEL_WEIGHT = 1, 2
"""Bits of the weighting setting."""

OK, BAD_LOSS, BAD_PARAMETERS, STOPPED = range(4)
"""Statuses a compiled run returns (STOPPED: the early-stopping rule ended training)."""

LOSS, ACCURACY, LABEL_ACCURACY, VAL_LOSS, VAL_ACCURACY, VAL_LABEL_ACCURACY = range(6)
"""Columns of a row of metrics (the means of ``fit``'s logs), one row per epoch."""

METRIC_COLUMNS = {
    "loss": LOSS,
    "accuracy": ACCURACY,
    "label_accuracy": LABEL_ACCURACY,
    "val_loss": VAL_LOSS,
    "val_accuracy": VAL_ACCURACY,
    "val_label_accuracy": VAL_LABEL_ACCURACY,
}

MAX_ORDER_ELEMENTS = 1 << 22
"""Most sample indices (8 bytes each) in one block of epochs' orders drawn ahead, and
most parameter values in one of the two buffers of epoch snapshots whose validation runs
beside training (see ``numbce.nn.training._compiled_epochs``)."""


class TrainingData(NamedTuple):
    """The fit's data (read-only views): ``X`` (n, features), ``y`` (n, C),
    ``sample_weight`` (n, 1) (a placeholder without), ``label_weight`` (C,) (ones
    without) and the loss's ``pos_weight`` (C,)."""

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    label_weight: np.ndarray
    pos_weight: np.ndarray


class ValidationData(NamedTuple):
    """``X`` (1-d: m rows of features), ``y`` (m, C) and a buffer for the scores of more
    rows than one forward pass holds (else empty)."""

    X: np.ndarray
    y: np.ndarray
    scores: np.ndarray


class Model(NamedTuple):
    """The layer table (the bytes of :data:`LAYER_RECORD` rows), the layers' options, the flat parameters
    and gradients, the parameters at the epoch's start (restored when an epoch fails),
    the best epoch's parameters (early stopping with restore), the (start, stop) ranges
    of the l2-penalized weights."""

    layers: np.ndarray
    options: np.ndarray
    parameters: np.ndarray
    gradients: np.ndarray
    epoch_start: np.ndarray
    best: np.ndarray
    l2_ranges: np.ndarray


class OptimizerState(NamedTuple):
    """The optimizer's flat state buffers (Adam: m, v, max v; SGD: momentum)."""

    first: np.ndarray
    second: np.ndarray
    third: np.ndarray


class LossWork(NamedTuple):
    """The loss reduction's buffers: a block's losses, the tree sum's scratch, the blocks'
    partial sums, :func:`exact_sum`'s partials."""

    losses: np.ndarray
    scratch: np.ndarray
    partials: np.ndarray
    fsum: np.ndarray


class Workspace(NamedTuple):
    """Every layer's output (``activations``) and d loss / d output (``deltas``), the
    layers' own workspaces (``layer_work`` of the dtype, ``layer_work64`` float64), the
    gathered batch and the loss's buffers."""

    activations: np.ndarray
    deltas: np.ndarray
    layer_work: np.ndarray
    layer_work64: np.ndarray
    batch_X: np.ndarray
    batch_y: np.ndarray
    batch_weight: np.ndarray
    loss: LossWork


def _source_hash() -> str:
    """The hash of every source the epochs inline: this module, the optimizers, the loss
    kernels' sources, and each registered layer type's module with the registry's
    order (Numba's cache checks only the file of the function it compiles)."""
    here = pathlib.Path(__file__).parent
    files = {here / "compiled.py", here.parent / "optim.py"}
    files |= {pathlib.Path(inspect.getfile(cls)) for cls in LAYERS.values()}
    digest = hashlib.sha1(repr(list(LAYERS)).encode() + cpu._SOURCE_HASH.encode())
    for path in sorted(files):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _cached(function):
    """``function`` compiled and cached, its cache entry named after the sources (it
    inlines code of layers.py, which Numba's cache does not watch)."""
    function.__qualname__ = f"{function.__name__}_{_source_hash()}"
    return njit(function)


adam_update, adam_amsgrad_update = map(inlined, map(_adam_kernel, (False, True)))
sgd_update = inlined(_sgd_update)


# -- kernels of the epochs (add_l2: of the Python loop too) ------------------------------


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


@numba.njit(**_INLINE)
def _borrowed_model(model):
    return Model(_borrow(model.layers).view(LAYER_RECORD), _borrow(model.options),
                 _borrow(model.parameters), _borrow(model.gradients),
                 _borrow(model.epoch_start), _borrow(model.best),
                 _borrow(model.l2_ranges))  # fmt: skip


@numba.njit(**_INLINE)
def _borrowed_work(work):
    loss = work.loss
    return Workspace(_borrow(work.activations), _borrow(work.deltas),
                     _borrow(work.layer_work), _borrow(work.layer_work64),
                     _borrow(work.batch_X), _borrow(work.batch_y),
                     _borrow(work.batch_weight),
                     LossWork(_borrow(loss.losses), _borrow(loss.scratch),
                              _borrow(loss.partials), _borrow(loss.fsum)))  # fmt: skip


def _layer_calls():
    """``forward_layer(kind, x, out, params, work, work64, options, key)`` and
    ``backward_layer(kind, grad_output, x, out, params, grads, grad_input, work, work64,
    options)``: the compiled form of the layer type ``kind``, each type's functions
    inlined; generated from the registry (:data:`numbce.nn.layers.LAYERS`)."""
    forward = ["def forward_layer(kind, x, out, params, work, work64, options, key):"]
    backward = [
        (
            "def backward_layer(kind, grad_output, x, out, params, grads, grad_input, "
            "work, work64, options):"
        )
    ]
    names = {}
    for kind, cls in enumerate(LAYERS.values()):
        if cls.forward_form is None:
            continue
        names[f"forward_{kind}"] = numba.njit(**_INLINE)(cls.forward_form)
        names[f"backward_{kind}"] = numba.njit(**_INLINE)(cls.backward_form)
        forward.append(
            f"    if kind == {kind}:\n"
            f"        forward_{kind}(x, out, params, work, work64, options, key)"
        )
        backward.append(
            f"    if kind == {kind}:\n"
            f"        backward_{kind}(grad_output, x, out, params, grads, grad_input, "
            "work, work64, options)"
        )
    exec("\n".join(forward) + "\n\n" + "\n".join(backward), names)  # noqa: S102
    return tuple(
        numba.njit(**_INLINE)(names[name])
        for name in ("forward_layer", "backward_layer")
    )


@numba.njit(**_INLINE)
def _side(layer, output, activations, batch, n):
    """The output (``output``) or input of ``layer`` (a table row) for a batch of ``n``
    rows: in the activations workspace, or the batch itself."""
    offset = layer.output if output else layer.input
    if offset < 0:
        return batch
    width = layer.width_out if output else layer.width_in
    return matrix_view(activations, offset, n, width)


@numba.njit(**_INLINE)
def _grad_output(layer, deltas, n):
    """d loss / d output of ``layer`` for ``n`` rows."""
    return matrix_view(deltas, layer.grad_out, n, layer.width_out)


@numba.njit(**_INLINE)
def _grad_input(layer, deltas, n):
    """d loss / d input of ``layer`` for ``n`` rows; no rows where it is not wanted."""
    rows = n if layer.grad_in >= 0 else 0
    return matrix_view(deltas, max(layer.grad_in, 0), rows, layer.width_in)


@numba.njit(**_INLINE)
def _segments(layer, model, flat, work):
    """The layer's segment of ``flat`` (parameters or gradients), its workspaces and its
    options."""
    return (
        vector_view(flat, layer.params, layer.params_size),
        vector_view(work.layer_work, layer.work, layer.work_size),
        vector_view(work.layer_work64, layer.work64, layer.work64_size),
        vector_view(model.options, layer.options, layer.options_size),
    )


def _forward(model, parameters, work, batch, n, noise_seed, step):
    """Every layer's forward pass in turn on the ``n`` rows of ``batch``; random layers
    keyed by ``step_key(noise_seed, step, index)`` (``noise_seed`` < 0: outside
    training); the scores are the last layer's output."""
    layers = model.layers
    for index in range(layers.shape[0]):
        layer = layers[index]
        if layer.identity:
            continue
        params, layer_work, layer_work64, options = _segments(
            layer, model, parameters, work
        )
        key = NO_NOISE if noise_seed < 0 else step_key(noise_seed, step, index)
        forward_layer(layer.kind, _side(layer, False, work.activations, batch, n),  # noqa: F821
                      _side(layer, True, work.activations, batch, n), params,
                      layer_work, layer_work64, options, key)  # fmt: skip


def _backward(model, first, parameters, gradients, work, batch, n):
    """Backpropagate d loss / d scores (the last layer's d loss / d output) from the last
    layer down to the first trainable one (``first``: no d loss / d input there), filling
    the gradients."""
    layers = model.layers
    for index in range(layers.shape[0] - 1, first - 1, -1):
        layer = layers[index]
        if layer.identity:
            continue
        params, layer_work, layer_work64, options = _segments(
            layer, model, parameters, work
        )
        grads = vector_view(gradients, layer.params, layer.params_size)
        backward_layer(layer.kind, _grad_output(layer, work.deltas, n),  # noqa: F821
                       _side(layer, False, work.activations, batch, n),
                       _side(layer, True, work.activations, batch, n), params, grads,
                       _grad_input(layer, work.deltas, n), layer_work, layer_work64,
                       options)  # fmt: skip


@numba.njit(**_INLINE)
def _update(settings, parameters, gradients, state, step, lr):
    """One step of the optimizer's own update kernel over the flat buffers."""
    kind = settings.optimizer
    if kind == PLAIN_SGD:
        sgd_update(parameters, gradients, state.first, step == 1, lr, settings.momentum,
                   settings.dampening, settings.weight_decay, settings.nesterov)  # fmt: skip
        return
    if kind == ADAM:
        adam_update(parameters, gradients, state.first, state.second, state.third, step,
                    lr, settings.beta1, settings.beta2, settings.eps,
                    settings.weight_decay, settings.decoupled)  # fmt: skip
    else:
        adam_amsgrad_update(parameters, gradients, state.first, state.second,
                            state.third, step, lr, settings.beta1, settings.beta2,
                            settings.eps, settings.weight_decay,
                            settings.decoupled)  # fmt: skip


@numba.njit(**_INLINE)
def _stops(settings, metrics, epoch, parameters, best):
    """The early-stopping rule after ``epoch`` (of the fit) with its ``metrics`` row
    (``EarlyStopping.on_epoch_end``, the same comparisons in float64): whether training
    stops; keeps the best epoch's parameters in ``best`` with ``restore``."""
    value = metrics[settings.monitor]
    sign = settings.sign
    if sign * value < sign * settings.best - settings.min_delta:
        settings.best, settings.best_epoch, settings.wait = value, epoch, 0
        if settings.restore:
            for i in range(parameters.size):
                best[i] = parameters[i]
        return False
    settings.wait += 1
    return settings.wait >= settings.patience


def train_epochs(data, validation, model, state, work, settings, params, lrs, orders,
                 snapshots, logs):  # fmt: skip
    """Train one epoch per row of ``orders`` (the sample order of each); write each
    epoch's metrics (the columns LOSS ... VAL_LABEL_ACCURACY) to its row of ``logs``, or,
    where ``snapshots`` has rows (one per epoch), the training metrics and the epoch's
    parameters to its row, validation left to :func:`validate_epochs`. Returns (epochs
    completed, steps taken, status, batch, loss): status OK, STOPPED (the early-stopping
    rule of ``settings``, after the last epoch completed), or BAD_LOSS at ``batch``
    (1-based) with its ``loss``, or BAD_PARAMETERS; the parameters at the failing
    epoch's start are in ``model.epoch_start``."""
    settings = settings.view(SETTINGS)[0]
    X, y = _borrow(data.X), _borrow(data.y)
    sample_weight, label_weight = (
        _borrow(data.sample_weight),
        _borrow(data.label_weight),
    )
    pos_weight = _borrow(data.pos_weight)
    model, work = _borrowed_model(model), _borrowed_work(work)
    state = OptimizerState(_borrow(state.first), _borrow(state.second),
                           _borrow(state.third))  # fmt: skip
    parameters, gradients = model.parameters, model.gradients
    epoch_start, best = model.epoch_start, model.best
    batch_X, batch_y, batch_weight = work.batch_X, work.batch_y, work.batch_weight
    lrs, orders, logs = _borrow(lrs), _borrow(orders), _borrow(logs)
    real = parameters.dtype.type
    n, columns = y.shape
    layers = model.layers
    features, last = layers[0].width_in, layers[layers.shape[0] - 1]
    batch_size, first = settings.batch_size, settings.first
    weighting, l2, threshold = settings.weighting, settings.l2, settings.threshold
    step, noise_seed, fit_step = settings.step, settings.noise_seed, settings.fit_step
    steps = 0
    m = validation.y.shape[0]
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
            x = matrix_view(batch_X, 0, count, features)
            if weighting & SAMPLE_WEIGHT:
                gather_rows(X, y, sample_weight, rows, x, batch_y, batch_weight)
            else:
                gather_rows(X, y, None, rows, x, batch_y, None)
            targets = matrix_view(batch_y, 0, count, columns)
            _forward(model, parameters, work, x, count, noise_seed, fit_step + steps)
            scores = _side(last, True, work.activations, x, count)
            delta = _grad_output(last, work.deltas, count)
            total = _loss_sum(scores, targets, batch_weight, label_weight, pos_weight,
                              weighting, params, delta, True, work.loss)  # fmt: skip
            loss = real(total / (count * columns))
            if not math.isfinite(loss):
                return epoch, steps, BAD_LOSS, batch, np.float64(loss)
            samples, labels = count_correct(scores, targets, threshold)
            samples_right += samples
            labels_right += labels
            _backward(model, first, parameters, gradients, work, x, count)
            if l2 != 0.0:
                squares = add_l2(parameters, gradients, model.l2_ranges,
                                 real(l2 / count))  # fmt: skip
                loss = loss + real(l2 / (2 * count) * squares)
            step += 1
            _update(settings, parameters, gradients, state, step, lrs[steps])
            steps += 1
            total_loss += np.float64(loss) * count
        for i in range(parameters.size):
            if not math.isfinite(parameters[i]):
                return epoch, steps, BAD_PARAMETERS, batch, 0.0
        metrics = logs[epoch]
        metrics[LOSS] = total_loss / n
        metrics[ACCURACY] = samples_right / n
        metrics[LABEL_ACCURACY] = labels_right / (n * columns)
        if snapshots.shape[0]:
            snapshot = snapshots[epoch]
            for i in range(parameters.size):
                snapshot[i] = parameters[i]
        elif m:
            _validation_metrics(model, parameters, validation, work, data, params,
                                settings, metrics)  # fmt: skip
        if settings.monitor >= 0 and _stops(
            settings, metrics, settings.fit_epoch + epoch, parameters, best
        ):
            return epoch + 1, steps, STOPPED, 0, 0.0
    return orders.shape[0], steps, OK, 0, 0.0


def _validation_metrics(model, parameters, validation, work, data, params, settings,
                        metrics):  # fmt: skip
    """``metrics[VAL_LOSS:]`` = the mean loss, the accuracy and the label accuracy of the
    network with ``parameters`` on ``validation``: its forward pass (no noise) in chunks
    of the workspace's rows, the loss reduced as ``numbce.cpu`` reduces a mean
    (``_loss_sum``, a global of each family's compiled copy)."""
    X_val, y_val = _borrow(validation.X), _borrow(validation.y)
    val_scores = _borrow(validation.scores)
    label_weight, pos_weight = _borrow(data.label_weight), _borrow(data.pos_weight)
    real = parameters.dtype.type
    m, columns = y_val.shape
    layers = model.layers
    features, last = layers[0].width_in, layers[layers.shape[0] - 1]
    chunk = min(m, settings.rows)
    for start in range(0, m, chunk):
        count = min(chunk, m - start)
        x = matrix_view(X_val, start * features, count, features)
        _forward(model, parameters, work, x, count, -1, 0)
        scores = _side(last, True, work.activations, x, count)
        if count < m:
            val_scores[start : start + count] = scores
    if chunk < m:
        scores = matrix_view(val_scores, 0, m, columns)
    total = _loss_sum(scores, y_val, y_val, label_weight, pos_weight, 0, params,
                      scores, False, work.loss)  # fmt: skip
    samples, labels = count_correct(scores, y_val, settings.threshold)
    metrics[VAL_LOSS] = real(total / (m * columns))
    metrics[VAL_ACCURACY] = samples / m
    metrics[VAL_LABEL_ACCURACY] = labels / (m * columns)


def validate_epochs(snapshots, validation, model, work, settings, params, data, logs):
    """:func:`_validation_metrics` of each row of ``snapshots`` (the parameters at the
    end of an epoch, which :func:`train_epochs` kept) into the same row of ``logs``;
    ``work`` is this call's own: it runs beside training."""
    snapshots, logs = _borrow(snapshots), _borrow(logs)
    model, work = _borrowed_model(model), _borrowed_work(work)
    for epoch in range(snapshots.shape[0]):
        _validation_metrics(model, snapshots[epoch], validation, work, data, params,
                            settings.view(SETTINGS)[0], logs[epoch])  # fmt: skip


def _with_globals(function, **names):
    """A copy of the Python ``function`` that sees ``names`` as globals."""
    return types.FunctionType(
        function.__code__, dict(function.__globals__, **names), function.__name__,
        function.__defaults__, function.__closure__,
    )  # fmt: skip


@functools.cache
def _train_kernel(family: str, dtype: str):
    """:func:`train_epochs` and :func:`validate_epochs` compiled for one loss family
    and dtype: the family's formulas are a global of its :func:`_loss_sum` copy, the
    layers' forms of the generated :func:`_layer_calls` (a kernel closing over a
    dispatcher, or taking one as an argument, is never found in Numba's cache), their
    names keyed by the family, the dtype and the sources."""
    element = cpu._element(family, dtype)
    loss_sum = numba.njit(nogil=True, error_model="numpy")(
        _with_globals(_loss_sum, element=element)
    )
    forward_layer, backward_layer = _layer_calls()
    forward = numba.njit(**_INLINE)(
        _with_globals(_forward, forward_layer=forward_layer)
    )
    backward = numba.njit(**_INLINE)(
        _with_globals(_backward, backward_layer=backward_layer)
    )
    key = hashlib.sha1(repr((family, dtype, _source_hash())).encode()).hexdigest()

    def compiled(function, **names):
        function = _with_globals(function, _loss_sum=loss_sum, _forward=forward,
                                 _backward=backward, **names)  # fmt: skip
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


class _Tables(NamedTuple):
    """The layer table, the layers' options and the sizes of the workspaces."""

    layers: np.ndarray
    options: np.ndarray
    activations: int
    deltas: int
    work: int
    work64: int


def _layer_table(network, rows: int, features: int) -> _Tables:
    """Each layer's row of the table (:data:`LAYER_RECORD`): its kind, widths, parameter
    segment, workspaces and options, and where its input, output and deltas lie."""
    kinds = {cls: kind for kind, cls in enumerate(LAYERS.values())}
    table = np.zeros(len(network.layers), LAYER_RECORD)
    flat, options = network._flat_parameters, []
    width, current, used, work, work64 = features, -1, 0, 0, 0
    for index, layer in enumerate(network.layers):
        out_width = layer.output_features(width)
        params = layer.parameters()
        sizes = layer.workspace(rows, width)
        values = layer.options()
        row = table[index : index + 1]
        row["kind"], row["identity"] = kinds[type(layer)], layer.identity
        row["width_in"], row["width_out"] = width, out_width
        row["params"] = _offset(params[0], flat) if params else 0
        row["params_size"] = sum(p.size for p in params)
        row["work"], row["work_size"], row["work64"], row["work64_size"] = (
            work, sizes[0], work64, sizes[1]
        )  # fmt: skip
        row["options"], row["options_size"] = len(options), len(values)
        work, work64 = work + sizes[0], work64 + sizes[1]
        options += values
        row["input"] = current
        if not layer.identity:
            current, used = used, used + rows * out_width
        row["output"] = current
        width = out_width
    row["grad_in"] = -1
    current, deltas = 0, rows * width  # d loss / d scores first
    for index in range(len(network.layers) - 1, network._first_trainable - 1, -1):
        row = table[index : index + 1]
        row["grad_out"], row["grad_in"] = current, -1
        if row["identity"][0]:
            row["grad_in"] = current
        elif index > network._first_trainable:
            current, deltas = deltas, deltas + rows * int(row["width_in"][0])
            row["grad_in"] = current
    return _Tables(
        table, np.array(options, dtype=np.float64), used, deltas, work, work64
    )


def _optimizer_settings(settings: np.ndarray, optimizer) -> None:
    """The optimizer's kind and hyperparameters into ``settings``."""
    settings["weight_decay"] = optimizer.weight_decay
    if isinstance(optimizer, SGD):
        settings["optimizer"] = PLAIN_SGD
        settings["momentum"], settings["dampening"] = (
            optimizer.momentum, optimizer.dampening
        )  # fmt: skip
        settings["nesterov"] = optimizer.nesterov
        return
    settings["optimizer"] = ADAM_AMSGRAD if optimizer.amsgrad else ADAM
    settings["beta1"], settings["beta2"] = optimizer.betas
    settings["eps"] = optimizer.eps
    settings["decoupled"] = optimizer._decoupled_weight_decay


def supported(network, optimizer) -> bool:
    """Whether :func:`plan` compiles training of ``network`` by ``optimizer`` (the rule
    of the module docstring)."""
    import numbce

    types_ = set(LAYERS.values())
    return (
        all(
            type(layer) in types_ and (layer.identity or layer.forward_form is not None)
            for layer in network.layers
        )
        and network._standard_math()
        and network.loss in FAMILIES
        and network.loss_function
        is getattr(numbce, f"{network.loss}_value_and_grad", None)
        and type(optimizer) in (Adam, AdamW, SGD)
        and optimizer.flat_params is network._flat_parameters
    )


class CompiledFit:
    """The buffers and settings of one compiled ``fit``; :meth:`run` trains epochs."""

    def __init__(self, network, optimizer, data, validation, batch_size, l2,
                 noise_seed=-1) -> None:  # fmt: skip
        X, y, weight, label_weight = data
        dtype, columns = network.dtype, network.outputs
        self.network, self.optimizer = network, optimizer
        n = X.shape[0]
        X = X.reshape(n, -1)
        rows = max(network._rows, batch_size)
        tables = _layer_table(network, rows, X.shape[1])
        # The options the Python loop's first loss call would check, checked alike.
        network.loss_value_and_grad(
            np.full((1, columns), 0.5, dtype), np.zeros((1, columns), dtype)
        )
        family = FAMILIES[network.loss]
        request = _validate.validate(
            family,
            _validate.Outputs(loss=True, grad=True),
            np.zeros((1, columns), dtype),
            np.zeros((1, columns), dtype),
            **dict(network.loss_options),
        )
        param = np.float64 if family.float32_in_float64 else dtype.type
        self.params = tuple(param(value) for value in request.params)
        pos_weight = np.broadcast_to(
            np.asarray(request.pos_weight, dtype=np.float64), (1, columns)
        )
        placeholder = np.ones((1, 1), dtype)
        self.data = TrainingData(*map(_read_only, (
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
            X_val = validation[0].reshape(validation[0].shape[0], -1)
            y_val = validation[1]
        val_scores = np.empty(
            (X_val.shape[0] if X_val.shape[0] > rows else 0, columns), dtype
        )
        self.validation = ValidationData(
            np.ascontiguousarray(X_val).reshape(-1), y_val, val_scores
        )
        flat = network._flat_parameters
        self.model = Model(
            tables.layers.view(np.uint8),
            tables.options,
            flat,
            network._flat_gradients,
            np.empty_like(flat),
            np.empty_like(flat),
            network._weight_ranges,
        )
        state = optimizer._flat_state
        self.state = OptimizerState(*(state + (state[-1],) * 3)[:3])
        blocks = -(-max(rows, X_val.shape[0]) * columns // _config.BLOCK)
        self.work = self._workspace(tables, rows, X.shape[1], columns, blocks, dtype,
                                    weight is not None)  # fmt: skip
        self.validation_work = self._workspace(tables, rows, 0, 0, blocks, dtype, False)
        settings = np.zeros(1, SETTINGS)
        settings["l2"], settings["threshold"] = l2, network._threshold
        settings["batch_size"], settings["rows"] = batch_size, rows
        settings["first"] = network._first_trainable
        settings["weighting"] = (weight is not None) * SAMPLE_WEIGHT + (
            label_weight is not None
        ) * LABEL_WEIGHT
        _optimizer_settings(settings, optimizer)
        settings["noise_seed"], settings["monitor"], settings["best_epoch"] = (
            noise_seed, -1, -1
        )  # fmt: skip
        self.settings = settings
        self.n, self.batch_size = n, batch_size
        self.steps_per_epoch = -(-n // batch_size)
        self.kernel, self.validator = _train_kernel(network.loss, dtype.name)
        self.no_snapshots = np.empty((0, flat.size), dtype)

    @staticmethod
    def _workspace(tables, rows, features, columns, blocks, dtype, weighted):
        """A :class:`Workspace` (with ``features`` = 0, one for validation only)."""
        return Workspace(
            np.empty(tables.activations, dtype),
            np.empty(tables.deltas, dtype),
            np.empty(tables.work, dtype),
            np.empty(tables.work64),
            np.empty(rows * features, dtype),
            np.empty((rows if columns else 0, columns), dtype),
            np.empty((rows, 1), dtype) if weighted else np.ones((1, 1), dtype),
            LossWork(
                np.empty(_config.BLOCK, dtype),
                np.empty(_config.BLOCK // 2),
                np.empty(blocks),
                np.empty(blocks + 1),
            ),
        )

    def stop_when(self, stopper) -> bool:
        """Run ``stopper``'s rule (an exact :class:`~numbce.nn.callbacks.EarlyStopping`
        after its ``on_train_begin``) inside the epochs, if its metric is computed there;
        whether it is."""
        column = METRIC_COLUMNS.get(stopper.monitor)
        if (
            column is None
            or (column >= VAL_LOSS and not self.validation.y.shape[0])
            or (column in (LABEL_ACCURACY, VAL_LABEL_ACCURACY)
                and self.network.outputs == 1)
        ):  # fmt: skip
            return False
        settings = self.settings
        settings["monitor"], settings["sign"] = column, stopper.best.sign
        settings["min_delta"], settings["patience"] = (
            stopper.best.min_delta, stopper.patience
        )  # fmt: skip
        settings["restore"] = stopper.restore_best_weights
        settings["best"], settings["wait"] = stopper.best.value, stopper.wait
        return True

    def stop_state(self):
        """The rule's (best value, best epoch or None, wait, best epoch's parameters or
        None)."""
        settings = self.settings[0]
        epoch = int(settings["best_epoch"])
        best = None
        if epoch >= 0 and settings["restore"]:
            best = [p.copy() for p in views_like(self.model.best,
                                                   self.network._parameters)]  # fmt: skip
        return (
            float(settings["best"]),
            None if epoch < 0 else epoch,
            int(settings["wait"]),
            best,
        )

    def _arguments(self, lrs, orders, snapshots, logs) -> tuple:
        return (self.data, self.validation, self.model, self.state, self.work,
                self.settings.view(np.uint8), self.params, lrs, orders, snapshots,
                logs)  # fmt: skip

    def _validator_arguments(self, snapshots, logs) -> tuple:
        return (snapshots, self.validation, self.model, self.validation_work,
                self.settings.view(np.uint8), self.params, self.data, logs)  # fmt: skip

    def ready(self) -> bool:
        """Whether the epoch functions are compiled, in this process or in Numba's cache
        (then loaded): :meth:`run` and :meth:`validate` would not compile."""
        if self.kernel.overloads and self.validator.overloads:
            return True  # every fit of the family and dtype has the same signature
        logs, orders = np.zeros((1, 6)), np.zeros((1, 1), np.int64)
        arguments = self._arguments(np.zeros(1), orders, self.no_snapshots, logs)
        return load_compiled(self.kernel, *arguments) and load_compiled(
            self.validator, *self._validator_arguments(self.no_snapshots, logs)
        )

    def run(
        self, orders: np.ndarray, snapshots: np.ndarray | None = None
    ) -> tuple[np.ndarray, str | None, bool]:
        """Train one epoch per row of ``orders``; return the metrics of the epochs
        completed (one row each: the columns LOSS ... VAL_LABEL_ACCURACY), None or the
        reason training failed (the parameters then are those of the failing epoch's
        start), and whether the early-stopping rule ended training. With ``snapshots``
        (one row per epoch, of the parameters' size), each epoch's parameters are kept
        there instead of validated: :meth:`validate` fills the validation columns later
        (and may run beside the next call)."""
        optimizer = self.optimizer
        steps = orders.shape[0] * self.steps_per_epoch
        first = optimizer.step_count
        if callable(optimizer.lr):
            lrs = np.array(
                [optimizer._scheduled_lr(t) for t in range(first, first + steps)]
            )
        else:
            lrs = np.full(steps, optimizer._step_lr)
        self.settings["step"] = first
        logs = np.zeros((orders.shape[0], 6))
        if snapshots is None:
            snapshots = self.no_snapshots
        elif snapshots.shape != (len(orders), self.no_snapshots.shape[1]) or (
            snapshots.dtype != self.no_snapshots.dtype
        ):
            raise ValueError("snapshots must hold one row of parameters per epoch")
        done, taken, status, batch, loss = self.kernel(
            *self._arguments(lrs, orders, snapshots, logs)
        )
        optimizer.step_count += taken
        self.settings["fit_step"] += taken
        self.settings["fit_epoch"] += done
        if taken:
            optimizer._step_lr = float(lrs[taken - 1])
        reason = None
        if status == BAD_LOSS:
            reason = f"the loss is {self.network.dtype.type(loss)} at batch {batch}"
        elif status == BAD_PARAMETERS:
            reason = "the update of the last batch left non-finite parameters"
        if reason is not None:
            np.copyto(self.network._flat_parameters, self.model.epoch_start)
        return logs[:done], reason, status == STOPPED

    def validate(self, snapshots: np.ndarray, logs: np.ndarray) -> np.ndarray:
        """Fill the validation columns of ``logs`` (of :meth:`run`) from the parameters
        in ``snapshots``, on this object's own validation workspace; return ``logs``."""
        self.validator(*self._validator_arguments(snapshots, logs))
        return logs


def plan(network, optimizer, data, validation, batch_size, l2,
         noise_seed=-1) -> CompiledFit | None:  # fmt: skip
    """A :class:`CompiledFit` for this ``fit``, or None where the Python loop must run
    (see the module docstring)."""
    if not supported(network, optimizer):
        return None
    return CompiledFit(network, optimizer, data, validation, batch_size, l2, noise_seed)


# -- compiling for later fits ------------------------------------------------------------

_LAUNCHED: set[tuple[str, str]] = set()
"""(family, dtype) of the background compiles this process started."""

STALE_LOCK_SECONDS = 600
"""A background compile's lock file older than this is taken to be abandoned."""


def lock_path(family: str, dtype: str) -> pathlib.Path:
    """The lock file of a background compile: one per family, dtype, sources, Python
    and cache directory on this machine."""
    key = repr((family, dtype, _source_hash(), sys.executable,
                numba.config.CACHE_DIR, numba.config.CPU_NAME))  # fmt: skip
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return pathlib.Path(tempfile.gettempdir()) / f"numbce-compile-{digest}.lock"


def _spare_core() -> bool:
    """Whether a second process would not slow this one: two cores or more for this
    process, and of the load average, besides about one for this busy process, at most
    half a core on the cores left."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1
    )  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cores >= 2 and load - 1 <= cores - 1.5


def compile_in_background(family: str, dtype: str) -> subprocess.Popen | None:
    """Start a process, at low priority, that compiles the epochs of ``family`` and
    ``dtype`` into Numba's cache, so that later fits run compiled; once per process and
    at most one at a time on the machine (a lock file), never without a spare core, and
    not where ``numbce._config.BACKGROUND_COMPILE`` is false. Returns the process, or
    None where none started."""
    if (
        not _config.BACKGROUND_COMPILE
        or (family, dtype) in _LAUNCHED
        or not _spare_core()
    ):
        return None
    _LAUNCHED.add((family, dtype))
    lock = lock_path(family, dtype)
    try:
        if time.time() - lock.stat().st_mtime < STALE_LOCK_SECONDS:
            return None
    except FileNotFoundError:
        pass
    try:
        lock.touch()
    except OSError:
        return None
    command = (
        f"from numbce.nn.network import compile_epochs; compile_epochs({family!r}, "
        f"{dtype!r}, niceness=10)"
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:  # no process could start: the next fit of the family tries again
        _LAUNCHED.discard((family, dtype))
        lock.unlink(missing_ok=True)
        return None
