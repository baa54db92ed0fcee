"""Elementwise accuracy in ulps against 50-digit mpmath, on the spec's extreme grids.

``python -m numbce.accuracy`` prints the table the README shows (numbce beside PyTorch when
it is installed). Needs mpmath (the ``dev`` extra). Errors are measured at the inputs as the
kernel sees them (targets rounded to the input dtype), against the exact value rounded to
the dtype, in units of that value's ulp; a soft-target gradient is also measured in ulps of
the larger of its two terms (the difference itself is ill-conditioned where they cancel).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import mpmath
import numpy as np

import numbce

mpmath.mp.dps = 50

_MAGNITUDES_64 = [
    0.0,
    1e-300,
    1e-8,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    36.0,
    40.0,
    100.0,
    700.0,
    745.0,
    800.0,
    1e10,
    1e100,
    1e308,
]
_MAGNITUDES_32 = [
    0.0,
    1e-45,
    1e-38,
    1e-8,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    16.0,
    17.0,
    20.0,
    30.0,
    40.0,
    88.0,
    104.0,
    700.0,
    800.0,
    1e10,
    3e38,
]
LOGIT_GRID = {
    np.float64: sorted({s * m for m in _MAGNITUDES_64 for s in (1.0, -1.0)}),
    np.float32: sorted({s * m for m in _MAGNITUDES_32 for s in (1.0, -1.0)}),
}
PROBABILITY_GRID = {
    np.float64: [
        1e-300,
        1e-100,
        1e-20,
        1e-8,
        1e-3,
        0.1,
        0.3,
        0.5,
        0.7,
        0.9,
        1 - 1e-3,
        1 - 1e-8,
        1 - 1e-12,
        1 - 1e-16,
    ],
    np.float32: [
        1e-38,
        1e-30,
        1e-8,
        1e-3,
        0.1,
        0.3,
        0.5,
        0.7,
        0.9,
        1 - 1e-3,
        1 - 2e-7,
        1 - 2.0**-24,
    ],
}
HARD_TARGETS = [0.0, 1.0]
SOFT_TARGETS = [0.1, 0.3, 0.75, 0.9]
POS_WEIGHTS = [1.0, 3.0]


def _mp(v) -> mpmath.mpf:
    return mpmath.mpf(float(v))


def _softplus(z: mpmath.mpf) -> mpmath.mpf:
    return z + mpmath.log1p(mpmath.exp(-z)) if z > 0 else mpmath.log1p(mpmath.exp(z))


def _sigmoid(z: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + mpmath.exp(-z))


def exact_logits(x, y, q) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
    """Exact (loss, grad, larger gradient term) of BCE-with-logits at one point."""
    x, y, q = _mp(x), _mp(y), _mp(q)
    loss = (q * y * _softplus(-x) if y else 0) + (
        (1 - y) * _softplus(x) if y != 1 else 0
    )
    term_pos, term_neg = (1 - y) * _sigmoid(x), q * y * _sigmoid(-x)
    return loss, term_pos - term_neg, max(term_pos, term_neg)


def exact_probs(p, y) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
    """Exact (loss, grad, |grad|) of BCE on probabilities at one point (PyTorch's clamps)."""
    p, y = _mp(p), _mp(y)
    log_p = max(mpmath.log(p), -100) if p > 0 else mpmath.mpf(-100)
    log_not_p = max(mpmath.log1p(-p), -100) if p < 1 else mpmath.mpf(-100)
    grad = (p - y) / max(p * (1 - p), _mp(1e-12))
    return -(y * log_p + (1 - y) * log_not_p), grad, abs(grad)


def ulps(got, exact: mpmath.mpf, dtype, unit_of: mpmath.mpf | None = None) -> float:
    """``|got - exact|`` in ulps of ``exact`` (or of ``unit_of``) rounded to ``dtype``."""
    with np.errstate(over="ignore"):
        reference = dtype(float(exact if unit_of is None else unit_of))
    if not np.isfinite(reference):
        return 0.0 if got == reference else np.inf
    unit = float(np.spacing(np.abs(reference)))
    return float(abs(_mp(got) - exact) / unit) if np.isfinite(got) else np.inf


def _points(logits: bool, dtype, soft: bool):
    targets = SOFT_TARGETS if soft else HARD_TARGETS
    if logits:
        return [
            (x, y, q)
            for x, y, q in itertools.product(LOGIT_GRID[dtype], targets, POS_WEIGHTS)
        ]
    return [(p, y, 1.0) for p, y in itertools.product(PROBABILITY_GRID[dtype], targets)]


def numbce_elementwise(logits: bool, x, y, q):
    """numbce's elementwise (loss, grad)."""
    if logits:
        return numbce.binary_cross_entropy_with_logits_value_and_grad(
            x, y, pos_weight=q, reduction="none"
        )
    return numbce.binary_cross_entropy_value_and_grad(x, y, reduction="none")


def torch_elementwise(logits: bool, x, y, q):
    """PyTorch's elementwise (loss, autograd grad), for comparison."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    if logits:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            xt, yt, pos_weight=torch.tensor(q), reduction="none"
        )
    else:
        loss = torch.nn.functional.binary_cross_entropy(xt, yt, reduction="none")
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


def max_ulps(
    logits: bool, dtype, soft: bool, elementwise: Callable = numbce_elementwise
) -> dict:
    """Max ulp errors over the grid: ``loss``, ``grad`` and ``grad_vs_terms``."""
    points = _points(logits, dtype, soft)
    x, y, q = (np.array(column, dtype=dtype) for column in zip(*points, strict=True))
    loss, grad = elementwise(logits, x, y, q)
    worst = {"loss": 0.0, "grad": 0.0, "grad_vs_terms": 0.0}
    for i in range(x.size):
        exact = exact_logits(x[i], y[i], q[i]) if logits else exact_probs(x[i], y[i])
        worst["loss"] = max(worst["loss"], ulps(loss[i], exact[0], dtype))
        worst["grad"] = max(worst["grad"], ulps(grad[i], exact[1], dtype))
        worst["grad_vs_terms"] = max(
            worst["grad_vs_terms"], ulps(grad[i], exact[1], dtype, unit_of=exact[2])
        )
    return worst


def table(with_torch: bool = True) -> str:
    """The README's accuracy table (Markdown): max ulps per family, dtype and target kind."""
    implementations = {"numbce": numbce_elementwise}
    if with_torch:
        try:
            import torch  # noqa: F401

            implementations["PyTorch"] = torch_elementwise
        except ImportError:
            pass
    header = (
        "| family | dtype | targets | "
        + " | ".join(f"{name} loss | {name} grad" for name in implementations)
        + " |"
    )
    lines = [header, "|" + " --- |" * (3 + 2 * len(implementations))]
    for logits, dtype, soft in itertools.product(
        [True, False], [np.float64, np.float32], [False, True]
    ):
        cells = []
        for elementwise in implementations.values():
            worst = max_ulps(logits, dtype, soft, elementwise)
            grad = f"{worst['grad']:.3g}"
            if soft and logits:
                grad += f" ({worst['grad_vs_terms']:.3g} of larger term)"
            cells += [f"{worst['loss']:.3g}", grad]
        family = "with logits" if logits else "probabilities"
        kind = "soft" if soft else "hard"
        lines.append(
            f"| {family} | {np.dtype(dtype).name} | {kind} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
