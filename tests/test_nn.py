"""numbce.nn: hand-derived gradients (finite differences, PyTorch autograd), training
(determinism, the two tutorials, early stopping, validation), persistence, bad input."""

import io
import json
import math
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import eps, torch_or_skip

from numbce import datasets
from numbce.nn import (
    MLP,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    tutorials,
)
from numbce.nn.layers import NARROW
from numbce.optim import SGD, Adam

# (layer sizes, hidden activation, head): several depths, every activation, both heads.
NETWORKS = [
    ([3, 1], "relu", "logits"),
    ([3, 1], "relu", "sigmoid"),
    ([4, 6, 1], "tanh", "logits"),
    ([4, 6, 1], "relu", "sigmoid"),
    ([5, 7, 6, 1], "sigmoid", "logits"),
    ([5, 7, 6, 4, 1], "relu", "logits"),
    ([5, 7, 6, 4, 1], "tanh", "sigmoid"),
]


def _data(rng, n_samples, n_features):
    X = rng.normal(size=(n_samples, n_features))
    return X, (X.sum(axis=1) + rng.normal(size=n_samples) > 0).astype(np.int64)


def _loss(model, X, y):
    return float(model.loss_and_grads(X, y)[0])


def _central_difference(model, X, y, param, index, h):
    """(loss(param[index] + h) - loss(param[index] - h)) / 2h, param restored after."""
    saved = param[index]
    param[index] = saved + h
    up = _loss(model, X, y)
    param[index] = saved - h
    down = _loss(model, X, y)
    param[index] = saved
    return (up - down) / (2 * h)


@pytest.mark.parametrize(("sizes", "activation", "head"), NETWORKS)
def test_gradients_match_central_differences(rng, sizes, activation, head):
    model = MLP(sizes, activation, head=head, seed=1, dtype=np.float64)
    X, y = _data(rng, 9, sizes[0])
    _, grads = model.loss_and_grads(X, y)
    h = 1e-6
    for param, grad in zip(model.parameters(), grads):
        numeric = np.empty_like(param)
        for index in np.ndindex(param.shape):
            numeric[index] = _central_difference(model, X, y, param, index, h)
        # central differences: O(h^2) truncation plus eps/h rounding, about 1e-9 here
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gradients_through_flatten_match_central_differences(rng):
    model = Sequential(
        Flatten(),
        Linear(12, 5, seed=0, dtype=np.float64),
        Tanh(),
        Linear(5, 1, seed=1, dtype=np.float64),
        Sigmoid(),
    )
    X = rng.uniform(size=(6, 3, 2, 2))
    y = np.array([0, 1, 1, 0, 1, 0])
    _, grads = model.loss_and_grads(X, y)
    weight, h = model.parameters()[0], 1e-6
    for index in [(0, 0), (2, 7), (4, 11)]:
        assert grads[0][index] == pytest.approx(
            _central_difference(model, X, y, weight, index, h), rel=1e-6, abs=1e-9
        )


