"""numbce: exact, fast binary-classification losses (Numba CPU and CUDA) with hand-derived
first and second derivatives.

The public functions and loss classes are generated from the registry of loss families
(:data:`numbce.losses.FAMILIES`); they follow ``torch.nn.functional`` and torchvision
(prediction first, target second). ``docs/`` holds the contract; :mod:`numbce.reference`
the float64 oracle.

>>> import numbce
>>> float(numbce.binary_cross_entropy([0.9, 0.2], [1.0, 0.0]))  # doctest: +ELLIPSIS
0.164252033486018...
>>> float(numbce.binary_cross_entropy_with_logits([2.0, -1.0], [1, 0]))  # doctest: +ELLIPSIS
0.22009...
>>> numbce.sigmoid_focal_loss([2.0, -1.0], [1, 0])  # doctest: +ELLIPSIS
array([0.00045..., 0.0169...])
"""

from numbce import functional, reference
from numbce.functional import CLASSES, FUNCTIONS

__version__ = "0.1.0"

globals().update(FUNCTIONS)
globals().update(CLASSES)

__all__ = [*sorted(CLASSES), *sorted(FUNCTIONS), "functional", "reference"]  # noqa: PLE0604
