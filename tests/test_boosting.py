"""numbce.boosting: custom objectives and metrics for XGBoost and LightGBM (the 'boosting'
extra), in the native and the scikit-learn APIs of each.

The logloss objective trains the model the built-in binary objective trains (same base
margin); the focal objective trains on an imbalanced set; objectives return exactly what
the ``*_grad_hess`` kernels return; the metrics equal the built-in log-loss; the README's
notes on base scores and probabilities hold.
"""

import math
import warnings

import numpy as np
import pytest

import numbce
from numbce import boosting

xgb = pytest.importorskip("xgboost", reason="the 'boosting' extra is not installed")
lgb = pytest.importorskip("lightgbm", reason="the 'boosting' extra is not installed")

# One thread each: the suite runs beside other test workers (pytest -n), where an
# OpenMP team that shares the cores waits at every barrier.
XGB_PARAMS = {
    "max_depth": 4,
    "eta": 0.3,
    "tree_method": "hist",
    "nthread": 1,
    "seed": 0,
}
LGB_PARAMS = {
    "num_leaves": 15,
    "learning_rate": 0.2,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
    "seed": 0,
}
ROUNDS = 15


def _data(n=3000, positives=None, seed=0):
    """Features, 0/1 labels (a fraction ``positives`` of ones if given), sample weights."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    score = X[:, 0] + 0.5 * X[:, 1] ** 2 - 0.7 * X[:, 2] + rng.normal(size=n)
    threshold = 1.0 if positives is None else np.quantile(score, 1 - positives)
    y = (score > threshold).astype(np.float64)
    w = rng.uniform(0.2, 3.0, size=n)
    return X, y, w


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _auc(y, score):
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = y == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# --- the objectives' values --------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [boosting.xgboost_objective, boosting.lightgbm_objective]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_objectives_return_the_fused_kernels_results(make, weighted):
    X, y, w = _data(500)
    # DMatrix and Dataset store weights in float32: give both conventions the same ones.
    weight = w.astype(np.float32).astype(np.float64) if weighted else None
    margins = np.random.default_rng(1).normal(scale=4, size=len(y)).astype(np.float32)
    cases = [
        ("focal", {"alpha": 0.4, "gamma": 1.5}, numbce.sigmoid_focal_loss_grad_hess),
        ("focal", {}, numbce.sigmoid_focal_loss_grad_hess),
        ("logloss", {"pos_weight": 2.5, "label_smoothing": 0.1},
         numbce.binary_cross_entropy_with_logits_grad_hess),
    ]  # fmt: skip
    for loss, options, kernel in cases:
        objective = make(loss, **options)
        expected = kernel(
            margins.astype(np.float64), y, weight=weight, reduction="none", **options
        )
        if make is boosting.xgboost_objective:
            native = xgb.DMatrix(X, y, weight=weight)
            sklearn = (
                objective(y, margins, sample_weight=weight)
                if weighted
                else objective(y, margins)
            )
        else:
            native = lgb.Dataset(X, y, weight=weight).construct()
            sklearn = objective(y, margins, weight)
        for grad, hess in (objective(margins, native), sklearn):
            assert grad.dtype == hess.dtype == np.float64
            np.testing.assert_array_equal(grad, expected[0])
            np.testing.assert_array_equal(hess, expected[1])


def test_scikit_learn_wrappers_see_the_signature_they_need():
    """XGBoost's wrapper passes weights only to a callable with a ``sample_weight``
    parameter; LightGBM's passes them to a callable of three parameters."""
    from inspect import signature

    parameters = signature(boosting.xgboost_objective()).parameters
    assert "sample_weight" in parameters and len(parameters) == 3
    assert len(signature(boosting.lightgbm_objective()).parameters) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss must be one of"):
        boosting.xgboost_objective("hinge")
    with pytest.raises(ValueError, match="loss must be one of"):
        boosting.lightgbm_objective(
            "binary_cross_entropy"
        )  # probabilities, not margins
    with pytest.raises(TypeError, match="alpha"):
        boosting.xgboost_objective("logloss", alpha=0.5)
    with pytest.raises(TypeError, match="pos_weight"):
        boosting.lightgbm_metric("focal", pos_weight=2.0)
    with pytest.raises(ValueError, match="gamma"):
        boosting.lightgbm_objective("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="pos_weight"):
        boosting.xgboost_objective(pos_weight=-1.0)
    with pytest.raises(ValueError, match="one margin per sample"):
        boosting.xgboost_objective()(np.zeros(4), np.zeros((4, 3)))
    # Every family on logits is also reachable under its own name.
    assert boosting.xgboost_objective("sigmoid_focal_loss").family.name == (
        "sigmoid_focal_loss"
    )


# --- XGBoost -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "builtin"),
    [({}, {}), ({"pos_weight": 3.0}, {"scale_pos_weight": 3.0})],
    ids=["plain", "pos_weight"],
)
def test_xgboost_logloss_trains_the_builtin_model(options, builtin):
    X, y, w = _data()
    base = np.full(len(y), -0.4)  # the same base margin for both
    data = xgb.DMatrix(X, y, weight=w, base_margin=base)
    expected = xgb.train(
        {**XGB_PARAMS, **builtin, "objective": "binary:logistic"}, data, ROUNDS
    )
    ours = xgb.train(
        {**XGB_PARAMS, "objective": "binary:logistic"},
        data,
        ROUNDS,
        obj=boosting.xgboost_objective("logloss", **options),
    )
    margins = ours.predict(data, output_margin=True)
    np.testing.assert_allclose(
        margins, expected.predict(data, output_margin=True), rtol=0, atol=1e-4
    )
    assert np.ptp(margins) > 1.0  # a real model, not the base margin


