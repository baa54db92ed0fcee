"""Turn pytest-benchmark JSON into bench/RESULTS.md and bench/throughput.png.

    pytest bench/ --benchmark-only --benchmark-json=bench/results.json
    python bench/report.py bench/results.json

Times are the minimum over rounds (the least disturbed run on a shared machine); ratios
compare contestants of the same run, which is what holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
LIBRARIES = ["numbce", "numba", "llvmlite", "numpy", "torch", "scikit-learn", "dask"]


def _load(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data, data["benchmarks"]


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


def kernel_table(benchmarks: list[dict]) -> list[str]:
    """One row per (family, op, dtype, n): times, multiple of the floor, speed-ups."""
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite") != "kernels":
            continue
        key = (info["family"], info["op"], info["dtype"], info["n"])
        cells[key][info["contestant"]] = bench["stats"]["min"]
    lines = [
        (
            "| family | op | dtype | N | floor | numbce | numbce / floor | PyTorch | "
            "numbce speed-up vs PyTorch | NumPy | speed-up vs NumPy | scikit-learn |"
        ),
        "|" + " --- |" * 12,
    ]
    for (family, op, dtype, n), times in sorted(cells.items()):
        ours = times.get("numbce")
        if ours is None:
            continue

        def cell(name, times=times):
            return _time(times[name]) if name in times else "-"

        def speedup(name, times=times, ours=ours):
            return _ratio(times[name] / ours) if name in times else "-"

        floor = _ratio(ours / times["floor"]) if "floor" in times else "-"
        lines.append(
            f"| {family} | {op} | {dtype} | {n:.0e} | {cell('floor')} | {cell('numbce')} | "
            f"{floor} | {cell('pytorch')} | {speedup('pytorch')} | {cell('numpy')} | "
            f"{speedup('numpy')} | {cell('scikit-learn')} |"
        )
    return lines


def other_tables(benchmarks: list[dict]) -> list[str]:
    """The other suites (mlp, dask, cuda, startup): each case's contestants and ratios."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite", "kernels") != "kernels":
            key = f"{info['suite']}: {info['case']}" if "case" in info else bench["group"]
            groups[key or bench["name"]].append(bench)
    lines = []
    for group, members in sorted(groups.items()):
        fastest = min(b["stats"]["min"] for b in members)
        lines += [f"\n**{group}**\n", "| contestant | time | vs fastest | details |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for bench in sorted(members, key=lambda b: b["stats"]["min"]):
            info = bench["extra_info"]
            details = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info.items()
                if k not in ("suite", "contestant")
            )
            lines.append(
                f"| {info.get('contestant', bench['name'])} | {_time(bench['stats']['min'])} "
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
    families, ops = ["logits", "probs"], ["forward", "grad", "fused"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True, sharey=True)
    for row, family in enumerate(families):
        for col, op in enumerate(ops):
            ax = axes[row][col]
            for name, points in sorted(series[family, op].items()):
                n, gbps = zip(*sorted(points), strict=True)
                style = {"linestyle": "--", "color": "black"} if name == "floor" else {}
                ax.plot(n, gbps, marker="o", label=name, **style)
            ax.set(xscale="log", yscale="log", title=f"{family}: {op} (float32)")
            if row == 1:
                ax.set_xlabel("N elements")
            if col == 0:
                ax.set_ylabel("GB/s of input and output moved")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json", type=Path, nargs="?", default=HERE / "results.json")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "throughput.png")
    args = parser.parse_args()
    data, benchmarks = _load(args.json)
    machine = data["machine_info"]
    threads = {b["extra_info"].get("threads") for b in benchmarks} - {None}
    header = [
        "# Benchmark results",
        "",
        (
            f"Generated by `bench/report.py` from `{args.json.name}` on "
            f"{datetime.date.today().isoformat()}; do not edit by hand."
        ),
        "",
        (
            f"- Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
            f"{machine.get('cpu', {}).get('count', '?')} logical cores; "
            f"threads per contestant: {', '.join(map(str, sorted(threads))) or '?'}"
        ),
        f"- Python {machine.get('python_version', '?')}; {_versions()}",
        "- Times: minimum over rounds, compilation excluded (warm-up call first).",
        (
            "- Floor: a Numba `prange` loop moving the same bytes (triad `a + 2b` for gradient "
            "and fused; `sum(a*b)` for forward)."
        ),
        "",
        "## Loss kernels",
        "",
        f"![throughput]({args.plot.name})",
        "",
    ]
    text = header + kernel_table(benchmarks)
    others = other_tables(benchmarks)
    if others:
        text += ["", "## Other suites"] + others
    args.out.write_text("\n".join(text) + "\n")
    if any(b["extra_info"].get("suite") == "kernels" for b in benchmarks):
        plot(benchmarks, args.plot)


if __name__ == "__main__":
    main()
