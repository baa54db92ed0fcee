"""The benchmark contestants and the report script, run once on tiny inputs so they cannot
rot (the timed runs live in bench/)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from contestants import FAMILIES, OPS, contestants, make_inputs

BENCH = Path(__file__).parents[1] / "bench"


def _loss_and_grad(op, result):
    if op == "forward":
        return float(result), None
    if op == "grad":
        return None, np.asarray(result)
    return float(result[0]), np.asarray(result[1])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("family", FAMILIES)
def test_contestants_agree_on_a_tiny_input(family, op):
    x, y = make_inputs(family, 257, np.float64)
    racers = contestants(family, op, x, y)
    assert {"floor", "numbce", "numpy"} <= set(racers)
    racers.pop("floor")()
    expected_loss, expected_grad = _loss_and_grad(op, racers.pop("numpy")())
    for name, run in racers.items():
        loss, grad = _loss_and_grad(op, run())
        if loss is not None and name != "scikit-learn":  # log_loss clips probabilities
            assert loss == pytest.approx(expected_loss, rel=1e-12), name
        if grad is not None:
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-18)


def test_report_writes_table_and_plot(tmp_path):
    stats = {"min": 1e-3}
    benchmarks = [
        {
            "name": name,
            "group": "g",
            "stats": {"min": t},
            "extra_info": {
                "suite": "kernels",
                "family": "logits",
                "op": "fused",
                "dtype": "float32",
                "n": 1000,
                "contestant": name,
                "bytes": 12000,
                "threads": 2,
            },
        }
        for name, t in [("floor", 1e-6), ("numbce", 4e-6), ("pytorch", 1e-4)]
    ] + [
        {
            "name": "mlp",
            "group": "circles",
            "stats": stats,
            "extra_info": {
                "suite": "mlp",
                "contestant": "numbce",
                "test_accuracy": 0.85,
            },
        }
    ]
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"machine_info": {"python_version": "3"}, "benchmarks": benchmarks})
    )
    out, png = tmp_path / "RESULTS.md", tmp_path / "plot.png"
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "report.py"),
            str(results),
            "--out",
            str(out),
            "--plot",
            str(png),
        ],
        check=True,
    )
    text = out.read_text()
    assert (
        "| logits | fused | float32 | 1e+03 | 1.0 us | 4.0 us | 4.00x | 100.0 us | 25.0x |"
        in text
    )
    assert "test_accuracy=0.85" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
