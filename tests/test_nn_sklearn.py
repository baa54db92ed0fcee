"""MLPBinaryClassifier: scikit-learn's estimator checks, Pipeline and GridSearchCV."""

import numpy as np
import pytest
from sklearn.datasets import make_circles
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from numbce.nn import MLP, MLPBinaryClassifier


@parametrize_with_checks([MLPBinaryClassifier(max_iter=100, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _circles(n_samples=300):
    return make_circles(n_samples=n_samples, noise=0.05, factor=0.5, random_state=0)


def test_fit_predict_with_any_two_labels():
    X, y = _circles()
    labels = np.where(y == 1, "inner", "outer")
    clf = MLPBinaryClassifier(max_iter=60, random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["inner", "outer"]
    probabilities = clf.predict_proba(X)
    assert probabilities.shape == (300, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        clf.predict(X), clf.classes_[(probabilities[:, 1] > 0.5).astype(int)]
    )
    assert clf.score(X, labels) > 0.9
    assert isinstance(clf.model_, MLP) and clf.model_.layer_sizes == [2, 100, 1]
    assert len(clf.loss_curve_) == clf.n_iter_ <= 60
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.validation_scores_ is None


def test_early_stopping_uses_a_validation_split():
    X, y = _circles()
    clf = MLPBinaryClassifier(
        max_iter=300, early_stopping=True, n_iter_no_change=5, tol=1e-2, random_state=0
    ).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 300


def test_same_random_state_same_model():
    X, y = _circles()
    first = MLPBinaryClassifier(max_iter=5, random_state=3).fit(X, y)
    second = MLPBinaryClassifier(max_iter=5, random_state=3).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_in_pipeline_and_grid_search():
    X, y = _circles(200)
    pipeline = make_pipeline(
        StandardScaler(), MLPBinaryClassifier(max_iter=30, random_state=0)
    )
    search = GridSearchCV(
        pipeline,
        {"mlpbinaryclassifier__hidden_layer_sizes": [(8,), (32, 16)]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["mlpbinaryclassifier__hidden_layer_sizes"] in [
        (8,),
        (32, 16),
    ]
    assert search.score(X, y) > 0.8


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.arange(30) % 3, "Only binary classification is supported"),
        (np.ones(30), "1 class"),
        (np.linspace(0, 1, 30), "Unknown label type"),
    ],
)
def test_labels_must_be_two_classes(y, message):
    with pytest.raises(ValueError, match=message):
        MLPBinaryClassifier().fit(np.zeros((30, 2)), y)
