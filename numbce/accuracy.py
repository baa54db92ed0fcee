"""Elementwise accuracy in ulps against 50-digit mpmath, on extreme grids, for every
registered loss family (:data:`numbce.losses.FAMILIES`) and its derivatives.

``python -m numbce.accuracy`` prints the table the README shows (numbce beside PyTorch when
it is installed: its autograd for the derivatives). Needs mpmath (the ``dev`` extra).
Errors are measured at the inputs as the kernel sees them (targets rounded to the input
dtype), against the exact value (each family's ``exact`` form) rounded to the dtype, in
units of that value's ulp; a derivative is also measured in ulps of its largest term (a
difference of terms is ill-conditioned where they cancel: soft targets, and the focal
loss's second derivative: there the unit is the sum of the terms' magnitudes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import mpmath
import numpy as np

import numbce
from numbce.losses import FAMILIES, Family

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
QUANTITIES = ("loss", "grad", "hess")


def ulps(got, exact, dtype, unit_of=None) -> float:
    """``|got - exact|`` in ulps of ``exact`` (or of ``unit_of``) rounded to ``dtype``.

    A subnormal reference has fewer significant bits than the format and intermediate
    underflow can cost it more: there the error counts as 0 if it is below the smallest
    normal number, else as inf."""
    with np.errstate(over="ignore", under="ignore"):
        reference = dtype(float(exact if unit_of is None else unit_of))
    if not np.isfinite(reference):
        return 0.0 if got == reference else np.inf
    if 0 < abs(reference) < np.finfo(dtype).tiny:
        error = abs(mpmath.mpf(float(got)) - exact)
        return 0.0 if error < np.finfo(dtype).tiny else np.inf
    unit = float(np.spacing(np.abs(reference)))
    return (
        float(abs(mpmath.mpf(float(got)) - exact) / unit)
        if np.isfinite(got)
        else np.inf
    )


def points(family: Family, dtype, soft: bool) -> list[tuple[float, float, float]]:
    """The grid's ``(input, target, pos_weight)`` points for ``family``."""
    targets = SOFT_TARGETS if soft else HARD_TARGETS
    grid = LOGIT_GRID if family.input_grid == "logits" else PROBABILITY_GRID
    weights = POS_WEIGHTS if family.pos_weight else [1.0]
    return list(itertools.product(grid[dtype], targets, weights))


def numbce_elementwise(family: Family, x, y, q, options: dict):
    """numbce's elementwise ``(loss, grad, hess)``."""
    if family.pos_weight:
        options = dict(options, pos_weight=q)
    loss, grad = numbce.functional.FUNCTIONS[family.name + "_value_and_grad"](
        x, y, reduction="none", **options
    )
    hess = numbce.functional.FUNCTIONS[family.name + "_hess"](
        x, y, reduction="none", **options
    )
    return loss, grad, hess


def torch_elementwise(family: Family, x, y, q, options: dict):
    """PyTorch's elementwise ``(loss, grad, hess)``: the family's torch form, autograd for
    the derivatives (the second through ``create_graph``)."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    loss = family.torch(xt, torch.tensor(y), torch.tensor(q), **options)
    (grad,) = torch.autograd.grad(loss.sum(), xt, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), xt)
    return loss.detach().numpy(), grad.detach().numpy(), hess.numpy()


def max_ulps(
    family: Family,
    dtype,
    soft: bool,
    options: dict | None = None,
    elementwise: Callable = numbce_elementwise,
) -> dict:
    """Max ulp errors over the grid: ``loss``, ``grad``, ``hess``, and ``grad_vs_terms``,
    ``hess_vs_terms`` (in ulps of the sum of the terms' magnitudes)."""
    options = options or {}
    columns = zip(*points(family, dtype, soft), strict=True)
    x, y, q = (np.array(column, dtype=dtype) for column in columns)
    results = elementwise(family, x, y, q, options)
    worst = dict.fromkeys([*QUANTITIES, "grad_vs_terms", "hess_vs_terms"], 0.0)
    for i in range(x.size):
        exact = family.exact(x[i], y[i], q[i], **options)
        for k, name in enumerate(QUANTITIES):
            worst[name] = max(worst[name], ulps(results[k][i], exact[k], dtype))
        for k, name in ((1, "grad_vs_terms"), (2, "hess_vs_terms")):
            error = ulps(results[k][i], exact[k], dtype, unit_of=exact[k + 2])
            worst[name] = max(worst[name], error)
    return worst


def cases():
    """``(family, dtype, soft, options)`` for every row of the table."""
    for family in FAMILIES.values():
        for options, dtype, soft in itertools.product(
            family.accuracy_options, [np.float64, np.float32], [False, True]
        ):
            yield family, dtype, soft, options


def table(with_torch: bool = True) -> str:
    """The README's accuracy table (Markdown): max ulps per family, options, dtype and
    target kind; derivatives also in ulps of the sum of their terms' magnitudes (in parentheses)."""
    implementations = {"numbce": numbce_elementwise}
    if with_torch:
        try:
            import torch  # noqa: F401

            implementations["PyTorch"] = torch_elementwise
        except ImportError:
            pass
    header = "| family | options | dtype | targets | " + " | ".join(
        f"{name} {quantity}" for name in implementations for quantity in QUANTITIES
    )
    lines = [header + " |", "|" + " --- |" * (4 + 3 * len(implementations))]
    for family, dtype, soft, options in cases():
        cells = []
        for elementwise in implementations.values():
            worst = max_ulps(family, dtype, soft, options, elementwise)
            cells.append(f"{worst['loss']:.3g}")
            for name in ("grad", "hess"):
                cell = f"{worst[name]:.3g}"
                if worst[f"{name}_vs_terms"] < worst[name]:
                    cell += f" ({worst[f'{name}_vs_terms']:.3g})"
                cells.append(cell)
        described = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
        kind = "soft" if soft else "hard"
        lines.append(
            f"| {family.name} | {described} | {np.dtype(dtype).name} | {kind} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
