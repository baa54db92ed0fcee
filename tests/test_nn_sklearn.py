"""MLPBinaryClassifier: scikit-learn's estimator checks, Pipeline and GridSearchCV, the
parameters next to MLPClassifier's (weights, alpha, partial_fit, warm_start, ...)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_circles, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

from numbce.nn import MLP, MLPBinaryClassifier


def _expected_failures(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data": "mini-batch Adam on shuffled "
        "batches: a sample of weight 2 is not two samples (scikit-learn's MLPClassifier "
        "passes this check only with its lbfgs solver)"
    }


@parametrize_with_checks(
    [MLPBinaryClassifier(max_iter=100, random_state=0)],
    expected_failed_checks=_expected_failures,
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _circles(n_samples=300):
    return make_circles(n_samples=n_samples, noise=0.05, factor=0.5, random_state=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_same_random_state_same_model():
    X, y = _circles()
    first = MLPBinaryClassifier(max_iter=5, random_state=3).fit(X, y)
    second = MLPBinaryClassifier(max_iter=5, random_state=3).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
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
        (np.ones(30), "2 classes, got 1 class"),
        (np.linspace(0, 1, 30), "Unknown label type"),
    ],
)
def test_labels_must_be_two_classes(y, message):
    with pytest.raises(ValueError, match=message):
        MLPBinaryClassifier().fit(np.zeros((30, 2)), y)


def _imbalanced():
    """95:5, hard to separate: unweighted, the minority class is never predicted."""
    X, y = make_classification(
        n_samples=2000,
        n_features=10,
        n_informative=3,
        weights=[0.95],
        flip_y=0.0,
        class_sep=0.3,
        random_state=0,
    )
    return train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_class_weight_sample_weight_and_pos_weight_raise_the_minority_recall():
    X, X_test, y, y_test = _imbalanced()

    def recall(sample_weight=None, **options):
        clf = MLPBinaryClassifier(
            hidden_layer_sizes=(32,), max_iter=50, random_state=0, **options
        ).fit(X, y, sample_weight=sample_weight)
        return recall_score(y_test, clf.predict(X_test)), clf

    plain, _ = recall()
    balanced, clf = recall(class_weight="balanced")
    weights = compute_sample_weight("balanced", y)
    by_sample, other = recall(sample_weight=weights)
    by_dict, _ = recall(class_weight={0: weights[y == 0][0], 1: weights[y == 1][0]})
    by_pos_weight, _ = recall(pos_weight=19.0)
    assert plain < 0.1 and balanced > 0.5
    assert by_sample == by_dict == balanced
    np.testing.assert_array_equal(
        clf.predict_proba(X_test), other.predict_proba(X_test)
    )
    assert by_pos_weight > 0.5


def test_decision_function_is_the_logit():
    X, y = _circles()
    clf = MLPBinaryClassifier(max_iter=20, n_iter_no_change=20, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(20\) reached"):
        clf.fit(X, y)
    scores = clf.decision_function(X)
    assert scores.shape == (300,) and scores.dtype == np.float64
    np.testing.assert_allclose(
        1 / (1 + np.exp(-scores)), clf.predict_proba(X)[:, 1], rtol=1e-6
    )
    np.testing.assert_array_equal(
        clf.predict(X), clf.classes_[(scores > 0).astype(int)]
    )


def test_no_convergence_warning_when_training_stops_early():
    X, y = _circles()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPBinaryClassifier(max_iter=500, tol=1e-2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 500


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_alpha_shrinks_the_weights():
    X, y = _circles()
    norms = []
    for alpha in (0.0, 1.0):
        clf = MLPBinaryClassifier(alpha=alpha, max_iter=30, random_state=0).fit(X, y)
        norms.append(sum(np.sum(w**2) for w in clf.model_.parameters()[::2]))
    assert norms[1] < 0.8 * norms[0]


def test_partial_fit_continues_adam():
    X, y = _circles()
    clf = MLPBinaryClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    for _ in range(5):
        clf.partial_fit(X, y, classes=[0, 1])
    assert clf.n_iter_ == len(clf.loss_curve_) == 5
    assert clf._optimizer.step_count == 5 * 10  # 300 samples, batches of 32
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="differs from"):
        clf.partial_fit(X, y, classes=[0, 2])
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, y + 1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_continues_from_the_fitted_network():
    X, y = _circles()
    clf = MLPBinaryClassifier(
        max_iter=5, n_iter_no_change=10, warm_start=True, random_state=0
    )
    model = clf.fit(X, y).model_
    after_five = model.get_weights()
    clf.fit(X, y)
    assert clf.model_ is model and clf.n_iter_ == len(clf.loss_curve_) == 10
    assert not np.array_equal(model.parameters()[0], after_five[0])
    cold = MLPBinaryClassifier(max_iter=5, random_state=0).fit(X, y)
    assert cold.fit(X, y).n_iter_ == 5 and cold.model_ is not model


def test_batch_size_is_clamped_and_verbose_prints_epochs(capsys):
    X, y = _circles(10)
    clf = MLPBinaryClassifier(
        batch_size=10**9, max_iter=2, verbose=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    assert capsys.readouterr().out.startswith("Epoch 1/2 - loss: ")
    assert clf.n_iter_ == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"learning_rate_init": -1},
            ValueError,
            "learning_rate_init == -1, must be > 0",
        ),
        ({"validation_fraction": 1.5}, ValueError, "validation_fraction == 1.5"),
        ({"max_iter": 0}, ValueError, "max_iter == 0, must be >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size == 0, must be >= 1"),
        ({"alpha": -1.0}, ValueError, "alpha == -1.0, must be >= 0"),
        ({"tol": -1.0}, ValueError, "tol == -1.0"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change == 0"),
        ({"hidden_layer_sizes": (8, 0)}, ValueError, "hidden_layer_sizes == 0"),
        ({"pos_weight": 0.0}, ValueError, "pos_weight == 0.0, must be > 0"),
        ({"max_iter": 2.5}, TypeError, "max_iter must be an instance of"),
        ({"activation": "gelu"}, ValueError, "activation must be one of"),
        ({"class_weight": "equal"}, ValueError, "class_weight"),
    ],
)
def test_bad_parameters_are_named(options, error, message):
    X, y = _circles(40)
    clf = MLPBinaryClassifier(**options)
    with pytest.raises(error, match=message):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")
