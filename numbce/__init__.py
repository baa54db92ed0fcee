"""numbce: exact, fast binary cross-entropy kernels (Numba CPU and CUDA) with gradients.

The public functions follow ``torch.nn.functional`` (prediction first, target second) and the
contract in ``shared/spec/bce.md``; :mod:`numbce.reference` holds the float64 oracle.
"""

from numbce import reference
from numbce.functional import (
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    binary_cross_entropy_with_logits_value_and_grad,
)
from numbce.losses import BCELoss, BCEWithLogitsLoss

__version__ = "0.1.0"

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_value_and_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "binary_cross_entropy_with_logits_value_and_grad",
    "reference",
]
