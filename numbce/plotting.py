"""Plots of training runs, drawn with matplotlib's object API (no pyplot state, so they work
without a display: figures render with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from numbce.nn import History, needs_the_nn_extra

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ModuleNotFoundError as error:
    raise needs_the_nn_extra("numbce.plotting", error) from error

__all__ = ["training_curves"]

_PANELS = (
    ("Loss", "loss", "binary cross-entropy"),
    ("Accuracy", "accuracy", "accuracy"),
)


def training_curves(
    history: History | Mapping[str, list[float]],
    path: str | os.PathLike | None = None,
    *,
    validation_label: str = "validation",
) -> Figure:
    """Two stacked panels, Loss and Accuracy, each with the training line (``loss``,
    ``accuracy``: means over each epoch's batches, measured while the weights change)
    and, when recorded, the validation line (``val_loss``, ``val_accuracy``: measured
    after the epoch), labelled ``validation_label``, against the epoch (1-based).
    ``history``: a :class:`~numbce.nn.History` or its ``.history`` dict. Returns the
    Figure; writes it to ``path`` when given, in the format of its suffix (.png, .pdf,
    .svg, ...: matplotlib's ``savefig``).
    """
    curves = history.history if isinstance(history, History) else history
    figure = Figure(figsize=(7, 7), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    lines = (("", "train (mean over the epoch)"), ("val_", validation_label))
    for ax, (title, key, ylabel) in zip(axes, _PANELS):
        for prefix, label in lines:
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
        figure.savefig(path, dpi=100)
    return figure
