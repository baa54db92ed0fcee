"""numbce.nn training (issue 14): sample and class weights, soft labels, the L2 penalty,
Keras-style callbacks and verbosity, the loss chosen by family name, weights access."""

import numpy as np
import pytest

import numbce
from numbce.nn import (
    MLP,
    Callback,
    EarlyStopping,
    Linear,
    ModelCheckpoint,
    Sequential,
    Sigmoid,
    loss_families,
)
from numbce.optim import SGD


def _data(rng, n_samples=40, n_features=3):
    X = rng.normal(size=(n_samples, n_features))
    return X, (X.sum(axis=1) + rng.normal(size=n_samples) > 0).astype(np.int64)


def _full_batch_sgd(model, X, y, lr, **options):
    """One full-batch, unshuffled SGD step of ``model.fit``; the history."""
    return model.fit(
        X,
        y,
        batch_size=len(X),
        shuffle=False,
        optimizer=SGD(model.parameters(), lr=lr),
        **options,
    )


def test_a_sample_weight_of_two_is_a_learning_rate_twice_as_large(rng):
    X, y = _data(rng)
    weighted, scaled = (MLP([3, 5, 1], seed=0, dtype=np.float64) for _ in range(2))
    _full_batch_sgd(weighted, X, y, 0.1, sample_weight=np.full(len(X), 2.0))
    _full_batch_sgd(scaled, X, y, 0.2)
    for a, b in zip(weighted.parameters(), scaled.parameters()):
        np.testing.assert_array_equal(a, b)


def test_class_weight_is_a_sample_weight_by_label(rng):
    X, y = _data(rng)
    by_class, by_sample = (MLP([3, 5, 1], seed=0) for _ in range(2))
    by_class.fit(X, y, epochs=3, seed=0, class_weight={0: 0.5, 1: 3.0})
    by_sample.fit(X, y, epochs=3, seed=0, sample_weight=np.where(y == 1, 3.0, 0.5))
    for a, b in zip(by_class.parameters(), by_sample.parameters()):
        np.testing.assert_array_equal(a, b)


def test_weighted_loss_is_keras_mean(rng):
    X, y = _data(rng)
    model = MLP([3, 5, 1], seed=0, dtype=np.float64)
    weights = rng.uniform(0, 2, size=len(X))
    scores = model.decision_function(X)
    expected = numbce.binary_cross_entropy_with_logits(scores, y, weights)  # sum(w l)/n
    assert model.evaluate(X, y, sample_weight=weights)[0] == pytest.approx(
        float(expected), rel=1e-12
    )
    history = model.fit(X, y, batch_size=len(X), epochs=1, sample_weight=weights)
    assert history.history["loss"][0] == pytest.approx(float(expected), rel=1e-12)


def test_soft_labels_train_on_the_kernel_loss(rng):
    X, y = _data(rng, 200)
    soft = np.where(y == 1, 0.9, 0.1)
    model = MLP([3, 8, 1], seed=0, dtype=np.float64)
    history = model.fit(X, soft, epochs=30, seed=0)
    loss = numbce.binary_cross_entropy_with_logits(model.decision_function(X), soft)
    assert model.evaluate(X, soft)[0] == pytest.approx(float(loss), rel=1e-12)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # accuracy counts y > 0.5 as label 1
    assert model.evaluate(X, soft)[1] == model.evaluate(X, y)[1] > 0.7


def test_l2_penalty_is_scikit_learns(rng):
    X, y = _data(rng)
    model = MLP([3, 5, 1], seed=0, dtype=np.float64)
    before = model.get_weights()
    loss, grads = model.loss_and_grads(X, y)
    l2, lr, n = 0.3, 0.1, len(X)
    history = _full_batch_sgd(model, X, y, lr, l2=l2)
    for param, start, grad in zip(model.parameters(), before, grads):
        penalty = l2 / n * start if start.ndim == 2 else 0.0  # weights, not biases
        np.testing.assert_allclose(param, start - lr * (grad + penalty), rtol=1e-13)
    squares = sum(float(np.sum(w**2)) for w in before if w.ndim == 2)
    assert history.history["loss"][0] == pytest.approx(
        float(loss) + l2 / (2 * n) * squares, rel=1e-12
    )


