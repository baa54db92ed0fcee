"""The two tutorials timed against PyTorch CPU and scikit-learn (pytest-benchmark).

Run: ``python -m pytest bench/test_bench_mlp.py --benchmark-only``.

* ``circles-300-epochs``: make_circles 500/500, 2-100-1 ReLU network, Adam lr 1e-3, batch
  32, 300 epochs, each epoch ending with the loss and accuracy on the test half (as the
  Keras tutorial's ``validation_data``). Contestants: numbce (``MLP.fit``); PyTorch with
  the idiomatic ``DataLoader(TensorDataset)`` loop ("pytorch") and with batches indexed
  from one tensor ("pytorch-tensor-batches", its leanest loop); scikit-learn's
  ``MLPClassifier`` (same network, batch and Adam, no L2 penalty, all 300 epochs; it
  computes no test metrics per epoch); ``MLPBinaryClassifier`` with those settings
  ("numbce-estimator", no test metrics either).
* ``fake-images-1-epoch``: 15,000 random 3x28x28 images, Flatten-2352-64-32-1-Sigmoid,
  BCE on probabilities, Adam lr 1e-4, batch 64, one epoch: numbce against the same two
  PyTorch loops.
* ``multilabel-1-epoch``: the ``multilabel`` tutorial (2,000 samples, 20 features, 5
  labels), 20-64-5 ReLU network, BCE with logits and the per-label ``pos_weight``, Adam
  lr 1e-3, batch 32, one epoch: numbce, the two PyTorch loops (``BCEWithLogitsLoss`` with
  the same ``pos_weight``) and scikit-learn's ``MLPClassifier`` (one ``partial_fit``
  epoch on the indicator matrix, no ``pos_weight``: it has none).

numbce runs twice: ``fit`` with ``numbce._config.COMPILED_EPOCHS = "always"``
("numbce": compiled epochs, one Numba call for all the epochs) and with ``numbce._config.COMPILED_EPOCHS = "never"`` ("numbce-python-loop": the
Python loop of layer, loss and optimizer calls that networks the compiled path does not
cover still use). The scikit-learn contestants run last (see the note above them).

Every contestant runs float32 on the same number of threads (``--threads`` of conftest.py
for Numba, PyTorch and the BLAS libraries), is warmed up (compiled) before timing, and is
timed from a freshly initialised network, for 3 to 20 rounds (about 0.2 s: the fast fits
get more); ``extra_info`` records the suite, case, contestant and test accuracy for the
report script.
"""

import math
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from numbce import _config, datasets
from numbce.nn import tutorials
from numbce.optim import Adam

SEED = 0
CIRCLES = tutorials.TUTORIALS["circles"]
FAKE_IMAGES = tutorials.TUTORIALS["fake-images"]
MULTILABEL = tutorials.TUTORIALS["multilabel"]
TORCH_LOOPS = ["pytorch", "pytorch-tensor-batches"]
NUMBCE_LOOPS = {"numbce": "always", "numbce-python-loop": "never"}
"""numbce's fit with its compiled epochs (what it uses) and with its Python loop."""


@pytest.fixture(scope="module", autouse=True)
def blas_threads(request):
    """conftest.py gives Numba and PyTorch ``--threads`` threads; the BLAS libraries of
    NumPy, SciPy and scikit-learn get as many."""
    with threadpool_limits(request.config.getoption("--threads")):
        yield


@pytest.fixture(params=list(NUMBCE_LOOPS))
def numbce_loop(request, monkeypatch):
    """The numbce contestant: ``fit`` with or without compiled epochs."""
    monkeypatch.setattr(_config, "COMPILED_EPOCHS", NUMBCE_LOOPS[request.param])
    return request.param


def _record(benchmark, case, contestant, test_accuracy):
    benchmark.group = case
    benchmark.extra_info.update(
        suite="mlp",
        case=case,
        contestant=contestant,
        test_accuracy=float(test_accuracy),
    )


TIMED_SECONDS = 0.2
"""Each contestant is timed for about this long: 3 to 20 rounds, by its warm-up call."""


def _timed_training(benchmark, train):
    """Time ``train()`` (which builds and trains a fresh network) for 3 to 20 rounds,
    about :data:`TIMED_SECONDS` in all (a fast fit gets more rounds: its minimum is less
    at the mercy of one noisy moment), after two untimed calls (compilation, then the
    round count); return what the last call returned."""
    train()
    start = time.perf_counter()
    train()
    rounds = min(20, max(3, math.ceil(TIMED_SECONDS / (time.perf_counter() - start))))
    return benchmark.pedantic(train, rounds=rounds, iterations=1)


# -- circles ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def circles():
    (X, y), (X_test, y_test) = datasets.circles()
    return X.astype(np.float32), y, X_test.astype(np.float32), y_test


