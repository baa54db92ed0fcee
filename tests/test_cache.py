"""A damaged file of Numba's cache is detected, deleted and compiled again, with one
warning: never an exception or a crash (each case in a subprocess with a private
``NUMBA_CACHE_DIR``)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CALL = textwrap.dedent(
    """
    import json, warnings
    import numpy as np, numbce
    from numbce import cpu
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = numbce.binary_cross_entropy(np.full(3, 0.25), np.zeros(3))
    kernel = next(kernel for kernel, _ in cpu._KERNELS.values())
    print(json.dumps({
        "value": float(value),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "hits": sum(kernel.stats.cache_hits.values()),
    }))
    """
)


def _call(cache: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CALL],
        env={**os.environ, "NUMBA_CACHE_DIR": cache},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr == ""
    )  # compiling prints nothing (numba 0.60 printed an LLVM error)
    return json.loads(result.stdout.splitlines()[-1])


def _kernel_files(cache: str, extension: str) -> list[str]:
    return sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(cache)
        for name in names
        if name.startswith("cpu.kernel_binary_cross_entropy_")
        and name.endswith(extension)
    )


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory) -> str:
    cache = str(tmp_path_factory.mktemp("filled"))
    first = _call(cache)
    assert first["value"] == -np.log(0.75) and first["warnings"] == []
    assert first["hits"] == 0 and _call(cache)["hits"] == 1
    return cache


def _truncated(data: bytes) -> bytes:
    return data[:10]


def _zero_filled(data: bytes) -> bytes:
    return bytes(len(data))


def _garbled(data: bytes) -> bytes:
    middle = len(data) // 2
    noise = np.random.default_rng(0).bytes(64)
    return data[:middle] + noise + data[middle + len(noise) :]


@pytest.mark.parametrize("damage", [_truncated, _zero_filled, _garbled])
@pytest.mark.parametrize("extension", [".nbi", ".nbc"])
def test_a_damaged_cache_file_is_compiled_again(
    filled_cache, tmp_path, extension, damage
):
    cache = str(tmp_path / "cache")
    shutil.copytree(filled_cache, cache)
    (path,) = _kernel_files(cache, extension)
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(damage(data))

    damaged = _call(cache)
    assert damaged["value"] == -np.log(0.75) and damaged["hits"] == 0
    (message,) = damaged["warnings"]
    assert message == (
        f"DamagedCacheWarning: numbce: deleted a damaged Numba cache file, {path}; "
        "its function is compiled again"
    )
    # written anew, whole: the next process loads it without a warning
    for written in _kernel_files(cache, ".nbi") + _kernel_files(cache, ".nbc"):
        with open(written, "rb") as file:
            digest, content = file.read(32), file.read()
        assert hashlib.sha256(content).digest() == digest
    again = _call(cache)
    assert again["hits"] == 1 and again["warnings"] == []
