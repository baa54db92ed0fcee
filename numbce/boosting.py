"""Custom objectives and metrics for XGBoost and LightGBM from the numbce kernels.

:func:`xgboost_objective` and :func:`lightgbm_objective` return one callable that works in
both APIs of its library::

    obj = numbce.boosting.xgboost_objective("focal", alpha=0.25, gamma=2.0)
    booster = xgboost.train({"objective": "binary:logistic"}, dtrain, 100, obj=obj)
    model = xgboost.XGBClassifier(objective=obj).fit(X, y, sample_weight=w)

    obj = numbce.boosting.lightgbm_objective("logloss", pos_weight=3.0)
    booster = lightgbm.train({"objective": obj}, lightgbm.Dataset(X, y, weight=w))
    model = lightgbm.LGBMClassifier(objective=obj).fit(X, y, sample_weight=w)

Called as ``obj(preds, data)`` (the native APIs: ``preds`` the raw margins, ``data`` the
``DMatrix`` or ``Dataset`` whose labels and weights are read) or as ``obj(y_true,
y_pred[, sample_weight])`` (the scikit-learn APIs: XGBoost passes ``sample_weight=`` by
keyword when weights were given, LightGBM passes them third, None without weights;
neither multiplies the gradient by the weights itself, so the objective does), it returns
``(grad, hess)``: the per-sample first and second derivatives of the weighted loss with
respect to the margin (no 1/N), float64 arrays from one fused ``*_grad_hess`` pass of
the loss family's kernel.

>>> import numpy as np
>>> from numbce.boosting import xgboost_objective
>>> grad, hess = xgboost_objective()(np.array([1.0, 0.0]), np.array([0.0, 3.0]))
>>> grad.round(4), hess.round(4)  # sigmoid(margin) - label, sigmoid' (y_true, y_pred)
(array([-0.5   ,  0.9526]), array([0.25  , 0.0452]))

Losses: ``"logloss"`` is :func:`numbce.binary_cross_entropy_with_logits` (options
``pos_weight``, a scalar like the boosters' ``scale_pos_weight``, and
``label_smoothing``); ``"focal"`` is :func:`numbce.sigmoid_focal_loss` (``alpha``,
``gamma``). Every other loss family on logits of :data:`numbce.losses.FAMILIES` is
accepted under its own name, with its own options.

The focal loss is not convex: its second derivative is negative for badly misclassified
samples (``y = 0`` and a margin above about 3.8 with ``gamma = 2``). The objective returns
it exactly as :func:`numbce.sigmoid_focal_loss_grad_hess` does; the boosters sum it per
leaf.

:func:`xgboost_metric` and :func:`lightgbm_metric` return the matching evaluation metric,
the weighted mean loss ``sum(w l) / sum(w)`` (the mean without weights) of raw margins,
which is what both libraries pass a custom metric when the objective is custom; nan for no
samples or weights summing to 0.
"""

from __future__ import annotations

import math

import numpy as np

from numbce.functional import FUNCTIONS
from numbce.losses import FAMILIES, Family

ALIASES = {
    "logloss": "binary_cross_entropy_with_logits",
    "focal": "sigmoid_focal_loss",
}
"""Short loss names; every family on logits is also accepted under its own name."""


def _family(loss: str) -> Family:
    name = ALIASES.get(loss, loss)
    family = FAMILIES.get(name)
    if family is None or family.input_in_unit_interval:
        known = sorted(ALIASES) + sorted(
            n for n, f in FAMILIES.items() if not f.input_in_unit_interval
        )
        raise ValueError(f"loss must be one of {known}, got {loss!r}")
    return family


def _options(family: Family, options: dict) -> dict:
    """The options checked by the family (pos_weight a real scalar where it has one)."""
    allowed = {option.name: option for option in family.options}
    if family.pos_weight:
        allowed["pos_weight"] = None
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unexpected options {unknown} for {family.name} "
            f"(it takes {sorted(allowed)})"
        )
    checked = {}
    for name, value in options.items():
        if name == "pos_weight":
            if value is not None:
                value = float(value)
                if not value >= 0.0:
                    raise ValueError(f"pos_weight must be >= 0, got {value!r}")
        else:
            value = allowed[name].check(value)
        checked[name] = value
    return checked


def _weights(data) -> np.ndarray | None:
    """The sample weights of a DMatrix (empty without) or a Dataset (None without)."""
    weight = data.get_weight()
    if weight is None or np.size(weight) == 0:
        return None
    return weight


def _is_data(value) -> bool:
    """A DMatrix or Dataset (the native APIs), not labels (the scikit-learn APIs)."""
    return hasattr(value, "get_label") and hasattr(value, "get_weight")


