"""Training of a :class:`~numbce.nn.Sequential` network: :func:`fit` (mini-batches,
Keras-style), :func:`metrics` (loss and accuracies), the validation split and the sample
weights. A network's ``fit`` method is :func:`fit`; its progress is reported to callbacks
(:mod:`numbce.nn.callbacks`).
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Self

import numpy as np

from numbce import _config
from numbce._cache import CompileNotice
from numbce.nn import compiled
from numbce.nn.callbacks import EarlyStopping, EpochLog, History, ProgressBar, call_hook
from numbce.optim import Adam, Optimizer

if TYPE_CHECKING:
    from numbce.nn.network import Sequential

__all__ = ["COMPILE_NOTICE", "fit", "metrics"]

COMPILE_NOTICE = (
    "compiling numbce kernels, first run only (later runs load them from Numba's cache; "
    "seconds to a minute) ..."
)
"""What ``fit(verbose=1 or 2)`` prints to stderr when it compiles a kernel."""

OBSERVERS = (ProgressBar, EpochLog)
"""Callbacks that only report: compiled training runs many epochs a call with them, and
calls them for each epoch after the call."""

FIRST_ORDERS = 4
"""Epochs whose sample orders compiled training draws before its first call (the next
ones are drawn while it trains: see :func:`_order_blocks`)."""


def check_count(name: str, value, least: int) -> int:
    """``value`` as an int, which must be an integer >= ``least`` (else ValueError)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < least
    ):
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def count_correct(
    scores: np.ndarray, y: np.ndarray, threshold: float
) -> tuple[int, int]:
    """(samples whose every label is right, labels right) for the predictions
    ``scores > threshold`` against the labels ``y > 0.5``, both (n, C): the counts of
    ``numbce.nn.compiled.count_correct``, which the compiled epochs use, in NumPy (no
    compile before a first fit; the same integers)."""
    right = (scores > threshold) == (y > 0.5)
    labels = int(np.count_nonzero(right))
    return (labels if y.shape[1] == 1 else int(right.all(axis=1).sum())), labels


def _accuracies(network: Sequential, samples: int, labels: int, n: int) -> dict:
    """``accuracy`` (the fraction of samples whose every label is right: for C > 1 the
    subset accuracy, scikit-learn's ``accuracy_score``) and, for C > 1, ``label_accuracy``
    (the fraction of labels right)."""
    accuracies = {"accuracy": samples / n}
    if network.outputs > 1:
        accuracies["label_accuracy"] = labels / (n * network.outputs)
    return accuracies


def metrics(network: Sequential, X, y, sample_weight=None) -> dict[str, float]:
    """``loss`` (the mean loss, weighted by ``sample_weight``), ``accuracy`` and, with
    C > 1 labels, ``label_accuracy`` of ``network`` on checked ``X`` and ``y`` (n, C)."""
    weight = _sample_weights(network, y, sample_weight, None)
    scores = network._scores(X)
    loss, _ = network.loss_value_and_grad(scores, y, weight)
    samples, labels = count_correct(scores, y, network._threshold)
    return {"loss": float(loss), **_accuracies(network, samples, labels, X.shape[0])}


def _sample_weights(
    network: Sequential, y: np.ndarray, sample_weight, class_weight: Mapping | None
) -> np.ndarray | None:
    """The weight of each sample, (n, 1) in the network's dtype: ``sample_weight`` (n,)
    times ``class_weight[label]`` (a dict over the labels 0 and 1; one output, 0/1
    labels); None when neither is given."""
    if sample_weight is None and class_weight is None:
        return None
    n = y.shape[0]
    weights = np.ones(n)
    if sample_weight is not None:
        given = np.asarray(sample_weight)
        if given.shape != (n,) or given.dtype.kind not in "biuf":
            raise ValueError(
                f"sample_weight must hold {n} numbers, one per sample, got "
                f"{given.dtype} of shape {given.shape}"
            )
        if not (np.isfinite(given) & (given >= 0)).all():
            raise ValueError("sample_weight must be finite and >= 0")
        if not given.any():
            raise ValueError("sample_weight is all zero: nothing to train on")
        weights *= given
    if class_weight is not None:
        if not isinstance(class_weight, Mapping) or not set(class_weight) <= {0, 1}:
            raise ValueError(
                f"class_weight must be a dict over the labels 0 and 1, got {class_weight!r}"
            )
        if network.outputs != 1 or not np.isin(y, (0, 1)).all():
            raise ValueError(
                "class_weight needs one output and 0/1 labels; weigh labels with the "
                "loss's pos_weight or with sample_weight"
            )
        values = [float(class_weight.get(label, 1.0)) for label in (0, 1)]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(
                f"class_weight must be finite and >= 0, got {class_weight}"
            )
        weights *= np.where(y[:, 0] == 1, values[1], values[0])
    return weights.astype(network.dtype).reshape(n, 1)


