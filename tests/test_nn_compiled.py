"""Compiled training (numbce.nn.compiled): the same bits as the Python loop for every
loss family, optimizer, weighting, validation and layer it covers; its exact sum against
``math.fsum``; the fallback rule."""

import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from numbce import _config
from numbce.nn import (
    MLP,
    Callback,
    Dropout,
    EarlyStopping,
    Flatten,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    compiled,
    training,
)
from numbce.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR


def _train(monkeypatch, use_compiled, build, X, y, optimizer=Adam, options=None, **fit):
    """A fresh network from ``build()`` trained by the compiled or the Python loop; the
    network, its optimizer, the history and the error raised (or None)."""
    monkeypatch.setattr(
        _config, "COMPILED_EPOCHS", "always" if use_compiled else "never"
    )
    network = build()
    opt = optimizer(network.parameters(), **(options or {}))
    error = None
    try:
        history = network.fit(X, y, optimizer=opt, **fit)
    except FloatingPointError as raised:
        history, error = None, str(raised)
    return network, opt, history, error


def _assert_same_training(
    monkeypatch, build, X, y, optimizer=Adam, options=None, **fit
):
    """Both loops give the same parameters, optimizer state and history, bit for bit."""
    network = build()
    assert compiled.supported(
        network, optimizer(network.parameters(), **(options or {}))
    ), "the case must take the compiled path"
    python = _train(monkeypatch, False, build, X, y, optimizer, options, **fit)
    fast = _train(monkeypatch, True, build, X, y, optimizer, options, **fit)
    for a, b in zip(python[0].parameters(), fast[0].parameters()):
        np.testing.assert_array_equal(a, b)
    state_a, state_b = python[1].state_dict(), fast[1].state_dict()
    assert state_a["step_count"] == state_b["step_count"]
    for name in state_a["state"]:
        for a, b in zip(state_a["state"][name], state_b["state"][name]):
            np.testing.assert_array_equal(a, b)
    assert python[3] == fast[3]
    if python[2] is not None:
        assert python[2].history == fast[2].history
        assert python[2].epoch == fast[2].epoch
        assert python[2].best_epoch == fast[2].best_epoch
    return fast


@pytest.fixture
def data(rng):
    X = rng.normal(size=(203, 4))
    Y = (X[:, :3] + 0.5 * rng.normal(size=(203, 3)) > 0).astype(np.int64)
    return X, Y


