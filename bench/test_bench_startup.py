"""Start-up times in fresh interpreters, with Numba's cache warm and cold (an empty
``NUMBA_CACHE_DIR``: everything compiled): the first loss call after the import, a first
``MLPBinaryClassifier().fit`` on 1,000 rows, and the README's main job (``numbce
train``) from start to finish. A cold round waits for the background compile it started
(see ``numbce.nn.compiled.compile_in_background``) before the next round starts, outside
the timed call."""

import json
import os
import subprocess
import sys
import time

import pytest

FIRST_CALL = """
import json, time
t0 = time.perf_counter()
import numpy as np
import numbce
t1 = time.perf_counter()
x = np.linspace(-3, 3, 1000, dtype=np.float32)
numbce.binary_cross_entropy_with_logits_value_and_grad(x, (x > 0).astype(np.float32))
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1}))
"""

ESTIMATOR_FIT = """
import json, time, warnings
t0 = time.perf_counter()
from sklearn.datasets import make_circles
from numbce.nn import MLPBinaryClassifier
X, y = make_circles(n_samples=1000, noise=0.1, factor=0.5, random_state=0)
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clf = MLPBinaryClassifier(random_state=0).fit(X, y)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "epochs": clf.n_iter_}))
"""

TRAIN = [sys.executable, "-m", "numbce.cli", "train", "--plot", "curves.png"]


def _wait_for_background_compiles(limit: float = 300.0) -> None:
    """Until no ``compile_epochs`` process runs (a cold round's background compile)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = subprocess.run(
            ["pgrep", "-f", "compile_epochs"], capture_output=True, check=False
        )
        if busy.returncode != 0:
            return
        time.sleep(0.5)


def _run(command, env, cwd):
    start = time.perf_counter()
    out = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - start
    if command is TRAIN:
        return {"wall": seconds, "compiled": "in compiled epochs" in out.stdout}
    return json.loads(out.stdout) | {"wall": seconds}


CASES = {
    "first-loss-call": ([sys.executable, "-c", FIRST_CALL], "first_call"),
    "estimator-fit-1000-rows": ([sys.executable, "-c", ESTIMATOR_FIT], "fit"),
    "numbce-train": (TRAIN, "wall"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_start_up(benchmark, case, cache, tmp_path):
    command, figure = CASES[case]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    if cache == "warm":  # filled, the background compile included
        _run(command, env, tmp_path)
        _wait_for_background_compiles()
    runs = []

    def setup():
        if cache == "cold":  # an empty cache, the last round's background compile done
            _wait_for_background_compiles()
            env["NUMBA_CACHE_DIR"] = str(tmp_path / f"empty-{len(runs)}")

    def run():
        runs.append(_run(command, env, tmp_path))

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    _wait_for_background_compiles()
    benchmark.group = "startup"
    figures = {
        f"{name}_s": min(r[name] for r in runs)
        for name in runs[0]
        if name not in ("compiled", "epochs")
    }
    if "compiled" in runs[0]:
        figures["compiled_epochs"] = runs[-1]["compiled"]
    benchmark.extra_info.update(
        suite="startup", case=case, contestant=f"numbce, cache {cache}", **figures
    )
    assert figure in runs[0]
