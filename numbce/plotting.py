"""Plots of training runs, drawn with matplotlib's object API (no pyplot state, so they work
without a display: figures render with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from numbce.nn.model import History

__all__ = ["training_curves"]

_PANELS = (
    ("Loss", "loss", "binary cross-entropy"),
    ("Accuracy", "accuracy", "accuracy"),
)


def training_curves(
    history: History | Mapping[str, list[float]], path: str | os.PathLike | None = None
) -> Figure:
    """Two stacked panels, Loss and Accuracy, each with the training line (``loss``,
    ``accuracy``) and, when recorded, the validation line (``val_loss``, ``val_accuracy``)
    against the epoch (1-based). ``history``: a :class:`~numbce.nn.History` or its
    ``.history`` dict. Returns the Figure; writes it as a PNG to ``path`` when given.
    """
    curves = history.history if isinstance(history, History) else history
    figure = Figure(figsize=(7, 7), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    for ax, (title, key, ylabel) in zip(axes, _PANELS):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = curves.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        figure.savefig(path, format="png", dpi=100)
    return figure
