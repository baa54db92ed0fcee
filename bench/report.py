"""Turn pytest-benchmark JSON into bench/RESULTS.md and bench/throughput.png.

    pytest bench/ --benchmark-only --benchmark-json=bench/results.json
    python bench/report.py bench/results.json [bench/results-mlp.json ...]

Several JSON files (runs of some suites each, perhaps on other days or machines) make one
report: each run's machine, date and BLAS libraries get a line, and a suite measured in a
later file replaces that suite of an earlier one.

Times are the minimum over rounds (the least disturbed run on a shared machine); ratios
compare contestants of the same run, which is what holds on a noisy machine. The JSON holds
statistics only (bench/conftest.py drops the per-round times). Rows that a disturbed run
can explain are flagged, in the tables and on the terminal:

* a contestant more than 10% faster than the memory floor moving the same bytes;
* a noisy timing: its median more than 1.5x its minimum;
* a busy machine: a 1-minute load average at least one above the core count while it ran
  (``extra_info['load']``, recorded by bench/conftest.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
LIBRARIES = [
    "numbce",
    "numba",
    "numba-cuda",
    "llvmlite",
    "numpy",
    "torch",
    "scikit-learn",
    "dask",
]
BELOW_FLOOR = 0.9
"""A contestant faster than this fraction of the floor's time is flagged."""
NOISE = 1.5
"""A timing whose median exceeds its minimum this many times is flagged as noisy."""