def test_xgboost_label_smoothing_is_training_on_smoothed_labels():
    X, y, w = _data()
    eps = 0.2
    smoothed = xgb.DMatrix(X, y * (1 - eps) + eps / 2, weight=w)
    expected = xgb.train({**XGB_PARAMS, "objective": "binary:logistic",
                          "base_score": 0.5}, smoothed, ROUNDS)  # fmt: skip
    data = xgb.DMatrix(X, y, weight=w)
    ours = xgb.train({**XGB_PARAMS, "objective": "binary:logistic"}, data, ROUNDS,
                     obj=boosting.xgboost_objective(label_smoothing=eps))  # fmt: skip
    np.testing.assert_allclose(
        ours.predict(data, output_margin=True),
        expected.predict(data, output_margin=True),
        atol=1e-4,
    )


def test_xgb_classifier_logloss_trains_the_builtin_model():
    X, y, w = _data()
    common = {"n_estimators": ROUNDS, "max_depth": 4, "learning_rate": 0.3,
              "tree_method": "hist", "n_jobs": 1, "random_state": 0}  # fmt: skip
    expected = xgb.XGBClassifier(objective="binary:logistic", base_score=0.5, **common)
    ours = xgb.XGBClassifier(objective=boosting.xgboost_objective(), **common)
    expected.fit(X, y, sample_weight=w)
    ours.fit(X, y, sample_weight=w)
    margins = ours.predict(X, output_margin=True)
    np.testing.assert_allclose(
        margins, expected.predict(X, output_margin=True), atol=1e-4
    )
    # XGBClassifier trains a custom objective under binary:logistic (base margin 0):
    # predict_proba is the sigmoid of the margins.
    np.testing.assert_allclose(
        ours.predict_proba(X)[:, 1], _sigmoid(margins), rtol=1e-6
    )


def test_xgboost_base_score_with_a_custom_objective():
    """README: no intercept is estimated for a custom objective. With
    ``objective='binary:logistic'`` the start is base_score 0.5, margin 0, and predict()
    gives probabilities; without an objective (reg:squarederror) the start is the margin
    0.5 and predict() gives margins."""
    X, y, w = _data(positives=0.1)
    data = xgb.DMatrix(X, y, weight=w)
    objective = boosting.xgboost_objective()
    # eta 0: the trees add nothing, what is left is the starting margin.
    frozen = {**XGB_PARAMS, "eta": 0.0}
    logistic = xgb.train(
        {**frozen, "objective": "binary:logistic"}, data, 1, obj=objective
    )
    np.testing.assert_array_equal(logistic.predict(data, output_margin=True), 0.0)
    np.testing.assert_array_equal(logistic.predict(data), 0.5)
    default = xgb.train(frozen, data, 1, obj=objective)
    np.testing.assert_array_equal(default.predict(data, output_margin=True), 0.5)
    np.testing.assert_array_equal(default.predict(data), 0.5)
    # The fix the README gives: start from the log-odds of the weighted base rate.
    rate = np.average(y, weights=w)
    started = xgb.train({**frozen, "objective": "binary:logistic", "base_score": rate},
                        data, 1, obj=objective)  # fmt: skip
    np.testing.assert_allclose(
        started.predict(data, output_margin=True), np.log(rate / (1 - rate)), rtol=1e-6
    )