OPTIMIZERS = {
    "adam": (Adam, {"lr": 1e-2}),
    "adam-l2-amsgrad": (Adam, {"lr": 1e-2, "weight_decay": 1e-2, "amsgrad": True}),
    "adamw-cosine": (AdamW, {"lr": CosineAnnealingLR(1e-2, T_max=40)}),
    "sgd": (SGD, {"lr": 0.05}),
    "sgd-nesterov-steps": (
        SGD,
        {"lr": StepLR(0.05, step_size=7), "momentum": 0.9, "nesterov": True},
    ),
    "sgd-momentum-decay": (
        SGD,
        {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-3},
    ),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_gives_the_python_loops_bits(monkeypatch, data, name):
    X, Y = data
    optimizer, options = OPTIMIZERS[name]
    _assert_same_training(
        monkeypatch,
        lambda: MLP([4, 16, 8, 1], activation="tanh", seed=1),
        X,
        Y[:, 0],
        optimizer,
        options,
        epochs=4,
        batch_size=16,
        seed=3,
        validation_split=0.2,
    )


LOSSES = [
    ("binary_cross_entropy_with_logits", "logits", {}),
    ("binary_cross_entropy_with_logits", "logits", {"label_smoothing": 0.1}),
    ("binary_cross_entropy_with_logits", "logits", {"pos_weight": [0.5, 2.0, 3.0]}),
    ("binary_cross_entropy", "sigmoid", {}),
    ("sigmoid_focal_loss", "logits", {}),
    ("sigmoid_focal_loss", "logits", {"alpha": 0.25, "gamma": 1.5}),
]


@pytest.mark.parametrize(("loss", "head", "options"), LOSSES)
def test_every_loss_family_gives_the_python_loops_bits(
    monkeypatch, data, loss, head, options
):
    from numbce.losses import FAMILIES

    if loss not in FAMILIES:
        pytest.skip(f"{loss} is not registered")
    X, Y = data
    _assert_same_training(
        monkeypatch,
        lambda: MLP(
            [4, 12, 3], head=head, seed=2, loss=loss, loss_options=options or None
        ),
        X,
        Y,
        epochs=3,
        batch_size=20,
        seed=0,
        validation_data=(X[:50], Y[:50]),
        label_weight=[1.0, 0.5, 2.0],
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "weights",
    [
        {},
        {"sample_weight": "uniform"},
        {"class_weight": {0: 0.5, 1: 3.0}},
        {"sample_weight": "uniform", "class_weight": {1: 2.0}, "l2": 1e-2},
    ],
)
def test_weights_and_penalty_give_the_python_loops_bits(
    monkeypatch, rng, data, dtype, weights
):
    X, Y = data
    weights = dict(weights)
    if weights.get("sample_weight") == "uniform":
        weights["sample_weight"] = rng.uniform(0, 2, size=len(X))
    _assert_same_training(
        monkeypatch,
        lambda: MLP([4, 10, 1], seed=0, dtype=dtype),
        X,
        Y[:, 1],
        epochs=3,
        batch_size=32,
        seed=5,
        validation_data=(X[:70], Y[:70, 1]),
        **weights,
    )


def test_sample_and_label_weights_together(monkeypatch, rng, data):
    X, Y = data
    _assert_same_training(
        monkeypatch,
        lambda: MLP([4, 10, 3], activation="sigmoid", seed=0),
        X,
        Y,
        epochs=2,
        batch_size=25,
        seed=1,
        sample_weight=rng.uniform(0, 2, size=len(X)),
        label_weight=[2.0, 1.0, 0.25],
        l2=1e-3,
    )


def test_images_flatten_and_a_sigmoid_head(monkeypatch, rng):
    X = rng.uniform(size=(90, 3, 4, 5)).astype(np.float32)
    y = rng.integers(0, 2, size=90)
    _assert_same_training(
        monkeypatch,
        lambda: Sequential(
            Flatten(),
            Linear(60, 16, seed=0),
            ReLU(),
            Linear(16, 8, seed=1),
            Tanh(),
            Linear(8, 1, seed=2),
            Sigmoid(),
        ),
        X,
        y,
        epochs=2,
        batch_size=16,
        seed=0,
        validation_data=(X[:30], y[:30]),
    )


def test_batches_and_validation_beyond_one_block(monkeypatch, rng):
    """A batch of more than BLOCK elements (block sums added as math.fsum does), a
    validation set chunked by the evaluation rows, an unshuffled last partial batch."""
    X = rng.normal(size=(4500, 4))
    Y = (X[:, :2] + rng.normal(size=(4500, 2)) > 0).astype(np.int64)
    assert 2100 * 2 > _config.BLOCK
    _assert_same_training(
        monkeypatch,
        lambda: MLP([4, 6, 2], seed=0),
        X,
        Y,
        epochs=2,
        batch_size=2100,
        shuffle=False,
        validation_data=(X[:2500], Y[:2500]),
    )


@pytest.mark.parametrize(("loss", "head", "options"), [LOSSES[1], LOSSES[3], LOSSES[5]])
def test_one_label_unweighted_beyond_one_block(monkeypatch, rng, loss, head, options):
    """One label and no weights (the loss's vectorized loop, every validation pass):
    batches of more than BLOCK elements, a validation set chunked by the evaluation
    rows."""
    from numbce.losses import FAMILIES

    if loss not in FAMILIES:
        pytest.skip(f"{loss} is not registered")
    X = rng.normal(size=(9000, 3))
    y = (X[:, 0] + rng.normal(size=9000) > 0).astype(np.int64)
    assert 4500 > _config.BLOCK
    _assert_same_training(
        monkeypatch,
        lambda: MLP(
            [3, 5, 1], head=head, seed=4, loss=loss, loss_options=options or None
        ),
        X,
        y,
        epochs=2,
        batch_size=4500,
        seed=1,
        validation_data=(X[:2500], y[:2500]),
    )


class _Listener(Callback):
    """A callback of the user's: compiled training then runs one epoch a call."""


@pytest.mark.parametrize(
    ("monitor", "mode", "restore"),
    [
        ("val_loss", "auto", True),
        ("loss", "auto", False),
        ("val_accuracy", "max", True),
        ("accuracy", "auto", True),
    ],
)
@pytest.mark.parametrize("listener", [False, True], ids=["in-the-epochs", "per-epoch"])
def test_early_stopping_gives_the_python_loops_bits(
    monkeypatch, data, monitor, mode, restore, listener
):
    """The rule run inside the compiled epochs (many a call) or by the callback after
    each one-epoch call: the epoch it stops at, the best epoch, the restored weights and
    the callback's state are the Python loop's."""
    X, Y = data
    stoppers = []

    def stopper():
        stoppers.append(
            EarlyStopping(monitor, patience=2, mode=mode, restore_best_weights=restore)
        )
        return stoppers[-1]

    fits = []
    for use_compiled in (False, True):
        fits.append(
            _train(
                monkeypatch,
                use_compiled,
                lambda: MLP([4, 8, 1], seed=0),
                X,
                Y[:, 2],
                SGD,
                {"lr": 0.5, "momentum": 0.9},
                epochs=60,
                batch_size=16,
                seed=0,
                validation_split=0.3,
                callbacks=[stopper(), *[_Listener()] * listener],
            )
        )
    (python, _, h1, _), (fast, _, h2, _) = fits
    for a, b in zip(python.parameters(), fast.parameters()):
        np.testing.assert_array_equal(a, b)
    assert h1.history == h2.history and h1.best_epoch == h2.best_epoch
    assert h2.params["compiled"] and not h1.params["compiled"]
    first, second = stoppers
    assert (first.best_epoch, first.stopped_epoch, first.wait) == (
        second.best_epoch,
        second.stopped_epoch,
        second.wait,
    )
    assert first.best.value == second.best.value
    assert first.stopped_epoch is not None and len(h1.epoch) < 60


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_and_leaky_relu_give_the_python_loops_bits(monkeypatch, data, dtype, p):
    """The two layers declared after the registry: trained compiled (many epochs a
    call, and one a call) with the Python loop's bits, the same dropped elements."""
    X, Y = data

    def build():
        return Sequential(
            Dropout(p / 2),
            Linear(4, 16, seed=0, dtype=dtype),
            LeakyReLU(-0.2 if p else 0.05),
            Dropout(p),
            Linear(16, 2, seed=1, dtype=dtype),
        )

    for callbacks in ([], [_Listener()]):
        _assert_same_training(
            monkeypatch,
            build,
            X,
            Y[:, :2],
            epochs=6,
            batch_size=32,
            seed=1,
            validation_split=0.25,
            callbacks=callbacks,
        )


@pytest.mark.parametrize("lr", [1e30, 1e6])
def test_divergence_stops_at_the_same_epoch_with_the_same_parameters(
    monkeypatch, data, lr
):
    """A non-finite loss (1e30) or non-finite parameters after an epoch (1e6): the same
    FloatingPointError, the same restored parameters, in both loops and both modes."""
    X, Y = data
    X = X * 1e3
    for callbacks in ([], [EarlyStopping("loss", patience=100)]):
        network, _, _, error = _assert_same_training(
            monkeypatch,
            lambda: MLP([4, 8, 1], seed=0, dtype=np.float32),
            X,
            Y[:, 0],
            optimizer=SGD,
            options={"lr": lr},
            epochs=20,
            batch_size=8,
            seed=0,
            callbacks=callbacks,
        )
        assert error is not None and "training stopped at epoch" in error
        assert np.isfinite(network._flat_parameters).all()


@pytest.mark.parametrize(("lr", "scale"), [(1e-2, 1.0), (1.0, 10.0)])
def test_validation_beside_training_gives_the_python_loops_bits(
    monkeypatch, data, lr, scale
):
    """Epochs validated on the second thread while the next call trains (nothing but
    History listening): the Python loop's history and parameters; where training
    diverges (lr 1: at epoch 14, in the second call, the first call's validation still
    out), its error and restored parameters."""
    X, Y = data
    fast = _assert_same_training(
        monkeypatch,
        lambda: MLP([4, 8, 3], seed=0, dtype=np.float32),
        X * scale,
        Y,
        optimizer=SGD,
        options={"lr": lr, "momentum": 0.9},
        epochs=40,
        batch_size=16,
        seed=2,
        validation_split=0.25,
    )
    if lr == 1.0:
        assert "training stopped at epoch 14/40" in fast[3]
    else:
        assert len(fast[2].history["val_loss"]) == 40


def test_many_epochs_a_call_and_one_epoch_a_call_agree(monkeypatch, data):
    """The epochs of one call (nothing but History listening) are those of one call
    per epoch (a callback listening), including the shuffles drawn ahead."""
    X, Y = data
    monkeypatch.setattr(compiled, "MAX_ORDER_ELEMENTS", 3 * len(X))
    runs = []
    for callbacks in ([], [EarlyStopping("loss", patience=1000)]):
        monkeypatch.setattr(_config, "COMPILED_EPOCHS", "always")
        network = MLP([4, 8, 1], seed=0)
        history = network.fit(
            X, Y[:, 0], epochs=10, batch_size=16, seed=4, callbacks=callbacks
        )
        runs.append((network.get_weights(), history.history))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


class _Scaled(Linear):
    """A Linear subclass: its math may differ, so training falls back to Python."""


def test_what_falls_back_to_the_python_loop(data):
    X, Y = data
    plain = MLP([4, 5, 1], seed=0)
    args = ((X, Y[:, :1], None, None), None, 8, 0.0)
    assert compiled.supported(plain, Adam(plain.parameters()))

    class MyAdam(Adam):
        """A subclass: the compiled path cannot know what it changes."""

    assert not compiled.supported(plain, MyAdam(plain.parameters()))
    custom = Sequential(_Scaled(4, 5, seed=0), ReLU(), Linear(5, 1, seed=1))
    assert compiled.plan(custom, Adam(custom.parameters()), *args) is None
    history = custom.fit(X, Y[:, 0], epochs=2, seed=0)
    assert len(history.epoch) == 2


def test_exact_sum_is_math_fsum(rng):
    cases = [
        rng.uniform(0, 1, size=50),
        rng.uniform(0, 1, size=50) * 10.0 ** rng.integers(-30, 30, size=50),
        np.array([1e16, 1.0, 1e-16, 1.0, 3.0]),
        np.array([2.0**53, 1.0, 2.0**-60]),  # a tie broken by the third value
        np.array([2.0**53, 1.0, -(2.0**-60)]),
        np.array([0.0, -0.0]),
        np.array([1.0, math.inf]),
        np.array([1.0, math.nan]),
    ]
    for values in cases:
        expected = math.fsum(values) if np.isfinite(values).all() else values.sum()
        got = compiled.exact_sum(values, values.size, np.empty(values.size + 1))
        assert got == expected or (math.isnan(got) and math.isnan(expected))
        assert math.copysign(1, got) == math.copysign(1, expected)


def test_read_only_training_data_shares_the_compiled_epochs(monkeypatch, data):
    """A read-only X (a memory map opened 'r') trains with the same compiled function as a
    writeable one: the data reach it as read-only views, so no second compile; same bits."""
    X, Y = data
    X_read_only, Y_read_only = X.copy(), Y.copy()
    X_read_only.flags.writeable = Y_read_only.flags.writeable = False

    def build():
        return MLP([4, 6, 3], seed=5)

    writeable = _train(monkeypatch, True, build, X, Y, epochs=2, seed=3)
    read_only = _train(
        monkeypatch, True, build, X_read_only, Y_read_only, epochs=2, seed=3
    )
    for a, b in zip(writeable[0].parameters(), read_only[0].parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    network = writeable[0]
    kernel, _ = compiled._train_kernel(network.loss, network.dtype.name)  # both ran it
    data_types = [signature[0] for signature in kernel.signatures]  # the data tuple
    assert data_types and all(
        not array.mutable for types in data_types for array in types
    )


@pytest.mark.parametrize("epochs", [0, 3, 4, 5, 30])
def test_orders_drawn_ahead_are_the_python_loops(monkeypatch, epochs):
    """The blocks of sample orders (each drawn on the second thread while the previous
    one trains) are rng.permutation(n) per epoch, in order; with no block above
    MAX_ORDER_ELEMENTS indices."""
    n = 7
    monkeypatch.setattr(compiled, "MAX_ORDER_ELEMENTS", 11 * n)

    def blocks(rng):
        with training._Beside() as beside:
            return list(training._order_blocks(rng, epochs, n, beside))

    drawn = blocks(np.random.default_rng(3))
    sizes = [len(block) for block in drawn]
    expected = [training.FIRST_ORDERS, 11, 11, 4][: len(sizes)]
    assert sum(sizes) == epochs and sizes[:-1] == expected[:-1]
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(
        np.concatenate(drawn or [np.empty((0, n))]),
        np.reshape([rng.permutation(n) for _ in range(epochs)], (epochs, n)),
    )
    assert all((block == np.arange(n)).all() for block in blocks(None))


def test_huge_epoch_counts_start_at_once():
    """Blocks are sized as they are drawn: 10**12 epochs start as fast as 4."""
    with training._Beside() as beside:
        first = next(training._order_blocks(None, 10**12, 100_000, beside))
    assert first.shape == (training.FIRST_ORDERS, 100_000)


def test_without_a_second_thread_the_work_is_done_inline(monkeypatch, data):
    """At interpreter shutdown no thread may start (submit raises RuntimeError): the
    orders and validations are then computed on the calling thread, same bits."""

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    X, Y = data
    fit = {"epochs": 30, "batch_size": 16, "seed": 1, "validation_split": 0.25}
    expected = MLP([4, 8, 1], seed=0)
    expected_history = expected.fit(X, Y[:, 0], **fit).history
    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)
    network = MLP([4, 8, 1], seed=0)
    assert network.fit(X, Y[:, 0], **fit).history == expected_history
    for a, b in zip(network.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_fit_of_few_epochs_starts_no_thread(monkeypatch, data):
    """Up to FIRST_ORDERS epochs (one block of orders, validation in the call) train
    on the calling thread alone (a thread would cost more than it saves)."""

    def no_thread(*args, **kwargs):
        raise AssertionError("a thread was started")

    monkeypatch.setattr(training, "ThreadPoolExecutor", no_thread)
    X, Y = data
    network = MLP([4, 8, 1], seed=0)
    network.fit(X, Y[:, 0], epochs=training.FIRST_ORDERS, validation_split=0.25)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_trains_like_its_parent(data):
    """After a fit in the parent (whose threads a forked child lacks), a fit in a
    forked child finishes, with the parent's results."""
    X, Y = data

    def weights():
        network = MLP([4, 8, 1], seed=0)
        network.fit(X, Y[:, 0], epochs=30, batch_size=16, seed=1)
        return network.get_weights()

    expected = weights()
    pid = os.fork()
    if pid == 0:  # the child: exit 0 with the parent's weights
        same = all(np.array_equal(a, b) for a, b in zip(weights(), expected))
        os._exit(0 if same else 1)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child's fit did not finish")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_zero_epochs_train_nothing(monkeypatch, data):
    X, Y = data
    _, _, history, _ = _assert_same_training(
        monkeypatch, lambda: MLP([4, 8, 1], seed=0), X, Y[:, 0], epochs=0, seed=0
    )
    assert history.epoch == [] and history.history == {}


@pytest.mark.parametrize("n", [1, 2, 203, 5000])
def test_one_permuted_call_draws_the_epochs_permutations(n):
    # Compiled epochs draw all their sample orders in one rng.permuted call; the Python
    # loop draws rng.permutation(n) per epoch: the same orders, the same generator state.
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    orders = np.empty((6, n), dtype=np.int64)
    orders[:] = np.arange(n)
    rng_a.permuted(orders, axis=1, out=orders)
    np.testing.assert_array_equal(orders, [rng_b.permutation(n) for _ in range(6)])
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
