"""The tutorials numbce reproduces, each as data + network + training settings: one
definition shared by ``numbce train``, the tests and the benchmarks.

* ``circles``: Keras, ``Dense(100, relu) → Dense(1, sigmoid)`` (Glorot-uniform weights,
  zero biases), Adam lr 1e-3, batch 32, 300 epochs on ``make_circles(1000, noise=0.1,
  random_state=1)`` split 500/500; the tutorial ends above 0.80 test accuracy.
* ``fake-images``: PyTorch, ``Flatten → Linear(2352, 64) → ReLU → Linear(64, 32) → ReLU →
  Linear(32, 1) → Sigmoid`` trained with BCE on probabilities, Adam lr 1e-4, batch 64, on
  15,000 random 3x28x28 images with random labels (``FakeData``); the labels are noise, so
  the loss stays near ln 2.
* ``multilabel``: 5 labels per sample from ``make_multilabel_classification`` (4,000
  samples, 20 features, split 2,000/2,000), ``Linear(20, 64) → ReLU → Linear(64, 5)``
  trained with BCE with logits and a per-label ``pos_weight`` from the label frequencies
  (negatives per positive), Adam lr 1e-3, batch 32, 50 epochs.

Here the Keras network's sigmoid output is folded into the loss (a logits head, trained
with BCE-with-logits: the same model, computed without overflow); the PyTorch network keeps
its Sigmoid layer and BCE on probabilities, as written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from numbce.nn import needs_the_nn_extra

try:
    from numbce import datasets
except ModuleNotFoundError as error:  # scikit-learn's generators
    raise needs_the_nn_extra("numbce.nn.tutorials", error) from error
from numbce.nn.callbacks import History
from numbce.nn.layers import Flatten, Linear, ReLU, Sigmoid
from numbce.nn.network import MLP, Sequential
from numbce.optim import Adam

__all__ = ["TUTORIALS", "TrainingRun", "Tutorial", "train"]

Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def no_loss_options(y_train: np.ndarray) -> dict:
    """The loss's defaults, whatever the training labels."""
    return {}


def pos_weight_from_frequencies(y_train: np.ndarray) -> dict:
    """``{"pos_weight": (n - n_pos) / n_pos}`` per label of ``y_train`` (n, C): as many
    negatives as positives in the loss (PyTorch's suggestion for ``pos_weight``)."""
    positives = y_train.sum(axis=0)
    return {"pos_weight": (y_train.shape[0] - positives) / positives}


@dataclass(frozen=True)
class Tutorial:
    """A tutorial's recipe: ``load_data() -> ((X_train, y_train), (X_test, y_test))``,
    ``build_model(seed, loss_options) -> network``, ``loss_options(y_train)`` (the
    network's loss options for its training labels), and its training settings."""

    name: str
    summary: str
    epochs: int
    batch_size: int
    lr: float
    load_data: Callable[[], Data]
    build_model: Callable[..., Sequential]
    loss_options: Callable[[np.ndarray], dict] = no_loss_options


def circles_model(seed: int | None = None, loss_options: dict | None = None) -> MLP:
    """The Keras tutorial's network: 2 → 100 (ReLU) → 1, Glorot-uniform, logits head."""
    return MLP(
        [2, 100, 1],
        activation="relu",
        init="glorot_uniform",
        seed=seed,
        loss_options=loss_options,
    )


def fake_images_model(
    seed: int | None = None, loss_options: dict | None = None
) -> Sequential:
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
        loss_options=loss_options,
    )


def multilabel_model(seed: int | None = None, loss_options: dict | None = None) -> MLP:
    """20 → 64 (ReLU) → 5 labels, PyTorch's initialisation, logits head."""
    return MLP([20, 64, 5], activation="relu", seed=seed, loss_options=loss_options)


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
    "multilabel": Tutorial(
        "multilabel",
        "make_multilabel_classification 2,000/2,000, 5 labels, MLP 20-64-5 (ReLU), BCE "
        "with logits, pos_weight from the label frequencies, Adam",
        epochs=50,
        batch_size=32,
        lr=1e-3,
        load_data=datasets.multilabel,
        build_model=multilabel_model,
        loss_options=pos_weight_from_frequencies,
    ),
}


@dataclass
class TrainingRun:
    """A trained tutorial: the network, its history, Adam's learning rate, the final
    metrics (with the final weights, on the whole training and test sets: ``train`` and
    ``test``, dicts of :func:`numbce.nn.training.metrics`), the data and the wall-clock
    training time (``seconds``; Numba compilation or cache loading excluded, in
    ``warmup_seconds``)."""

    model: Sequential
    history: History
    lr: float
    train: dict[str, float]
    test: dict[str, float]
    data: Data
    seconds: float
    warmup_seconds: float

    @property
    def compiled(self) -> bool:
        """Whether the timed fit ran compiled epochs (else the Python loop)."""
        return bool(self.history.params.get("compiled"))


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
    data = tutorial.load_data() if data is None else data
    (X, y), (X_test, y_test) = data
    loss_options = tutorial.loss_options(y)

    start = time.perf_counter()
    warmup = tutorial.build_model(seed, loss_options)
    warmup.fit(
        X[: 2 * batch_size],
        y[: 2 * batch_size],
        batch_size=batch_size,
        optimizer=Adam(warmup.parameters(), lr=lr),
        validation_data=(X_test[:batch_size], y_test[:batch_size]),
    )
    warmup_seconds = time.perf_counter() - start

    model = tutorial.build_model(seed, loss_options)
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
        model.evaluate(X, y, return_dict=True),
        model.evaluate(X_test, y_test, return_dict=True),
        data,
        seconds,
        warmup_seconds,
    )