class _Recorder(Callback):
    def __init__(self, stop_after=None):
        self.events, self.stop_after = [], stop_after

    def on_train_begin(self, logs=None):
        self.events.append(("begin", dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append((epoch, sorted(logs)))
        if epoch == self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append(("end", sorted(logs)))


def test_callbacks_see_every_epoch_and_can_stop_training(rng):
    X, y = _data(rng)
    model = MLP([3, 4, 1], seed=0)
    recorder = _Recorder(stop_after=2)
    history = model.fit(X, y, epochs=10, validation_split=0.25, callbacks=[recorder])
    names = ["accuracy", "loss", "val_accuracy", "val_loss"]
    compiled = history.params["compiled"]
    settings = {"epochs": 10, "batch_size": 30, "steps": 1, "samples": 30}
    assert recorder.events == [
        ("begin", {**settings, "compiled": compiled}),
        (0, names),
        (1, names),
        (2, names),
        ("end", names),
    ]
    assert recorder.model is model and history.epoch == [0, 1, 2]

    class OnlyEpochEnd:  # the protocol needs no base class and no other hook
        epochs = 0

        def on_epoch_end(self, epoch, logs):
            self.epochs += 1

    counter = OnlyEpochEnd()
    model.fit(X, y, epochs=2, callbacks=[counter])
    assert counter.epochs == 2


def test_early_stopping_on_val_accuracy_maximises_it(rng):
    X, y = _data(rng, 200)
    y_val = 1 - y[150:]  # flipped: the validation accuracy falls as training succeeds
    model = MLP([3, 8, 1], seed=0, dtype=np.float64)
    stopper = EarlyStopping("val_accuracy", patience=3, restore_best_weights=True)
    history = model.fit(
        X[:150],
        y[:150],
        epochs=100,
        validation_data=(X[150:], y_val),
        optimizer=SGD(model.parameters(), lr=0.1),
        callbacks=[stopper],
        seed=0,
    )
    accuracy = history.history["val_accuracy"]
    assert stopper.best_epoch == history.best_epoch == int(np.argmax(accuracy))
    assert stopper.stopped_epoch == len(accuracy) - 1 == stopper.best_epoch + 3
    assert model.evaluate(X[150:], y_val)[1] == max(accuracy)


def test_early_stopping_keywords_are_a_shorthand_for_the_callback(rng):
    X, y = _data(rng, 100)
    options = {"epochs": 50, "validation_split": 0.3, "seed": 0}
    short, explicit = (MLP([3, 8, 1], seed=0) for _ in range(2))
    first = short.fit(X, y, early_stopping=True, patience=2, min_delta=0.01, **options)
    stopper = EarlyStopping(patience=2, min_delta=0.01, restore_best_weights=True)
    second = explicit.fit(X, y, callbacks=[stopper], **options)
    assert first.history == second.history and first.best_epoch == second.best_epoch
    assert len(first.epoch) < 50


def test_model_checkpoint_saves_the_best_epochs(rng, tmp_path):
    X, y = _data(rng, 100)
    model = MLP([3, 8, 1], seed=0)
    checkpoint = ModelCheckpoint(
        tmp_path / "model-{epoch:02d}-{val_loss:.3f}.npz", save_best_only=True
    )
    history = model.fit(X, y, epochs=6, validation_split=0.3, callbacks=[checkpoint])
    losses = history.history["val_loss"]
    improving = [k for k in range(6) if losses[k] < min(losses[:k], default=np.inf)]
    saved = sorted(path.name for path in tmp_path.iterdir())
    assert saved == [f"model-{k + 1:02d}-{losses[k]:.3f}.npz" for k in improving]
    best = MLP.load(tmp_path / saved[-1])  # validation: the last 30 samples
    assert best.evaluate(X[70:], y[70:])[0] == losses[improving[-1]]


def test_verbose_2_prints_one_line_per_epoch(rng, capsys):
    X, y = _data(rng)
    MLP([3, 4, 1], seed=0).fit(X, y, epochs=3, verbose=2, validation_split=0.25)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == [
        f"Epoch {k}/3" for k in (1, 2, 3)
    ]
    assert all(
        line.split(" - ")[1:][i].startswith(name)
        for line in lines
        for i, name in enumerate(
            ["loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "]
        )
    )


def test_the_loss_is_a_family_by_name_with_its_options(rng, tmp_path):
    assert {"binary_cross_entropy", "binary_cross_entropy_with_logits"} <= set(
        loss_families()
    )
    X, y = _data(rng)
    pos_weight = 3.0
    model = MLP(
        [3, 4, 1],
        seed=0,
        dtype=np.float64,
        loss="binary_cross_entropy_with_logits",
        loss_options={"pos_weight": [pos_weight], "label_smoothing": 0.1},
    )
    scores = model.decision_function(X)
    expected = numbce.binary_cross_entropy_with_logits(
        scores, y, pos_weight=[pos_weight], label_smoothing=0.1
    )
    assert float(model.loss_and_grads(X, y)[0]) == pytest.approx(
        float(expected), rel=1e-12
    )
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.get_config() == model.get_config()
    assert loaded.loss_and_grads(X, y)[0] == model.loss_and_grads(X, y)[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MLP([3, 1], loss="mse"), "loss must be one of"),
        (
            lambda: MLP([3, 1], loss="binary_cross_entropy"),
            "end the network with Sigmoid",
        ),
        (
            lambda: Sequential(
                Linear(3, 1), Sigmoid(), loss="binary_cross_entropy_with_logits"
            ),
            "must not end in Sigmoid",
        ),
        (lambda: MLP([3, 1], loss_options={"reduction": "sum"}), "training sets them"),
    ],
)
def test_bad_losses(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_loss_options_are_checked_when_the_network_is_built():
    with pytest.raises(
        TypeError,
        match=r"loss 'binary_cross_entropy_with_logits' takes no option 'gamma'; it "
        r"takes \['label_smoothing', 'pos_weight'\]",
    ):
        MLP([3, 4, 1], seed=0, loss_options={"gamma": 2.0})
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 5"):
        MLP([3, 4, 1], seed=0, loss_options={"label_smoothing": 5})
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1000\], got -1"):
        MLP([3, 4, 1], loss="sigmoid_focal_loss", loss_options={"gamma": -1})