@pytest.mark.parametrize("metric", [boosting.xgboost_metric, boosting.lightgbm_metric])
@pytest.mark.parametrize(
    "margins, labels, weight",
    [([], [], None), ([], [], []), ([0.5, -1.0], [1, 0], [0.0, 0.0]),
     ([0.5, -1.0], [1, 0], [1.0, -1.0])],
    ids=["empty", "empty-weighted", "zero-weights", "weights-summing-to-0"],
)  # fmt: skip
def test_a_metric_of_nothing_to_average_is_nan(metric, margins, labels, weight):
    margins, labels = np.array(margins, float), np.array(labels, float)
    weight = None if weight is None else np.array(weight, float)
    value = metric().value(margins, labels, weight)
    assert isinstance(value, float) and math.isnan(value)


def test_xgboost_metric_equals_the_builtin_logloss():
    X, y, w = _data()
    data = xgb.DMatrix(X, y, weight=w)
    history = {}
    xgb.train(
        {**XGB_PARAMS, "objective": "binary:logistic", "eval_metric": "logloss"},
        data,
        5,
        obj=boosting.xgboost_objective(),
        custom_metric=boosting.xgboost_metric(),
        evals=[(data, "train")],
        evals_result=history,
        verbose_eval=False,
    )
    np.testing.assert_allclose(
        history["train"]["numbce_logloss"], history["train"]["logloss"], rtol=1e-6
    )
    assert (
        history["train"]["numbce_logloss"][-1] < history["train"]["numbce_logloss"][0]
    )


def _focal_xgboost_native(X, y, w, metric):
    data = xgb.DMatrix(X, y, weight=w)
    history = {}
    booster = xgb.train(
        {
            **XGB_PARAMS,
            "objective": "binary:logistic",
            "disable_default_eval_metric": 1,
        },
        data,
        40,
        obj=boosting.xgboost_objective("focal", alpha=0.25, gamma=2.0),
        custom_metric=metric,
        evals=[(data, "train")],
        evals_result=history,
        verbose_eval=False,
    )
    return booster.predict(data, output_margin=True), history["train"][metric.__name__]


def _focal_xgboost_sklearn(X, y, w, metric):
    model = xgb.XGBClassifier(
        objective=boosting.xgboost_objective("focal", alpha=0.25, gamma=2.0),
        eval_metric=metric,
        n_estimators=40,
        max_depth=4,
        n_jobs=1,
        random_state=0,
    )
    model.fit(X, y, sample_weight=w, eval_set=[(X, y)], sample_weight_eval_set=[w],
              verbose=False)  # fmt: skip
    return model.predict(X, output_margin=True), model.evals_result()["validation_0"][
        metric.__name__
    ]


def _focal_lightgbm_native(X, y, w, metric):
    data = lgb.Dataset(X, y, weight=w)
    history = {}
    booster = lgb.train(
        {**LGB_PARAMS, "metric": "None",
         "objective": boosting.lightgbm_objective("focal", alpha=0.25, gamma=2.0)},
        data,
        40,
        valid_sets=[data],
        valid_names=["train"],
        feval=metric,
        callbacks=[lgb.record_evaluation(history)],
    )  # fmt: skip
    return booster.predict(X, raw_score=True), history["train"][metric.__name__]


def _focal_lightgbm_sklearn(X, y, w, metric):
    model = lgb.LGBMClassifier(
        objective=boosting.lightgbm_objective("focal", alpha=0.25, gamma=2.0),
        n_estimators=40,
        num_leaves=15,
        learning_rate=0.2,
        n_jobs=1,
        random_state=0,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    model.fit(X, y, sample_weight=w, eval_X=(X,), eval_y=(y,),
              eval_sample_weight=[w], eval_metric=metric)  # fmt: skip
    return model.predict(X, raw_score=True), model.evals_result_["valid_0"][
        metric.__name__
    ]


@pytest.mark.parametrize(
    ("train", "make_metric"),
    [
        (_focal_xgboost_native, boosting.xgboost_metric),
        (_focal_xgboost_sklearn, boosting.xgboost_metric),
        (_focal_lightgbm_native, boosting.lightgbm_metric),
        (_focal_lightgbm_sklearn, boosting.lightgbm_metric),
    ],
    ids=["xgboost-native", "xgboost-sklearn", "lightgbm-native", "lightgbm-sklearn"],
)
def test_focal_trains_on_an_imbalanced_set(train, make_metric):
    X, y, w = _data(4000, positives=0.05, seed=2)
    assert 0.03 < y.mean() < 0.07
    metric = make_metric("focal", alpha=0.25, gamma=2.0)
    margins, curve = train(X, y, w, metric)
    # The recorded metric is the weighted focal loss of the model's margins (XGBoost
    # records it rounded to 6 digits)...
    assert curve[-1] == pytest.approx(metric.value(margins, y, w), rel=1e-4)
    # ...it fell well below where it started, and the model ranks the rare class.
    assert curve[-1] < 0.5 * curve[0]
    assert _auc(y, margins) > 0.9


# --- LightGBM ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "builtin"),
    [({}, {}), ({"pos_weight": 3.0}, {"scale_pos_weight": 3.0})],
    ids=["plain", "pos_weight"],
)
def test_lightgbm_logloss_trains_the_builtin_model(options, builtin):
    X, y, w = _data()
    expected = lgb.train(
        {**LGB_PARAMS, **builtin, "objective": "binary", "boost_from_average": False},
        lgb.Dataset(X, y, weight=w),
        ROUNDS,
    )
    ours = lgb.train(
        {**LGB_PARAMS, "objective": boosting.lightgbm_objective("logloss", **options)},
        lgb.Dataset(X, y, weight=w),
        ROUNDS,
    )
    raw = ours.predict(X, raw_score=True)
    np.testing.assert_allclose(
        raw, expected.predict(X, raw_score=True), rtol=0, atol=1e-6
    )
    assert np.ptp(raw) > 1.0


