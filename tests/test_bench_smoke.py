"""The benchmark contestants, the report script, the benchmark options and the GPU check
script, run once on tiny inputs so they cannot rot (the timed runs live in bench/)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from contestants import FAMILIES, OPS, contestants, make_inputs

ROOT = Path(__file__).parents[1]
BENCH = ROOT / "bench"


def _run(args, env=None, timeout=120):
    """Run a command from the repository root; return the completed process. The
    environment of a pytest-xdist worker is left out: a pytest run inside it would think it
    is distributed (and pytest-benchmark would refuse --benchmark-only)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        args,
        check=False,
        cwd=ROOT,
        env=dict(clean, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _pytest(*args, env=None):
    return _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], env)


def _report(results, tmp_path, benchmarks=None):
    """Run report.py on the JSON ``results`` (first written from ``benchmarks`` if given);
    return (RESULTS.md text, report's stdout)."""
    if benchmarks is not None:
        data = {"machine_info": {"python_version": "3"}, "benchmarks": benchmarks}
        results.write_text(json.dumps(data))
    out, png = tmp_path / "RESULTS.md", tmp_path / "plot.png"
    done = _run(
        [sys.executable, str(BENCH / "report.py"), str(results), "--out", str(out),
         "--plot", str(png)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_text(), done.stdout


def _bench(contestant, minimum, median=None, **info):
    """One pytest-benchmark record (statistics only, as bench/conftest.py writes them)."""
    return {
        "name": contestant,
        "group": "g",
        "stats": {"min": minimum, "median": median or minimum},
        "extra_info": {"contestant": contestant, **info},
    }


def _loss_and_grad(op, result):
    """``(loss, derivatives)`` of a contestant's result (gradient and second derivative
    concatenated for grad_hess)."""
    if op == "forward":
        return float(result), None
    if op == "grad":
        return None, np.asarray(result)
    if op == "grad_hess":
        return None, np.concatenate([np.asarray(r) for r in result])
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
            # torch's double backward of BCE on probabilities adds 1e-12 to p (1 - p)
            rtol = 1e-9 if op == "grad_hess" and name == "pytorch" else 1e-12
            np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=1e-18)


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
        for name, t in [
            ("floor", 1e-6),
            ("numbce", 4e-6),
            ("numbce-out", 3e-6),
            ("pytorch", 1e-4),
        ]
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
    text, stdout = _report(tmp_path / "results.json", tmp_path, benchmarks)
    assert (
        "| logits | fused | float32 | 1e+03 | 1.0 us | 4.0 us | 4.00x | 3.0 us | 3.00x | "
        "100.0 us | 25.0x |" in text
    )
    assert "test_accuracy=0.85" in text
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stdout.splitlines()[:2] == [
        (
            f"wrote {tmp_path / 'RESULTS.md'}: 1 kernel rows, 0 CUDA rows, "
            "5 benchmarks of suites kernels, mlp"
        ),
        f"wrote {tmp_path / 'plot.png'}",
    ]
    assert "flagged" not in stdout


def test_report_of_several_runs_names_each_machine(tmp_path):
    """A suite measured in a later run replaces the earlier run's; each run kept gets its
    machine line, with its BLAS where recorded."""

    def run(name, date, blas, suites):
        info = {"python_version": "3", "cpu": {"brand_raw": name, "count": 2}}
        if blas:
            info["blas"] = blas
        benchmarks = [_bench(date, 1e-3, suite=suite, case="c") for suite in suites]
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {"machine_info": info, "datetime": date, "benchmarks": benchmarks}
            )
        )
        return path

    first = run("old", "2026-11-26", None, ["mlp", "dask"])
    second = run("new", "2026-12-08", "openblas 0.3.30 Haswell", ["mlp"])
    out = tmp_path / "RESULTS.md"
    done = _run(
        [sys.executable, str(BENCH / "report.py"), str(first), str(second),
         "--out", str(out), "--plot", str(tmp_path / "p.png")]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "- dask (`old.json`, measured 2026-11-26): old, 2 logical cores" in text
    assert "- mlp (`new.json`, measured 2026-12-08): new" in text
    assert "BLAS openblas 0.3.30 Haswell" in text
    assert "2026-12-08" in text and "contestant | time" in text
    assert "| 2026-11-26 |" in text  # dask's row, kept
    assert text.count("| 2026-11-26 |") == 1  # mlp's old row, replaced


def test_report_flags_rows_a_disturbed_run_explains(tmp_path):
    kernels = {"suite": "kernels", "op": "fused", "dtype": "float32", "bytes": 12}
    cuda = {"suite": "cuda", "family": "logits", "op": "grad", "dtype": "float32"}
    benchmarks = [
        # numbce faster than the memory floor: impossible unless the floor was disturbed
        _bench("floor", 1e-3, family="logits", n=10**7, **kernels),
        _bench("numbce", 4e-4, family="logits", n=10**7, **kernels),
        _bench("pytorch", 2e-1, family="logits", n=10**7, **kernels),
        # plausible times, but PyTorch's median is 3x its minimum and the machine was busy
        _bench("floor", 1e-3, family="probs", n=10**7, load=1.9, cores=2, **kernels),
        _bench("numbce", 3e-3, family="probs", n=10**7, load=1.9, cores=2, **kernels),
        _bench(
            "pytorch", 3e-2, 9e-2, family="probs", n=10**7, load=4.2, cores=2, **kernels
        ),
        # a clean row
        _bench("floor", 1e-6, family="logits", n=10**3, **kernels),
        _bench("numbce", 4e-6, family="logits", n=10**3, **kernels),
        # CUDA: numbce at 80% of the copy's bandwidth, 3x PyTorch; the call waited
        _bench("floor", 4e-4, n=10**8, bytes=12 * 10**8, device="GPU", **cuda),
        _bench("numbce", 5e-4, n=10**8, bytes=12 * 10**8, device="GPU", **cuda),
        _bench(
            "numbce-nosync", 4.9e-4, n=10**8, kernel_pending_on_return=False, **cuda
        ),
        _bench("torch", 1.5e-3, n=10**8, **cuda),
        _bench("mlp", 1.0, 2.0, suite="mlp", case="circles"),
    ]
    text, stdout = _report(tmp_path / "results.json", tmp_path, benchmarks)

    def row(start):
        (line,) = [line for line in text.splitlines() if line.startswith(start)]
        return line

    assert row("| logits | fused | float32 | 1e+07 |").endswith(
        "| numbce 0.40x the floor: faster than memory allows |"
    )
    assert row("| probs | fused | float32 | 1e+07 |").endswith(
        "| pytorch noisy (median 3.0x min); pytorch ran on a busy machine "
        "(load 4.2 on 2 cores) |"
    )
    assert row("| logits | fused | float32 | 1e+03 |").endswith("| - |  |")
    assert (
        "| logits | grad | float32 | 1e+08 | 400.0 us | 500.0 us | 2.4e+03 | 80% | "
        "490.0 us | no | 1.50 ms | 3.00x |  |" in text
    )
    assert "GPU: GPU." in text
    assert (
        "| mlp | 1.00 s | 1.00x | case=circles | mlp noisy (median 2.0x min) |" in text
    )
    warning = stdout.splitlines()[2:]
    assert warning[0] == "warning: 3 rows flagged (a disturbed run can explain them):"
    assert warning[1].startswith(
        "  logits fused float32 n=1e+07: numbce 0.40x the floor"
    )
    assert warning[2].startswith("  probs fused float32 n=1e+07: pytorch noisy")
    assert warning[3] == "  mlp: circles: mlp noisy (median 2.0x min)"


def test_size_ids_are_accepted_by_k():
    done = _pytest(
        "bench/test_bench_kernels.py", "--collect-only", "-q", "-k", "n1e3 and not n1e5"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::test_kernel[" in line]
    assert ids and all("[n1e3-" in line and "=" not in line for line in ids)


def test_deadline_skips_what_would_start_later():
    done = _pytest(
        "bench/test_bench_kernels.py",
        "-k",
        "n1e3 and with_logits-float32-fused and (floor or numbce)",
        "--benchmark-disable",
        "-rs",
        "--deadline=0",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 skipped" in done.stdout  # floor, numbce, numbce-out
    assert "--deadline of 0 s reached" in done.stdout


def test_benchmark_json_keeps_statistics_not_rounds(tmp_path):
    results = tmp_path / "results.json"
    done = _pytest(
        "bench/test_bench_kernels.py",
        "-k",
        "n1e3 and with_logits-float32-fused and (floor or numbce)",
        "--benchmark-only",
        "--benchmark-min-rounds=200",
        f"--benchmark-json={results}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    benchmarks = json.loads(results.read_text())["benchmarks"]
    assert len(benchmarks) == 3  # floor, numbce, numbce-out
    for bench in benchmarks:
        assert bench["stats"]["rounds"] >= 200
        assert "data" not in bench["stats"]
        assert {"min", "median"} <= set(bench["stats"])
        if hasattr(os, "getloadavg"):
            assert bench["extra_info"]["load"] >= 0
            assert bench["extra_info"]["cores"] >= 1
    assert results.stat().st_size < 30_000
    text, stdout = _report(results, tmp_path)
    assert "| binary_cross_entropy_with_logits | fused | float32 | 1e+03 |" in text
    assert stdout.startswith(f"wrote {tmp_path / 'RESULTS.md'}: 1 kernel rows")


def _fake_wheel(folder, dist, version, module, source):
    """A minimal pure-Python wheel of ``dist`` holding ``module.py``."""
    name = dist.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{module}.py", source)
        wheel.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        )
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return path


def _gpu_check_sim(tmp_path, wheel, **env):
    """Run ``gpu_check.sh --sim`` with pytest-benchmark's dependency ``cpuinfo`` made
    unimportable, as on a machine without it, and a wheel of it carried if ``wheel``."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    out, shadow, wheels = tmp_path / "gpu-out", tmp_path / "shadow", tmp_path / "wheels"
    shadow.mkdir()
    wheels.mkdir()
    (shadow / "cpuinfo.py").write_text("raise ImportError('shadowed by the test')\n")
    if wheel:
        source = "def get_cpu_info():\n    return {}\n"
        _fake_wheel(wheels, "py-cpuinfo2", "10.1.1", "cpuinfo", source)
    env = {
        "OUT": str(out),
        "PYTHON": sys.executable,
        "PYTHONPATH": str(shadow),
        "GPU_CHECK_WHEELS": str(wheels),
        **env,
    }
    done = _run(["bash", str(BENCH / "gpu_check.sh"), "--sim"], env=env, timeout=300)
    return done, out, wheels


def test_gpu_check_runs_on_the_simulator(tmp_path):
    """The GPU check script end to end on the CUDA simulator, at N = 1e3, on a few tests
    and the float32 with-logits benchmarks; the missing package comes from its wheel."""
    done, out, wheels = _gpu_check_sim(
        tmp_path,
        wheel=True,
        GPU_CHECK_TESTS_K="test_every_public_function_matches_cpu and sum",
        GPU_CHECK_BENCH_K="float32 and logits-",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "RESULTS-cuda.md",
        "bench_cuda.json",
        "bench_cuda.log",
        "env.txt",
        "summary.txt",
        "test_cuda.log",
        "test_cuda.xml",
    ]
    env = (out / "env.txt").read_text()
    assert f"installing {wheels}/py_cpuinfo2-10.1.1-py3-none-any.whl into" in env
    assert "ok py-cpuinfo2 10.1.1" in env and "ok numba-cuda " in env
    assert "MISSING" not in env
    suite = ElementTree.parse(out / "test_cuda.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == 6 and int(suite.get("failures")) == 0
    benchmarks = json.loads((out / "bench_cuda.json").read_text())["benchmarks"]
    ran = {(b["extra_info"]["op"], b["extra_info"]["contestant"]) for b in benchmarks}
    assert {("forward", "numbce"), ("grad", "numbce-nosync"), ("fused", "floor")} <= ran
    assert all(b["extra_info"]["n"] == 1000 for b in benchmarks)
    assert all("data" not in b["stats"] for b in benchmarks)
    summary = (out / "summary.txt").read_text()
    assert "tests/test_cuda.py: exit 0 (6 passed" in summary
    assert "bench/test_bench_cuda.py: exit 0" in summary
    assert "| binary_cross_entropy_with_logits | fused | float32 | 1e+03 |" in summary
    assert done.stdout.endswith(summary)


def test_gpu_check_names_what_is_missing(tmp_path):
    """Without a wheel, a package that cannot be imported is named as missing, and the
    steps needing it are skipped."""
    done, out, wheels = _gpu_check_sim(
        tmp_path,
        wheel=False,
        GPU_CHECK_TESTS_K="test_every_public_function_matches_cpu and sum and grad",
    )
    assert done.returncode == 1
    env = (out / "env.txt").read_text()
    assert "need py-cpuinfo2 (import cpuinfo: ImportError: shadowed by the test)" in env
    assert f"MISSING: py-cpuinfo2 (no wheel in {wheels}/" in env
    summary = (out / "summary.txt").read_text()
    assert "tests/test_cuda.py: exit 0 (" in summary
    assert "bench/test_bench_cuda.py: not run (MISSING: py-cpuinfo2)" in summary
    assert not (out / "bench_cuda.json").exists()