def test_circles_numbce(benchmark, circles, numbce_loop):
    X, y, X_test, y_test = circles

    def train():
        model = CIRCLES.build_model(SEED)
        model.fit(
            X,
            y,
            epochs=CIRCLES.epochs,
            batch_size=CIRCLES.batch_size,
            optimizer=Adam(model.parameters(), lr=CIRCLES.lr),
            validation_data=(X_test, y_test),
            seed=SEED,
        )
        return model

    model = _timed_training(benchmark, train)
    _record(
        benchmark, "circles-300-epochs", numbce_loop, model.evaluate(X_test, y_test)[1]
    )


def test_circles_numbce_estimator(benchmark, circles, monkeypatch):
    """``MLPBinaryClassifier`` with MLPClassifier's settings below (no L2 penalty, all
    300 epochs, no validation), compiled epochs: the network's speed through
    scikit-learn's API (its EarlyStopping rule runs inside the epochs)."""
    from numbce.nn import MLPBinaryClassifier

    monkeypatch.setattr(_config, "COMPILED_EPOCHS", "always")
    _time_classifier(benchmark, circles, MLPBinaryClassifier, "numbce-estimator")


def _torch_batches(torch, X, y, batch_size, loop, generator):
    """The mini-batches of one epoch, shuffled, as a DataLoader or by tensor indexing."""
    if loop == "pytorch":
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X, y),
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
        )
    order = torch.randperm(X.shape[0], generator=generator)
    return ((X[rows], y[rows]) for rows in order.split(batch_size))


def _torch_train(torch, network, loss_function, lr, data, epochs, batch_size, loop):
    """Adam on mini-batches, with the running training loss and accuracy of each epoch
    and, when there is a test set, its loss and accuracy at the end of each epoch."""
    X, y, X_test, y_test = data
    threshold = 0.0 if isinstance(network[-1], torch.nn.Linear) else 0.5
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        total_loss, correct = 0.0, 0
        for batch_X, batch_y in _torch_batches(
            torch, X, y, batch_size, loop, generator
        ):
            optimizer.zero_grad()
            scores = network(batch_X)
            loss = loss_function(scores, batch_y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * batch_X.shape[0]
            correct += int(((scores > threshold) == (batch_y > 0.5)).sum())
        if X_test is not None:
            with torch.no_grad():
                scores = network(X_test)
                loss_function(scores, y_test).item()
                int(((scores > threshold) == (y_test > 0.5)).sum())
    return network


def _torch_accuracy(torch, network, X, y):
    threshold = 0.0 if isinstance(network[-1], torch.nn.Linear) else 0.5
    with torch.no_grad():
        return float(((network(X) > threshold) == (y > 0.5)).float().mean())


def _torch_tensors(torch, X, y):
    return torch.from_numpy(X), torch.from_numpy(y.astype(np.float32).reshape(-1, 1))


@pytest.mark.parametrize("loop", TORCH_LOOPS)
def test_circles_pytorch(benchmark, circles, loop):
    torch = pytest.importorskip("torch")
    X, y, X_test, y_test = circles
    data = (*_torch_tensors(torch, X, y), *_torch_tensors(torch, X_test, y_test))

    def train():
        torch.manual_seed(SEED)
        network = torch.nn.Sequential(
            torch.nn.Linear(2, 100), torch.nn.ReLU(), torch.nn.Linear(100, 1)
        )
        return _torch_train(
            torch,
            network,
            torch.nn.BCEWithLogitsLoss(),
            CIRCLES.lr,
            data,
            CIRCLES.epochs,
            CIRCLES.batch_size,
            loop,
        )

    network = _timed_training(benchmark, train)
    _record(
        benchmark,
        "circles-300-epochs",
        loop,
        _torch_accuracy(torch, network, *data[2:]),
    )


# -- fake images -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_images():
    (X, y), (X_test, y_test) = FAKE_IMAGES.load_data()
    return X, y, X_test, y_test


def test_fake_images_numbce(benchmark, fake_images, numbce_loop):
    X, y, X_test, y_test = fake_images

    def train():
        model = FAKE_IMAGES.build_model(SEED)
        model.fit(
            X,
            y,
            epochs=1,
            batch_size=FAKE_IMAGES.batch_size,
            optimizer=Adam(model.parameters(), lr=FAKE_IMAGES.lr),
            seed=SEED,
        )
        return model

    model = _timed_training(benchmark, train)
    _record(
        benchmark, "fake-images-1-epoch", numbce_loop, model.evaluate(X_test, y_test)[1]
    )


@pytest.mark.parametrize("loop", TORCH_LOOPS)
def test_fake_images_pytorch(benchmark, fake_images, loop):
    torch = pytest.importorskip("torch")
    X, y, X_test, y_test = fake_images
    data = (*_torch_tensors(torch, X, y), None, None)
    nn = torch.nn

    def train():
        torch.manual_seed(SEED)
        network = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2352, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, 1),
            nn.Sigmoid(),
        )
        return _torch_train(
            torch,
            network,
            nn.BCELoss(),
            FAKE_IMAGES.lr,
            data,
            1,
            FAKE_IMAGES.batch_size,
            loop,
        )

    network = _timed_training(benchmark, train)
    test = _torch_tensors(torch, X_test, y_test)
    _record(
        benchmark, "fake-images-1-epoch", loop, _torch_accuracy(torch, network, *test)
    )