def _torch_network(torch, model):
    """The same network in PyTorch, with copies of ``model``'s weights."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            linear = torch.nn.Linear(layer.in_features, layer.out_features)
            linear.to(
                torch.float64 if layer.weight.dtype == np.float64 else torch.float32
            )
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight))
                linear.bias.copy_(torch.from_numpy(layer.bias))
            modules.append(linear)
        else:
            modules.append(
                {ReLU: torch.nn.ReLU, Tanh: torch.nn.Tanh, Sigmoid: torch.nn.Sigmoid}[
                    type(layer)
                ]()
            )
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize(("sizes", "activation", "head"), NETWORKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_and_gradients_match_torch_autograd(rng, sizes, activation, head, dtype):
    torch = torch_or_skip()
    model = MLP(sizes, activation, head=head, seed=2, dtype=dtype)
    X, y = _data(rng, 40, sizes[0])
    X = X.astype(dtype)
    loss, grads = model.loss_and_grads(X, y)

    network = _torch_network(torch, model)
    output = network(torch.from_numpy(X))
    target = torch.from_numpy(y.reshape(-1, 1).astype(dtype))
    if head == "logits":
        torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
            output, target
        )
    else:
        torch_loss = torch.nn.functional.binary_cross_entropy(output, target)
    torch_loss.backward()
    torch_grads = [p.grad.numpy() for p in network.parameters()]

    tolerance = 256 * eps(dtype)  # sums in a different order, through a few layers
    assert loss.dtype == dtype
    assert float(loss) == pytest.approx(torch_loss.item(), rel=tolerance)
    for ours, theirs in zip(grads, torch_grads):
        np.testing.assert_allclose(
            ours, theirs, rtol=tolerance, atol=tolerance * np.abs(theirs).max()
        )


def test_parameters_are_live_arrays_in_pytorch_layout():
    model = MLP([2, 100, 1], activation="relu", seed=0, dtype=np.float64)
    params = model.parameters()
    assert [p.shape for p in params] == [(100, 2), (100,), (1, 100), (1,)]
    assert params[0] is model.layers[0].weight
    assert model.head == "logits" and isinstance(model.layers[-1], Linear)
    assert MLP([2, 3, 1], head="sigmoid").head == "sigmoid"


def test_loss_and_grads_returns_copies(rng):
    model = MLP([3, 4, 1], seed=0, dtype=np.float64)
    X, y = _data(rng, 10, 3)
    _, first = model.loss_and_grads(X, y)
    kept = [g.copy() for g in first]
    model.loss_and_grads(X[:5], y[:5])
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("init", ["kaiming_uniform", "glorot_uniform"])
def test_linear_initialisation(init):
    layer = Linear(400, 300, init=init, seed=0, dtype=np.float64)
    if init == "kaiming_uniform":
        bound, bias_bound = 1 / math.sqrt(400), 1 / math.sqrt(400)
    else:
        bound, bias_bound = math.sqrt(6 / 700), 0.0
    assert np.abs(layer.weight).max() <= bound
    assert np.abs(layer.bias).max() <= bias_bound
    # uniform on [-bound, bound]: standard deviation bound / sqrt(3), 120,000 draws
    assert layer.weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert layer.weight.dtype == np.float64


def _in_order(terms):
    """The sum of ``terms`` (k, ...) over its first axis, added in order."""
    total = terms[0].copy()
    for term in terms[1:]:
        total += term
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n", "fan_in", "fan_out"),
    [
        (32, 2, 100),
        (5, 2, 9),
        (7, 3, 1),
        (5, 20, 1),
        (9, 7, 12),
        (32, 100, 1),
        (6, 30, 5),
    ],
)
def test_linear_loops_sum_in_order(rng, dtype, n, fan_in, fan_out):
    # Narrow layers (fewer than NARROW inputs or outputs) multiply in Numba loops, not
    # BLAS: each output, weight-gradient and input-gradient element adds its terms in
    # order (inputs, samples, outputs); the bias gradient sums in float64.
    layer = Linear(fan_in, fan_out, seed=1, dtype=dtype)
    x = rng.normal(size=(n, fan_in)).astype(dtype)
    g = rng.normal(size=(n, fan_out)).astype(dtype)
    out = layer.forward(x)
    grad_input = layer.backward(g)
    W, b = layer.weight, layer.bias
    if fan_in < NARROW:
        expected = _in_order(np.moveaxis(x[:, :, None] * W.T[None], 1, 0)) + b
        np.testing.assert_array_equal(out, expected)
    if fan_in < NARROW or fan_out < NARROW:
        np.testing.assert_array_equal(
            layer.weight_grad, _in_order(g[:, :, None] * x[:, None, :])
        )
    if fan_out < NARROW:
        expected = _in_order(np.moveaxis(g[:, :, None] * W[None], 1, 0))
        np.testing.assert_array_equal(grad_input, expected)
    np.testing.assert_array_equal(
        layer.bias_grad, _in_order(g.astype(np.float64)).astype(dtype)
    )
    reference = x.astype(np.float64) @ W.T.astype(np.float64) + b
    np.testing.assert_allclose(out, reference, rtol=0, atol=50 * eps(dtype))


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, Tanh])
def test_activations_take_strided_arrays(rng, activation):
    """The kernels run over a C-contiguous run of elements: a strided input or
    gradient is copied first, never read as if contiguous."""
    x = rng.normal(size=(6, 10))
    g = rng.normal(size=(6, 10))
    strided, contiguous = activation(), activation()
    out = strided.forward(x[:, ::2]).copy()
    np.testing.assert_array_equal(out, contiguous.forward(x[:, ::2].copy()))
    np.testing.assert_array_equal(
        strided.backward(g[:, 1::2]), contiguous.backward(g[:, 1::2].copy())
    )
    np.testing.assert_array_equal(
        activation().forward(x.T[:5]), activation().forward(x.T[:5].copy())
    )


class _StridedOutput(Linear):
    """A Linear layer whose output is a strided view (the same values)."""

    def forward(self, x):
        return np.repeat(super().forward(x), 2, axis=1)[:, ::2]


def test_a_strided_network_output_is_counted_and_squashed(rng):
    """A custom last layer returning a strided array: training counts its right
    predictions, predict_proba squashes it (no kernel assumes it contiguous)."""
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    network = Sequential(Linear(3, 4, seed=0), ReLU(), _StridedOutput(4, 1, seed=1))
    history = network.fit(X, y, epochs=3, batch_size=8, seed=0)
    scores = network.decision_function(X)
    accuracy = np.mean((scores > 0) == (y == 1))
    assert network.evaluate(X, y)[1] == accuracy
    np.testing.assert_allclose(
        network.predict_proba(X), 1 / (1 + np.exp(-scores)), rtol=4 * eps(network.dtype)
    )
    assert len(history.history["accuracy"]) == 3


@pytest.mark.parametrize("columns", [1, 3])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_count_correct_in_any_layout(rng, columns, layout):
    """The compiled epochs' counts and the Python loop's, nan scores included."""
    from numbce.nn.compiled import count_correct
    from numbce.nn.training import count_correct as python_count_correct

    scores, y = rng.normal(size=(2, 30, 2 * columns))
    scores[3] = np.nan
    scores, y = scores[:, :columns], (y[:, :columns] > 0).astype(np.float64)
    if layout != "strided":
        scores, y = np.asarray(scores, order=layout), np.asarray(y, order=layout)
    right = (scores > 0) == (y > 0.5)
    expected = (int(right.all(axis=1).sum()), int(right.sum()))
    assert count_correct(scores, y, 0.0) == expected
    assert python_count_correct(scores, y, 0.0) == expected


def test_flat_views_refuse_strided_arrays():
    import numba

    from numbce.nn.layers import flat_view

    with pytest.raises(numba.TypingError):
        numba.njit(lambda a: flat_view(a).sum())(np.zeros((4, 4))[:, ::2])


def test_same_seed_same_weights_bit_for_bit():
    (X, y), _ = datasets.circles()

    def train(init_seed, fit_seed):
        model = MLP([2, 16, 1], seed=init_seed)
        model.fit(
            X, y, epochs=5, optimizer=Adam(model.parameters(), lr=1e-2), seed=fit_seed
        )
        return model.parameters()

    first, again = train(0, 0), train(0, 0)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], train(0, 1)[0])
    assert not np.array_equal(first[0], train(1, 0)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_circles_tutorial(seed):
    run = tutorials.train(tutorials.TUTORIALS["circles"], seed=seed)
    assert len(run.history.epoch) == 300
    assert set(run.history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert run.test["accuracy"] >= 0.80
    assert run.test["loss"] < 0.40
    assert run.history.history["val_accuracy"][-1] == run.test["accuracy"]


def test_fake_images_tutorial_runs_and_stays_near_ln2():
    train = datasets.fake_images(size=640)
    test = datasets.fake_images(size=256, seed=43)
    run = tutorials.train(
        tutorials.TUTORIALS["fake-images"], epochs=2, seed=0, data=(train, test)
    )
    model = run.model
    assert isinstance(model.layers[0], Flatten) and model.head == "sigmoid"
    assert [p.shape for p in model.parameters()] == [
        (64, 2352),
        (64,),
        (32, 64),
        (32,),
        (1, 32),
        (1,),
    ]
    assert model.dtype == np.float32
    # random labels: nothing to learn, the loss stays at that of p = 1/2
    for loss in run.history.history["loss"] + run.history.history["val_loss"]:
        assert loss == pytest.approx(math.log(2), abs=0.02)
    assert 0.35 < run.test["accuracy"] < 0.65


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_in_both_dtypes(dtype):
    (X, y), (X_test, y_test) = datasets.circles()
    model = MLP([2, 32, 1], dtype=dtype, seed=0)
    history = model.fit(
        X,
        y,
        epochs=40,
        optimizer=Adam(model.parameters(), lr=1e-2),
        seed=0,
        validation_data=(X_test, y_test),
    )
    assert all(p.dtype == dtype for p in model.parameters())
    assert model.predict_proba(X_test).dtype == dtype
    assert history.history["val_accuracy"][-1] > 0.8
    loss, accuracy = model.evaluate(X_test, y_test)
    assert (loss, accuracy) == (
        history.history["val_loss"][-1],
        history.history["val_accuracy"][-1],
    )


def test_predictions_agree_with_probabilities_and_accuracy(rng):
    X, y = _data(rng, 3000, 4)  # more than one evaluation chunk
    model = MLP([4, 8, 1], seed=0, dtype=np.float64)
    model.fit(X, y, epochs=2, batch_size=64, seed=0)
    probabilities = model.predict_proba(X)
    labels = model.predict(X)
    assert probabilities.shape == labels.shape == (3000,)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, probabilities > 0.5)
    assert model.evaluate(X, y)[1] == np.mean(labels == y)
    np.testing.assert_array_equal(model.predict_proba(X[:7]), probabilities[:7])


def test_validation_split_and_history(rng):
    X, y = _data(rng, 100, 3)
    model = MLP([3, 4, 1], seed=0)
    history = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, seed=0)
    assert history.epoch == [0, 1, 2]
    assert history.params == {
        "epochs": 3,
        "batch_size": 16,
        "steps": 5,
        "samples": 80,
        "compiled": history.params["compiled"],
    }
    assert all(len(values) == 3 for values in history.history.values())
    assert history.history["val_loss"][-1] == model.evaluate(X[80:], y[80:])[0]


def test_early_stopping_restores_the_best_weights(rng):
    X, y = _data(rng, 200, 3)
    # validation labels flipped: val_loss rises as training succeeds
    y_val = 1 - y[150:]
    model = MLP([3, 8, 1], seed=0, dtype=np.float64)
    history = model.fit(
        X[:150],
        y[:150],
        epochs=100,
        validation_data=(X[150:], y_val),
        seed=0,
        optimizer=Adam(model.parameters(), lr=0.02),
        early_stopping=True,
        patience=3,
    )
    val_loss = history.history["val_loss"]
    assert len(history.epoch) < 100
    assert history.best_epoch == int(np.argmin(val_loss))
    assert len(val_loss) == history.best_epoch + 4
    assert model.evaluate(X[150:], y_val)[0] == min(val_loss)


def test_early_stopping_on_the_training_loss_stops_at_a_plateau(rng):
    X, y = _data(rng, 64, 3)
    model = MLP([3, 4, 1], seed=0)
    history = model.fit(
        X,
        y,
        epochs=500,
        optimizer=SGD(model.parameters(), lr=0.0),
        shuffle=False,  # reshuffled batches round the epoch's mean loss differently
        early_stopping=True,
        monitor="loss",
        patience=4,
    )
    assert len(history.epoch) == 5  # lr 0: the first epoch is the best, four more wait


def test_progress_bar(rng, capsys):
    X, y = _data(rng, 40, 3)
    MLP([3, 4, 1], seed=0).fit(X, y, epochs=2, verbose=1)
    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_and_load_round_trip(tmp_path, rng, dtype):
    X, y = _data(rng, 50, 3)
    model = MLP(
        [3, 5, 4, 1],
        activation="tanh",
        head="sigmoid",
        init="glorot_uniform",
        dtype=dtype,
    )
    model.fit(X, y, epochs=2, seed=0)
    model.save(tmp_path / "model.npz")
    loaded = MLP.load(tmp_path / "model.npz")
    assert type(loaded) is MLP and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))

    network = tutorials.fake_images_model(seed=0)
    network.save(tmp_path / "network")
    images = datasets.fake_images(size=5)[0]
    again = Sequential.load(tmp_path / "network")
    np.testing.assert_array_equal(
        again.predict_proba(images), network.predict_proba(images)
    )
    with pytest.raises(ValueError, match="holds a Sequential, not a MLP"):
        MLP.load(tmp_path / "network")


SAVE_IN_A_LOOP = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even where SIGINT is ignored
import numpy as np
from numbce.nn import MLP
models = [MLP([512, 512, 1], dtype=np.float64, seed=seed) for seed in (0, 1)]
models[0].save(sys.argv[1])
print("saved", flush=True)
for i in range(3000):  # bounded: a few seconds to tens of seconds
    models[i % 2].save(sys.argv[1])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_save_interrupted_at_any_moment_leaves_a_model_that_loads(tmp_path, sig):
    expected = [MLP([512, 512, 1], dtype=np.float64, seed=seed) for seed in (0, 1)]
    path = tmp_path / "model.npz"
    delays = np.random.default_rng(sig.value).uniform(0.0, 0.05, size=3)
    for delay in delays:
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVE_IN_A_LOOP, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert saver.stdout.readline() == "saved\n"
        time.sleep(delay)
        saver.send_signal(sig)
        try:
            saver.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            # Python prints and drops a KeyboardInterrupt raised in a destructor
            # ("Exception ignored in ..."), and the loop goes on: stop it for good
            saver.kill()
            saver.communicate()
        loaded = MLP.load(path).parameters()
        assert any(
            all(np.array_equal(a, b) for a, b in zip(loaded, model.parameters()))
            for model in expected
        )


def test_a_failed_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    MLP([3, 1], seed=0).save(path)
    before = path.read_bytes()

    def full_disk(file, **arrays):
        file.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        MLP([3, 1], seed=1).save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_a_bad_value_in_any_block(dtype):
    from numbce.nn.network import FINITE_BLOCK, all_finite

    values = np.zeros(2 * FINITE_BLOCK + 5, dtype)
    values[7] = np.finfo(dtype).max
    assert all_finite(values) and all_finite(values[:0])
    for where in (0, FINITE_BLOCK - 1, FINITE_BLOCK, values.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            copy = values.copy()
            copy[where] = bad
            assert not all_finite(copy)


# -- bad input: a ValueError before any training, the parameters untouched ------------

BAD_FITS = {
    "mismatched lengths": (lambda X, y: (X, y[:-1]), "shape"),
    "wrong feature count": (lambda X, y: (X[:, :2], y), "expects 3 features"),
    "nan in X": (lambda X, y: (np.where(X > 1.5, np.nan, X), y), "finite"),
    "inf in X": (lambda X, y: (np.where(X > 1.5, -np.inf, X), y), "finite"),
    "overflow in the cast to float32": (
        lambda X, y: (X * 1e300, y),
        "overflows float32",
    ),
    "labels 0, 1, 2": (
        lambda X, y: (X, y + (X[:, 0] > 1)),
        r"targets must be in \[0, 1\]",
    ),
    "labels -1, 1": (lambda X, y: (X, 2 * y - 1), r"targets must be in \[0, 1\]"),
    "nan labels": (
        lambda X, y: (X, np.where(X[:, 0] > 1, np.nan, y)),
        r"targets must be in \[0, 1\]",
    ),
    "empty X": (lambda X, y: (X[:0], y[:0]), "empty"),
    "1-d X": (lambda X, y: (X[:, 0], y), "n_samples"),
}


@pytest.mark.parametrize("case", BAD_FITS)
def test_bad_fit_input(rng, case):
    change, message = BAD_FITS[case]
    X, y = _data(rng, 30, 3)
    model = MLP([3, 4, 1], seed=0)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        model.fit(*change(X, y), epochs=2)
    for a, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True])
def test_bad_batch_size(rng, batch_size):
    X, y = _data(rng, 30, 3)
    with pytest.raises(ValueError, match="batch_size"):
        MLP([3, 4, 1]).fit(X, y, batch_size=batch_size)


@pytest.mark.parametrize(
    "options",
    [
        {"validation_data": (np.zeros((4, 2)), np.zeros(4))},
        {"validation_data": (np.zeros((4, 3)), np.full(4, 3))},
        {"validation_split": 1.5},
        {"validation_split": 0.2, "validation_data": (np.zeros((4, 3)), np.zeros(4))},
        {"early_stopping": True},
        {"early_stopping": True, "monitor": "val_auc", "validation_split": 0.2},
        {"verbose": 3},
        {"l2": -1.0},
        {"sample_weight": -np.ones(30)},
        {"sample_weight": np.ones(29)},
        {"class_weight": {2: 1.0}},
        {"epochs": -1},
        {"optimizer": "other"},
    ],
)
def test_bad_fit_options(rng, options):
    X, y = _data(rng, 30, 3)
    model = MLP([3, 4, 1])
    if options.get("optimizer") == "other":
        options = {"optimizer": Adam(MLP([3, 4, 1]).parameters())}
    with pytest.raises(ValueError):
        model.fit(X, y, **options)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((4, 2)), "expects 3 features"),
        (np.array([[0.0, np.nan, 1.0]]), "finite"),
        (np.zeros((0, 3)), "empty"),
        (np.array([["a", "b", "c"]]), "real numbers"),
    ],
)
def test_bad_predict_input(X, message):
    model = MLP([3, 4, 1])
    for method in (model.predict, model.predict_proba):
        with pytest.raises(ValueError, match=message):
            method(X)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MLP([3]), "layer_sizes"),
        (lambda: MLP([3, 0, 1]), "layer size"),
        (lambda: MLP([3, 1], activation="gelu"), "activation"),
        (lambda: MLP([3, 1], head="softmax"), "head"),
        (lambda: Linear(3, 1, init="zeros"), "init"),
        (lambda: Sequential(ReLU()), "parameters"),
    ],
)
def test_bad_networks(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _Square(Layer):
    """(n, 4) -> (n, 2, 2): a layer whose output is not a vector per sample."""

    def allocate(self, rows, input_shape, dtype, input_grad):
        return (2, 2)

    def forward(self, x):
        return x.reshape(-1, 2, 2)

    def backward(self, grad_output):
        return grad_output.reshape(grad_output.shape[0], -1)


def test_network_must_output_a_vector_per_sample():
    with pytest.raises(ValueError, match="a vector of scores per sample"):
        Sequential(Linear(3, 4), _Square()).predict(np.zeros((2, 3)))


def test_nan_loss_stops_training_and_keeps_the_last_good_weights(rng):
    X, y = _data(rng, 64, 3)
    model = MLP([3, 4, 1], seed=0, dtype=np.float32)
    model.fit(X, y, epochs=1, seed=0)
    good = [p.copy() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="epoch 1/3"):
        model.fit(X, y, epochs=3, optimizer=SGD(model.parameters(), lr=1e38), seed=0)
    for param, saved in zip(model.parameters(), good):
        np.testing.assert_array_equal(param, saved)


def test_parameters_are_views_of_one_buffer_and_survive_pickling(rng):
    X, y = _data(rng, 40, 3)
    model = MLP([3, 5, 1], seed=0, dtype=np.float64)
    assert Adam(model.parameters()).flat_params is not None
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    optimizer = Adam(copy.parameters(), lr=0.1)
    assert optimizer.flat_params is not None  # views of the copy's own buffer
    copy.fit(X, y, epochs=3, optimizer=optimizer, seed=0)
    assert not np.array_equal(copy.predict_proba(X), model.predict_proba(X))
    model.fit(X, y, epochs=3, optimizer=Adam(model.parameters(), lr=0.1), seed=0)
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))


def test_fit_with_an_optimizer_over_separate_arrays(rng):
    X, y = _data(rng, 40, 3)
    flat_model, list_model = MLP([3, 4, 1], seed=0), MLP([3, 4, 1], seed=0)
    list_optimizer = Adam(list_model.parameters(), lr=0.05)
    list_optimizer.flat_params = None  # take the one-call-per-parameter path
    flat_optimizer = Adam(flat_model.parameters(), lr=0.05)
    flat_model.fit(X, y, epochs=2, optimizer=flat_optimizer, seed=0)
    list_model.fit(X, y, epochs=2, optimizer=list_optimizer, seed=0)
    for a, b in zip(flat_model.parameters(), list_model.parameters()):
        np.testing.assert_array_equal(a, b)


def test_a_diverged_last_update_raises_and_restores_the_epoch_start(rng):
    X, y = _data(rng, 10, 3)
    model = MLP([3, 4, 1], seed=0)
    before = [p.copy() for p in model.parameters()]
    # one batch: the loss is finite, the single Adam update overflows float32
    with pytest.raises(FloatingPointError, match="epoch 1/1: the update of the last"):
        model.fit(X, y, batch_size=10, optimizer=Adam(model.parameters(), lr=1e38))
    for param, saved in zip(model.parameters(), before):
        np.testing.assert_array_equal(param, saved)


def test_batch_size_above_the_sample_count_is_clamped(rng):
    X, y = _data(rng, 10, 3)
    clamped, full = MLP([3, 4, 1], seed=0), MLP([3, 4, 1], seed=0)
    history = clamped.fit(X, y, batch_size=10**9, epochs=2, seed=0)
    full.fit(X, y, batch_size=10, epochs=2, seed=0)
    assert history.params["batch_size"] == 10 and history.params["steps"] == 1
    for a, b in zip(clamped.parameters(), full.parameters()):
        np.testing.assert_array_equal(a, b)


def _forged_file(path, layer_sizes, shape, values=()):
    """An .npz like :meth:`MLP.save` writes, with the given configuration and a stored
    parameter array whose header announces ``shape`` (float64) followed by ``values``."""
    config = MLP([1, 1]).get_config() | {"layer_sizes": layer_sizes}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    config_file = io.BytesIO()
    np.save(config_file, np.array(json.dumps({"class": "MLP", "config": config})))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.npy", config_file.getvalue())
        archive.writestr(
            "parameters.npy", header.getvalue() + np.asarray(values, "<f8").tobytes()
        )
    return path


def _archive(path, config_text, parameters):
    """An .npz of the two members :meth:`MLP.save` writes, with any contents."""
    np.savez(path, config=np.array(config_text), parameters=parameters)
    return path


def _saved_config(**changes):
    config = MLP([3, 5, 1], seed=0).get_config() | changes
    return json.dumps({"class": "MLP", "config": config})


FORGED = {
    "no class": (json.dumps({"config": {}}), np.zeros(26), "malformed configuration"),
    "a list as config": ('["MLP"]', np.zeros(26), "malformed configuration"),
    "not JSON": ("{", np.zeros(26), "a configuration that is not JSON"),
    "an extra key": (_saved_config(colour="red"), np.zeros(26),
                     r"malformed configuration \(.*colour"),
    "a string class": (json.dumps({"class": 5, "config": {}}), np.zeros(26),
                       "holds a 5, not a MLP"),
    "bad loss options": (_saved_config(loss_options={"label_smoothing": 5}),
                         np.zeros(26), r"label_smoothing must be in \[0, 1\], got 5"),
    "complex parameters": (_saved_config(), np.zeros(26, complex),
                           "dtype complex128, not float32 or float64"),
    "string parameters": (_saved_config(), np.array(["1.0"] * 26),
                          "dtype <U3, not float32 or float64"),
    "nan parameters": (_saved_config(), np.full(26, np.nan), "not finite"),
    "an infinite parameter": (_saved_config(), np.r_[np.zeros(25), np.inf], "not finite"),
}  # fmt: skip


@pytest.mark.parametrize("case", FORGED, ids=list(FORGED))
def test_a_forged_file_is_a_value_error_naming_what_is_wrong(tmp_path, case):
    config, parameters, message = FORGED[case]
    with pytest.raises(ValueError, match=message):
        MLP.load(_archive(tmp_path / "m.npz", config, parameters))


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: data[:10], lambda data: b"",
     lambda data: data[:100] + bytes(len(data) - 100), lambda data: data[:-30]],
    ids=["half", "10 bytes", "empty", "zeroed", "no end"],
)  # fmt: skip
def test_a_damaged_file_is_a_value_error(tmp_path, damage):
    path = tmp_path / "m.npz"
    MLP([30, 50, 1], seed=0).save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=str(path)):
        MLP.load(path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="holds one array"):
        MLP.load(tmp_path / "one.npy")
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")


def test_load_checks_the_parameter_count_before_allocating(tmp_path):
    path = tmp_path / "model.npz"
    MLP([3, 5, 1], dtype=np.float64, seed=0).save(path)
    assert MLP.load(path).parameter_count(MLP.load(path).get_config()) == 26
    # a kilobyte whose header asks for (2**20 + 1)**2 float64 values: 8 TiB
    huge = _forged_file(tmp_path / "huge.npz", [2**20, 2**20, 1], ((2**20 + 1) ** 2,))
    assert huge.stat().st_size < 2000
    with pytest.raises(ValueError, match="too small to hold the 1099513724929"):
        MLP.load(huge)
    # the configuration and the stored array disagree
    mismatch = _forged_file(tmp_path / "m.npz", [3, 5, 1], (25,), np.zeros(25))
    with pytest.raises(
        ValueError, match=r"shape \(25,\), its configuration needs \(26,\)"
    ):
        MLP.load(mismatch)
    bad_sizes = _forged_file(tmp_path / "b.npz", [3, -5, 1], (26,), np.zeros(26))
    with pytest.raises(ValueError, match="positive integer sizes"):
        MLP.load(bad_sizes)
    np.testing.assert_array_equal(
        MLP.load(
            _forged_file(tmp_path / "ok.npz", [3, 5, 1], (26,), np.ones(26))
        ).parameters()[0],
        1.0,
    )


# -- Dropout and LeakyReLU -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5, 0.0])
def test_leaky_relu_is_torchs_bit_for_bit(dtype, slope):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(33, 7)).astype(dtype)
    x[0, :3] = 0.0, -0.0, 1e-40
    g = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    layer = LeakyReLU(slope)
    layer.allocate(len(x), x.shape[1:], np.dtype(dtype), True)
    out = layer.forward(x).copy()
    grad = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.leaky_relu(xt, slope)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(out, yt.detach().numpy())
    np.testing.assert_array_equal(grad, xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_drops_a_fraction_p_and_scales_the_rest(dtype, p):
    """Kept elements are ``x * (1 / (1 - p))`` with the factor rounded to the dtype
    (torch's ``input * (mask / (1 - p))``); the dropped fraction is within 5 sigma of
    p; the backward pass multiplies by the same factors; the same key, the same mask."""
    x = np.random.default_rng(0).uniform(1, 2, size=(400, 50)).astype(dtype)
    layer = Dropout(p)
    out = layer.forward(x, 12345).copy()
    kept = out != 0
    scale = dtype(1) / dtype(1 - p)
    np.testing.assert_array_equal(out[kept], x[kept] * scale)
    sigma = math.sqrt(p * (1 - p) / x.size)
    assert abs((~kept).mean() - p) < 5 * sigma
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad, np.where(kept, scale, 0).astype(dtype))
    np.testing.assert_array_equal(layer.forward(x, 12345), out)
    assert not np.array_equal(layer.forward(x, 12346) != 0, kept)


def test_dropout_scale_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(1, 2, size=(64, 64)).astype(np.float32)
    for p in (0.1, 0.3, 0.7):
        theirs = torch.nn.functional.dropout(torch.tensor(x), p, training=True).numpy()
        ours = Dropout(p).forward(x, 7)
        both = (theirs != 0) & (ours != 0)
        assert both.any()
        np.testing.assert_array_equal(ours[both], theirs[both])


def test_dropout_is_the_identity_outside_training(rng):
    X, y = _data(rng, 64, 3)
    plain = Sequential(Linear(3, 8, seed=0), ReLU(), Linear(8, 1, seed=1))
    dropped = Sequential(
        Linear(3, 8, seed=0), ReLU(), Dropout(0.5), Linear(8, 1, seed=1)
    )
    np.testing.assert_array_equal(plain.predict_proba(X), dropped.predict_proba(X))
    assert plain.evaluate(X, y) == dropped.evaluate(X, y)
    assert dropped.loss_and_grads(X, y)[0] == plain.loss_and_grads(X, y)[0]


def test_dropout_changes_training_and_a_seed_repeats_it(rng):
    X, y = _data(rng, 64, 3)

    def trained(p, seed):
        net = Sequential(Linear(3, 8, seed=0), ReLU(), Dropout(p), Linear(8, 1, seed=1))
        net.fit(X, y, epochs=2, batch_size=16, seed=seed)
        return net.get_weights()

    same, other, none = trained(0.5, 3), trained(0.5, 4), trained(0.0, 3)
    for a, b in zip(same, trained(0.5, 3)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(same, other))
    assert not all(np.array_equal(a, b) for a, b in zip(same, none))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Dropout(-0.1), ValueError, r"dropout probability must be in \[0, 1\]"),
        (lambda: Dropout(1.5), ValueError, r"dropout probability must be in \[0, 1\]"),
        (lambda: Dropout(math.nan), ValueError, "dropout probability"),
        (lambda: LeakyReLU(math.inf), ValueError, "negative_slope must be a finite"),
    ],
)
def test_bad_dropout_and_leaky_relu(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_dropout_and_leaky_relu_networks_save_and_load(rng, tmp_path):
    X, _ = _data(rng, 20, 3)
    net = Sequential(
        Linear(3, 8, seed=0), LeakyReLU(0.3), Dropout(0.25), Linear(8, 1, seed=1)
    )
    net.save(tmp_path / "net.npz")
    loaded = Sequential.load(tmp_path / "net.npz")
    assert repr(loaded) == repr(net)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
