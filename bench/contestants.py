"""Who races whom: the registry of loss families drives the kernel benchmarks and their
smoke test.

``contestants(family, op, x, y)`` returns ``{name: zero-argument callable}`` for one input:
numbce as a user calls it (allocating its results), numbce with ``out=`` buffers reused
across calls (``numbce-out``, for ops with array results: what a training loop does, and
what the floor does), the memory floor of the same bytes, the float64 NumPy closed form
(:mod:`numbce.reference`), PyTorch CPU (when installed: the family's torch form, autograd
for the derivatives; the torchvision formula for the focal loss) and scikit-learn's
``log_loss`` (forward on probabilities, N <= 1e5). Every callable returns what it computed,
so the smoke test can check that the contestants agree.

* ``family``: a name of :data:`numbce.losses.FAMILIES`, with its default options.
* ``op``: ``"forward"`` (mean loss), ``"grad"`` (d mean / dx), ``"fused"`` (both at once),
  ``"grad_hess"`` (gradient and second derivative at once).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

import numbce
from numbce import reference
from numbce.losses import FAMILIES as REGISTRY

FAMILIES = tuple(REGISTRY)
OPS = ("forward", "grad", "fused", "grad_hess")
SUFFIXES = {
    "forward": "",
    "grad": "_grad",
    "fused": "_value_and_grad",
    "grad_hess": "_grad_hess",
}
SKLEARN_MAX_N = 100_000


@numba.njit(parallel=True, cache=True, nogil=True)
def triad(a, b, out):
    """``out = a + 2 b``: reads two arrays and writes one, like a fused loss+gradient."""
    two = a.dtype.type(2)
    for i in numba.prange(a.size):
        out[i] = a[i] + two * b[i]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def triad_pair(a, b, out, out2):
    """``out = a + 2 b``, ``out2 = a - b``: reads two arrays and writes two, like a fused
    gradient and second derivative."""
    two = a.dtype.type(2)
    for i in numba.prange(a.size):
        out[i] = a[i] + two * b[i]
        out2[i] = a[i] - b[i]
    return out, out2


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
    """Bytes the op must move: read x and y, and write each derivative array."""
    arrays = {"forward": 2, "grad": 3, "fused": 3, "grad_hess": 4}[op]
    return arrays * x.nbytes


def make_inputs(
    family: str, n: int, dtype, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ~ N(0, 3) or probabilities ~ U(0, 1), with hard 0/1 targets."""
    rng = np.random.default_rng(seed)
    logits = REGISTRY[family].input_grid == "logits"
    x = rng.normal(scale=3.0, size=n) if logits else rng.uniform(size=n)
    y = (rng.uniform(size=n) < 0.5).astype(dtype)
    return x.astype(dtype), y


def _options(family: str) -> dict:
    return {option.name: option.default for option in REGISTRY[family].options}


def _numbce(family: str, op: str, out=None) -> Callable:
    function = numbce.functional.FUNCTIONS[family + SUFFIXES[op]]
    options = dict(_options(family), reduction="mean", out=out)
    return lambda x, y: function(x, y, **options)


def _buffers(op: str, x: np.ndarray):
    """``out=`` for ``op``'s array results (None for the forward's scalar)."""
    return {
        "forward": None,
        "grad": np.empty_like(x),
        "fused": (None, np.empty_like(x)),
        "grad_hess": (np.empty_like(x), np.empty_like(x)),
    }[op]


def _numpy(family: str, op: str) -> Callable:
    options = dict(_options(family), reduction="mean")
    loss, grad, hess = (
        getattr(reference, family + suffix) for suffix in ("", "_grad", "_hess")
    )
    return {
        "forward": lambda x, y: loss(x, y, **options),
        "grad": lambda x, y: grad(x, y, **options),
        "fused": lambda x, y: (loss(x, y, **options), grad(x, y, **options)),
        "grad_hess": lambda x, y: (grad(x, y, **options), hess(x, y, **options)),
    }[op]


def _torch(family: str, op: str) -> Callable | None:
    try:
        import torch
    except ImportError:
        return None
    form, options = REGISTRY[family].torch, _options(family)
    if form is None:
        return None

    def mean_loss(xt, y):
        return form(xt, torch.from_numpy(y), None, **options).mean()

    if op == "forward":
        return lambda x, y: mean_loss(torch.from_numpy(x), y).item()

    def derivatives(x, y):
        xt = torch.from_numpy(x).requires_grad_()
        loss = mean_loss(xt, y)
        if op != "grad_hess":
            loss.backward()
            return (loss.item(), xt.grad.numpy()) if op == "fused" else xt.grad.numpy()
        (grad,) = torch.autograd.grad(loss, xt, create_graph=True)
        (hess,) = torch.autograd.grad(grad.sum(), xt)  # elementwise: the diagonal
        return grad.detach().numpy(), hess.numpy()

    return derivatives


def contestants(
    family: str, op: str, x: np.ndarray, y: np.ndarray
) -> dict[str, Callable]:
    """Zero-argument callables computing ``op`` of ``family`` on ``(x, y)``, by contestant."""
    out, out2 = np.empty_like(x), np.empty_like(x)
    floors = {
        "forward": lambda: dot(x, y),
        "grad_hess": lambda: triad_pair(x, y, out, out2),
    }
    numbce_fn, numpy_fn = _numbce(family, op), _numpy(family, op)
    racers = {
        "floor": floors.get(op, lambda: triad(x, y, out)),
        "numbce": lambda: numbce_fn(x, y),
        "numpy": lambda: numpy_fn(x, y),
    }
    buffers = _buffers(op, x)
    if buffers is not None:
        numbce_out = _numbce(family, op, buffers)
        racers["numbce-out"] = lambda: numbce_out(x, y)
    torch_fn = _torch(family, op)
    if torch_fn is not None:
        racers["pytorch"] = lambda: torch_fn(x, y)
    if family == "binary_cross_entropy" and op == "forward" and x.size <= SKLEARN_MAX_N:
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
