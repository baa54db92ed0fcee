"""Networks trained on a numbce loss: :class:`Sequential` (any stack of layers) and
:class:`MLP` (built from layer sizes): layers, forward pass and backpropagation,
predictions, persistence. Training (``fit``, metrics, callbacks) lives in
:mod:`numbce.nn.training`.

A network maps (n, *features) to C scores per sample, (n, C): C independent labels
(C = 1: one binary label). Its *head* decides what a score is: a network ending in
:class:`~numbce.nn.layers.Sigmoid` outputs probabilities, any other outputs logits. Its
*loss* is a numbce loss family named by its public function, ``loss="<name>"`` for
``numbce.<name>_value_and_grad``, with ``loss_options`` (e.g. ``pos_weight``, ``alpha``);
by default BCE on probabilities (``"binary_cross_entropy"``) for a Sigmoid head and BCE with
logits (``"binary_cross_entropy_with_logits"``, one fused, overflow-free pass) otherwise.
The loss is the mean over the batch's elements; backpropagation is written by hand, layer
by layer (``_forward_pass`` / ``_backprop``, as in scikit-learn's MLP), on buffers
allocated once per ``fit``.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence

import numpy as np

import numbce
from numbce._cache import njit
from numbce._files import write_atomically
from numbce.losses import FAMILIES
from numbce.nn import compiled, training
from numbce.nn.layers import (
    LAYERS,
    NO_NOISE,
    Layer,
    Linear,
    ReLU,
    Sigmoid,
    Tanh,
    sigmoid,
    step_key,
)
from numbce.optim import Adam, views_like

__all__ = ["MLP", "Sequential", "compile_epochs"]

EVAL_ROWS = 1024
"""Samples per forward pass when evaluating or predicting (and the least buffer size)."""

FINITE_BLOCK = 4096
"""Elements :func:`all_finite` checks between its early exits."""

SMALL_CHECK = 1 << 16
"""Elements up to which :func:`all_finite_values` checks with NumPy (a boolean temporary of up to
64 KiB costs nothing, and a first small fit compiles nothing for it)."""


@njit
def all_finite(values):
    """Whether every element of the flat float ``values`` is finite: one vectorized pass
    (``|v| < inf`` is false for nan and +-inf) that stops at the first bad block, with
    no temporary (``np.isfinite(X).all()`` writes a boolean array of X's size)."""
    inf = values.dtype.type(np.inf)
    n = np.uint64(values.size)
    block = np.uint64(FINITE_BLOCK)
    for start in range(np.uint64(0), n, block):
        ok = True
        for i in range(start, min(start + block, n)):
            ok &= abs(values[i]) < inf
        if not ok:
            return False
    return True


def all_finite_values(values: np.ndarray) -> bool:
    """Whether every element of the flat float ``values`` is finite."""
    if values.size <= SMALL_CHECK:
        return bool(np.isfinite(values).all())
    return all_finite(values)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "logistic": Sigmoid}
"""Hidden activations of :class:`MLP` by name ('logistic' is scikit-learn's name)."""

LOSSES_ON_PROBABILITIES = frozenset(
    name for name, family in FAMILIES.items() if family.input_in_unit_interval
)
"""Loss families whose input is a probability (a Sigmoid head); the others take logits."""

FIT_OPTIONS = frozenset({"weight", "reduction", "grad_output"})
"""Loss arguments that training sets (per-sample weights, the mean, the chain rule)."""


def loss_families() -> list[str]:
    """The loss families numbce offers: every ``numbce.<name>_value_and_grad``."""
    suffix = "_value_and_grad"
    return sorted(name[: -len(suffix)] for name in dir(numbce) if name.endswith(suffix))


