"""The ``numbce`` command: ``numbce demo`` prints losses and gradients beside PyTorch's."""

from __future__ import annotations

import argparse

import numpy as np

import numbce


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="numbce", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="print losses and gradients beside PyTorch's")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()


if __name__ == "__main__":
    main()
