#!/usr/bin/env bash
# The GPU check (issue 16): versions, the CUDA tests on the real GPU, the CUDA benchmarks and
# their report, everything written to one folder, ${OUT:-gpu-out}. About 3-5 minutes on an
# H100; each step has its own time limit, so the whole run ends within 7 minutes.
#
#   bash bench/gpu_check.sh                   # on the GPU machine
#   bash bench/gpu_check.sh --sim             # anywhere: Numba's CUDA simulator, N = 1e3
#   bash bench/gpu_check.sh --download-wheels # with network: wheels for the GPU machine
#
# The GPU machine has no network: its python3 (PYTHON overrides) must already hold numpy,
# numba, numba-cuda, pytest and pytest-benchmark; PyTorch with CUDA, for the peers, is
# optional. Whatever is missing or too old is installed from wheels in .whl/ (made here by
# --download-wheels: numba-cuda, pytest-benchmark and py-cpuinfo2, about 2 MB; .whl/ is
# git-ignored, so the device call must carry it) into a private folder on PYTHONPATH,
# never into that python. A package neither present nor carried is reported as MISSING and
# the steps that need it are skipped. numbce itself runs from this checkout.
#
# Steps and their files in OUT (at most 8, the device tool's limit):
#   env.txt         nvidia-smi, nvcc, python and package versions, what was installed
#   test_cuda.log   tests/test_cuda.py on the GPU (gpu-marked tests included), and
#   test_cuda.xml   its JUnit record
#   bench_cuda.log  bench/test_bench_cuda.py, and
#   bench_cuda.json its pytest-benchmark statistics (no per-round data)
#   RESULTS-cuda.md bench/report.py's tables of that JSON (flags included)
#   summary.txt     each step's exit status, then the CUDA table (also printed last)
#
# Environment: OUT; PYTHON; GPU_CHECK_WHEELS (default .whl); GPU_CHECK_TESTS_K / GPU_CHECK_BENCH_K (a pytest -k expression
# for the tests / benchmark step); GPU_CHECK_SIZES (the benchmark's N, default 1e8,1e6, or
# 1e3 with --sim); GPU_CHECK_TEST_TIMEOUT / GPU_CHECK_BENCH_TIMEOUT (seconds, 180 / 200;
# benchmark cases that would start in the last 40 s are skipped, so that its JSON is written).
set -u
cd "$(dirname "$0")/.."

mode=gpu
case "${1:-}" in
    --sim) mode=sim ;;
    --download-wheels) mode=wheels ;;
    "") ;;
    *)
        echo "usage: bash bench/gpu_check.sh [--sim | --download-wheels]" >&2
        exit 2
        ;;
esac

if [ -z "${PYTHON:-}" ]; then
    if [ "$mode" != gpu ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ "$mode" = wheels ]; then
    # The GPU machine's python3 is CPython 3.12 on x86-64 (.library/device/KINDS.md).
    pins=$("$PYTHON" - <<'EOF'
import importlib.metadata as m
for name in ["numba-cuda", "pytest-benchmark", "py-cpuinfo2"]:
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        print(name)
EOF
)
    mkdir -p .whl
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $pins || exit 1
    ls -l .whl
    du -sh .whl
    echo "carry .whl in the device call (it is git-ignored)"
    exit 0
fi

OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
if [ "$mode" = sim ]; then
    export NUMBA_ENABLE_CUDASIM=1
    sizes=${GPU_CHECK_SIZES:-1e3}
    timing=(--benchmark-min-rounds=1 --benchmark-max-time=0 --cuda-sim)
else
    # Set, so that tests/test_cuda.py never falls back to the simulator on its own.
    export NUMBA_ENABLE_CUDASIM=0
    sizes=${GPU_CHECK_SIZES:-1e8,1e6}
    timing=(--benchmark-min-rounds=5 --benchmark-max-time=0.25)
fi
summary=()
status=0
note() { summary+=("$1"); echo "== $1"; }

# -- 1. versions, and what is missing ---------------------------------------------------
{
    echo "# gpu_check.sh ($mode) $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(git status --porcelain 2>/dev/null | wc -l) paths changed since)"
    echo "## nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,compute_cap --format=csv
        timeout 30 nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    echo "## nvcc"
    if command -v nvcc >/dev/null; then nvcc --version | tail -2; else echo "nvcc: not found"; fi
} >"$OUT/env.txt" 2>&1

