"""numbce.nn on C >= 1 independent labels (issue 15): gradients against PyTorch, weights
that reach the kernel unexpanded, multi-label metrics, the scikit-learn estimator on a
multilabel indicator matrix, and a comparison with scikit-learn's MLPClassifier."""

import warnings

import numpy as np
import pytest
from conftest import eps, torch_or_skip
from sklearn.datasets import make_multilabel_classification
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier

from numbce import datasets, plotting
from numbce.nn import MLP, MLPBinaryClassifier, tutorials
from numbce.optim import SGD


def _labels(rng, n_samples, n_labels, n_features=6):
    """X (n, n_features) and Y (n, n_labels) of 0/1, label k rarer as k grows."""
    X = rng.normal(size=(n_samples, n_features))
    directions = rng.normal(size=(n_features, n_labels))
    thresholds = np.linspace(0.0, 2.0, n_labels)
    return X, (X @ directions / np.sqrt(n_features) > thresholds).astype(np.int64)


@pytest.mark.parametrize("n_labels", [1, 3, 64])
@pytest.mark.parametrize("head", ["logits", "sigmoid"])
def test_gradients_match_torch_autograd(rng, n_labels, head):
    torch = torch_or_skip()
    X, Y = _labels(rng, 50, n_labels)
    pos_weight = rng.uniform(0.5, 4.0, size=n_labels)
    options = {"pos_weight": pos_weight} if head == "logits" else {}
    model = MLP(
        [6, 16, n_labels],
        "tanh",
        head=head,
        seed=0,
        dtype=np.float64,
        loss_options=options,
    )
    loss, grads = model.loss_and_grads(X, Y)

    layers = [torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, n_labels)]
    layers += [torch.nn.Sigmoid()] if head == "sigmoid" else []
    network = torch.nn.Sequential(*layers).double()
    with torch.no_grad():
        for theirs, ours in zip(network.parameters(), model.parameters()):
            theirs.copy_(torch.from_numpy(ours))
    output = network(torch.from_numpy(X))
    target = torch.from_numpy(Y.astype(np.float64))
    if head == "logits":
        torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
            output, target, pos_weight=torch.from_numpy(pos_weight)
        )
    else:
        torch_loss = torch.nn.functional.binary_cross_entropy(output, target)
    torch_loss.backward()
    tolerance = 256 * eps(np.float64)
    assert float(loss) == pytest.approx(torch_loss.item(), rel=tolerance)
    for ours, theirs in zip(grads, network.parameters()):
        expected = theirs.grad.numpy()
        np.testing.assert_allclose(
            ours, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max()
        )


@pytest.mark.parametrize("sample_weight", [False, True])
def test_label_and_sample_weights_step_like_torch(rng, sample_weight):
    torch = torch_or_skip()
    X, Y = _labels(rng, 40, 3)
    label_weight = np.array([0.5, 1.0, 4.0])
    weights = rng.uniform(0, 2, size=40) if sample_weight else np.ones(40)
    model = MLP([6, 8, 3], seed=0, dtype=np.float64)
    network = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        for theirs, ours in zip(network.parameters(), model.parameters()):
            theirs.copy_(torch.from_numpy(ours))
    torch.nn.functional.binary_cross_entropy_with_logits(
        network(torch.from_numpy(X)),
        torch.from_numpy(Y.astype(np.float64)),
        weight=torch.from_numpy(weights[:, None] * label_weight),
    ).backward()
    before = model.get_weights()
    model.fit(
        X,
        Y,
        batch_size=40,
        shuffle=False,
        optimizer=SGD(model.parameters(), lr=1.0),
        label_weight=label_weight,
        sample_weight=weights if sample_weight else None,
    )
    for ours, start, theirs in zip(model.parameters(), before, network.parameters()):
        np.testing.assert_allclose(
            start - ours, theirs.grad.numpy(), rtol=1e-12, atol=1e-15
        )


def test_weights_reach_the_kernel_without_an_n_by_c_copy(rng):
    X, Y = _labels(rng, 64, 5)
    pos_weight = np.arange(1.0, 6.0)
    model = MLP([6, 8, 5], seed=0, loss_options={"pos_weight": pos_weight})
    seen = []
    kernel = model.loss_function

    def spy(scores, targets, weight=None, pos_weight=None, **options):
        seen.append((np.shape(weight), np.shape(pos_weight)))
        return kernel(scores, targets, weight=weight, pos_weight=pos_weight, **options)

    model.loss_function = spy
    label_weight = np.ones(5, np.float32)
    model.fit(X, Y, batch_size=16, label_weight=label_weight)
    model.fit(X, Y, batch_size=16, sample_weight=np.ones(64))
    model.fit(X, Y, batch_size=16, sample_weight=np.ones(64), label_weight=label_weight)
    # 4 batches per fit: label weights (C,), sample weights (batch, 1), both (batch, C)
    assert seen == [((5,), (5,))] * 4 + [((16, 1), (5,))] * 4 + [((16, 5), (5,))] * 4


