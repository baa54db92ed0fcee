"""Loss objects in PyTorch's style: options held once, the functions of
:mod:`numbce.functional` called with them (``torch.nn.BCELoss``, ``torch.nn.BCEWithLogitsLoss``).
"""

from __future__ import annotations

from numbce import _validate, functional
from numbce.functional import ArrayLike


class BCELoss:
    """Binary cross-entropy on probabilities; see :func:`numbce.binary_cross_entropy`.

    ``loss(input, target)`` returns the loss; ``.grad`` and ``.value_and_grad`` return
    d loss / d input (of the input's shape) and ``(loss, grad)`` from one pass.
    """

    def __init__(
        self, weight: ArrayLike | None = None, reduction: str = "mean"
    ) -> None:
        self.weight = weight
        self.reduction = _validate.check_reduction(reduction)

    def __call__(self, input: ArrayLike, target: ArrayLike):
        return functional.binary_cross_entropy(
            input, target, self.weight, self.reduction
        )

    def grad(self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike = 1.0):
        return functional.binary_cross_entropy_grad(
            input, target, self.weight, self.reduction, grad_output
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike = 1.0
    ):
        return functional.binary_cross_entropy_value_and_grad(
            input, target, self.weight, self.reduction, grad_output
        )

    def __repr__(self) -> str:
        return f"BCELoss(weight={self.weight!r}, reduction={self.reduction!r})"


class BCEWithLogitsLoss:
    """Binary cross-entropy on logits; see :func:`numbce.binary_cross_entropy_with_logits`.

    ``loss(input, target)`` returns the loss; ``.grad`` and ``.value_and_grad`` return
    d loss / d input (of the input's shape) and ``(loss, grad)`` from one fused pass.
    """

    def __init__(
        self,
        weight: ArrayLike | None = None,
        pos_weight: ArrayLike | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        self.weight = weight
        self.pos_weight = pos_weight
        self.reduction = _validate.check_reduction(reduction)
        self.label_smoothing = _validate.check_label_smoothing(label_smoothing)

    def _options(self) -> dict:
        return {
            "weight": self.weight,
            "pos_weight": self.pos_weight,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
        }

    def __call__(self, input: ArrayLike, target: ArrayLike):
        return functional.binary_cross_entropy_with_logits(
            input, target, **self._options()
        )

    def grad(self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike = 1.0):
        return functional.binary_cross_entropy_with_logits_grad(
            input, target, grad_output=grad_output, **self._options()
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike = 1.0
    ):
        return functional.binary_cross_entropy_with_logits_value_and_grad(
            input, target, grad_output=grad_output, **self._options()
        )

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"BCEWithLogitsLoss({options})"
