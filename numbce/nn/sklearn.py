""":class:`MLPBinaryClassifier`: the :class:`~numbce.nn.MLP` as a scikit-learn estimator."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from numbce.nn.callbacks import EarlyStopping
from numbce.nn.network import ACTIVATIONS, MLP
from numbce.optim import Adam

__all__ = ["MLPBinaryClassifier"]


class MLPBinaryClassifier(ClassifierMixin, BaseEstimator):
    """Binary classifier: an MLP trained with BCE-with-logits and Adam on mini-batches
    (scikit-learn's ``MLPClassifier(solver="adam")``, binary only, on numbce's kernels).

    The network is ``Linear(n_features, h1) → activation → ... → Linear(hk, 1)`` with
    PyTorch's initialisation; Adam uses ``learning_rate_init`` and PyTorch's defaults
    otherwise. ``alpha``: scikit-learn's L2 penalty ``alpha / (2 batch) * sum ||W||^2`` on
    the weights. Each of at most ``max_iter`` epochs shuffles the samples; ``batch_size``
    above the sample count is clamped to it. Training stops early when the monitored loss
    has not fallen by more than ``tol`` for ``n_iter_no_change`` epochs: the training
    loss, or with ``early_stopping`` the loss on a stratified ``validation_fraction`` of
    the samples, whose best epoch's weights are then kept (scikit-learn monitors the
    validation accuracy instead); reaching ``max_iter`` first raises a
    ``ConvergenceWarning``. ``random_state`` fixes the initialisation, the split and the
    shuffling. ``verbose``: one line per epoch. ``warm_start``: ``fit`` continues from the
    fitted network (with a new Adam, as scikit-learn); ``partial_fit`` runs one epoch,
    continuing Adam's state.

    Imbalance: ``class_weight`` ('balanced' or a dict over the labels) and ``fit``'s
    ``sample_weight`` weigh each sample's loss (the batch loss is ``sum(w l) / batch``);
    ``pos_weight`` multiplies the loss of the positive class (``classes_[1]``) inside the
    BCE-with-logits kernel (PyTorch's ``pos_weight``).

    Fitted attributes: ``classes_`` (the two labels; ``predict_proba``'s columns),
    ``model_`` (the :class:`~numbce.nn.MLP`), ``loss_curve_`` (training loss per epoch),
    ``validation_scores_`` (validation accuracy per epoch with ``early_stopping``, else
    None), ``n_iter_`` (epochs run), ``n_features_in_``.

    >>> from sklearn.datasets import make_circles
    >>> X, y = make_circles(n_samples=200, noise=0.05, factor=0.5, random_state=0)
    >>> clf = MLPBinaryClassifier(max_iter=300, tol=1e-2, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        batch_size: int = 32,
        max_iter: int = 200,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        class_weight: dict | str | None = None,
        pos_weight: float | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.class_weight = class_weight
        self.pos_weight = pos_weight

    def _check_params(self) -> list[int]:
        """Check the parameters with scikit-learn's ``check_scalar`` (the errors name
        them); return the hidden layer sizes as a list."""
        hidden = [
            check_scalar(size, "hidden_layer_sizes", numbers.Integral, min_val=1)
            for size in np.atleast_1d(self.hidden_layer_sizes).tolist()
        ]
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got "
                f"{self.activation!r}"
            )
        positive = {"include_boundaries": "neither", "min_val": 0.0}
        check_scalar(self.alpha, "alpha", numbers.Real, min_val=0.0)
        check_scalar(
            self.learning_rate_init, "learning_rate_init", numbers.Real, **positive
        )
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.max_iter, "max_iter", numbers.Integral, min_val=1)
        check_scalar(
            self.validation_fraction,
            "validation_fraction",
            numbers.Real,
            max_val=1.0,
            **positive,
        )
        check_scalar(
            self.n_iter_no_change, "n_iter_no_change", numbers.Integral, min_val=1
        )
        check_scalar(self.tol, "tol", numbers.Real, min_val=0.0)
        return hidden

    def fit(self, X, y, sample_weight=None) -> MLPBinaryClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` of exactly two classes,
        each sample's loss weighted by ``sample_weight`` (n_samples,) if given."""
        continuing = self.warm_start and hasattr(self, "model_")
        return self._fit(X, y, sample_weight, None, continuing, incremental=False)

    def partial_fit(
        self, X, y, sample_weight=None, classes=None
    ) -> MLPBinaryClassifier:
        """One epoch over ``(X, y)``, continuing the fitted network and Adam's state;
        ``classes`` (the two labels) is required on the first call."""
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not (
            first
            or classes is None
            or np.array_equal(np.unique(classes), self.classes_)
        ):
            raise ValueError(
                f"classes={np.unique(classes).tolist()} differs from "
                f"{self.classes_.tolist()} of the first call to partial_fit"
            )
        return self._fit(X, y, sample_weight, classes, not first, incremental=True)

    def _targets(self, y, classes) -> np.ndarray:
        """Set ``classes_`` and return the network's targets: ``y`` of two classes as
        0/1 labels (n,), with ``classes_`` the two labels (from ``classes`` or ``y``); a
        multilabel indicator matrix (n, C) as it is, with ``classes_ = arange(C)``."""
        check_classification_targets(y)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        if target_type == "multilabel-indicator":
            labels = np.arange(y.shape[1])
            if classes is not None and not np.array_equal(np.unique(classes), labels):
                raise ValueError(
                    f"y is a multilabel indicator matrix of {y.shape[1]} labels: classes "
                    f"must be range({y.shape[1]}), got {np.unique(classes).tolist()}"
                )
            self.classes_ = labels
            return y.astype(np.int64)
        if classes is None:
            if target_type != "binary":
                raise ValueError(
                    "Only binary classification is supported. The type of the target "
                    f"is {target_type}: give two classes or a multilabel indicator "
                    "matrix."
                )
            classes = np.unique(y)
        classes = np.unique(classes)
        if classes.size != 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of 2 classes, got "
                f"{classes.size} class{'es' * (classes.size != 1)}: {classes.tolist()}"
            )
        unseen = np.setdiff1d(y, classes)
        if unseen.size:
            raise ValueError(
                f"y holds {unseen.tolist()}, not among the classes {classes.tolist()}"
            )
        self.classes_ = classes
        return np.searchsorted(classes, y)

    def _loss_options(self, n_labels: int) -> dict:
        """``{"pos_weight": ...}`` when set: a number > 0, or one per label (C,)."""
        if self.pos_weight is None:
            return {}
        if np.ndim(self.pos_weight) == 0:
            positive = {"include_boundaries": "neither", "min_val": 0.0}
            check_scalar(self.pos_weight, "pos_weight", numbers.Real, **positive)
            return {"pos_weight": float(self.pos_weight)}
        pos_weight = check_array(
            self.pos_weight, ensure_2d=False, dtype=np.float64, input_name="pos_weight"
        )
        if pos_weight.shape != (n_labels,) or not (pos_weight > 0).all():
            raise ValueError(
                f"pos_weight must be a number > 0 or {n_labels} of them (one per "
                f"label), got shape {pos_weight.shape}"
            )
        return {"pos_weight": pos_weight}

    def _sample_weight(self, X, y, sample_weight) -> np.ndarray | None:
        """``sample_weight`` times the weights of ``class_weight``, or None."""
        weights = None
        if sample_weight is not None:
            weights = check_array(
                sample_weight,
                ensure_2d=False,
                dtype=np.float64,
                input_name="sample_weight",
            )
            check_consistent_length(X, weights)
        if self.class_weight is not None:
            by_class = compute_sample_weight(self.class_weight, y)
            weights = by_class if weights is None else weights * by_class
        return weights

    def _fit(self, X, y, sample_weight, classes, continuing, incremental):
        hidden = self._check_params()
        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=not continuing,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        labels = self._targets(y, self.classes_ if continuing else classes)
        n_labels = 1 if labels.ndim == 1 else labels.shape[1]
        loss_options = self._loss_options(n_labels)
        weights = self._sample_weight(X, y, sample_weight)
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(2**31, size=3)
        if not continuing:
            self.model_ = MLP(
                [X.shape[1], *hidden, n_labels],
                activation=self.activation,
                seed=int(seeds[0]),
                dtype=X.dtype,
                loss_options=loss_options,
            )
            self.loss_curve_, self.n_iter_ = [], 0
        if not (incremental and continuing):  # fit starts a new Adam, as scikit-learn
            self._optimizer = Adam(self.model_.parameters(), lr=self.learning_rate_init)
        validation_data, early_stopping = None, self.early_stopping and not incremental
        if early_stopping:
            split = train_test_split(
                X,
                labels,
                *([] if weights is None else [weights]),
                test_size=self.validation_fraction,
                stratify=labels if labels.ndim == 1 else None,
                random_state=int(seeds[1]),
            )
            X, X_val, labels, y_val = split[:4]
            weights = None if weights is None else split[4]
            validation_data = (X_val, y_val)
        stopper = EarlyStopping(
            "val_loss" if early_stopping else "loss",
            self.tol,
            self.n_iter_no_change,
            restore_best_weights=early_stopping,
        )
        history = self.model_.fit(
            X,
            labels,
            epochs=1 if incremental else self.max_iter,
            batch_size=self.batch_size,
            optimizer=self._optimizer,
            validation_data=validation_data,
            seed=int(seeds[2]),
            verbose=2 if self.verbose else 0,
            sample_weight=weights,
            l2=self.alpha,
            callbacks=[] if incremental else [stopper],
        )
        self.loss_curve_ = [*self.loss_curve_, *history.history["loss"]]
        self.validation_scores_ = history.history.get("val_accuracy")
        self.n_iter_ += len(history.epoch)
        if not incremental and stopper.stopped_epoch is None:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _checked_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self.model_.dtype)

    @property
    def _multilabel(self) -> bool:
        """Whether the estimator was fitted on a multilabel indicator matrix."""
        return self.model_.layer_sizes[-1] > 1

    def decision_function(self, X) -> np.ndarray:
        """The network's logits: (n_samples,) for two classes, positive where
        ``classes_[1]`` is predicted; (n_samples, C) for C labels. ``predict_proba`` is
        their sigmoid."""
        X = self._checked_X(X)
        return self.model_.decision_function(X).astype(np.float64)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, 2), columns in the order of ``classes_``; for
        C labels, the probability of each label, (n_samples, C)."""
        X = self._checked_X(X)
        probability = self.model_.predict_proba(X).astype(np.float64)
        if self._multilabel:
            return probability
        return np.column_stack([1 - probability, probability])

    def predict(self, X) -> np.ndarray:
        """The predicted label of each sample: ``classes_[1]`` where its probability
        exceeds 0.5, else ``classes_[0]``; for C labels, the indicator matrix (n, C)."""
        X = self._checked_X(X)
        predicted = self.model_.predict(X)
        return predicted if self._multilabel else self.classes_[predicted]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        return tags
