"""Same bits everywhere (any x86-64 CPU Numba targets, 1 or several threads, a fresh or a
cached compile, serial or parallel variant), thread safety whatever the threading layer,
and the promises kept under stress: overflow, infinite weights, per-class operands."""

import concurrent.futures
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numbce
from numbce import cpu, reference
from numbce.losses import FAMILIES

DIGEST = textwrap.dedent(
    """
    import hashlib, json, numpy as np, numbce
    from numbce import cpu
    rng = np.random.default_rng(0)
    digest = hashlib.sha256()
    for n, dtype in ((20_000, np.float32), (1_000, np.float64)):
        x = rng.normal(scale=6, size=n).astype(dtype)
        p = rng.uniform(size=n).astype(dtype)
        y = rng.uniform(size=n).astype(dtype)
        for name, family in numbce.losses.FAMILIES.items():
            data = p if family.input_in_unit_interval else x
            options = family.accuracy_options[-1]
            for suffix, reduction in (("_value_and_grad", "mean"), ("_grad_hess", "none")):
                results = getattr(numbce, name + suffix)(data, y, reduction=reduction,
                                                        **options)
                for r in results if isinstance(results, tuple) else (results,):
                    digest.update(np.asarray(r).tobytes())
    hits = sum(sum(k.stats.cache_hits.values()) for k, _ in cpu._KERNELS.values())
    misses = sum(sum(k.stats.cache_misses.values()) for k, _ in cpu._KERNELS.values())
    print(json.dumps({"digest": digest.hexdigest(), "hits": hits, "misses": misses}))
    """
)


def _run(code: str, **env) -> dict:
    import json

    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_same_bits_on_any_cpu_thread_count_and_cache_state(tmp_path):
    """Every family, elementwise and reduced, serial and parallel variants: the host CPU
    compiling fresh, the host loading from the cache with one thread, and Numba's generic
    x86-64 target (SSE2, no FMA) compiling fresh all give the same SHA-256."""
    host_cache, generic_cache = str(tmp_path / "host"), str(tmp_path / "generic")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        generic = pool.submit(
            _run, DIGEST, NUMBA_CACHE_DIR=generic_cache, NUMBA_CPU_NAME="generic"
        )
        fresh = _run(DIGEST, NUMBA_CACHE_DIR=host_cache)
        generic = generic.result()
    cached = _run(DIGEST, NUMBA_CACHE_DIR=host_cache, NUMBA_NUM_THREADS="1")
    assert fresh["misses"] > 0 and cached["hits"] > 0 and cached["misses"] == 0
    assert fresh["digest"] == cached["digest"] == generic["digest"]


THREADS = textwrap.dedent(
    """
    import json, threading, numpy as np, numba, numbce
    rng = np.random.default_rng(1)
    x = rng.normal(scale=4, size=100_000).astype(np.float32)
    y = rng.uniform(size=100_000).astype(np.float32)
    expected = numbce.binary_cross_entropy_with_logits_value_and_grad(x, y)
    results = []
    def work():
        for _ in range(20):
            loss, grad = numbce.binary_cross_entropy_with_logits_value_and_grad(x, y)
            results.append(loss == expected[0] and (grad == expected[1]).all())
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"layer": numba.threading_layer(), "same": all(results),
                      "calls": len(results)}))
    """
)


def test_concurrent_calls_under_the_workqueue_layer_neither_abort_nor_differ():
    """Numba's workqueue layer aborts the process when two threads launch parallel kernels
    at once; numbce serialises its parallel launches, so 8 threads get the serial bits."""
    result = _run(THREADS, NUMBA_THREADING_LAYER="workqueue")
    assert result == {"layer": "workqueue", "same": True, "calls": 160}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_overflowing_sum_is_inf_not_an_exception(reduction):
    x = np.zeros(8192)
    x[0] = x[4096] = -1e308  # one loss of 1e308 in each of two blocks
    assert (
        numbce.binary_cross_entropy_with_logits(x, np.ones(8192), reduction=reduction)
        == np.inf
    )
    focal = numbce.sigmoid_focal_loss(-x, np.zeros(8192), alpha=None, gamma=0.0,
                                      reduction=reduction)  # fmt: skip
    assert focal == np.inf


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_sum_beyond_a_narrow_dtype_is_inf_without_a_warning(name, dtype):
    """Losses of the dtype's largest magnitude (p = 1 for probabilities, the most negative
    logit otherwise, for target 1), their sum, and float16's derivatives computed in
    float32: inf where beyond the range, silently (an error under ``-W error``)."""
    probabilities = FAMILIES[name].input_in_unit_interval
    x = np.full(8192, 0.0 if probabilities else -np.finfo(dtype).max, dtype)
    loss, grad = getattr(numbce, name + "_value_and_grad")(
        x, np.ones(8192, dtype), weight=np.finfo(dtype).max, reduction="sum"
    )
    assert loss.dtype == dtype and loss == np.inf and grad.dtype == dtype


def test_infinite_weight_gives_the_reference_not_nan():
    x, y = np.array([1.0, -2.0, 3.0]), np.array([1.0, 0.0, 0.5])
    got = numbce.binary_cross_entropy_with_logits(x, y, weight=np.inf, reduction="none")
    expected = reference.binary_cross_entropy_with_logits(
        x, y, weight=np.inf, reduction="none"
    )
    np.testing.assert_array_equal(got, expected)
    assert np.isinf(got).all()


@pytest.mark.parametrize(
    "value, message",
    [("0.1", "label_smoothing must be a real number, got '0.1'"),
     (None, "label_smoothing must be a real number, got None")],
)  # fmt: skip
def test_label_smoothing_must_be_a_number(value, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        numbce.binary_cross_entropy_with_logits(
            np.zeros(3), np.zeros(3), label_smoothing=value
        )
    with pytest.raises(TypeError, match=re.escape(message)):
        numbce.BCEWithLogitsLoss(label_smoothing=value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_class_operands_are_indexed_not_copied(rng, dtype):
    """A (C,) pos_weight or weight is read per column in the kernel (no (n, C) copy), with
    the bits of the broadcast array, across block and row boundaries."""
    x = rng.normal(size=(3001, 7)).astype(dtype)
    y = rng.uniform(size=(3001, 7)).astype(dtype)
    q = rng.uniform(0.5, 3.0, size=7).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=(1, 7)).astype(dtype)
    assert cpu._layout(q, x.shape, np.dtype(dtype))[0] == cpu.ROW
    assert cpu._layout(w, x.shape, np.dtype(dtype))[0] == cpu.ROW
    for suffix in ("_value_and_grad", "_grad_hess"):
        function = getattr(numbce, "binary_cross_entropy_with_logits" + suffix)
        got = function(x, y, weight=w, pos_weight=q, reduction="none")
        full = function(x, y, weight=np.broadcast_to(w, x.shape).copy(),
                        pos_weight=np.broadcast_to(q, x.shape).copy(), reduction="none")  # fmt: skip
        for a, b in zip(got, full, strict=True):
            np.testing.assert_array_equal(a, b)
