"""Networks trained on binary cross-entropy: :class:`Sequential` (any stack of layers) and
:class:`MLP` (built from layer sizes), with Keras-style ``fit``/``evaluate``/``predict``.

A network maps (n, *features) to one score per sample, (n, 1). Its *head* decides the loss:
a network ending in :class:`~numbce.nn.layers.Sigmoid` outputs probabilities and is trained
with :func:`numbce.binary_cross_entropy_value_and_grad`; any other outputs logits and is
trained with :func:`numbce.binary_cross_entropy_with_logits_value_and_grad` (one fused,
overflow-free pass). The loss is the mean over the batch; backpropagation is written by
hand, layer by layer (``_forward_pass`` / ``_backprop``, as in scikit-learn's MLP), on
buffers allocated once per ``fit``.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
from tqdm.auto import tqdm

from numbce import functional
from numbce.nn.layers import Flatten, Layer, Linear, ReLU, Sigmoid, Tanh, sigmoid
from numbce.optim import Adam, Optimizer, views_like

__all__ = ["MLP", "History", "Sequential"]

EVAL_ROWS = 1024
"""Samples per forward pass when evaluating or predicting (and the least buffer size)."""

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "logistic": Sigmoid}
"""Hidden activations of :class:`MLP` by name ('logistic' is scikit-learn's name)."""

LAYERS = {cls.__name__: cls for cls in (Flatten, Linear, ReLU, Sigmoid, Tanh)}
"""Layer classes by name, to rebuild a saved network."""


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_rows(X, y, rows, X_out, y_out):
    """``X_out[k] = X[rows[k]]`` and ``y_out[k] = y[rows[k]]`` for the 2-d ``X`` and ``y``."""
    for k in range(rows.size):
        row = rows[k]
        for j in range(X.shape[1]):
            X_out[k, j] = X[row, j]
        y_out[k, 0] = y[row, 0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _count_correct(scores, y, threshold):
    """Samples whose prediction ``scores > threshold`` equals their label ``y`` (0 or 1);
    both arrays (n, 1)."""
    correct = 0
    for i in range(scores.shape[0]):
        correct += (scores[i, 0] > threshold) == (y[i, 0] > 0.5)
    return correct


def _check_count(name: str, value, least: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < least
    ):
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


@dataclass
class History:
    """What ``fit`` recorded, like Keras' ``History``: ``history["loss"][k]`` and
    ``history["accuracy"][k]`` are the running means over the batches of epoch
    ``epoch[k]`` (0-based); ``val_loss`` and ``val_accuracy``, with validation data, are
    measured at the end of the epoch. ``best_epoch`` is the epoch early stopping kept
    (None without early stopping); ``params`` the fit's settings."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    best_epoch: int | None = None

    def record(self, epoch: int, **metrics: float) -> None:
        self.epoch.append(epoch)
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))


class _EarlyStopping:
    """Stop when ``monitor`` has not fallen below its best minus ``min_delta`` for
    ``patience`` epochs; optionally keep a copy of the best epoch's (flat) parameters."""

    def __init__(
        self, flat_params: np.ndarray, patience: int, min_delta: float, restore: bool
    ) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.wait = math.inf, None, 0
        self.best_params = flat_params.copy() if restore else None

    def should_stop(self, value: float, epoch: int, flat_params: np.ndarray) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.best_params is not None:
                np.copyto(self.best_params, flat_params)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self, flat_params: np.ndarray) -> None:
        if self.best_params is not None and self.best_epoch is not None:
            np.copyto(flat_params, self.best_params)


def _stored_array_header(npz: np.lib.npyio.NpzFile, name: str):
    """(shape, dtype) of the array ``name`` in an open .npz file, read from its .npy
    header without reading (or allocating) the array."""
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    with npz.zip.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version not in readers:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = readers[version](member)
    return shape, dtype


class Sequential:
    """A stack of layers applied in order (``torch.nn.Sequential``, ``keras.Sequential``),
    trained on binary cross-entropy.

    The layers must map (n, *features) to (n, 1) and hold float32 or float64 parameters of
    one dtype, the network's ``dtype``; inputs are cast to it. The network takes over its
    layers' parameters and gradients: they become views of one flat buffer each (so a
    layer belongs to one network, and an optimizer updates all parameters in one pass). ``head`` is ``"sigmoid"``
    when the last layer is a :class:`~numbce.nn.layers.Sigmoid` (output = probability,
    loss = BCE on probabilities), else ``"logits"`` (output = logit, loss = BCE with
    logits). Predictions are ``score > 0`` for logits, ``score > 0.5`` for probabilities.

    >>> import numpy as np
    >>> from numbce.nn import Linear, ReLU, Sequential
    >>> net = Sequential(Linear(2, 8, seed=0), ReLU(), Linear(8, 1, seed=1))
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0]]); y = np.array([0, 1])
    >>> loss, grads = net.loss_and_grads(X, y)
    >>> [g.shape for g in grads]
    [(8, 2), (8,), (1, 8), (1,)]
    """

    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)
        parameters = [p for layer in self.layers for p in layer.parameters()]
        if not parameters:
            raise ValueError("a network needs at least one layer with parameters")
        dtypes = {p.dtype for p in parameters}
        if len(dtypes) != 1:
            raise TypeError(
                f"all parameters must share one dtype, got {sorted(map(str, dtypes))}"
            )
        self.dtype = dtypes.pop()
        self._share_buffers()
        self.head = "sigmoid" if isinstance(self.layers[-1], Sigmoid) else "logits"
        if self.head == "sigmoid":
            self._loss_value = functional.binary_cross_entropy
            self._loss_value_and_grad = functional.binary_cross_entropy_value_and_grad
            self._threshold = 0.5
        else:
            self._loss_value = functional.binary_cross_entropy_with_logits
            self._loss_value_and_grad = (
                functional.binary_cross_entropy_with_logits_value_and_grad
            )
            self._threshold = 0.0
        self._first_trainable = next(
            i for i, layer in enumerate(self.layers) if layer.parameters()
        )
        self._backprop_order = self.layers[self._first_trainable :][::-1]
        self._rows = 0
        self._input_shape: tuple | None = None

    # -- the network ------------------------------------------------------------------

    def parameters(self) -> list[np.ndarray]:
        """The live parameter arrays, layer by layer: [W1 (out, in), b1 (out,), W2, ...]
        (views of one flat buffer, so that an optimizer can update all in one pass)."""
        return list(self._parameters)

    def _share_buffers(self) -> None:
        """Copy the layers' parameters into one flat buffer, allocate another for their
        gradients, and have every layer adopt its views of both."""
        own = [layer.parameters() for layer in self.layers]
        parameters = [p for arrays in own for p in arrays]
        self._flat_parameters = np.concatenate([p.ravel() for p in parameters])
        self._flat_gradients = np.zeros_like(self._flat_parameters)
        parameter_views = iter(views_like(self._flat_parameters, parameters))
        gradient_views = iter(views_like(self._flat_gradients, parameters))
        for layer, arrays in zip(self.layers, own):
            layer.bind(
                [next(parameter_views) for _ in arrays],
                [next(gradient_views) for _ in arrays],
            )
        self._parameters = [p for layer in self.layers for p in layer.parameters()]
        self._gradients = [g for layer in self.layers for g in layer.gradients()]

    def _allocate(self, rows: int, input_shape: tuple) -> None:
        """Size every layer's buffers for ``rows`` samples of ``input_shape`` features
        (ValueError when the features do not fit the first layers)."""
        if rows <= self._rows and input_shape == self._input_shape:
            return
        self._rows = 0
        shape = input_shape
        for index, layer in enumerate(self.layers):
            shape = layer.allocate(
                rows, shape, self.dtype, index > self._first_trainable
            )
        if shape != (1,):
            raise ValueError(
                f"the network must output one value per sample, it outputs shape {shape}"
            )
        self._rows, self._input_shape = rows, input_shape

    def _forward_pass(self, x: np.ndarray) -> np.ndarray:
        """The network's output (n, 1) for a batch ``x`` of at most the allocated rows."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def _backprop(self, grad_output: np.ndarray) -> list[np.ndarray]:
        """Propagate d loss / d output back through the layers of the last forward pass;
        return the parameter gradients (live buffers, views of ``_flat_gradients``)."""
        for layer in self._backprop_order:
            grad_output = layer.backward(grad_output)
        return self._gradients

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Outputs (n, 1) for all of ``X``, in chunks of the allocated rows (a layer's
        buffer when one chunk suffices: valid until the next forward pass)."""
        n, chunk = X.shape[0], self._rows
        if n <= chunk:
            return self._forward_pass(X)
        scores = np.empty((n, 1), self.dtype)
        for start in range(0, n, chunk):
            scores[start : start + chunk] = self._forward_pass(X[start : start + chunk])
        return scores

    def _metrics(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) of the network on checked ``X`` and ``y`` (n, 1)."""
        scores = self._scores(X)
        loss = self._loss_value(scores, y)
        return float(loss), _count_correct(scores, y, self._threshold) / X.shape[0]

    # -- checks -----------------------------------------------------------------------

    def _check_inputs(self, X) -> np.ndarray:
        """``X`` as a C-contiguous array of the network's dtype, (n >= 1, *features),
        real and finite: else ValueError."""
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
        if X.ndim < 2:
            raise ValueError(
                f"X must have shape (n_samples, n_features, ...), got shape {X.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError(f"X is empty: shape {X.shape}, at least 1 sample needed")
        with np.errstate(over="ignore"):  # an overflow is reported below
            cast = np.ascontiguousarray(X, dtype=self.dtype)
        finite = np.isfinite(cast)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            overflow = f" (overflows {self.dtype})" if np.isfinite(X[where]) else ""
            raise ValueError(
                f"X must be finite, got {X[where]!r} at index {where}{overflow}"
            )
        return cast

    def _check_targets(self, y, n_samples: int) -> np.ndarray:
        """``y`` of 0/1 labels, shape (n,) or (n, 1), as (n, 1) of the network's dtype."""
        y = np.asarray(y)
        if y.shape not in ((n_samples,), (n_samples, 1)):
            raise ValueError(
                f"y must have shape ({n_samples},) to match X's {n_samples} samples, "
                f"got shape {y.shape}"
            )
        if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
            found = np.unique(y)
            raise ValueError(
                "labels must be 0 or 1 (two classes), got the values "
                f"{found[:5].tolist()}{' ...' if found.size > 5 else ''}"
            )
        return np.ascontiguousarray(y, dtype=self.dtype).reshape(n_samples, 1)

    def _checked(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        X = self._check_inputs(X)
        return X, self._check_targets(y, X.shape[0])

    # -- public API -------------------------------------------------------------------

    def loss_and_grads(self, X, y) -> tuple[np.floating, list[np.ndarray]]:
        """Mean binary cross-entropy of the network on ``(X, y)`` (one batch: all of X)
        and its gradient with respect to each of :meth:`parameters` (new arrays, same
        shapes and order). ``X`` (n, *features), ``y`` (n,) of 0/1 labels."""
        X, y = self._checked(X, y)
        self._allocate(X.shape[0], X.shape[1:])
        loss, grad = self._loss_value_and_grad(self._forward_pass(X), y)
        return loss, [g.copy() for g in self._backprop(grad)]

    def fit(
        self,
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
        early_stopping: bool = False,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
    ) -> History:
        """Train with mini-batches (``keras.Model.fit``); return the :class:`History`.

        Each epoch visits every sample once, in an order drawn from ``seed`` when
        ``shuffle`` (the same seed gives the same weights bit for bit); each batch is one
        forward pass, one loss+gradient pass and one ``optimizer.step``. ``optimizer``
        must be built on :meth:`parameters` (default ``Adam(lr=1e-3)``). Validation:
        ``validation_data=(X_val, y_val)``, or ``validation_split``, the fraction of
        samples taken from the end of ``X`` before shuffling (as Keras). With
        ``early_stopping``, training stops once ``monitor`` ('val_loss' or 'loss') has not
        improved by more than ``min_delta`` for ``patience`` epochs, and, with
        ``restore_best_weights``, ends on the best epoch's parameters. ``verbose``: a tqdm
        progress bar over the epochs.

        ``batch_size`` above the sample count is clamped to it (as scikit-learn does).
        Bad input raises ValueError before any training. A non-finite loss, or non-finite
        parameters after an epoch's last update, raise FloatingPointError naming the
        epoch, with the parameters of the epoch's start restored.
        """
        X, y = self._checked(X, y)
        epochs = _check_count("epochs", epochs, 0)
        batch_size = _check_count("batch_size", batch_size, 1)
        X, y, validation = self._split_validation(
            X, y, validation_data, validation_split
        )
        optimizer = self._checked_optimizer(optimizer)
        stopper = None
        if early_stopping:
            if monitor not in ("loss", "val_loss"):
                raise ValueError(
                    f"monitor must be 'loss' or 'val_loss', got {monitor!r}"
                )
            if monitor == "val_loss" and validation is None:
                raise ValueError(
                    "early stopping on val_loss needs validation_data or validation_split"
                )
            stopper = _EarlyStopping(
                self._flat_parameters,
                _check_count("patience", patience, 1),
                float(min_delta),
                restore_best_weights,
            )
        n = X.shape[0]
        batch_size = min(batch_size, n)
        self._allocate(max(batch_size, EVAL_ROWS), X.shape[1:])
        history = History(
            params={
                "epochs": epochs,
                "batch_size": batch_size,
                "steps": -(-n // batch_size),
                "samples": n,
            }
        )
        rng = np.random.default_rng(seed)
        batch_X = np.empty((min(batch_size, n), *X.shape[1:]), self.dtype)
        batch_y = np.empty((batch_X.shape[0], 1), self.dtype)
        epoch_start_params = self._flat_parameters.copy()
        update, gradients = (
            (optimizer.step_flat, self._flat_gradients)
            if optimizer.flat_params is self._flat_parameters
            else (optimizer.step, self._gradients)
        )
        order = np.arange(n)
        bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=not verbose)
        for epoch in bar:
            np.copyto(epoch_start_params, self._flat_parameters)
            if shuffle:
                order = rng.permutation(n)
            try:
                loss, accuracy = self._train_epoch(
                    X, y, order, batch_size, update, gradients, batch_X, batch_y
                )
                if not np.isfinite(self._flat_parameters).all():
                    raise FloatingPointError(
                        "the update of the last batch left non-finite parameters"
                    )
            except FloatingPointError as error:
                np.copyto(self._flat_parameters, epoch_start_params)
                raise FloatingPointError(
                    f"training stopped at epoch {epoch + 1}/{epochs}: {error}; the "
                    f"parameters are those of the start of epoch {epoch + 1}"
                ) from None
            metrics = {"loss": loss, "accuracy": accuracy}
            if validation is not None:
                metrics["val_loss"], metrics["val_accuracy"] = self._metrics(
                    *validation
                )
            history.record(epoch, **metrics)
            if verbose:
                bar.set_postfix(
                    {k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False
                )
            if stopper is not None and stopper.should_stop(
                metrics[monitor], epoch, self._flat_parameters
            ):
                break
        if stopper is not None:
            stopper.restore(self._flat_parameters)
            history.best_epoch = stopper.best_epoch
        return history

    def _checked_optimizer(self, optimizer: Optimizer | None) -> Optimizer:
        """``optimizer``, which must update this network's parameters; default Adam."""
        if optimizer is None:
            return Adam(self._parameters)
        if len(optimizer.params) != len(self._parameters) or any(
            a is not b for a, b in zip(optimizer.params, self._parameters)
        ):
            raise ValueError(
                "the optimizer must be built on this network's parameters(), "
                "e.g. Adam(model.parameters())"
            )
        return optimizer

    def _split_validation(self, X, y, validation_data, validation_split):
        """(X_train, y_train, (X_val, y_val) or None), all checked."""
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            X_val, y_val = self._checked(*validation_data)
            if X_val.shape[1:] != X.shape[1:]:
                raise ValueError(
                    f"validation samples have shape {X_val.shape[1:]}, training samples "
                    f"{X.shape[1:]}"
                )
            return X, y, (X_val, y_val)
        if not validation_split:
            return X, y, None
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
        return X[:split_at], y[:split_at], (X[split_at:], y[split_at:])

    def _train_epoch(
        self, X, y, order, batch_size, update, gradients, batch_X, batch_y
    ):
        """One pass over ``X`` in the given ``order``, ``update(gradients)`` after each
        batch's backward pass; (mean loss, accuracy) over it."""
        flat_X, flat_batch_X = (
            X.reshape(X.shape[0], -1),
            batch_X.reshape(batch_X.shape[0], -1),
        )
        total_loss, correct = 0.0, 0
        for start in range(0, order.size, batch_size):
            rows = order[start : start + batch_size]
            count = rows.size
            _gather_rows(flat_X, y, rows, flat_batch_X, batch_y)
            targets = batch_y[:count]
            scores = self._forward_pass(batch_X[:count])
            loss, grad = self._loss_value_and_grad(scores, targets)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss is {loss} at batch {start // batch_size + 1}"
                )
            correct += _count_correct(scores, targets, self._threshold)
            self._backprop(grad)
            update(gradients)
            total_loss += float(loss) * count
        return total_loss / order.size, correct / order.size

    def evaluate(self, X, y) -> tuple[float, float]:
        """(mean loss, accuracy) on ``(X, y)``, as Keras' ``evaluate`` with accuracy."""
        X, y = self._checked(X, y)
        self._allocate(EVAL_ROWS, X.shape[1:])
        return self._metrics(X, y)

    def predict_proba(self, X) -> np.ndarray:
        """Probability of class 1 for each sample, (n,), in the network's dtype."""
        X = self._check_inputs(X)
        self._allocate(EVAL_ROWS, X.shape[1:])
        scores = self._scores(X)
        if self.head == "sigmoid":
            return scores[:, 0].copy()
        probabilities = np.empty_like(scores)
        sigmoid(scores, probabilities)
        return probabilities[:, 0]

    def predict(self, X) -> np.ndarray:
        """Predicted labels, 0 or 1 (int64), (n,): 1 where the probability exceeds 0.5."""
        X = self._check_inputs(X)
        self._allocate(EVAL_ROWS, X.shape[1:])
        return (self._scores(X)[:, 0] > self._threshold).astype(np.int64)

    # -- persistence --------------------------------------------------------------------

    def get_config(self) -> dict:
        """What rebuilds the network (its weights apart): the layers' classes and options."""
        return {
            "layers": [
                {"class": type(layer).__name__, "config": layer.get_config()}
                for layer in self.layers
            ]
        }

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        return cls(
            *(LAYERS[entry["class"]](**entry["config"]) for entry in config["layers"])
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the configuration and the parameters to ``path`` (a NumPy .npz file)."""
        header = json.dumps({"class": type(self).__name__, "config": self.get_config()})
        with open(path, "wb") as file:
            np.savez(file, config=np.array(header), parameters=self._flat_parameters)

    @classmethod
    def parameter_count(cls, config: dict) -> int:
        """How many parameters the network of ``config`` holds, computed without
        building it."""
        return sum(
            LAYERS[entry["class"]].parameter_count(entry["config"])
            for entry in config["layers"]
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sequential:
        """The network :meth:`save` wrote to ``path`` (its class must be ``cls`` or a
        subclass); it predicts exactly as the saved one.

        Before anything is allocated, the parameter count the configuration implies must
        equal the stored array's length (read from its header), and the file must be
        large enough to hold that array: a damaged or forged file raises ValueError."""
        with np.load(path, allow_pickle=False) as data:
            saved = json.loads(str(data["config"]))
            model_class = MODELS.get(saved["class"])
            if model_class is None or not issubclass(model_class, cls):
                raise ValueError(
                    f"{path} holds a {saved['class']}, not a {cls.__name__}"
                )
            try:
                count = model_class.parameter_count(saved["config"])
            except (KeyError, TypeError) as error:
                raise ValueError(
                    f"{path} holds a malformed configuration ({error!r})"
                ) from None
            shape, dtype = _stored_array_header(data, "parameters")
            if shape != (count,):
                raise ValueError(
                    f"{path} stores parameters of shape {shape}, its configuration "
                    f"needs ({count},)"
                )
            if count * dtype.itemsize > os.path.getsize(path):
                raise ValueError(
                    f"{path} is too small to hold the {count} {dtype} parameters its "
                    "header announces"
                )
            model = model_class.from_config(saved["config"])
            np.copyto(model._flat_parameters, data["parameters"])
        return model

    def __getstate__(self) -> dict:
        """Pickle without the flat buffers (the layers pickle their arrays) and without
        the layers' workspace (allocated again on first use)."""
        shared = ("_flat_parameters", "_flat_gradients", "_parameters", "_gradients")
        state = {k: v for k, v in vars(self).items() if k not in shared}
        return dict(state, _rows=0, _input_shape=None)

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._share_buffers()

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"{type(self).__name__}({inner}\n)"


class MLP(Sequential):
    """Multilayer perceptron for binary classification (Keras' ``Dense`` stack, PyTorch's
    ``Linear``/activation stack): for ``layer_sizes = [d0, d1, ..., dk, 1]``::

        Linear(d0, d1) → act → Linear(d1, d2) → act → ... → Linear(dk, 1) [→ Sigmoid]

    ``activation``: 'relu', 'tanh' or 'sigmoid' ('logistic'); ``head``: 'logits' (no final
    activation, loss BCE with logits; the default) or 'sigmoid' (loss BCE on
    probabilities). ``init``: 'kaiming_uniform' (PyTorch) or 'glorot_uniform' (Keras);
    the weights are drawn from ``seed``. ``dtype``: float32 or float64.

    >>> import numpy as np
    >>> from numbce.nn import MLP
    >>> model = MLP([2, 100, 1], activation="relu", seed=0, dtype=np.float64)
    >>> [p.shape for p in model.parameters()]
    [(100, 2), (100,), (1, 100), (1,)]
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        *,
        head: str = "logits",
        init: str = "kaiming_uniform",
        seed: int | np.random.Generator | None = None,
        dtype: type | np.dtype = np.float32,
    ) -> None:
        sizes = [_check_count("layer size", size, 1) for size in layer_sizes]
        if len(sizes) < 2 or sizes[-1] != 1:
            raise ValueError(
                f"layer_sizes must be [n_features, hidden sizes..., 1], got {list(layer_sizes)}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if head not in ("logits", "sigmoid"):
            raise ValueError(f"head must be 'logits' or 'sigmoid', got {head!r}")
        rng = np.random.default_rng(seed)
        layers: list[Layer] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [
                Linear(fan_in, fan_out, init=init, seed=rng, dtype=dtype),
                ACTIVATIONS[activation](),
            ]
        layers.pop()  # the output layer has no hidden activation
        if head == "sigmoid":
            layers.append(Sigmoid())
        super().__init__(*layers)
        self.layer_sizes, self.activation, self.init = sizes, activation, init

    def get_config(self) -> dict:
        return {
            "layer_sizes": self.layer_sizes,
            "activation": self.activation,
            "head": self.head,
            "init": self.init,
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> MLP:
        return cls(**config)

    @classmethod
    def parameter_count(cls, config: dict) -> int:
        return sum(
            Linear.parameter_count({"in_features": a, "out_features": b})
            for a, b in itertools.pairwise(config["layer_sizes"])
        )


MODELS = {"Sequential": Sequential, "MLP": MLP}
"""Network classes by name, to rebuild a saved network."""