def test_get_and_set_weights(rng):
    X, _ = _data(rng)
    first, second = MLP([3, 4, 1], seed=0), MLP([3, 4, 1], seed=1)
    weights = first.get_weights()
    weights[0][0, 0] += 1  # copies: the network is untouched
    assert first.parameters()[0][0, 0] != weights[0][0, 0]
    second.set_weights(first.get_weights())
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))
    with pytest.raises(ValueError, match="do not match"):
        second.set_weights(weights[:-1])


def test_evaluate_returns_a_dict_on_request(rng):
    X, y = _data(rng)
    model = MLP([3, 4, 1], seed=0)
    loss, accuracy = model.evaluate(X, y)
    assert model.evaluate(X, y, return_dict=True) == {
        "loss": loss,
        "accuracy": accuracy,
    }
    np.testing.assert_array_equal(model.predict(X), model.decision_function(X) > 0)


def test_any_registered_family_trains_a_network(rng):
    """The focal loss, once registered, trains a logits network through the same code."""
    if "sigmoid_focal_loss" not in loss_families():
        pytest.skip("numbce has no sigmoid_focal_loss yet")
    X, y = _data(rng, 200)
    options = {"alpha": 0.25, "gamma": 2.0}
    model = MLP(
        [3, 8, 1],
        seed=0,
        dtype=np.float64,
        loss="sigmoid_focal_loss",
        loss_options=options,
    )
    history = model.fit(X, y, epochs=20, seed=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    expected = numbce.sigmoid_focal_loss(
        model.decision_function(X), y, reduction="mean", **options
    )
    assert model.evaluate(X, y)[0] == pytest.approx(float(expected), rel=1e-12)