# -- multi-label -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multilabel():
    (X, Y), (X_test, Y_test) = MULTILABEL.load_data()
    pos_weight = MULTILABEL.loss_options(Y)["pos_weight"].astype(np.float32)
    return X.astype(np.float32), Y, X_test.astype(np.float32), Y_test, pos_weight


def _subset_accuracy(predicted, Y):
    return float(np.mean((predicted == Y).all(axis=1)))


def test_multilabel_numbce(benchmark, multilabel, numbce_loop):
    X, Y, X_test, Y_test, pos_weight = multilabel

    def train():
        model = MULTILABEL.build_model(SEED, {"pos_weight": pos_weight})
        model.fit(
            X,
            Y,
            epochs=1,
            batch_size=MULTILABEL.batch_size,
            optimizer=Adam(model.parameters(), lr=MULTILABEL.lr),
            seed=SEED,
        )
        return model

    model = _timed_training(benchmark, train)
    _record(
        benchmark,
        "multilabel-1-epoch",
        numbce_loop,
        _subset_accuracy(model.predict(X_test), Y_test),
    )


@pytest.mark.parametrize("loop", TORCH_LOOPS)
def test_multilabel_pytorch(benchmark, multilabel, loop):
    torch = pytest.importorskip("torch")
    X, Y, X_test, Y_test, pos_weight = multilabel
    data = (torch.from_numpy(X), torch.from_numpy(Y.astype(np.float32)), None, None)
    nn = torch.nn

    def train():
        torch.manual_seed(SEED)
        network = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
        return _torch_train(
            torch,
            network,
            nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pos_weight)),
            MULTILABEL.lr,
            data,
            1,
            MULTILABEL.batch_size,
            loop,
        )

    network = _timed_training(benchmark, train)
    with torch.no_grad():
        predicted = (network(torch.from_numpy(X_test)) > 0).numpy()
    _record(
        benchmark,
        "multilabel-1-epoch",
        loop,
        _subset_accuracy(predicted, Y_test),
    )


# -- scikit-learn, last ------------------------------------------------------------------
# scikit-learn multiplies matrices with NumPy's OpenBLAS, numbce (through Numba) with
# SciPy's: on 2 cores, numbce's fits right after MLPClassifier's ran up to 100x slower
# (measured: both libraries' threads contend for a minute), so these come after the rest.


def _time_classifier(benchmark, circles, classifier_class, contestant, **options):
    """Time ``classifier_class(**settings, **options).fit`` on the circles: Adam with the
    tutorial's batch and learning rate, no L2 penalty, all 300 epochs."""
    from sklearn.exceptions import ConvergenceWarning

    X, y, X_test, y_test = circles

    def train():
        classifier = classifier_class(
            alpha=0.0,
            batch_size=CIRCLES.batch_size,
            learning_rate_init=CIRCLES.lr,
            max_iter=CIRCLES.epochs,
            n_iter_no_change=CIRCLES.epochs + 1,  # no early stop: all 300 epochs
            random_state=SEED,
            **options,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return classifier.fit(X, y)

    classifier = _timed_training(benchmark, train)
    assert classifier.n_iter_ == CIRCLES.epochs
    _record(
        benchmark, "circles-300-epochs", contestant, classifier.score(X_test, y_test)
    )


def test_circles_scikit_learn(benchmark, circles):
    from sklearn.neural_network import MLPClassifier

    _time_classifier(
        benchmark,
        circles,
        MLPClassifier,
        "scikit-learn",
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
    )


def test_multilabel_scikit_learn(benchmark, multilabel):
    from sklearn.neural_network import MLPClassifier

    X, Y, X_test, Y_test, _ = multilabel

    def train():
        classifier = MLPClassifier(
            hidden_layer_sizes=(64,),
            alpha=0.0,
            batch_size=MULTILABEL.batch_size,
            learning_rate_init=MULTILABEL.lr,
            random_state=SEED,
        )
        return classifier.partial_fit(X, Y, classes=np.arange(Y.shape[1]))

    classifier = _timed_training(benchmark, train)
    assert classifier.n_iter_ == 1
    _record(
        benchmark,
        "multilabel-1-epoch",
        "scikit-learn",
        _subset_accuracy(classifier.predict(X_test), Y_test),
    )