def _label_weights(network: Sequential, label_weight) -> np.ndarray | None:
    """``label_weight`` as (C,) of the network's dtype: each label's loss is multiplied
    by its weight (the kernel broadcasts it over the samples: no (n, C) copy)."""
    if label_weight is None:
        return None
    weights = np.asarray(label_weight)
    if weights.shape != (network.outputs,) or weights.dtype.kind not in "biuf":
        raise ValueError(
            f"label_weight must hold {network.outputs} numbers, one per label, got "
            f"{weights.dtype} of shape {weights.shape}"
        )
    if not (np.isfinite(weights) & (weights >= 0)).all():
        raise ValueError("label_weight must be finite and >= 0")
    return weights.astype(network.dtype)


def _split_validation(network, X, y, weight, validation_data, validation_split):
    """(X_train, y_train, weight_train, (X_val, y_val) or None), all checked."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        X_val, y_val = network._checked(*validation_data)
        if X_val.shape[1:] != X.shape[1:]:
            raise ValueError(
                f"validation samples have shape {X_val.shape[1:]}, training samples "
                f"{X.shape[1:]}"
            )
        return X, y, weight, (X_val, y_val)
    if not validation_split:
        return X, y, weight, None
    if not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be in [0, 1), got {validation_split!r}"
        )
    split_at = math.ceil(X.shape[0] * (1 - validation_split))
    if split_at in (0, X.shape[0]):
        raise ValueError(
            f"validation_split={validation_split} leaves no training or no validation "
            f"sample out of {X.shape[0]}"
        )
    train_weight = None if weight is None else weight[:split_at]
    return X[:split_at], y[:split_at], train_weight, (X[split_at:], y[split_at:])


def _checked_optimizer(network: Sequential, optimizer: Optimizer | None) -> Optimizer:
    """``optimizer``, which must update ``network``'s parameters; default Adam."""
    parameters = network._parameters
    if optimizer is None:
        return Adam(parameters)
    if len(optimizer.params) != len(parameters) or any(
        a is not b for a, b in zip(optimizer.params, parameters)
    ):
        raise ValueError(
            "the optimizer must be built on this network's parameters(), "
            "e.g. Adam(model.parameters())"
        )
    return optimizer


def _metric_names(network: Sequential, validation: bool) -> list[str]:
    names = ["loss", "accuracy"] + ["label_accuracy"] * (network.outputs > 1)
    return names + [f"val_{name}" for name in names] * validation