def _arguments(y_true, y_pred, sample_weight):
    """``(margins, labels, weights)`` from either calling convention."""
    if _is_data(y_pred):  # native: (preds, data)
        preds, data = y_true, y_pred
        return preds, data.get_label(), _weights(data)
    weight = (
        None if sample_weight is None or np.size(sample_weight) == 0 else sample_weight
    )
    return y_pred, y_true, weight


def _flat(values) -> np.ndarray | None:
    """Labels or weights as a flat array, in their dtype (float32 from the boosters: the
    kernel widens each element as it reads it)."""
    if values is None:
        return None
    return np.asarray(values).reshape(-1)


def _margins(preds) -> np.ndarray:
    margins = np.asarray(preds, dtype=np.float64)
    if margins.ndim != 1:
        if margins.ndim == 2 and margins.shape[1] == 1:
            return margins.reshape(-1)
        raise ValueError(
            "numbce.boosting objectives are for binary classification: one margin per "
            f"sample, got predictions of shape {margins.shape}"
        )
    return margins


class Objective:
    """A custom objective for ``library`` ('xgboost' or 'lightgbm'): see the module."""

    def __init__(self, library: str, loss: str = "logloss", **options) -> None:
        self.library = library
        self.loss = loss
        self.family = _family(loss)
        self.options = _options(self.family, options)
        self._grad_hess = FUNCTIONS[self.family.name + "_grad_hess"]
        self.__name__ = f"numbce_{loss}"

    def __call__(self, y_true, y_pred, sample_weight=None):
        """``(grad, hess)``, float64, one value per sample: native ``(preds, data)`` or
        scikit-learn ``(y_true, y_pred[, sample_weight])``."""
        preds, labels, weight = _arguments(y_true, y_pred, sample_weight)
        return self._grad_hess(
            _margins(preds),
            _flat(labels),
            weight=_flat(weight),
            reduction="none",
            **self.options,
        )

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"numbce.boosting.{self.library}_objective({self.loss!r}{options})"


class Metric:
    """The evaluation metric matching :class:`Objective`: the weighted mean loss of raw
    margins. For XGBoost it returns ``(name, value)`` when called natively and ``value``
    from its scikit-learn API (which names it by ``__name__``); for LightGBM
    ``(name, value, False)`` (lower is better) in both."""

    def __init__(self, library: str, loss: str = "logloss", **options) -> None:
        self.library = library
        self.loss = loss
        self.family = _family(loss)
        self.options = _options(self.family, options)
        self._loss = FUNCTIONS[self.family.name]
        self.__name__ = f"numbce_{loss}"

    def value(self, margins, labels, weight=None) -> float:
        """``sum(w l) / sum(w)`` (the mean loss without weights), in float64; nan where
        there is nothing to average (no samples, or weights summing to 0), as a mean of
        nothing is everywhere in numbce."""
        margins, labels, weight = _margins(margins), _flat(labels), _flat(weight)
        if weight is None:
            return float(self._loss(margins, labels, reduction="mean", **self.options))
        total = self._loss(
            margins, labels, reduction="sum", weight=weight, **self.options
        )
        denominator = float(weight.sum(dtype=np.float64))
        return float(total) / denominator if denominator else math.nan

    def __call__(self, y_true, y_pred, sample_weight=None):
        native = _is_data(y_pred)
        preds, labels, weight = _arguments(y_true, y_pred, sample_weight)
        value = self.value(preds, labels, weight)
        if self.library == "lightgbm":
            return self.__name__, value, False
        return (self.__name__, value) if native else value

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"numbce.boosting.{self.library}_metric({self.loss!r}{options})"


def xgboost_objective(loss: str = "logloss", **options) -> Objective:
    """A custom objective for ``xgboost.train(..., obj=f)`` and ``XGBClassifier(objective=
    f)``: ``(grad, hess)`` per sample, from one fused numbce pass. See the module."""
    return Objective("xgboost", loss, **options)


def lightgbm_objective(loss: str = "logloss", **options) -> Objective:
    """A custom objective for ``lightgbm.train({"objective": f})`` and
    ``LGBMClassifier(objective=f)``: ``(grad, hess)`` per sample, from one fused numbce
    pass. See the module."""
    return Objective("lightgbm", loss, **options)


def xgboost_metric(loss: str = "logloss", **options) -> Metric:
    """The weighted mean loss of raw margins for ``xgboost.train(..., custom_metric=f)``
    (returns ``(name, value)``) and ``XGBClassifier(eval_metric=f)`` (returns the value)."""
    return Metric("xgboost", loss, **options)


def lightgbm_metric(loss: str = "logloss", **options) -> Metric:
    """The weighted mean loss of raw margins for ``lightgbm.train(..., feval=f)`` and
    ``LGBMClassifier.fit(..., eval_metric=f)``: ``(name, value, False)``."""
    return Metric("lightgbm", loss, **options)


__all__ = [
    "Metric",
    "Objective",
    "lightgbm_metric",
    "lightgbm_objective",
    "xgboost_metric",
    "xgboost_objective",
]
