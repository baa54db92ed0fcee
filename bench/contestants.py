"""Who races whom: one registry drives the kernel benchmarks and their smoke test.

``contestants(family, op, x, y)`` returns ``{name: zero-argument callable}`` for one input:
numbce, the memory floor of the same bytes, the float64 NumPy closed form
(:mod:`numbce.reference`), PyTorch CPU (when installed) and scikit-learn's ``log_loss``
(forward on probabilities, N <= 1e5). Every callable returns what it computed, so the
smoke test can check that the contestants agree.

* ``family``: ``"logits"`` (BCE-with-logits, ``x`` logits) or ``"probs"`` (BCE, ``x``
  probabilities).
* ``op``: ``"forward"`` (mean loss), ``"grad"`` (d mean / dx), ``"fused"`` (both at once).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

import numbce
from numbce import reference

FAMILIES = ("logits", "probs")
OPS = ("forward", "grad", "fused")
SKLEARN_MAX_N = 100_000


@numba.njit(parallel=True, cache=True, nogil=True)
def triad(a, b, out):
    """``out = a + 2 b``: reads two arrays and writes one, like a fused loss+gradient."""
    two = a.dtype.type(2)
    for i in numba.prange(a.size):
        out[i] = a[i] + two * b[i]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def dot(a, b):
    """``sum(a * b)``: reads two arrays and writes nothing, like a forward loss."""
    total = 0.0
    for i in numba.prange(a.size):
        total += a[i] * b[i]
    return total


def size_id(n: int) -> str:
    """``n1e7`` for 10**7 (``n2500`` for sizes that are not powers of ten): a test-id part
    that ``pytest -k`` accepts (``n=1e+07`` is not)."""
    exponent = len(str(n)) - 1
    return f"n1e{exponent}" if n == 10**exponent else f"n{n}"


def bytes_moved(op: str, x: np.ndarray) -> int:
    """Bytes the op must move: read x and y, and write the gradient unless forward-only."""
    arrays = 2 if op == "forward" else 3
    return arrays * x.nbytes


def make_inputs(
    family: str, n: int, dtype, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ~ N(0, 3) or probabilities ~ U(0, 1), with hard 0/1 targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=n) if family == "logits" else rng.uniform(size=n)
    y = (rng.uniform(size=n) < 0.5).astype(dtype)
    return x.astype(dtype), y


def _numbce(family: str, op: str) -> Callable:
    functions = {
        ("logits", "forward"): numbce.binary_cross_entropy_with_logits,
        ("logits", "grad"): numbce.binary_cross_entropy_with_logits_grad,
        ("logits", "fused"): numbce.binary_cross_entropy_with_logits_value_and_grad,
        ("probs", "forward"): numbce.binary_cross_entropy,
        ("probs", "grad"): numbce.binary_cross_entropy_grad,
        ("probs", "fused"): numbce.binary_cross_entropy_value_and_grad,
    }
    return functions[family, op]


def _numpy(family: str, op: str) -> Callable:
    if family == "logits":
        loss, grad = (
            reference.binary_cross_entropy_with_logits,
            reference.binary_cross_entropy_with_logits_grad,
        )
    else:
        loss, grad = reference.binary_cross_entropy, reference.binary_cross_entropy_grad
    if op == "forward":
        return loss
    if op == "grad":
        return grad
    return lambda x, y: (loss(x, y), grad(x, y))


def _torch(family: str, op: str) -> Callable | None:
    try:
        import torch
    except ImportError:
        return None
    functional = torch.nn.functional
    loss_fn = (
        functional.binary_cross_entropy_with_logits
        if family == "logits"
        else functional.binary_cross_entropy
    )
    if op == "forward":
        return lambda x, y: loss_fn(torch.from_numpy(x), torch.from_numpy(y)).item()

    def forward_backward(x, y):
        xt = torch.from_numpy(x).requires_grad_()
        loss = loss_fn(xt, torch.from_numpy(y))
        loss.backward()
        return (loss.item(), xt.grad.numpy()) if op == "fused" else xt.grad.numpy()

    return forward_backward


def contestants(
    family: str, op: str, x: np.ndarray, y: np.ndarray
) -> dict[str, Callable]:
    """Zero-argument callables computing ``op`` of ``family`` on ``(x, y)``, by contestant."""
    out = np.empty_like(x)
    floor = (lambda: dot(x, y)) if op == "forward" else (lambda: triad(x, y, out))
    racers = {
        "floor": floor,
        "numbce": lambda: _numbce(family, op)(x, y),
        "numpy": lambda: _numpy(family, op)(x, y),
    }
    torch_fn = _torch(family, op)
    if torch_fn is not None:
        racers["pytorch"] = lambda: torch_fn(x, y)
    if family == "probs" and op == "forward" and x.size <= SKLEARN_MAX_N:
        from sklearn.metrics import log_loss

        racers["scikit-learn"] = lambda: log_loss(y, x, labels=[0, 1])
    return racers


def set_threads(threads: int) -> None:
    """The same thread count for every contestant."""
    numba.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