def fit(
    network: Sequential,
    X,
    y,
    epochs: int = 1,
    batch_size: int = 32,
    optimizer: Optimizer | None = None,
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    verbose: int = 0,
    sample_weight=None,
    class_weight: Mapping | None = None,
    label_weight=None,
    l2: float = 0.0,
    callbacks: Sequence = (),
    early_stopping: bool = False,
    monitor: str = "val_loss",
    patience: int = 10,
    min_delta: float = 0.0,
    restore_best_weights: bool = True,
) -> History:
    """Train with mini-batches (``keras.Model.fit``); return the :class:`History`.

    ``X`` (n, *features); ``y`` (n, C), or (n,) for one output, of targets in [0, 1]
    (0/1 labels or soft labels). Each epoch visits every sample once, in an order drawn
    from ``seed`` when ``shuffle`` (the same seed gives the same weights bit for bit);
    each batch is one forward pass, one loss+gradient pass of the network's loss and one
    ``optimizer.step``. ``optimizer`` must be built on the network's ``parameters()``
    (default ``Adam(lr=1e-3)``). ``batch_size`` above the sample count is clamped to it
    (as scikit-learn does).

    Weights: the batch loss is ``sum(w * l) / (batch * C)`` (Keras' convention: weights
    do not change the divisor), with ``w`` = ``sample_weight`` (n,) times
    ``class_weight[label]`` (a dict over 0 and 1; one output) times ``label_weight``
    (C,), each broadcast by the kernel (a (batch, C) product only when both sample and
    label weights are given). For a per-label ``pos_weight`` (C,), give it to the
    network's ``loss_options``. ``l2`` adds scikit-learn's
    penalty ``l2 / (2 batch) * sum ||W||^2`` over the Linear weights (not the biases).

    Validation: ``validation_data=(X_val, y_val)``, or ``validation_split``, the fraction
    of samples taken from the end of ``X`` before shuffling (as Keras). ``callbacks``:
    objects of the :mod:`numbce.nn.callbacks` protocol, called after every epoch with
    its metrics: ``loss``, ``accuracy`` (means over the epoch's batches, measured while
    the weights change), ``label_accuracy`` with C > 1 labels, and ``val_``-prefixed,
    with validation data, measured after the epoch. ``early_stopping`` is a shorthand for
    ``callbacks=[EarlyStopping(monitor, min_delta, patience,
    restore_best_weights=restore_best_weights)]``. ``verbose``: 0 silent, 1 a progress
    bar, 2 one line per epoch.

    Bad input raises ValueError before any training. A non-finite loss, or non-finite
    parameters after an epoch's last update, raise FloatingPointError naming the epoch,
    with the parameters of the epoch's start restored.

    Random layers (:class:`~numbce.nn.layers.Dropout`) draw from a seed taken from the
    fit's generator before the first epoch's order.

    Where :mod:`numbce.nn.compiled` covers the network and optimizer, the epochs may run
    compiled, with the same results bit for bit; else in this module's Python loop.
    ``numbce._config.COMPILED_EPOCHS`` decides: by default, compiled where they are
    compiled already (this process or Numba's cache), else the Python loop while a
    background process compiles them for later fits (``History.params["compiled"]``
    says which ran). With ``verbose``, compiling a kernel is announced on stderr
    (:data:`COMPILE_NOTICE`, once per process).
    """
    X, y = network._checked(X, y)
    weight = _sample_weights(network, y, sample_weight, class_weight)
    label_weight = _label_weights(network, label_weight)
    epochs = check_count("epochs", epochs, 0)
    batch_size = check_count("batch_size", batch_size, 1)
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if not 0 <= l2 < math.inf:
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
    X, y, weight, validation = _split_validation(
        network, X, y, weight, validation_data, validation_split
    )
    optimizer = _checked_optimizer(network, optimizer)
    callbacks = [History(), *callbacks]
    if early_stopping:
        if monitor not in _metric_names(network, validation is not None):
            raise ValueError(
                f"cannot monitor {monitor!r}: the metrics are "
                f"{_metric_names(network, validation is not None)}"
                + ("" if validation else " (val_ ones need validation data)")
            )
        callbacks.append(
            EarlyStopping(
                monitor,
                min_delta,
                check_count("patience", patience, 1),
                restore_best_weights=restore_best_weights,
            )
        )
    callbacks += [ProgressBar()] * (verbose == 1) + [EpochLog()] * (verbose == 2)

    n = X.shape[0]
    batch_size = min(batch_size, n)
    network._allocate(max(batch_size, network._rows), X.shape[1:])
    batch_X = np.empty((batch_size, *X.shape[1:]), network.dtype)
    batch_y = np.empty((batch_size, network.outputs), network.dtype)
    batch_weight = None if weight is None else np.empty((batch_size, 1), network.dtype)
    both = weight is not None and label_weight is not None
    batch_product = np.empty_like(batch_y) if both else None
    update, gradients = (
        (optimizer.step_flat, network._flat_gradients)
        if optimizer.flat_params is network._flat_parameters
        else (optimizer.step, network._gradients)
    )
    rng = np.random.default_rng(seed)
    # Random layers draw from the fit's generator: one seed, before any sample order.
    random = any(getattr(layer, "random", False) for layer in network.layers)
    noise_seed = int(rng.integers(2**62)) if random else -1
    notice = CompileNotice(sys.stderr, COMPILE_NOTICE) if verbose else nullcontext()
    with notice:
        runner = _runner(network, optimizer, (X, y, weight, label_weight), validation,
                         batch_size, l2, noise_seed)  # fmt: skip
        params = {
            "epochs": epochs,
            "batch_size": batch_size,
            "steps": -(-n // batch_size),
            "samples": n,
            "compiled": runner is not None,
        }
        network.stop_training = False
        call_hook(callbacks, "set_model", network)
        call_hook(callbacks, "on_train_begin", params)
        history, logs = callbacks[0], {}
        if runner is None:
            epoch_logs = _python_epochs(
                network,
                (X, y, weight, label_weight),
                (batch_X, batch_y, batch_weight, batch_product),
                (update, gradients, l2, validation, noise_seed),
                epochs,
                rng if shuffle else None,
            )
        else:
            epoch_logs = _compiled_fit(runner, callbacks, validation, epochs,
                                       rng if shuffle else None)  # fmt: skip
        for epoch, logs in epoch_logs:
            call_hook(callbacks, "on_epoch_end", epoch, logs)
            if network.stop_training:
                break
    if not logs and history.epoch:  # batched compiled epochs: History has them
        logs = {name: values[-1] for name, values in history.history.items()}
    call_hook(callbacks, "on_train_end", logs)
    history.best_epoch = next(
        (c.best_epoch for c in callbacks if isinstance(c, EarlyStopping)), None
    )
    return history


def _runner(network, optimizer, data, validation, batch_size, l2, noise_seed):
    """The :class:`~numbce.nn.compiled.CompiledFit` that runs this fit's epochs, or None
    for the Python loop (``numbce._config.COMPILED_EPOCHS``; with ``"auto"``, compiled
    only where compiled already, else a background compile for later fits)."""
    mode = _config.COMPILED_EPOCHS
    if mode not in ("auto", "always", "never"):
        raise ValueError(
            "numbce._config.COMPILED_EPOCHS must be 'auto', 'always' or 'never', got "
            f"{mode!r}"
        )
    if mode == "never":
        return None
    runner = compiled.plan(network, optimizer, data, validation, batch_size, l2,
                           noise_seed)  # fmt: skip
    if runner is not None and mode == "auto" and not runner.ready():
        compiled.compile_in_background(network.loss, network.dtype.name)
        return None
    return runner


def _compiled_fit(runner, callbacks, validation, epochs, rng):
    """The compiled epochs, as ``(epoch, logs)`` for the callbacks still to be called.

    Where every callback but History is an observer (:data:`OBSERVERS`) or one
    :class:`EarlyStopping` whose rule the epochs run themselves, calls run many epochs;
    History records them and the observers are called a call at a time, here, and the
    rule's state is handed to the EarlyStopping at the end: nothing is left to yield.
    Otherwise, one epoch a call, every callback called after each."""
    history, others = callbacks[0], callbacks[1:]
    stoppers = [c for c in others if type(c) is EarlyStopping]
    observers = [c for c in others if type(c) in OBSERVERS]
    if (
        len(stoppers) > 1
        or len(stoppers) + len(observers) != len(others)
        or (stoppers and not runner.stop_when(stoppers[0]))
    ):
        for done, metrics in _compiled_epochs(runner, validation, epochs, rng, False):
            for k, epoch in enumerate(done):
                yield epoch, {name: values[k] for name, values in metrics.items()}
        return
    try:
        for done, metrics in _compiled_epochs(runner, validation, epochs, rng, True):
            history.extend(done, metrics)
            for k, epoch in enumerate(done if observers else ()):
                call_hook(observers, "on_epoch_end", epoch,
                          {name: values[k] for name, values in metrics.items()})  # fmt: skip
    finally:
        if stoppers:
            stopper = stoppers[0]
            best, stopper.best_epoch, stopper.wait, weights = runner.stop_state()
            stopper.best.value = best
            if weights is not None:
                stopper.best_weights = weights
            if runner.stopped_at is not None:
                stopper.stopped_epoch = runner.stopped_at
                runner.network.stop_training = True


def _stopped(epoch: int, epochs: int, reason: str) -> FloatingPointError:
    return FloatingPointError(
        f"training stopped at epoch {epoch + 1}/{epochs}: {reason}; the parameters are "
        f"those of the start of epoch {epoch + 1}"
    )


def _python_epochs(network, data, batch, step, epochs, rng):
    """The Python loop: yield ``(epoch, logs)`` after each epoch (orders drawn from
    ``rng``, None: no shuffling); raise FloatingPointError, the parameters of the
    epoch's start restored, when an epoch goes non-finite."""
    update, gradients, l2, validation, noise_seed = step
    n = data[0].shape[0]
    order = np.arange(n)
    epoch_start_params = network._flat_parameters.copy()
    steps = -(-n // batch[0].shape[0])
    for epoch in range(epochs):
        np.copyto(epoch_start_params, network._flat_parameters)
        if rng is not None:
            order = rng.permutation(n)
        try:
            noise = noise_seed, epoch * steps
            logs = _train_epoch(network, data, batch, order, update, gradients, l2,
                                noise)  # fmt: skip
            if not np.isfinite(network._flat_parameters).all():
                raise FloatingPointError(
                    "the update of the last batch left non-finite parameters"
                )
        except FloatingPointError as error:
            np.copyto(network._flat_parameters, epoch_start_params)
            raise _stopped(epoch, epochs, str(error)) from None
        if validation is not None:
            logs |= {
                f"val_{name}": value
                for name, value in metrics(network, *validation).items()
            }
        yield epoch, logs


def _draw_orders(rng, count: int, n: int) -> np.ndarray:
    """``count`` sample orders, one row per epoch: the draws of ``rng.permutation(n)``
    per epoch (the Python loop's), in one ``rng.permuted`` call; ``rng`` None: no
    shuffling."""
    orders = np.empty((count, n), dtype=np.int64)
    orders[:] = np.arange(n)
    if rng is not None:
        rng.permuted(orders, axis=1, out=orders)
    return orders


def _order_blocks(rng, epochs: int, n: int, beside: _Beside):
    """The sample orders of ``epochs`` epochs in blocks (:func:`_draw_orders`): the
    first of :data:`FIRST_ORDERS` epochs, drawn at once, each next one 4 times as large
    (at most :data:`~numbce.nn.compiled.MAX_ORDER_ELEMENTS` indices), drawn by
    ``beside`` while the previous block trains."""
    most = max(1, compiled.MAX_ORDER_ELEMENTS // n)
    size, left = min(FIRST_ORDERS, most, epochs), epochs
    orders = _draw_orders(rng, size, n) if size else None
    while orders is not None:
        left -= size
        size = min(4 * size, most, left)
        pending = beside.submit(_draw_orders, rng, size, n) if size else None
        yield orders
        orders = None if pending is None else pending.result()


class _Beside:
    """Work for a second thread beside compiled training (a one-thread pool, started
    by the first ``submit`` of a ``fit`` and shut down with it), done at once on the
    calling thread where no thread may start (at interpreter shutdown)."""

    pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Self:
        return self

    def submit(self, function, *args) -> Future:
        try:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(1, thread_name_prefix=_BESIDE)
            return self.pool.submit(function, *args)
        except RuntimeError:  # cannot schedule new futures after interpreter shutdown
            done = Future()
            done.set_result(function(*args))
            return done

    def __exit__(self, *error) -> None:
        # Queued work is dropped, running work finished (it may hold the caller's
        # generator), unless this is that thread (a collected generator).
        if self.pool is not None:
            beside = threading.current_thread().name.startswith(_BESIDE)
            self.pool.shutdown(wait=not beside, cancel_futures=True)


_BESIDE = "numbce-fit"


def _compiled_epochs(runner, validation, epochs, rng, batched):
    """:func:`_python_epochs` by ``runner`` (a :class:`~numbce.nn.compiled.CompiledFit`);
    yield each call's ``(epochs, metrics)``: the epochs (a range) and their metrics by
    name, a list of one value per epoch. Sets ``runner.stopped_at`` to the epoch the
    runner's early-stopping rule ended training at (else None).

    Not ``batched``: one epoch a call, its order drawn just before it (the generator
    advances as in the Python loop). ``batched``: a second thread draws the orders a
    block ahead, calls run many epochs, and with validation data (unless the
    early-stopping rule monitors it) each call keeps its epochs' parameters and that
    thread computes their validation metrics while the next call trains (the same
    parameters, the same metrics); calls then shrink towards the end, so that little
    validation is left when training ends. Validation stays in the call for fits of up
    to 4 epochs and for networks of more than ``MAX_ORDER_ELEMENTS // 4`` parameters
    (their two snapshot buffers would be large)."""
    network, n = runner.network, runner.n
    runner.stopped_at = None
    params = network._flat_parameters.size
    most = min(-(-2 * epochs // 3), compiled.MAX_ORDER_ELEMENTS // params)
    monitor = int(runner.settings["monitor"][0])
    deferred = (
        batched and validation is not None and most >= 4 and monitor < compiled.VAL_LOSS
    )
    buffers = [np.empty((most, params), network.dtype) for _ in range(2 * deferred)]
    names = _metric_names(network, validation is not None)
    columns = [compiled.METRIC_COLUMNS[name] for name in names]
    epoch, calls, waiting = 0, 0, None

    def results(rows, done):
        return done, {name: rows[:, k].tolist() for name, k in zip(names, columns)}

    def ended(done, reason, stopped):
        if reason is not None:
            raise _stopped(done.stop, epochs, reason)
        if stopped:
            runner.stopped_at = done.stop - 1
        return stopped

    if not batched:
        for epoch in range(epochs):
            rows, reason, stopped = runner.run(_draw_orders(rng, 1, n))
            done = range(epoch, epoch + rows.shape[0])
            yield results(rows, done)
            if ended(done, reason, stopped):
                return
        return
    with _Beside() as beside:
        for orders in _order_blocks(rng, epochs, n, beside):
            start = 0
            while start < len(orders):
                size = len(orders) - start
                if deferred:
                    size = min(size, most, max(1, -(-2 * (epochs - epoch) // 3)))
                block = orders[start : start + size]
                start += size
                if deferred:
                    snapshots = buffers[calls % 2][:size]
                    rows, reason, stopped = runner.run(block, snapshots)
                    job = beside.submit(runner.validate, snapshots[: len(rows)], rows)
                else:
                    rows, reason, stopped = runner.run(block)
                calls += 1
                done = range(epoch, epoch + rows.shape[0])
                epoch = done.stop
                # The previous call's validation, done meanwhile.
                if waiting is not None:
                    yield results(waiting[0].result(), waiting[1])
                    waiting = None
                if deferred:
                    waiting = job, done
                else:
                    yield results(rows, done)
                if reason is not None or stopped:
                    if waiting is not None:
                        yield results(waiting[0].result(), waiting[1])
                    ended(done, reason, stopped)
                    return
        if waiting is not None:
            yield results(waiting[0].result(), waiting[1])


def _l2_penalty(network: Sequential, l2: float, count: int) -> float:
    """Add ``l2 / count * W`` to every Linear weight's gradient; return the penalty
    ``l2 / (2 count) * sum ||W||^2`` (the squares summed in float64)."""
    squares = compiled.add_l2(
        network._flat_parameters,
        network._flat_gradients,
        network._weight_ranges,
        network.dtype.type(l2 / count),
    )
    return l2 / (2 * count) * squares


def _train_epoch(network, data, batch, order, update, gradients, l2, noise) -> dict:
    """One pass over ``data = (X, y, weight)`` in the given ``order``, in batches
    gathered into ``batch = (X, y, weight)`` buffers, ``update(gradients)`` after each
    batch's backward pass; the epoch's metrics (loss and accuracies: means over it).
    ``noise``: (the random layers' seed, the fit's steps before this epoch)."""
    X, y, weight, label_weight = data
    batch_X, batch_y, batch_weight, batch_product = batch
    flat_X, flat_batch_X = (
        X.reshape(X.shape[0], -1),
        batch_X.reshape(batch_X.shape[0], -1),
    )
    batch_size = batch_X.shape[0]
    total_loss, samples_right, labels_right = 0.0, 0, 0
    for start in range(0, order.size, batch_size):
        rows = order[start : start + batch_size]
        count = rows.size
        np.take(flat_X, rows, axis=0, out=flat_batch_X[:count])
        np.take(y, rows, axis=0, out=batch_y[:count])
        if weight is not None:
            np.take(weight, rows, axis=0, out=batch_weight[:count])
        targets = batch_y[:count]
        step = noise[1] + start // batch_size
        scores = network._forward_pass(batch_X[:count], noise[0], step)
        kernel_weight = label_weight
        if weight is not None:
            kernel_weight = batch_weight[:count]
            if label_weight is not None:
                kernel_weight = np.multiply(
                    kernel_weight, label_weight, out=batch_product[:count]
                )
        loss, grad = network.loss_value_and_grad(scores, targets, kernel_weight)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss} at batch {start // batch_size + 1}"
            )
        samples, labels = count_correct(scores, targets, network._threshold)
        samples_right, labels_right = samples_right + samples, labels_right + labels
        network._backprop(grad)
        if l2:
            loss += _l2_penalty(network, l2, count)
        update(gradients)
        total_loss += float(loss) * count
    n = order.size
    return {
        "loss": total_loss / n,
        **_accuracies(network, samples_right, labels_right, n),
    }