def _load(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data, data["benchmarks"]


def _suites(benchmarks: list[dict]) -> set[str]:
    return {b["extra_info"].get("suite", "kernels") for b in benchmarks}


def _machine_line(path: Path, data: dict, benchmarks: list[dict]) -> str:
    """The run of ``path``: its suites, date, machine, threads, CPU target and BLAS."""
    machine = data["machine_info"]
    threads = {b["extra_info"].get("threads") for b in benchmarks} - {None}
    measured = str(data.get("datetime") or "?")[:10]
    blas = f"; BLAS {machine['blas']}" if "blas" in machine else ""
    return (
        f"- {', '.join(sorted(_suites(benchmarks)))} (`{path.name}`, measured "
        f"{measured}): {machine.get('cpu', {}).get('brand_raw', '?')}, "
        f"{machine.get('cpu', {}).get('count', '?')} logical cores; threads per "
        f"contestant: {', '.join(map(str, sorted(threads))) or '?'}; LLVM CPU "
        f"{machine.get('llvm_cpu', '?')}, SIMD {machine.get('simd', '?')}{blas}"
    )


def _time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _ratio(value: float) -> str:
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def noise_flags(bench: dict, name: str) -> list[str]:
    """Why one timing may be disturbed: a noisy spread, a busy machine."""
    found = []
    stats, info = bench["stats"], bench["extra_info"]
    spread = (
        stats.get("median", stats["min"]) / stats["min"] if stats["min"] > 0 else 1.0
    )
    if spread > NOISE:
        found.append(f"{name} noisy (median {spread:.1f}x min)")
    load, cores = info.get("load"), info.get("cores")
    if load is not None and cores and load >= cores + 1:
        found.append(f"{name} ran on a busy machine (load {load:.1f} on {cores} cores)")
    return found


def row_flags(row: dict[str, dict], floor: str = "floor") -> list[str]:
    """Flags of one table row ``{contestant: benchmark}``: contestants implausibly faster
    than the floor, then each timing's noise flags."""
    found = []
    if floor in row:
        floor_time = row[floor]["stats"]["min"]
        for name, bench in sorted(row.items()):
            ratio = bench["stats"]["min"] / floor_time
            if name != floor and ratio < BELOW_FLOOR:
                found.append(
                    f"{name} {ratio:.2f}x the floor: faster than memory allows"
                )
    for name, bench in sorted(row.items()):
        found += noise_flags(bench, name)
    return found


def _rows(benchmarks: list[dict], suite: str) -> dict[tuple, dict[str, dict]]:
    """``{(family, op, dtype, n): {contestant: benchmark}}`` of one suite."""
    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite") == suite:
            key = (info["family"], info["op"], info["dtype"], info["n"])
            rows[key][info["contestant"]] = bench
    return rows


def kernel_table(benchmarks: list[dict], flagged: list[str] | None = None) -> list[str]:
    """One row per (family, op, dtype, n): times, multiple of the floor, speed-ups, flags
    (also appended to ``flagged``)."""
    lines = [
        (
            "| family | op | dtype | N | floor | numbce | numbce / floor | numbce out= | "
            "out= / floor | PyTorch | numbce speed-up vs PyTorch | NumPy | "
            "speed-up vs NumPy | scikit-learn | flags |"
        ),
        "|" + " --- |" * 15,
    ]
    for (family, op, dtype, n), row in sorted(_rows(benchmarks, "kernels").items()):
        times = {name: bench["stats"]["min"] for name, bench in row.items()}
        ours = times.get("numbce")
        if ours is None:
            continue
        flags = row_flags(row)
        if flags and flagged is not None:
            flagged.append(f"{family} {op} {dtype} n={n:.0e}: " + "; ".join(flags))

        def cell(name, times=times):
            return _time(times[name]) if name in times else "-"

        def speedup(name, times=times, ours=ours):
            return _ratio(times[name] / ours) if name in times else "-"

        def of_floor(name, times=times):
            both = name in times and "floor" in times
            return _ratio(times[name] / times["floor"]) if both else "-"

        lines.append(
            f"| {family} | {op} | {dtype} | {n:.0e} | {cell('floor')} | {cell('numbce')} | "
            f"{of_floor('numbce')} | {cell('numbce-out')} | {of_floor('numbce-out')} | "
            f"{cell('pytorch')} | {speedup('pytorch')} | {cell('numpy')} | "
            f"{speedup('numpy')} | {cell('scikit-learn')} | {'; '.join(flags)} |"
        )
    return lines


def cuda_table(benchmarks: list[dict], flagged: list[str] | None = None) -> list[str]:
    """One row per CUDA case: the copy floor, numbce (synchronised; its bandwidth as a
    share of the floor's), numbce without the final synchronisation, PyTorch, flags."""
    lines = [
        (
            "| family | op | dtype | N | floor (d2d copy) | numbce | numbce GB/s | "
            "% of copy bandwidth | numbce, no sync | kernel still running on return | "
            "PyTorch | numbce speed-up vs PyTorch | flags |"
        ),
        "|" + " --- |" * 13,
    ]
    for (family, op, dtype, n), row in sorted(_rows(benchmarks, "cuda").items()):
        if "numbce" not in row:
            continue
        ours = row["numbce"]["stats"]["min"]
        bytes_moved = row["numbce"]["extra_info"]["bytes"]
        floor = row.get("floor")
        share = f"{100 * floor['stats']['min'] / ours:.3g}%" if floor else "-"
        nosync = row.get("numbce-nosync")
        pending = (
            nosync["extra_info"].get("kernel_pending_on_return") if nosync else None
        )
        torch = row.get("torch")
        flags = row_flags(row)
        if flags and flagged is not None:
            flagged.append(f"cuda {family} {op} {dtype} n={n:.0e}: " + "; ".join(flags))
        lines.append(
            f"| {family} | {op} | {dtype} | {n:.0e} | "
            f"{_time(floor['stats']['min']) if floor else '-'} | {_time(ours)} | "
            f"{bytes_moved / ours / 1e9:.3g} | {share} | "
            f"{_time(nosync['stats']['min']) if nosync else '-'} | "
            f"{'-' if pending is None else ('yes' if pending else 'no')} | "
            f"{_time(torch['stats']['min']) if torch else '-'} | "
            f"{_ratio(torch['stats']['min'] / ours) if torch else '-'} | "
            f"{'; '.join(flags)} |"
        )
    return lines


def other_tables(benchmarks: list[dict], flagged: list[str] | None = None) -> list[str]:
    """The other suites (mlp, dask, startup): each case's contestants and ratios."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite", "kernels") not in ("kernels", "cuda"):
            key = (
                f"{info['suite']}: {info['case']}" if "case" in info else bench["group"]
            )
            groups[key or bench["name"]].append(bench)
    lines = []
    for group, members in sorted(groups.items()):
        fastest = min(b["stats"]["min"] for b in members)
        lines += [f"\n**{group}**\n", "| contestant | time | vs fastest | details |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for bench in sorted(members, key=lambda b: b["stats"]["min"]):
            info = bench["extra_info"]
            name = info.get("contestant", bench["name"])
            details = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info.items()
                if k not in ("suite", "contestant")
            )
            flags = noise_flags(bench, name)
            if flags:
                details += " | " + "; ".join(flags)
                if flagged is not None:
                    flagged.append(f"{group}: " + "; ".join(flags))
            lines.append(
                f"| {name} | {_time(bench['stats']['min'])} "
                f"| {_ratio(bench['stats']['min'] / fastest)} | {details} |"
            )
    return lines


def plot(benchmarks: list[dict], path: Path) -> None:
    """Throughput (GB/s moved) against N per contestant, float32, the floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite") == "kernels" and info["dtype"] == "float32":
            gbps = info["bytes"] / bench["stats"]["min"] / 1e9
            series[info["family"], info["op"]][info["contestant"]].append(
                (info["n"], gbps)
            )
    families = sorted({family for family, _ in series})
    ops = ["forward", "grad", "fused"]
    fig, axes = plt.subplots(
        len(families),
        3,
        figsize=(13, 3.5 * len(families)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for row, family in enumerate(families):
        for col, op in enumerate(ops):
            ax = axes[row][col]
            for name, points in sorted(series[family, op].items()):
                n, gbps = zip(*sorted(points), strict=True)
                style = {"linestyle": "--", "color": "black"} if name == "floor" else {}
                ax.plot(n, gbps, marker="o", label=name, **style)
            ax.set(xscale="log", yscale="log", title=f"{family}: {op} (float32)")
            if row == len(families) - 1:
                ax.set_xlabel("N elements")
            if col == 0:
                ax.set_ylabel("GB/s of input and output moved")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "json", type=Path, nargs="*", default=[HERE / "results.json"],
        help="runs of pytest-benchmark; a suite in a later one replaces an earlier's",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "throughput.png")
    args = parser.parse_args()
    runs = [(path, *_load(path)) for path in args.json]
    benchmarks, machines = [], []
    for index, (path, data, run) in enumerate(runs):
        later = set().union(*(_suites(r) for _, _, r in runs[index + 1 :]))
        kept = [b for b in run if b["extra_info"].get("suite", "kernels") not in later]
        if kept:
            benchmarks += kept
            machines.append(_machine_line(path, data, kept))
    machine = runs[-1][1]["machine_info"]
    suites = _suites(benchmarks)
    text = [
        "# Benchmark results",
        "",
        (
            f"Generated by `bench/report.py` from "
            f"{', '.join(f'`{path.name}`' for path in args.json)}; do not edit by hand."
        ),
        "",
        *machines,
        f"- Python {machine.get('python_version', '?')}; {_versions()}",
        (
            "- Times: minimum over rounds, compilation excluded (warm-up call first), "
            "but for the start-up suite's cold rows."
        ),
        (
            f"- Flags: a contestant under {BELOW_FLOOR}x the floor's time, a median over "
            f"{NOISE}x the minimum, a load average at least one above the core count."
        ),
    ]
    flagged: list[str] = []
    kernels = kernel_table(benchmarks, flagged)
    if len(kernels) > 2:
        text += [
            (
                "- Floor: a Numba `prange` loop moving the same bytes (triad `a + 2b` for "
                "gradient and fused; `sum(a*b)` for forward)."
            ),
            "",
            "## Loss kernels",
            "",
            f"![throughput]({args.plot.name})",
            "",
        ] + kernels
    cuda = cuda_table(benchmarks, flagged)
    if len(cuda) > 2:
        devices = {b["extra_info"].get("device") for b in benchmarks} - {None}
        text += [
            "",
            "## CUDA",
            "",
            (
                f"GPU: {', '.join(sorted(devices)) or '?'}. Every numbce and floor time ends "
                "with a device synchronisation; the floor is a device-to-device copy of the "
                "bytes the kernel reads and writes. 'No sync' times the call alone: a kernel "
                "still running when the call returns shows that the call did not wait for "
                "it (telling only where a kernel outlasts a Python call, N = 1e8)."
            ),
            "",
        ] + cuda
    others = other_tables(benchmarks, flagged)
    if others:
        text += ["", "## Other suites"] + others
    args.out.write_text("\n".join(text) + "\n")
    print(
        f"wrote {args.out}: {len(kernels) - 2} kernel rows, {len(cuda) - 2} CUDA rows, "
        f"{len(benchmarks)} benchmarks of suites {', '.join(sorted(suites))}"
    )
    if len(kernels) > 2:
        plot(benchmarks, args.plot)
        print(f"wrote {args.plot}")
    if flagged:
        print(
            f"warning: {len(flagged)} rows flagged (a disturbed run can explain them):"
        )
        for line in flagged:
            print(f"  {line}")


if __name__ == "__main__":
    main()