check_packages() {
    # Prints one line per requirement: "ok NAME VERSION", or "need DIST WHY".
    timeout 120 "$PYTHON" - <<'EOF'
import importlib, importlib.metadata as md, re, sys

def Version(text):  # "0.30.4" -> (0, 30, 4); enough to compare against the minimums
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])

REQUIRED = [  # module, distribution, minimum version (numbce's pyproject)
    ("numpy", "numpy", "1.26"),
    ("numba", "numba", "0.60"),
    ("numba.cuda", "numba-cuda", "0.20"),
    ("pytest", "pytest", "8"),
    ("pytest_benchmark", "pytest-benchmark", "4"),
    ("cpuinfo", "py-cpuinfo2", None),  # pytest-benchmark's dependency (py-cpuinfo works too)
]
print(f"ok python {sys.version.split()[0]} ({sys.executable})")
for module, dist, least in REQUIRED:
    try:
        importlib.import_module(module)
    except Exception as error:  # noqa: BLE001
        print(f"need {dist} (import {module}: {type(error).__name__}: {error})")
        continue
    found = []
    for name in [dist, "py-cpuinfo"] if dist == "py-cpuinfo2" else [dist]:
        try:
            found.append((name, md.version(name)))
        except md.PackageNotFoundError:
            pass
    if not found and dist == "numba-cuda":  # Numba's own deprecated numba.cuda
        print("need numba-cuda (numba.cuda is Numba's built-in one)")
        continue
    name, version = found[0] if found else (dist, "?")
    if least and version != "?" and Version(version) < Version(least):
        print(f"need {dist} ({version} < {least})")
    else:
        print(f"ok {name} {version}")
EOF
}

packages=$(check_packages 2>&1)
needed=$(echo "$packages" | awk '$1 == "need" {print $2}')
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=$(mktemp -d /tmp/numbce-gpu-site.XXXXXX)
trap 'rm -rf "$SITE"' EXIT
for dist in $needed; do
    wheel=$(ls "$WHEELS/$(echo "$dist" | tr - _)"-*.whl 2>/dev/null | head -1)
    if [ -n "$wheel" ]; then
        echo "installing $wheel into $SITE" >>"$OUT/env.txt"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$SITE" "$wheel" >>"$OUT/env.txt" 2>&1
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
done
[ -n "$needed" ] && packages=$(check_packages 2>&1)
missing=$(echo "$packages" | awk '$1 == "need" {print $2}' | xargs)

{
    echo "## python packages"
    echo "$packages"
    [ -n "$missing" ] && echo "MISSING: $missing (no wheel in $WHEELS/: run 'bash bench/gpu_check.sh --download-wheels' where pip has network, and carry .whl)"
    timeout 120 "$PYTHON" - <<'EOF'
import importlib.metadata as md, os
for dist in ["llvmlite", "cuda-bindings", "cuda-core", "torch", "pytest-xdist", "cupy-cuda13x"]:
    try:
        print(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist}: not installed")
try:
    import torch
    print(f"torch CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}",
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as error:  # noqa: BLE001
    print(f"torch: {type(error).__name__}: {error}")
try:
    import ctypes.util
    from numba import cuda
    from numba.core import config
    print("NUMBA_ENABLE_CUDASIM:", os.environ.get("NUMBA_ENABLE_CUDASIM", "unset"),
          "| libcuda found by ctypes:", ctypes.util.find_library("cuda"))
    print("numba.cuda available:", cuda.is_available())
    if cuda.is_available() and not config.ENABLE_CUDASIM:
        device = cuda.get_current_device()
        print(f"device: {device.name}, compute capability {device.compute_capability}, "
              f"{device.MULTIPROCESSOR_COUNT} SMs")
        print("CUDA driver API version:", cuda.cudadrv.driver.driver.get_version())
        print("CUDA runtime version:", cuda.runtime.get_version())
except Exception as error:  # noqa: BLE001
    print(f"numba.cuda: {type(error).__name__}: {error}")
import numbce
names = ["binary_cross_entropy_with_logits_grad_hess", "binary_cross_entropy_grad_hess",
         "sigmoid_focal_loss", "sigmoid_focal_loss_value_and_grad",
         "sigmoid_focal_loss_grad_hess"]
print("numbce", numbce.__file__, "has:", ", ".join(n for n in names if hasattr(numbce, n)) or "-",
      "| lacks:", ", ".join(n for n in names if not hasattr(numbce, n)) or "-")
EOF
} >>"$OUT/env.txt" 2>&1
grep -E "^(name|NVIDIA|ok python|ok numba|torch CUDA|device:|MISSING)" "$OUT/env.txt"
note "env: $OUT/env.txt${missing:+ (MISSING: $missing)}"
if [ "$mode" = gpu ] && ! grep -q "^numba.cuda available: True" "$OUT/env.txt"; then
    status=1
    note "WARNING: numba.cuda sees no usable GPU (env.txt says why): the GPU steps will skip"
fi

can_test=yes
for dist in numpy numba numba-cuda pytest; do
    case " $missing " in *" $dist "*) can_test=no ;; esac
