"""Keras-style training callbacks: objects whose ``on_epoch_end(epoch, logs)`` runs after
every epoch of :meth:`~numbce.nn.Sequential.fit`, with ``logs`` the epoch's metrics by name
(``loss``, ``accuracy``, and ``val_loss``, ``val_accuracy`` with validation data).

The protocol (any hook may be left out; :class:`Callback` provides them all as no-ops):

* ``set_model(model)``: the network being trained, before training starts;
* ``on_train_begin(logs)``: ``logs`` holds the fit's settings (``History.params``);
* ``on_epoch_end(epoch, logs)``: ``epoch`` counts from 0; setting
  ``model.stop_training = True`` ends training after this epoch;
* ``on_train_end(logs)``: after the last epoch, ``logs`` being the last epoch's metrics.

:class:`History` records every epoch; :class:`EarlyStopping` stops when a metric stalls;
:class:`ModelCheckpoint` saves the network; :class:`ProgressBar` (``verbose=1``) and
:class:`EpochLog` (``verbose=2``) report progress.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tqdm.auto import tqdm

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochLog",
    "History",
    "ModelCheckpoint",
    "ProgressBar",
]


class Callback:
    """Base class with every hook of the protocol as a no-op; ``self.model`` is the
    network being trained."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """After each epoch (0-based ``epoch``), with its metrics in ``logs``."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """After the last epoch."""


@dataclass
class History(Callback):
    """What ``fit`` recorded, like Keras' ``History``: ``history["loss"][k]`` and
    ``history["accuracy"][k]`` are means over the batches of epoch ``epoch[k]`` (0-based),
    measured while the weights change; ``val_loss`` and ``val_accuracy``, with validation
    data, are measured at the end of the epoch. ``best_epoch`` is the epoch early stopping
    kept (None without early stopping); ``params`` the fit's settings."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    best_epoch: int | None = None

    def on_train_begin(self, logs=None):
        self.params = dict(logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self.record(epoch, **(logs or {}))

    def record(self, epoch: int, **metrics: float) -> None:
        self.epoch.append(epoch)
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))

    def extend(self, epochs: Iterable[int], metrics: Mapping[str, Iterable]) -> None:
        """:meth:`record` of several epochs: ``metrics[name][k]`` is the value of
        ``epochs[k]``."""
        self.epoch.extend(epochs)
        for name, values in metrics.items():
            self.history.setdefault(name, []).extend(map(float, values))


class _Best:
    """The best value of a metric so far: lower is better (``mode='min'``), higher
    (``'max'``), or by its name (``'auto'``: higher for accuracies, as Keras)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0
        self.min_delta = abs(float(min_delta))
        self.value = math.inf * self.sign

    def improves(self, logs: dict) -> bool:
        """Whether ``logs[monitor]`` beats the best by more than ``min_delta`` (then it
        becomes the best)."""
        if self.monitor not in logs:
            raise ValueError(
                f"cannot monitor {self.monitor!r}: the epoch's metrics are "
                f"{sorted(logs)}"
            )
        value = float(logs[self.monitor])
        if self.sign * value < self.sign * self.value - self.min_delta:
            self.value = value
            return True
        return False


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs (``keras.callbacks.EarlyStopping``); ``mode``: 'min', 'max' or
    'auto' (max for accuracies). With ``restore_best_weights`` the network ends on the
    parameters of its best epoch. After training, ``best_epoch`` is that epoch (0-based)
    and ``stopped_epoch`` the epoch training stopped at (None if it ran to the end)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        self.monitor, self.min_delta, self.mode = monitor, min_delta, mode
        self.patience, self.restore_best_weights = patience, restore_best_weights
        _Best(monitor, mode, min_delta)  # checks mode

    def on_train_begin(self, logs=None):
        self.best = _Best(self.monitor, self.mode, self.min_delta)
        self.best_epoch = self.stopped_epoch = self.best_weights = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.best.improves(logs or {}):
            self.best_epoch, self.wait = epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the network with its ``save`` after every epoch, or only when ``monitor``
    improves with ``save_best_only`` (``keras.callbacks.ModelCheckpoint``). ``filepath``
    may name the epoch (1-based) and the metrics: ``"model-{epoch:03d}-{val_loss:.3f}.npz"``.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        self.filepath, self.monitor = os.fspath(filepath), monitor
        self.save_best_only, self.mode = save_best_only, mode
        _Best(monitor, mode, 0.0)  # checks mode

    def on_train_begin(self, logs=None):
        self.best = _Best(self.monitor, self.mode, 0.0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.save_best_only or self.best.improves(logs):
            self.model.save(self.filepath.format(epoch=epoch + 1, **logs))


def _formatted(logs: dict) -> dict[str, str]:
    return {name: f"{value:.4f}" for name, value in logs.items()}


class ProgressBar(Callback):
    """A tqdm progress bar over the epochs (on stderr) showing the last epoch's metrics;
    what ``fit(verbose=1)`` adds."""

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=(logs or {}).get("epochs"), desc="fit", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix(_formatted(logs or {}), refresh=False)
        self.bar.update()

    def on_train_end(self, logs=None):
        self.bar.close()


class EpochLog(Callback):
    """One line per epoch on stdout, as Keras' ``verbose=2``:
    ``Epoch 3/300 - loss: 0.6931 - accuracy: 0.5000 - val_loss: ...``; what
    ``fit(verbose=2)`` adds."""

    def on_train_begin(self, logs=None):
        self.epochs = (logs or {}).get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        metrics = "".join(f" - {k}: {v}" for k, v in _formatted(logs or {}).items())
        print(f"Epoch {epoch + 1}/{self.epochs}{metrics}", flush=True)


def call_hook(callbacks: list, hook: str, *args) -> None:
    """Call ``hook(*args)`` on every callback that has it."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)