def _loss_function(name: str) -> Callable:
    """``numbce.<name>_value_and_grad``, or ValueError listing the families."""
    function = (
        getattr(numbce, f"{name}_value_and_grad", None)
        if isinstance(name, str)
        else None
    )
    if function is None:
        raise ValueError(f"loss must be one of {loss_families()}, got {name!r}")
    return function


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
    trained on a numbce loss.

    The layers must map (n, *features) to (n, C) and hold float32 or float64 parameters of
    one dtype, the network's ``dtype``; inputs are cast to it. The network takes over its
    layers' parameters and gradients: they become views of one flat buffer each (so a
    layer belongs to one network, and an optimizer updates all parameters in one pass).
    ``head`` is ``"sigmoid"`` when the last layer is a :class:`~numbce.nn.layers.Sigmoid`
    (output = probability), else ``"logits"``; predictions are ``score > 0.5`` for
    probabilities, ``score > 0`` for logits. ``loss`` and ``loss_options``: see the module
    docstring; a loss on probabilities needs a Sigmoid head and a loss on logits needs
    another.

    >>> import numpy as np
    >>> from numbce.nn import Linear, ReLU, Sequential
    >>> net = Sequential(Linear(2, 8, seed=0), ReLU(), Linear(8, 1, seed=1))
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0]]); y = np.array([0, 1])
    >>> loss, grads = net.loss_and_grads(X, y)
    >>> [g.shape for g in grads]
    [(8, 2), (8,), (1, 8), (1,)]
    """

    stop_training = False
    """Set by a callback to end ``fit`` after the current epoch (as in Keras)."""

    def __init__(
        self, *layers: Layer, loss: str | None = None, loss_options: dict | None = None
    ) -> None:
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
        self._threshold = 0.5 if self.head == "sigmoid" else 0.0
        self._set_loss(loss, loss_options)
        self._first_trainable = next(
            i for i, layer in enumerate(self.layers) if layer.parameters()
        )
        self._backprop_order = self.layers[self._first_trainable :][::-1]
        self._rows, self.outputs = 0, None
        self._input_shape: tuple | None = None

    def _set_loss(self, loss: str | None, loss_options: dict | None) -> None:
        """Resolve the loss family and check it suits the head and its options."""
        if loss is None:
            loss = (
                "binary_cross_entropy"
                if self.head == "sigmoid"
                else "binary_cross_entropy_with_logits"
            )
        self.loss_function = _loss_function(loss)
        on_probabilities = loss in LOSSES_ON_PROBABILITIES
        if on_probabilities != (self.head == "sigmoid"):
            raise ValueError(
                f"loss {loss!r} takes probabilities: end the network with Sigmoid()"
                if on_probabilities
                else f"loss {loss!r} takes logits: the network must not end in Sigmoid()"
            )
        options = dict(loss_options or {})
        if FIT_OPTIONS & options.keys():
            raise ValueError(
                f"loss_options may not set {sorted(FIT_OPTIONS & options.keys())}: "
                "training sets them (use fit's sample_weight for weights)"
            )
        accepted = inspect.signature(self.loss_function).parameters.keys() - (
            FIT_OPTIONS | {"input", "target", "out"}
        )
        unknown = sorted(options.keys() - accepted)
        if unknown:
            raise TypeError(
                f"loss {loss!r} takes no option {unknown[0]!r}; it takes "
                f"{sorted(accepted)}"
            )
        for option in FAMILIES[loss].options:  # checked now, not at the first batch
            if option.name in options:
                option.check(options[option.name])
        self.loss = loss
        self.loss_options = {
            name: np.asarray(value) if isinstance(value, (list, tuple)) else value
            for name, value in options.items()
        }

    def loss_value_and_grad(self, scores, targets, weight=None):
        """The mean loss of ``scores`` (n, C) against ``targets`` (n, C), weighted by
        ``weight`` (broadcast to (n, C)), and its gradient d loss / d scores."""
        return self.loss_function(
            scores, targets, weight=weight, reduction="mean", **self.loss_options
        )

    # -- the network ------------------------------------------------------------------

    def parameters(self) -> list[np.ndarray]:
        """The live parameter arrays, layer by layer: [W1 (out, in), b1 (out,), W2, ...]
        (views of one flat buffer, so that an optimizer can update all in one pass)."""
        return list(self._parameters)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of :meth:`parameters` (``keras.Model.get_weights``)."""
        return [p.copy() for p in self._parameters]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Copy ``weights`` (shaped like :meth:`parameters`) into the parameters."""
        shapes = [np.shape(w) for w in weights]
        if shapes != [p.shape for p in self._parameters]:
            raise ValueError(
                f"weights of shapes {shapes} do not match the parameters' "
                f"{[p.shape for p in self._parameters]}"
            )
        for param, value in zip(self._parameters, weights):
            np.copyto(param, value)

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
        self._weights = [
            layer.weight for layer in self.layers if isinstance(layer, Linear)
        ]
        self._weight_gradients = [
            layer.weight_grad for layer in self.layers if isinstance(layer, Linear)
        ]
        start = self._flat_parameters.ctypes.data
        self._weight_ranges = np.array(
            [
                (offset, offset + w.size)
                for w in self._weights
                for offset in [(w.ctypes.data - start) // w.itemsize]
            ],
            dtype=np.int64,
        ).reshape(-1, 2)
        """(start, stop) of every Linear weight in ``_flat_parameters``."""

    def _allocate(self, rows: int, input_shape: tuple) -> None:
        """Size every layer's buffers for ``rows`` samples of ``input_shape`` features
        and set ``outputs``, the scores per sample (ValueError when the features do not
        fit the first layers, or the network does not output a vector per sample)."""
        if rows <= self._rows and input_shape == self._input_shape:
            return
        self._rows = 0
        shape = input_shape
        for index, layer in enumerate(self.layers):
            shape = layer.allocate(
                rows, shape, self.dtype, index > self._first_trainable
            )
        if len(shape) != 1:
            raise ValueError(
                "the network must output a vector of scores per sample, it outputs "
                f"shape {shape}"
            )
        self._rows, self._input_shape, self.outputs = rows, input_shape, shape[0]

    def _forward_pass(
        self, x: np.ndarray, noise_seed: int = NO_NOISE, step: int = 0
    ) -> np.ndarray:
        """The network's output (n, C) for a batch ``x`` of at most the allocated rows;
        in training (``noise_seed`` >= 0), random layers take the key
        ``step_key(noise_seed, step, index)``, else none (the identity)."""
        for index, layer in enumerate(self.layers):
            if getattr(layer, "random", False):
                key = NO_NOISE if noise_seed < 0 else step_key(noise_seed, step, index)
                x = layer.forward(x, key)
            else:
                x = layer.forward(x)
        return x

    def _standard_math(self) -> bool:
        """Whether neither the network's class nor the network redefines the forward
        pass, backpropagation or the loss (compiled training computes them itself)."""
        cls, own = type(self), vars(self)
        return all(
            getattr(cls, name) is getattr(Sequential, name) and name not in own
            for name in ("_forward_pass", "_backprop", "loss_value_and_grad")
        )

    def _backprop(self, grad_output: np.ndarray) -> list[np.ndarray]:
        """Propagate d loss / d output back through the layers of the last forward pass;
        return the parameter gradients (live buffers, views of ``_flat_gradients``)."""
        for layer in self._backprop_order:
            grad_output = layer.backward(grad_output)
        return self._gradients

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Outputs (n, C) for all of ``X``, in chunks of the allocated rows (a layer's
        buffer when one chunk suffices: valid until the next forward pass)."""
        n, chunk = X.shape[0], self._rows
        if n <= chunk:
            return self._forward_pass(X)
        scores = np.empty((n, self.outputs), self.dtype)
        for start in range(0, n, chunk):
            scores[start : start + chunk] = self._forward_pass(X[start : start + chunk])
        return scores

    # -- checks -----------------------------------------------------------------------

    def _check_inputs(self, X) -> np.ndarray:
        """``X`` as a C-contiguous array of the network's dtype, (n >= 1, *features),
        real and finite, that fits the first layers (else ValueError); sizes the buffers
        for evaluation."""
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
        if not all_finite_values(cast.reshape(-1)):
            finite = np.isfinite(cast)
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            overflow = f" (overflows {self.dtype})" if np.isfinite(X[where]) else ""
            raise ValueError(
                f"X must be finite, got {X[where]!r} at index {where}{overflow}"
            )
        self._allocate(max(self._rows, EVAL_ROWS), cast.shape[1:])
        return cast

    def _check_targets(self, y, n_samples: int) -> np.ndarray:
        """``y`` of targets in [0, 1] (0/1 labels or soft labels), shape (n, C), or (n,)
        when C = 1, as (n, C) of the network's dtype."""
        y = np.asarray(y)
        shapes = [(n_samples, self.outputs)] + [(n_samples,)] * (self.outputs == 1)
        if y.shape not in shapes:
            raise ValueError(
                f"y must have shape {' or '.join(map(str, shapes[::-1]))} to match X's "
                f"{n_samples} samples and the network's {self.outputs} outputs, got "
                f"shape {y.shape}"
            )
        if y.dtype.kind not in "biuf":
            raise ValueError(f"targets must be numbers in [0, 1], got dtype {y.dtype}")
        targets = np.ascontiguousarray(y, dtype=self.dtype).reshape(shapes[0])
        outside = ~((targets >= 0) & (targets <= 1))  # nan included
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                "targets must be in [0, 1] (0/1 labels or soft labels), got "
                f"{float(targets[where])} at index {where[: y.ndim]}"
            )
        return targets

    def _checked(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        X = self._check_inputs(X)
        return X, self._check_targets(y, X.shape[0])

    # -- public API -------------------------------------------------------------------

    def loss_and_grads(self, X, y) -> tuple[np.floating, list[np.ndarray]]:
        """Mean loss of the network on ``(X, y)`` (one batch: all of X) and its gradient
        with respect to each of :meth:`parameters` (new arrays, same shapes and order).
        ``X`` (n, *features), ``y`` (n, C) or (n,) of targets in [0, 1]."""
        X, y = self._checked(X, y)
        self._allocate(X.shape[0], X.shape[1:])
        loss, grad = self.loss_value_and_grad(self._forward_pass(X), y)
        return loss, [g.copy() for g in self._backprop(grad)]

    fit = training.fit

    def evaluate(self, X, y, sample_weight=None, return_dict: bool = False):
        """(mean loss, accuracy) on ``(X, y)``, as Keras' ``evaluate`` with accuracy; with
        ``return_dict``, the dict of :func:`numbce.nn.training.metrics` (with C > 1
        labels, ``accuracy`` is the subset accuracy and ``label_accuracy`` the mean over
        labels)."""
        X, y = self._checked(X, y)
        metrics = training.metrics(self, X, y, sample_weight)
        return metrics if return_dict else (metrics["loss"], metrics["accuracy"])

    def _outputs_of(self, scores: np.ndarray) -> np.ndarray:
        """(n,) for one output, else (n, C)."""
        return scores[:, 0] if self.outputs == 1 else scores

    def decision_function(self, X) -> np.ndarray:
        """The network's raw scores, (n,) for one output or (n, C): logits, or
        probabilities for a Sigmoid head. A new array in the network's dtype."""
        return self._outputs_of(self._scores(self._check_inputs(X))).copy()

    def predict_proba(self, X) -> np.ndarray:
        """Probability of label 1 for each sample (and label), (n,) or (n, C), in the
        network's dtype."""
        scores = self._scores(self._check_inputs(X))
        if self.head == "sigmoid":
            return self._outputs_of(scores).copy()
        scores = np.ascontiguousarray(scores)  # sigmoid's loop runs over the elements
        probabilities = np.empty_like(scores)
        sigmoid(scores, probabilities)
        return self._outputs_of(probabilities)

    def predict(self, X) -> np.ndarray:
        """Predicted labels, 0 or 1 (int64), (n,) or (n, C): 1 where the probability
        exceeds 0.5."""
        scores = self._scores(self._check_inputs(X))
        return (self._outputs_of(scores) > self._threshold).astype(np.int64)

    # -- persistence --------------------------------------------------------------------

    def _loss_config(self) -> dict:
        return {
            "loss": self.loss,
            "loss_options": {
                name: value.tolist() if isinstance(value, np.ndarray) else value
                for name, value in self.loss_options.items()
            },
        }

    def get_config(self) -> dict:
        """What rebuilds the network (its weights apart): the layers' classes and
        options, the loss and its options."""
        layers = [
            {"class": type(layer).__name__, "config": layer.get_config()}
            for layer in self.layers
        ]
        return {"layers": layers, **self._loss_config()}

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        layers = (
            LAYERS[entry["class"]](**entry["config"]) for entry in config["layers"]
        )
        return cls(
            *layers,
            loss=config.get("loss"),
            loss_options=config.get("loss_options"),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the configuration and the parameters to ``path`` (a NumPy .npz file).

        The file is replaced atomically: interrupted at any moment, ``path`` still holds
        the previous model (or nothing, if there was none), never a damaged file."""
        header = json.dumps({"class": type(self).__name__, "config": self.get_config()})
        write_atomically(
            path,
            lambda file: np.savez(
                file, config=np.array(header), parameters=self._flat_parameters
            ),
        )

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

        A damaged or forged file raises ValueError naming what is wrong (a file that is
        not a whole .npz archive, a missing or malformed configuration, bad loss options,
        parameters that are not finite float32/float64 numbers), and before anything is
        allocated the parameter count the configuration implies must equal the stored
        array's length (read from its header), in a file large enough to hold it."""
        try:
            data = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a numbce model file ({error})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):  # a file's content: ValueError
            raise ValueError(  # noqa: TRY004
                f"{path} holds one array, not a numbce model's .npz archive"
            )
        with data:
            try:
                return cls._from_archive(path, data)
            except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # a member
                raise ValueError(f"{path} is damaged ({error})") from None

    @classmethod
    def _from_archive(cls, path, data: np.lib.npyio.NpzFile) -> Sequential:
        """:meth:`load`'s checks and build, on the opened archive."""
        if sorted(data.files) != ["config", "parameters"]:
            raise ValueError(
                f"{path} holds {sorted(data.files)}, not a numbce model's "
                "['config', 'parameters']"
            )
        try:
            saved = json.loads(str(data["config"]))
        except ValueError as error:
            raise ValueError(
                f"{path} holds a configuration that is not JSON ({error})"
            ) from None
        if not (
            isinstance(saved, dict)
            and saved.keys() == {"class", "config"}
            and isinstance(saved["config"], dict)
        ):
            raise ValueError(
                f"{path} holds a malformed configuration: not "
                '{"class": ..., "config": {...}}'
            )
        model_class = (
            MODELS.get(saved["class"]) if isinstance(saved["class"], str) else None
        )
        if model_class is None or not issubclass(model_class, cls):
            raise ValueError(f"{path} holds a {saved['class']}, not a {cls.__name__}")
        try:
            count = model_class.parameter_count(saved["config"])
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"{path} holds a malformed configuration ({error!r})"
            ) from None
        shape, dtype = _stored_array_header(data, "parameters")
        if dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{path} stores parameters of dtype {dtype}, not float32 or float64"
            )
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
        try:
            model = model_class.from_config(saved["config"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path} holds a malformed configuration ({error})"
            ) from None
        parameters = data["parameters"]
        if not all_finite_values(parameters):
            raise ValueError(
                f"{path} holds parameters that are not finite (nan or inf)"
            )
        np.copyto(model._flat_parameters, parameters)
        return model

    def __getstate__(self) -> dict:
        """Pickle without the flat buffers (the layers pickle their arrays) and without
        the layers' workspace (allocated again on first use)."""
        shared = (
            "_flat_parameters",
            "_flat_gradients",
            "_parameters",
            "_gradients",
            "_weights",
            "_weight_gradients",
            "_weight_ranges",
        )
        state = {k: v for k, v in vars(self).items() if k not in shared}
        return dict(state, _rows=0, _input_shape=None)

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._share_buffers()

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"{type(self).__name__}({inner}\n)"


