"""The two tutorials' data sets, generated locally (nothing is downloaded).

* :func:`circles`: scikit-learn's ``make_circles`` split in half, as in the Keras tutorial.
* :func:`fake_images`: random images with random labels, like torchvision's ``FakeData``
  followed by ``ToTensor``.
* :func:`multilabel`: scikit-learn's ``make_multilabel_classification``, standardized and
  split in half.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_circles, make_multilabel_classification

__all__ = ["circles", "fake_images", "multilabel"]


def circles(
    n_samples: int = 1000,
    *,
    noise: float = 0.1,
    random_state: int | None = 1,
    n_train: int = 500,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Two noisy concentric circles: ``((X_train, y_train), (X_test, y_test))``.

    ``make_circles(n_samples, noise=noise, random_state=random_state)`` (X float64
    (n_samples, 2), y int64 labels 0 = outer, 1 = inner circle), the first ``n_train``
    samples for training and the rest for testing, as the tutorial splits them.

    >>> (X_train, y_train), (X_test, y_test) = circles()
    >>> X_train.shape, y_test.shape
    ((500, 2), (500,))
    """
    if not 0 < n_train < n_samples:
        raise ValueError(f"n_train must be in [1, {n_samples - 1}], got {n_train}")
    X, y = make_circles(n_samples=n_samples, noise=noise, random_state=random_state)
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])


def fake_images(
    size: int = 15000,
    image_size: tuple[int, ...] = (3, 28, 28),
    num_classes: int = 2,
    seed: int | None = 42,
    dtype: type | np.dtype = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``size`` random images and labels, ``(X, y)``: X of shape (size, *image_size), uniform
    8-bit pixels scaled to [0, 1] (``ToTensor``'s ``pixel / 255``) in ``dtype``; y int64
    labels drawn uniformly from ``range(num_classes)``, unrelated to the images.

    >>> X, y = fake_images(size=4)
    >>> X.shape, X.dtype, bool(X.min() >= 0 and X.max() <= 1), sorted(set(y) - {0, 1})
    ((4, 3, 28, 28), dtype('float32'), True, [])
    """
    if size < 0 or num_classes < 1:
        raise ValueError(
            f"size must be >= 0 and num_classes >= 1, got {size}, {num_classes}"
        )
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, *image_size), dtype=np.uint8)
    X = pixels.astype(dtype)
    X /= 255
    return X, rng.integers(0, num_classes, size=size)


def multilabel(
    n_samples: int = 4000,
    *,
    n_features: int = 20,
    n_labels: int = 5,
    random_state: int | None = 0,
    n_train: int = 2000,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Samples with ``n_labels`` binary labels each: ``((X_train, Y_train), (X_test,
    Y_test))``.

    ``make_multilabel_classification(n_samples, n_features=n_features,
    n_classes=n_labels, n_labels=1, random_state=random_state)`` (Y int64 (n_samples,
    n_labels) of 0/1: about one label per sample on average, each label present in 15 to
    25 % of the samples), the first ``n_train`` samples for training and the rest for
    testing; X (word counts) standardized, float64, with the training samples' mean and
    standard deviation.

    >>> (X_train, Y_train), (X_test, Y_test) = multilabel()
    >>> X_train.shape, Y_test.shape, np.unique(Y_train).tolist()
    ((2000, 20), (2000, 5), [0, 1])
    """
    if not 0 < n_train < n_samples:
        raise ValueError(f"n_train must be in [1, {n_samples - 1}], got {n_train}")
    X, Y = make_multilabel_classification(
        n_samples,
        n_features=n_features,
        n_classes=n_labels,
        n_labels=1,
        random_state=random_state,
    )
    mean, std = X[:n_train].mean(axis=0), X[:n_train].std(axis=0)
    X = (X - mean) / np.where(std > 0, std, 1.0)
    return (X[:n_train], Y[:n_train]), (X[n_train:], Y[n_train:])
