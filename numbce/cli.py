"""The ``numbce`` command: ``numbce demo`` prints losses and gradients beside PyTorch's;
``numbce train`` reproduces a tutorial with :mod:`numbce.nn` (needs the ``nn`` extra)."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile

import numpy as np

import numbce
from numbce._files import write_atomically


def demo() -> None:
    """Losses and gradients at a few telling logits, next to PyTorch's where installed."""
    x = np.array([-800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0, -np.inf])
    y = np.array([1.0, 1.0, 0.0, 1.0, 0.3, 1.0, 0.0, 0.0])
    loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="none"
    )
    try:
        import torch

        xt = torch.tensor(x, requires_grad=True)
        torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
            xt, torch.tensor(y), reduction="none"
        )
        torch_loss.sum().backward()
        theirs = torch_loss.detach().numpy(), xt.grad.numpy()
    except ImportError:
        theirs = None
    print("BCE with logits, float64, reduction='none'")
    header = f"{'x':>8} {'y':>4} {'numbce loss':>24} {'numbce grad':>24}"
    if theirs is not None:
        header += f" {'torch loss':>24} {'torch grad':>24}"
    print(header)
    for i in range(x.size):
        row = f"{x[i]:>8g} {y[i]:>4g} {loss[i]:>24.17g} {grad[i]:>24.17g}"
        if theirs is not None:
            row += f" {theirs[0][i]:>24.17g} {theirs[1][i]:>24.17g}"
        print(row)
    p = np.array([0.3440, 0.7944, 0.8919, 0.3551, 0.9817, 0.8871], dtype=np.float32)
    t = np.array([0.1639, 0.4745, 0.1537, 0.5444, 0.6933, 0.1129], dtype=np.float32)
    print(
        f"\nBCELoss()(p, t) = {numbce.BCELoss()(p, t):.4f}  (the tutorial prints 1.2200)"
    )


def train(
    tutorial_name: str,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    plot: str,
    json_path: str | None,
) -> None:
    """Train a tutorial's network with a progress bar; print the final train and test loss
    and accuracy and the training time; write the training curves (and the history)."""
    from numbce import plotting
    from numbce._cache import CompileNotice
    from numbce.nn import training, tutorials

    tutorial = tutorials.TUTORIALS[tutorial_name]
    print(f"numbce train {tutorial.name}: {tutorial.summary}", flush=True)
    with CompileNotice(sys.stderr, training.COMPILE_NOTICE):
        run = tutorials.train(
            tutorial, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, verbose=1
        )
    settings = run.history.params
    print(
        f"{settings['epochs']} epochs, batch {settings['batch_size']}, "
        f"Adam lr {run.lr:g}, seed {seed}, {run.model.dtype}"
    )
    print(
        "the bar shows each epoch's mean over its batches (loss, accuracy) and the test "
        "set as validation data (val_loss, val_accuracy); with the final weights:"
    )
    for name, metrics in (("train", run.train), ("test", run.test)):
        print(
            f"{name:<6} "
            + "  ".join(f"{metric} {value:.4f}" for metric, value in metrics.items())
        )
    if run.model.outputs > 1:
        _print_label_figures(run)
    loop = "compiled epochs" if run.compiled else "the Python loop"
    print(
        f"training time {run.seconds:.3f} s in {loop} (Numba kernels compiled or "
        f"loaded beforehand in {run.warmup_seconds:.2f} s)"
    )
    plotting.training_curves(run.history, plot, validation_label="test")
    print(f"wrote {plot}")
    if json_path is not None:
        record = {
            "tutorial": tutorial.name,
            "settings": dict(settings, lr=run.lr),
            "seed": seed,
            "train": run.train,
            "test": run.test,
            "training_seconds": run.seconds,
            "history": run.history.history,
        }
        text = json.dumps(record, indent=1).encode()
        write_atomically(json_path, lambda file: file.write(text))
        print(f"wrote {json_path}")


def _print_label_figures(run) -> None:
    """Per-label frequency, pos_weight, precision, recall and F1 on the test set."""
    from sklearn.metrics import precision_recall_fscore_support

    (_, y_train), (X_test, y_test) = run.data
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_test, run.model.predict(X_test), zero_division=0.0
    )
    pos_weight = np.broadcast_to(
        run.model.loss_options.get("pos_weight", 1.0), precision.shape
    )
    print(
        "accuracy: the subset accuracy (every label right); label_accuracy: the labels "
        "right. Per label, on the test set:"
    )
    print("label  train frequency  pos_weight  precision  recall      F1")
    for label, frequency in enumerate(y_train.mean(axis=0)):
        print(
            f"{label:>5}  {frequency:>15.3f}  {pos_weight[label]:>10.2f}  "
            f"{precision[label]:>9.3f}  {recall[label]:>6.3f}  {f1[label]:>6.3f}"
        )


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)  # a NumPy seed


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _output_file(text: str) -> str:
    """argparse type: a file that can be written, checked before any training: not a
    folder, in a folder where a file can be created (tried: a temporary file, deleted)."""
    folder = os.path.dirname(text) or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"no folder {folder!r} to write {text!r} into")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: {error.strerror} in {folder!r}"
        ) from None
    return text


def _check_plot_format(parser: argparse.ArgumentParser, plot: str) -> None:
    """The training-curves file must end in a format matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(plot)[1].lstrip(".").lower()
    if suffix not in formats:
        parser.error(
            f"argument --plot: {plot!r} must end in one of matplotlib's formats: "
            + ", ".join(f".{name}" for name in sorted(formats))
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="numbce",
        description="Binary cross-entropy kernels in Numba. 'numbce demo' prints losses "
        "and gradients beside PyTorch's; 'numbce train' reproduces a tutorial with "
        "numbce.nn (needs the nn extra: pip install 'numbce[nn]').",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {numbce.__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="print losses and gradients beside PyTorch's")
    trainer = commands.add_parser(
        "train",
        help="train a tutorial's network, print its metrics, plot its training curves",
        description="Reproduce a tutorial: circles (Keras, make_circles, 300 epochs), "
        "fake-images (PyTorch, 15,000 random images) or multilabel (5 labels per sample, "
        "make_multilabel_classification, pos_weight from the label frequencies). Unset "
        "options take the tutorial's.",
    )
    trainer.add_argument(
        "tutorial",
        nargs="?",
        default="circles",
        choices=["circles", "fake-images", "multilabel"],
    )
    trainer.add_argument("--epochs", type=_positive_int, help="epochs")
    trainer.add_argument("--batch-size", type=_positive_int, help="samples per batch")
    trainer.add_argument("--lr", type=_positive_float, help="Adam's learning rate")
    trainer.add_argument(
        "--seed", type=_seed, default=0, help="weights and shuffling seed (>= 0)"
    )
    trainer.add_argument(
        "--plot",
        type=_output_file,
        default="training_curves.png",
        help="file of the training curves, in the format of its suffix "
        "(.png, .pdf, .svg, ...)",
    )
    trainer.add_argument(
        "--json",
        dest="json_path",
        type=_output_file,
        help="write the settings, final metrics and history as JSON",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
        return
    try:  # the nn extra, checked before anything runs
        for module in ("numbce.plotting", "numbce.nn.tutorials"):
            importlib.import_module(module)
    except ModuleNotFoundError as error:
        sys.exit(f"numbce train: {error}")
    _check_plot_format(trainer, args.plot)
    train(
        args.tutorial,
        args.epochs,
        args.batch_size,
        args.lr,
        args.seed,
        args.plot,
        args.json_path,
    )


if __name__ == "__main__":
    main()