class MLP(Sequential):
    """Multilayer perceptron for C >= 1 binary labels (Keras' ``Dense`` stack, PyTorch's
    ``Linear``/activation stack): for ``layer_sizes = [d0, d1, ..., dk, C]``::

        Linear(d0, d1) → act → Linear(d1, d2) → act → ... → Linear(dk, C) [→ Sigmoid]

    ``activation``: 'relu', 'tanh' or 'sigmoid' ('logistic'); ``head``: 'logits' (no final
    activation; the default) or 'sigmoid' (outputs probabilities). ``init``:
    'kaiming_uniform' (PyTorch) or 'glorot_uniform' (Keras); the weights are drawn from
    ``seed``. ``dtype``: float32 or float64. ``loss``, ``loss_options``: as
    :class:`Sequential`'s.

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
        loss: str | None = None,
        loss_options: dict | None = None,
    ) -> None:
        sizes = [training.check_count("layer size", size, 1) for size in layer_sizes]
        if len(sizes) < 2:
            raise ValueError(
                "layer_sizes must be [n_features, hidden sizes..., n_labels], got "
                f"{list(layer_sizes)}"
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
        super().__init__(*layers, loss=loss, loss_options=loss_options)
        self.layer_sizes, self.activation, self.init = sizes, activation, init

    def get_config(self) -> dict:
        return {
            "layer_sizes": self.layer_sizes,
            "activation": self.activation,
            "head": self.head,
            "init": self.init,
            "dtype": self.dtype.name,
            **self._loss_config(),
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


def compile_epochs(family: str, dtype: str, niceness: int = 0) -> None:
    """Compile (or load from Numba's cache) the compiled epochs of loss ``family`` and
    ``dtype`` (``"float32"`` or ``"float64"``): what a fit of any network of that loss
    and dtype runs (:mod:`numbce.nn.compiled`), so that later fits find it in the cache.
    Lowers this process's priority by ``niceness`` first; removes the lock file of a
    background compile (:func:`numbce.nn.compiled.compile_in_background`) at the end."""
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)
    try:
        layers: list[Layer] = [Linear(2, 1, seed=0, dtype=dtype)]
        if family in LOSSES_ON_PROBABILITIES:
            layers.append(Sigmoid())
        network = Sequential(*layers, loss=family)
        X, y = np.zeros((4, 2), dtype), np.zeros((4, 1), dtype)
        network._allocate(4, (2,))
        runner = compiled.CompiledFit(
            network, Adam(network.parameters()), (X, y, None, None), (X, y), 4, 0.0
        )
        if not runner.ready():
            runner.run(np.zeros((1, 4), np.int64))
            runner.validate(
                np.zeros((1, network._flat_parameters.size), network.dtype),
                np.zeros((1, 6)),
            )
    finally:
        compiled.lock_path(family, np.dtype(dtype).name).unlink(missing_ok=True)
