"""The two tutorials numbce reproduces, each as data + network + training settings: one
definition shared by ``numbce train``, the tests and the benchmarks.

* ``circles``: Keras, ``Dense(100, relu) → Dense(1, sigmoid)`` (Glorot-uniform weights,
  zero biases), Adam lr 1e-3, batch 32, 300 epochs on ``make_circles(1000, noise=0.1,
  random_state=1)`` split 500/500; the tutorial ends above 0.80 test accuracy.
* ``fake-images``: PyTorch, ``Flatten → Linear(2352, 64) → ReLU → Linear(64, 32) → ReLU →
  Linear(32, 1) → Sigmoid`` trained with BCE on probabilities, Adam lr 1e-4, batch 64, on
  15,000 random 3x28x28 images with random labels (``FakeData``); the labels are noise, so
  the loss stays near ln 2.

Here the Keras network's sigmoid output is folded into the loss (a logits head, trained
with BCE-with-logits: the same model, computed without overflow); the PyTorch network keeps
its Sigmoid layer and BCE on probabilities, as written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from numbce import datasets
from numbce.nn.callbacks import History
from numbce.nn.layers import Flatten, Linear, ReLU, Sigmoid
from numbce.nn.network import MLP, Sequential
from numbce.optim import Adam

__all__ = ["TUTORIALS", "TrainingRun", "Tutorial", "train"]

Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Tutorial:
    """A tutorial's recipe: ``load_data() -> ((X_train, y_train), (X_test, y_test))``,
    ``build_model(seed) -> network``, and its training settings."""

    name: str
    summary: str
    epochs: int
    batch_size: int
    lr: float
    load_data: Callable[[], Data]
    build_model: Callable[[int | None], Sequential]


def circles_model(seed: int | None = None) -> MLP:
    """The Keras tutorial's network: 2 → 100 (ReLU) → 1, Glorot-uniform, logits head."""
    return MLP([2, 100, 1], activation="relu", init="glorot_uniform", seed=seed)


def fake_images_model(seed: int | None = None) -> Sequential:
    """The PyTorch tutorial's network, PyTorch's initialisation, Sigmoid head."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Flatten(),
        Linear(2352, 64, seed=rng),
        ReLU(),
        Linear(64, 32, seed=rng),
        ReLU(),
        Linear(32, 1, seed=rng),
        Sigmoid(),
    )


def _fake_images_data() -> Data:
    return datasets.fake_images(), datasets.fake_images(size=3000, seed=43)


TUTORIALS = {
    "circles": Tutorial(
        "circles",
        "make_circles 500/500, MLP 2-100-1 (ReLU), BCE with logits, Adam",
        epochs=300,
        batch_size=32,
        lr=1e-3,
        load_data=datasets.circles,
        build_model=circles_model,
    ),
    "fake-images": Tutorial(
        "fake-images",
        "15,000 random 3x28x28 images (test: 3,000 more), MLP 2352-64-32-1 + Sigmoid, "
        "BCE on probabilities, Adam",
        epochs=5,
        batch_size=64,
        lr=1e-4,
        load_data=_fake_images_data,
        build_model=fake_images_model,
    ),
}


@dataclass
class TrainingRun:
    """A trained tutorial: the network, its history, Adam's learning rate, the final
    metrics (with the final weights, on the whole training and test sets) and the
    wall-clock training time (``seconds``; Numba compilation or cache loading excluded,
    in ``warmup_seconds``)."""

    model: Sequential
    history: History
    lr: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    warmup_seconds: float


def train(
    tutorial: Tutorial,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = 0,
    verbose: int = 0,
    data: Data | None = None,
) -> TrainingRun:
    """Train ``tutorial``'s network on its data (or ``data``) with Adam, validating on the
    test set each epoch; ``None`` settings take the tutorial's. Before the timed run, a
    one-epoch run on two batches compiles or loads the Numba kernels."""
    epochs = tutorial.epochs if epochs is None else epochs
    batch_size = tutorial.batch_size if batch_size is None else batch_size
    lr = tutorial.lr if lr is None else lr
    (X, y), (X_test, y_test) = tutorial.load_data() if data is None else data

    start = time.perf_counter()
    warmup = tutorial.build_model(seed)
    warmup.fit(
        X[: 2 * batch_size],
        y[: 2 * batch_size],
        batch_size=batch_size,
        optimizer=Adam(warmup.parameters(), lr=lr),
        validation_data=(X_test[:batch_size], y_test[:batch_size]),
    )
    warmup_seconds = time.perf_counter() - start

    model = tutorial.build_model(seed)
    start = time.perf_counter()
    history = model.fit(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=Adam(model.parameters(), lr=lr),
        validation_data=(X_test, y_test),
        seed=seed,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return TrainingRun(
        model,
        history,
        lr,
        *model.evaluate(X, y),
        *model.evaluate(X_test, y_test),
        seconds,
        warmup_seconds,
    )
