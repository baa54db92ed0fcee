"""Instructions per element of each kernel's vectorized loop, read from the assembly.

    python bench/instructions.py [--families NAME ...] [--dtypes float32 ...]

For each family, dtype and op (forward, grad, fused, grad_hess; no weights and the default
options, as the benchmarks call them; serial variant) this compiles the CPU kernel afresh
(a private cache directory: Numba shows no assembly for cached code), takes the loop block of its vector body (the block with the most
vector arithmetic that jumps back to itself) and divides its instruction count by the
elements one iteration handles (its index step). The figures depend on the CPU LLVM targets
(``NUMBA_CPU_NAME`` picks another), which the first line prints with the SIMD width used.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections import Counter

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numbce-asm-"))

import numpy as np
from llvmlite import binding
from numba import config

from numbce.cpu import SCALAR, Variant, _kernel, kernel_arguments
from numbce.losses import FAMILIES

OPS = {  # store_loss, reduce_loss, store_grad, store_hess
    "forward": (False, True, False, False),
    "grad": (False, False, True, False),
    "fused": (False, True, True, False),
    "grad_hess": (False, False, True, True),
}
VECTOR_ARITHMETIC = re.compile(
    r"^v(fmadd|fmsub|fnmadd|mul|add|sub|div|max|min)\w*[ps][sd]$"
)


def _loop(assembly: str) -> tuple[list[str], int]:
    """The vector loop's instructions and the elements one iteration handles: of the
    innermost loops (a label, the instructions up to the jump back to it, no other jump
    back inside), the one with the most vector arithmetic."""
    body = assembly.split(".Lfunc_end0")[0]  # the kernel itself, not its wrappers
    lines, labels = [], {}
    for line in body.splitlines():
        label = re.match(r"^(\.LBB\S+):", line)
        if label:
            labels[label.group(1)] = len(lines)
        elif line.startswith("\t") and not line.strip().startswith("."):
            lines.append(line.strip())
    spans = [(labels[target], end) for end, line in enumerate(lines)
             if line.startswith("j") and (target := line.split()[-1]) in labels
             and labels[target] <= end]  # fmt: skip
    innermost = [(a, b) for a, b in spans
                 if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in spans)]  # fmt: skip
    start, end = max(
        innermost,
        key=lambda span: sum(
            bool(VECTOR_ARITHMETIC.match(i.split()[0]))
            for i in lines[span[0] : span[1] + 1]
        ),
    )
    loop = lines[start : end + 1]
    compare = next(i for i in reversed(loop) if i.startswith("cmpq"))
    index = re.findall(r"%r\w+", compare)  # the loop's counter is compared to its end
    # The step: "addq $64, %r11", or "subq $-128, %r11" (128 does not fit in a byte)
    steps = [(1 if m.group(1) == "add" else -1) * int(m.group(2)) for i in loop
             if (m := re.match(r"(add|sub)q\s+\$(-?\d+), (%r\w+)$", i))
             and m.group(3) in index]  # fmt: skip
    return loop, steps[-1]


def measure(family: str, dtype: str, op: str) -> tuple[int, int, str, Counter]:
    """``(instructions, elements per iteration, register kind, opcode counts)``."""
    flags = OPS[op]
    interleave = FAMILIES[family].vector_interleave[0]  # N = 1e5, the in-cache kernel
    variant = Variant(family, dtype, *flags, SCALAR, SCALAR, False, False, interleave,
                      defaults=True)  # fmt: skip
    ones = np.ones(64, dtype=dtype)
    arguments = {"x": ones, "y": ones, "scalars": np.ones(7), "loss_out": ones.copy(),
                 "grad_out": ones.copy(), "hess_out": ones.copy(),
                 "blocks_out": np.empty((2, 1))}  # fmt: skip
    kernel = _kernel(variant)
    kernel(*(arguments[name] for name in kernel_arguments(variant)))
    lines, elements = _loop(next(iter(kernel.inspect_asm().values())))
    registers = "zmm" if any("zmm" in i for i in lines) else "ymm"
    return len(lines), elements, registers, Counter(i.split()[0] for i in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument(
        "--opcodes", action="store_true", help="list each loop's opcodes"
    )
    args = parser.parse_args()
    cpu = config.CPU_NAME or binding.get_host_cpu_name()
    print(f"LLVM CPU {cpu}")
    print("| family | dtype | op | instructions / iteration | elements / iteration | "
          "instructions / element | divisions / element | registers |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for family in args.families:
        for dtype in args.dtypes:
            for op in OPS:
                count, elements, registers, opcodes = measure(family, dtype, op)
                divisions = sum(
                    n for code, n in opcodes.items() if code.startswith("vdiv")
                )
                print(f"| {family} | {dtype} | {op} | {count} | {elements} | "
                      f"{count / elements:.2f} | {divisions / elements:.3f} | {registers} |")  # fmt: skip
                if args.opcodes:
                    print("  ", dict(opcodes.most_common()))


if __name__ == "__main__":
    main()
