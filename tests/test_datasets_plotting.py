"""numbce.datasets and numbce.plotting (the `numbce` command: test_cli.py)."""

import matplotlib.image
import numpy as np
import pytest
from sklearn.datasets import make_circles, make_multilabel_classification

from numbce import datasets, plotting
from numbce.nn import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_circles_is_make_circles_split_in_half():
    (X_train, y_train), (X_test, y_test) = datasets.circles()
    X, y = make_circles(n_samples=1000, noise=0.1, random_state=1)
    np.testing.assert_array_equal(np.concatenate([X_train, X_test]), X)
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), y)
    assert len(X_train) == len(X_test) == 500
    with pytest.raises(ValueError, match="n_train"):
        datasets.circles(n_samples=10, n_train=10)


def test_fake_images_are_8_bit_pixels_and_random_labels():
    X, y = datasets.fake_images(size=2000, image_size=(1, 4, 4), seed=0)
    assert X.shape == (2000, 1, 4, 4) and X.dtype == np.float32
    pixels = X * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-4)  # k / 255 exactly
    assert pixels.min() == 0 and round(float(pixels.max())) == 255
    assert set(np.unique(y)) == {0, 1} and abs(y.mean() - 0.5) < 0.05
    again, _ = datasets.fake_images(size=2000, image_size=(1, 4, 4), seed=0)
    np.testing.assert_array_equal(X, again)
    _, labels = datasets.fake_images(size=100, num_classes=10, seed=1, dtype=np.float64)
    assert labels.max() <= 9 and len(set(labels)) > 2


def _history(val=True):
    history = History()
    for epoch in range(4):
        metrics = {"loss": 0.7 - 0.1 * epoch, "accuracy": 0.5 + 0.1 * epoch}
        if val:
            metrics.update(val_loss=0.72 - 0.1 * epoch, val_accuracy=0.5 + 0.09 * epoch)
        history.record(epoch, **metrics)
    return history


@pytest.mark.parametrize("val", [True, False])
def test_training_curves_writes_a_png(tmp_path, val):
    path = tmp_path / "curves.png"
    figure = plotting.training_curves(_history(val), path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 300 and width > 300
    loss_axes, accuracy_axes = figure.axes
    assert (loss_axes.get_title(), accuracy_axes.get_title()) == ("Loss", "Accuracy")
    assert accuracy_axes.get_xlabel() == "epoch" and loss_axes.get_ylabel()
    labels = [text.get_text() for text in loss_axes.get_legend().get_texts()]
    train = "train (mean over the epoch)"
    assert labels == ([train, "validation"] if val else [train])
    np.testing.assert_allclose(loss_axes.lines[0].get_ydata(), [0.7, 0.6, 0.5, 0.4])


def test_training_curves_takes_the_history_dict_and_a_validation_label():
    figure = plotting.training_curves(_history().history, validation_label="test")
    assert len(figure.axes[1].lines) == 2
    assert figure.axes[1].get_legend().get_texts()[1].get_text() == "test"


@pytest.mark.parametrize(
    ("suffix", "signature"), [(".pdf", b"%PDF"), (".svg", b"<?xml")]
)
def test_training_curves_writes_the_format_of_the_suffix(tmp_path, suffix, signature):
    path = tmp_path / f"curves{suffix}"
    plotting.training_curves(_history(), path)
    assert path.read_bytes().startswith(signature)


def test_multilabel_is_standardized_make_multilabel_classification():
    (X_train, Y_train), (X_test, Y_test) = datasets.multilabel()
    X, Y = make_multilabel_classification(
        4000, n_features=20, n_classes=5, n_labels=1, random_state=0
    )
    np.testing.assert_array_equal(np.concatenate([Y_train, Y_test]), Y)
    np.testing.assert_allclose(X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(
        X_test * X[:2000].std(axis=0) + X[:2000].mean(axis=0), X[2000:], atol=1e-12
    )
    assert 0.1 < Y_train.mean(axis=0).min() and Y_train.mean(axis=0).max() < 0.3
    with pytest.raises(ValueError, match="n_train"):
        datasets.multilabel(n_samples=10, n_train=0)