def test_lgbm_classifier_logloss_trains_the_builtin_model():
    X, y, w = _data()
    common = {"n_estimators": ROUNDS, "num_leaves": 15, "learning_rate": 0.2,
              "n_jobs": 1, "random_state": 0, "deterministic": True,
              "force_row_wise": True, "verbose": -1}  # fmt: skip
    expected = lgb.LGBMClassifier(
        objective="binary", boost_from_average=False, **common
    )
    ours = lgb.LGBMClassifier(objective=boosting.lightgbm_objective(), **common)
    expected.fit(X, y, sample_weight=w)
    ours.fit(X, y, sample_weight=w)
    raw = ours.predict(X, raw_score=True)
    np.testing.assert_allclose(raw, expected.predict(X, raw_score=True), atol=1e-6)
    # README: with a custom objective predict_proba returns raw scores (with a warning);
    # the probabilities are the sigmoid of the raw scores.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        np.testing.assert_array_equal(ours.predict_proba(X), raw)
    np.testing.assert_allclose(
        _sigmoid(raw), expected.predict_proba(X)[:, 1], rtol=1e-6
    )


def test_lightgbm_ignores_boost_from_average_for_a_custom_objective():
    """README: the start is raw score 0; an init_score on the Dataset is a start that the
    model does not store, so it must be added back to the raw predictions."""
    X, y, w = _data(positives=0.1)
    frozen = {**LGB_PARAMS, "learning_rate": 1e-12, "boost_from_average": True}
    objective = boosting.lightgbm_objective()
    booster = lgb.train(
        {**frozen, "objective": objective}, lgb.Dataset(X, y, weight=w), 1
    )
    np.testing.assert_allclose(booster.predict(X, raw_score=True), 0.0, atol=1e-9)
    rate = np.average(y, weights=w)
    start = np.log(rate / (1 - rate))
    data = lgb.Dataset(X, y, weight=w, init_score=np.full(len(y), start))
    started = lgb.train({**LGB_PARAMS, "objective": objective}, data, ROUNDS)
    builtin = lgb.train({**LGB_PARAMS, "objective": "binary"},
                        lgb.Dataset(X, y, weight=w), ROUNDS)  # fmt: skip
    np.testing.assert_allclose(
        started.predict(X, raw_score=True) + start,
        builtin.predict(X, raw_score=True),
        atol=1e-5,
    )


def test_lightgbm_metric_is_the_weighted_mean_logloss():
    X, y, w = _data()
    data = lgb.Dataset(X, y, weight=w)
    history = {}
    lgb.train(
        {**LGB_PARAMS, "objective": boosting.lightgbm_objective(),
         "metric": "binary_logloss"},
        data,
        5,
        valid_sets=[data],
        valid_names=["train"],
        feval=boosting.lightgbm_metric(),
        callbacks=[lgb.record_evaluation(history)],
    )  # fmt: skip
    # LightGBM's built-in metric reads the sigmoid of raw scores only for its own
    # objective; with a custom one it reads the raw scores as probabilities, so compare
    # against the margins' log-loss computed here instead.
    ours = history["train"]["numbce_logloss"]
    assert ours[-1] < ours[0]
    metric = boosting.lightgbm_metric()
    name, value, higher_is_better = metric(np.zeros(len(y)), data)
    assert name == "numbce_logloss" and not higher_is_better
    assert value == pytest.approx(np.log(2.0), rel=1e-12)
    margins = np.random.default_rng(3).normal(size=len(y))
    p = _sigmoid(margins)
    expected = -np.average(y * np.log(p) + (1 - y) * np.log1p(-p), weights=w)
    assert metric(y, margins, w)[1] == pytest.approx(expected, rel=1e-12)
    assert metric(y, margins)[1] == pytest.approx(
        -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)), rel=1e-12
    )