done
can_bench=$can_test
for dist in pytest-benchmark py-cpuinfo2; do
    case " $missing " in *" $dist "*) can_bench=no ;; esac
done

# -- 2. the CUDA tests on the GPU ---------------------------------------------------------
if [ "$can_test" = yes ]; then
    workers=()
    if [ "$mode" = gpu ] && "$PYTHON" -c "import xdist" 2>/dev/null; then
        workers=(-n 8) # kernel variants compile in parallel (one CUDA context per worker)
    fi
    timeout -k 10 "${GPU_CHECK_TEST_TIMEOUT:-180}" "$PYTHON" -m pytest tests/test_cuda.py \
        -p no:cacheprovider -q -rs --durations=5 "${workers[@]}" \
        -k "${GPU_CHECK_TESTS_K:-}" --junitxml="$OUT/test_cuda.xml" >"$OUT/test_cuda.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && status=1
    if [ "$mode" = gpu ] && grep -q "needs a real GPU" "$OUT/test_cuda.log"; then
        status=1
        note "WARNING: tests/test_cuda.py skipped its gpu tests: it ran on the simulator"
    fi
    note "tests/test_cuda.py: exit $rc ($([ "$rc" = 124 ] && echo "timed out; " || true)$(tail -1 "$OUT/test_cuda.log"))"
else
    status=1
    note "tests/test_cuda.py: not run (MISSING: $missing)"
fi

# -- 3. the CUDA benchmarks, then their report --------------------------------------------
if [ "$can_bench" = yes ]; then
    # Past the deadline the remaining cases skip, so the JSON is written before the timeout.
    bench_timeout=${GPU_CHECK_BENCH_TIMEOUT:-200}
    timeout -k 10 "$bench_timeout" "$PYTHON" -m pytest bench/test_bench_cuda.py \
        -p no:cacheprovider -q -rs --benchmark-only --benchmark-warmup=off \
        --benchmark-columns=min,median,rounds --benchmark-sort=name "${timing[@]}" \
        --cuda-sizes="$sizes" -k "${GPU_CHECK_BENCH_K:-}" --deadline="$((bench_timeout - 40))" \
        --benchmark-json="$OUT/bench_cuda.json" >"$OUT/bench_cuda.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && status=1
    note "bench/test_bench_cuda.py: exit $rc ($([ "$rc" = 124 ] && echo "timed out; " || true)$(tail -1 "$OUT/bench_cuda.log"))"
    if [ -s "$OUT/bench_cuda.json" ]; then
        timeout 60 "$PYTHON" bench/report.py "$OUT/bench_cuda.json" --out "$OUT/RESULTS-cuda.md" \
            --plot "$OUT/throughput-cuda.png" >>"$OUT/bench_cuda.log" 2>&1
        rc=$?
        [ "$rc" -ne 0 ] && status=1
        note "bench/report.py: exit $rc ($OUT/RESULTS-cuda.md)"
    else
        status=1
        note "bench/report.py: not run (no benchmark JSON)"
    fi
else
    status=1
    note "bench/test_bench_cuda.py: not run (MISSING: $missing)"
fi

{
    printf '%s\n' "${summary[@]}"
    if [ -s "$OUT/RESULTS-cuda.md" ]; then
        echo
        sed -n '/^## CUDA/,/^## [^C]/p' "$OUT/RESULTS-cuda.md" | grep -v '^## [^C]'
    fi
} >"$OUT/summary.txt"
echo
cat "$OUT/summary.txt"
exit "$status"