def test_fit_evaluate_predict_on_label_matrices(rng, tmp_path):
    X, Y = _labels(rng, 300, 4)
    model = MLP([6, 16, 4], seed=0)
    history = model.fit(X[:200], Y[:200], epochs=30, validation_data=(X[200:], Y[200:]))
    assert set(history.history) == {
        "loss",
        "accuracy",
        "label_accuracy",
        "val_loss",
        "val_accuracy",
        "val_label_accuracy",
    }
    predicted = model.predict(X[200:])
    assert predicted.shape == model.predict_proba(X[200:]).shape == (100, 4)
    np.testing.assert_array_equal(predicted, model.predict_proba(X[200:]) > 0.5)
    metrics = model.evaluate(X[200:], Y[200:], return_dict=True)
    assert metrics["accuracy"] == accuracy_score(Y[200:], predicted)  # subset accuracy
    assert metrics["label_accuracy"] == np.mean(predicted == Y[200:])
    assert metrics["accuracy"] == history.history["val_accuracy"][-1]
    assert metrics["label_accuracy"] > 0.85
    figure = plotting.training_curves(history, tmp_path / "curves.png")
    assert len(figure.axes[1].lines) == 2  # (subset) accuracy, train and validation


def test_multilabel_estimator_beside_mlpclassifier():
    """Same architecture, epochs, batch and Adam: the subset accuracy of scikit-learn's
    MLPClassifier within a few points; pos_weight from the label frequencies raises the
    recall of every label, the rare ones included."""
    (X, Y), (X_test, Y_test) = datasets.multilabel()
    options = {
        "hidden_layer_sizes": (64,),
        "max_iter": 50,
        "n_iter_no_change": 50,
        "batch_size": 32,
        "random_state": 0,
    }
    pos_weight = tutorials.pos_weight_from_frequencies(Y)["pos_weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: all 50 epochs run
        theirs = MLPClassifier(**options).fit(X, Y)
        ours = MLPBinaryClassifier(**options).fit(X, Y)
        weighted = MLPBinaryClassifier(pos_weight=pos_weight, **options).fit(X, Y)
    assert ours.predict_proba(X_test).shape == (2000, 5)
    assert ours.classes_.tolist() == [0, 1, 2, 3, 4]
    subset = {
        name: accuracy_score(Y_test, clf.predict(X_test))
        for name, clf in [("sklearn", theirs), ("numbce", ours)]
    }
    assert abs(subset["numbce"] - subset["sklearn"]) < 0.03, subset
    recall = {
        name: recall_score(Y_test, clf.predict(X_test), average=None)
        for name, clf in [("sklearn", theirs), ("pos_weight", weighted)]
    }
    assert (recall["pos_weight"] > recall["sklearn"] + 0.05).all(), recall
    rarest = int(np.argmin(Y.mean(axis=0)))
    assert recall["pos_weight"][rarest] > recall["sklearn"][rarest] + 0.05


def test_multilabel_grid_search_with_a_multilabel_scorer():
    X, Y = make_multilabel_classification(
        n_samples=300, n_features=8, n_classes=3, random_state=0
    )
    search = GridSearchCV(
        MLPBinaryClassifier(max_iter=20, n_iter_no_change=20, random_state=0),
        {"hidden_layer_sizes": [(8,), (32,)]},
        scoring="f1_macro",
        cv=3,
        error_score="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, Y)
    assert search.best_estimator_.predict(X).shape == (300, 3)
    assert 0.3 < search.best_score_ <= 1


def test_multilabel_partial_fit_and_bad_input():
    X, Y = make_multilabel_classification(n_samples=100, n_classes=3, random_state=0)
    clf = MLPBinaryClassifier(random_state=0)
    with pytest.raises(ValueError, match=r"classes must be range\(3\)"):
        clf.partial_fit(X, Y, classes=[0, 1])
    clf.partial_fit(X, Y, classes=[0, 1, 2]).partial_fit(X, Y)
    assert clf.n_iter_ == 2 and clf.predict(X).shape == (100, 3)
    with pytest.raises(ValueError, match="pos_weight must be a number > 0 or 3"):
        MLPBinaryClassifier(pos_weight=[1.0, 2.0]).fit(X, Y)
    with pytest.raises(ValueError, match="label_weight must hold 3 numbers"):
        MLP([20, 4, 3]).fit(X, Y, label_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weight needs one output"):
        MLP([20, 4, 3]).fit(X, Y, class_weight={0: 1.0, 1: 2.0})
