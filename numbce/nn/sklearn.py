""":class:`MLPBinaryClassifier`: the :class:`~numbce.nn.MLP` as a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from numbce.nn.model import MLP
from numbce.optim import Adam

__all__ = ["MLPBinaryClassifier"]


class MLPBinaryClassifier(ClassifierMixin, BaseEstimator):
    """Binary classifier: an MLP trained with BCE-with-logits and Adam on mini-batches
    (scikit-learn's ``MLPClassifier(solver="adam")``, binary only, on numbce's kernels).

    The network is ``Linear(n_features, h1) → activation → ... → Linear(hk, 1)`` with
    PyTorch's initialisation; Adam uses ``learning_rate_init`` and PyTorch's defaults
    otherwise. Each of at most ``max_iter`` epochs shuffles the samples. Training stops
    early when the monitored loss has not fallen by more than ``tol`` for
    ``n_iter_no_change`` epochs: the training loss, or with ``early_stopping`` the loss on
    a stratified ``validation_fraction`` of the samples, whose best epoch's weights are
    then kept (scikit-learn monitors the validation accuracy instead).
    ``random_state`` fixes the initialisation, the split and the shuffling.

    Fitted attributes: ``classes_`` (the two labels; ``predict_proba``'s columns),
    ``model_`` (the :class:`~numbce.nn.MLP`), ``loss_curve_`` (training loss per epoch),
    ``validation_scores_`` (validation accuracy per epoch with ``early_stopping``, else
    None), ``n_iter_`` (epochs run), ``n_features_in_``.

    >>> from sklearn.datasets import make_circles
    >>> X, y = make_circles(n_samples=200, noise=0.05, factor=0.5, random_state=0)
    >>> clf = MLPBinaryClassifier(max_iter=100, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        learning_rate_init: float = 1e-3,
        batch_size: int = 32,
        max_iter: int = 200,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol

    def fit(self, X, y) -> MLPBinaryClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` of exactly two classes."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        if target_type != "binary":
            raise ValueError(
                "Only binary classification is supported. The type of the target is "
                f"{target_type}."
            )
        self.classes_, labels = np.unique(y, return_inverse=True)
        if self.classes_.size != 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of 2 classes, got 1 class: "
                f"{self.classes_.tolist()}"
            )
        seeds = check_random_state(self.random_state).randint(2**31, size=3)
        hidden = np.atleast_1d(self.hidden_layer_sizes).tolist()
        model = MLP(
            [X.shape[1], *hidden, 1],
            activation=self.activation,
            seed=int(seeds[0]),
            dtype=X.dtype,
        )
        validation_data = None
        if self.early_stopping:
            X, X_val, labels, y_val = train_test_split(
                X,
                labels,
                test_size=self.validation_fraction,
                stratify=labels,
                random_state=int(seeds[1]),
            )
            validation_data = (X_val, y_val)
        history = model.fit(
            X,
            labels,
            epochs=self.max_iter,
            batch_size=self.batch_size,
            optimizer=Adam(model.parameters(), lr=self.learning_rate_init),
            validation_data=validation_data,
            seed=int(seeds[2]),
            early_stopping=True,
            monitor="val_loss" if self.early_stopping else "loss",
            patience=self.n_iter_no_change,
            min_delta=self.tol,
            restore_best_weights=self.early_stopping,
        )
        self.model_ = model
        self.loss_curve_ = history.history.get("loss", [])
        self.validation_scores_ = history.history.get("val_accuracy")
        self.n_iter_ = len(history.epoch)
        return self

    def _checked_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self.model_.dtype)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, 2), columns in the order of ``classes_``."""
        X = self._checked_X(X)
        probability = self.model_.predict_proba(X).astype(np.float64)
        return np.column_stack([1 - probability, probability])

    def predict(self, X) -> np.ndarray:
        """The predicted label of each sample: ``classes_[1]`` where its probability
        exceeds 0.5, else ``classes_[0]``."""
        X = self._checked_X(X)
        return self.classes_[self.model_.predict(X)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
