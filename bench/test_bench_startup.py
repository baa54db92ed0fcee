"""Import and first-call times in fresh interpreters: cache warm, and cold (compile)."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
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


def _fresh_process(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_first_call_after_import(benchmark, cache, tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    _fresh_process(env)  # fills the cache
    times = []

    def run():
        if cache == "cold":  # an empty cache directory for every round
            env["NUMBA_CACHE_DIR"] = str(tmp_path / f"empty-{len(times)}")
        times.append(_fresh_process(env))

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.group = "startup"
    benchmark.extra_info.update(
        suite="startup",
        contestant=f"numbce, cache {cache}",
        import_s=min(t["import"] for t in times),
        first_call_s=min(t["first_call"] for t in times),
    )
