"""BCE-with-logits ('mean') over float64 chunks on Dask, against the in-memory kernel.

Logits and targets are generated chunk by chunk into ``.npy`` stacks on disk
(:func:`dask.array.to_npy_stack`, 10 chunks) and read back memory-mapped
(:func:`dask.array.from_npy_stack`), so no process holds more than a few chunks; the
in-memory contestant reads the same data into RAM first (untimed). N is 1e7 elements, 1e8
(1.6 GB of input) with ``--big``. Contestants: the in-memory kernel, Dask's threaded
scheduler with 1 and 2 workers, and a ``dask.distributed.LocalCluster`` on loopback with 1
and 2 single-threaded worker processes. Every contestant gets ``--threads`` Numba threads
in all: the threaded scheduler runs one parallel kernel at a time (see :mod:`numbce.dask`)
with all of them, each worker process gets its share. Each timed round builds the lazy
graph and computes it; throughput is ``extra_info['bytes']`` (logits and targets read)
over the time.
"""

import shutil
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import numbce

CHUNKS = 10
ROUNDS = 3


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, pytestconfig):
    """``(logits, targets)`` as Dask arrays memory-mapped from ``.npy`` stacks (deleted at
    the end of the module)."""
    n = 100_000_000 if pytestconfig.getoption("--big") else 10_000_000
    root = tmp_path_factory.mktemp("dask-bench")
    rng = da.random.default_rng(2026)
    logits = rng.standard_normal(n, chunks=n // CHUNKS) * 4.0
    targets = (rng.random(n, chunks=n // CHUNKS) < 0.3).astype(np.float64)
    for name, array in [("logits", logits), ("targets", targets)]:
        da.to_npy_stack(root / name, array)
    yield da.from_npy_stack(root / "logits"), da.from_npy_stack(root / "targets")
    shutil.rmtree(root)


def _record(benchmark, contestant: str, n: int, threads: int) -> None:
    benchmark.group = f"dask: bce_with_logits mean, float64 n={n:.0e}"
    benchmark.extra_info.update(
        suite="dask",
        contestant=contestant,
        n=n,
        dtype="float64",
        bytes=16 * n,
        threads=threads,
    )


def _loss(stacks, **scheduler) -> np.float64:
    return numbce.binary_cross_entropy_with_logits(*stacks).compute(**scheduler)


def test_in_memory(benchmark, stacks, threads):
    logits, targets = (np.asarray(a) for a in stacks)
    _record(benchmark, "numbce in memory", logits.size, threads)
    benchmark.pedantic(
        numbce.binary_cross_entropy_with_logits,
        args=(logits, targets),
        rounds=ROUNDS,
        warmup_rounds=1,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_dask_threads(benchmark, stacks, threads, workers):
    with ThreadPoolExecutor(
        workers, initializer=numba.set_num_threads, initargs=(threads,)
    ) as pool:
        _record(benchmark, f"dask threads x{workers}", stacks[0].size, threads)
        benchmark.pedantic(
            _loss,
            args=(stacks,),
            kwargs={"scheduler": "threads", "pool": pool},
            rounds=ROUNDS,
            warmup_rounds=1,
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_distributed(benchmark, stacks, threads, workers):
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            env={"NUMBA_NUM_THREADS": str(max(1, threads // workers))},
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        contestant = f"distributed {workers} process{'es' * (workers > 1)}"
        _record(benchmark, contestant, stacks[0].size, threads)
        benchmark.pedantic(
            _loss,
            args=(stacks,),
            kwargs={"scheduler": client.get},
            rounds=ROUNDS,
            warmup_rounds=1,
        )
