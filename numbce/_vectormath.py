"""Branch-free ``exp``, ``log``, ``log1p`` and ``log1p_unit`` that LLVM vectorizes (CPU
only), for float32 and float64, generated from one definition per function.

llvmlite's LLVM lowers ``math.exp``/``math.log1p`` to scalar libm calls, which stop a loop
from vectorizing; these use selects, integer bit operations and polynomials instead, so a
kernel loop that calls them runs on full SIMD registers (8 float32 or 4 float64 per ymm).

* ``exp`` (of ``z <= 0``, all the formulas need): ``e**z = 2**k * exp(r)``, ``k = round(z /
  ln 2)`` found with the 1.5 * 2**p shifter (no float-to-int conversion), ``r`` reduced
  with a two-part ``ln 2`` in two fmas (Cody-Waite), ``exp(r)`` by its Taylor series
  (degree 13 for float64, 7 for float32: truncation well under 0.1 ulp for ``|r| <=
  ln2/2``); ``2**k`` is built from exponent bits as two factors, so results near underflow
  (subnormal) are right too.
* ``log``/``log1p``: ``u = 2**k * m`` with ``m`` in [sqrt(2)/2, sqrt(2)) read from the bits,
  then fdlibm's/musl's ``log`` kernel (``s = f/(2+f)``, its Lg polynomial in ``s**2``);
  ``log1p`` adds the rounding error of ``u = 1 + z`` back (``c = (z - (u - 1)) / u``), which
  needs exact IEEE arithmetic: callers must not compile these with ``fastmath``.

Each is within 1 ulp (float64) or 1.5 ulp (float32) on the domain the formulas use
(``tests/test_vectormath.py``, against mpmath).
The functions are compiled on their own, with ``fastmath=False`` (set: a function compiled
once per signature would otherwise take the flags of its first caller), and inlined by LLVM
(``forceinline``: its ``alwaysinline``, so a kernel loop still vectorizes). Numba's own
inlining (``inline="always"``) gave loops of the same speed (measured per family and
dtype), but copies each callee's IR at every call site: twelve loss kernels took 11.5 s
to compile with it, 6.7 s without.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_BITS_OF = {types.float32: types.int32, types.float64: types.int64}


@intrinsic
def float_bits(typingctx, x):
    """The IEEE-754 bits of a float32/float64 as an int32/int64 (a bitcast; vectorizes)."""
    if x not in _BITS_OF:
        return None
    int_type = _BITS_OF[x]

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(int_type.bitwidth))

    return int_type(x), codegen


@intrinsic
def bits_float(typingctx, bits):
    """The float32/float64 whose IEEE-754 bits are the int32/int64 ``bits`` (a bitcast)."""
    float_of = {v: k for k, v in _BITS_OF.items()}
    if bits not in float_of:
        return None
    float_type = float_of[bits]

    def codegen(context, builder, signature, args):
        llvm_type = ir.FloatType() if float_type == types.float32 else ir.DoubleType()
        return builder.bitcast(args[0], llvm_type)

    return float_type(bits), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma``): exact on every CPU, one
    vector instruction where the CPU has FMA, a correct libm call where it has not (the
    bits are the same: unlike fastmath contraction, nothing is left to the compiler)."""
    if not (a == b == c and a in _BITS_OF):
        return None

    def codegen(context, builder, signature, args):
        llvm_type = ir.FloatType() if a == types.float32 else ir.DoubleType()
        function_type = ir.FunctionType(llvm_type, [llvm_type] * 3)
        name = "llvm.fma.f32" if a == types.float32 else "llvm.fma.f64"
        function = cgutils.get_or_insert_function(builder.module, function_type, name)
        return builder.call(function, args)

    return a(a, a, a), codegen


class Format(NamedTuple):
    """What the algorithms need to know of one floating-point format."""

    real: type  # np.float32 or np.float64
    integer: type  # the int of the same width
    mantissa_bits: int
    bias: int
    exp_min: float  # below: e**z rounds to 0
    exp_ln2_hi: float  # ln 2 with trailing zero bits: k * hi is exact
    exp_ln2_lo: float
    exp_taylor_degree: int
    log_ln2_hi: float
    log_ln2_lo: float
    log_poly: tuple  # Lg1, Lg2, ... : (log(1+s) - log(1-s))/s = 2 + s**2 * (Lg1 + Lg2 s**2 ...)
    sqrt_half_bits: int  # the bits of (just under) sqrt(2)/2
    subnormal_shift: int  # subnormal inputs of log are scaled by 2**shift first


FLOAT64 = Format(
    real=np.float64, integer=np.int64, mantissa_bits=52, bias=1023,
    exp_min=-746.0,
    exp_ln2_hi=6.93147180369123816490e-01, exp_ln2_lo=1.90821492927058770002e-10,
    exp_taylor_degree=13,
    log_ln2_hi=6.93147180369123816490e-01, log_ln2_lo=1.90821492927058770002e-10,
    log_poly=(6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
              2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
              1.479819860511658591e-01),
    sqrt_half_bits=0x3FE6A09E00000000, subnormal_shift=54,
)  # fmt: skip

FLOAT32 = Format(
    real=np.float32, integer=np.int32, mantissa_bits=23, bias=127,
    exp_min=-104.0,
    exp_ln2_hi=0.693145751953125, exp_ln2_lo=1.4286068203094172e-06,
    exp_taylor_degree=7,
    log_ln2_hi=6.9313812256e-01, log_ln2_lo=9.0580006145e-06,
    log_poly=(0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841),
    sqrt_half_bits=0x3F3504F3, subnormal_shift=25,
)  # fmt: skip


def make(fmt: Format):
    """``(exp, log, log1p, log1p_unit)`` for one format, as Numba functions inlined into their callers."""
    real, integer = fmt.real, fmt.integer
    zero, half, one, two = real(0.0), real(0.5), real(1.0), real(2.0)
    inf = real(math.inf)
    exp_min = real(fmt.exp_min)
    inv_ln2 = real(1.0 / math.log(2.0))
    shifter = real(1.5 * 2.0**fmt.mantissa_bits)
    shifter_bits = integer(((fmt.bias + fmt.mantissa_bits) << fmt.mantissa_bits)
                           | (1 << (fmt.mantissa_bits - 1)))  # fmt: skip
    exp_hi, exp_lo = real(fmt.exp_ln2_hi), real(fmt.exp_ln2_lo)
    taylor = tuple(
        real(1.0 / math.factorial(n)) for n in range(fmt.exp_taylor_degree, -1, -1)
    )
    log_hi, log_lo = real(fmt.log_ln2_hi), real(fmt.log_ln2_lo)
    log_poly = tuple(real(c) for c in reversed(fmt.log_poly))
    mantissa_mask = integer((1 << fmt.mantissa_bits) - 1)
    sqrt_half_bits = integer(fmt.sqrt_half_bits)
    wrap = integer((fmt.bias << fmt.mantissa_bits) - fmt.sqrt_half_bits)
    min_normal = real(np.finfo(real).tiny)
    subnormal_scale = real(2.0**fmt.subnormal_shift)
    subnormal_k = real(-fmt.subnormal_shift)
    bias, mantissa_bits = fmt.bias, fmt.mantissa_bits
    jit = numba.njit(nogil=True, error_model="numpy", fastmath=False, forceinline=True)

    @jit
    def exp(z):
        """``e**z`` for ``z <= 0`` (the only arguments the loss formulas pass: 0 below the
        format's underflow and at -inf, nan for nan). ``max`` keeps a nan first argument,
        which the arithmetic then carries: no special cases to select."""
        zc = max(z, exp_min)
        t = fma(zc, inv_ln2, shifter)
        kf = t - shifter
        k = np.int32(float_bits(t) - shifter_bits)  # int32: AVX2 has no int64 shifts
        r = fma(-kf, exp_lo, fma(-kf, exp_hi, zc))
        p = taylor[0]
        for c in taylor[1:]:
            p = fma(p, r, c)
        k_half = k >> 1
        scale_a = bits_float(integer((k_half + bias) << mantissa_bits))
        scale_b = bits_float(integer((k - k_half + bias) << mantissa_bits))
        return p * scale_a * scale_b

    @jit
    def log1p_parts(f):
        """``(s P, f**2 / 2)`` of fdlibm's ``log(1 + f) = f - f**2/2 + s P`` for ``|f|`` up
        to sqrt(2) - 1: ``s = f/(2+f)``, ``P = f**2/2 + s**2 Lg(s**2)``."""
        half_f2 = half * f * f
        s = f / (two + f)
        w = s * s
        poly = log_poly[0]
        for coefficient in log_poly[1:]:
            poly = fma(poly, w, coefficient)
        return s * fma(w, poly, half_f2), half_f2

    @jit
    def log_kernel(u, c, k_extra):
        """``log(2**k_extra * u) + c`` for a positive normal ``u``, ``c`` a small correction."""
        bits = integer(
            float_bits(u) + wrap
        )  # Numba widens int32 sums: narrow them back
        k = np.int32((bits >> mantissa_bits) - bias)
        f = bits_float(integer((bits & mantissa_mask) + sqrt_half_bits)) - one
        parts, half_f2 = log1p_parts(f)
        dk = real(k) + k_extra  # k is int32: AVX2 converts no int64 to float
        return fma(dk, log_hi, parts + fma(dk, log_lo, c) - half_f2 + f)

    @jit
    def log(z):
        """``log(z)`` for ``z >= 0`` (``-inf`` at 0; subnormals scaled first)."""
        subnormal = z < min_normal
        scaled = z * subnormal_scale if subnormal else z
        result = log_kernel(scaled, zero, subnormal_k if subnormal else zero)
        return -inf if z == zero else (result if z < inf else z)

    @jit
    def log1p_unit(z):
        """``log(1 + z)`` for ``0 <= z <= 1`` (``z = exp(-|x|)`` of a softplus): ``1 + z =
        2**k (1 + f)`` with ``f = z, k = 0`` up to 1/2, else ``f = z/2 - 1/2, k = 1``; both
        ``f`` are exact, so no rounding error of ``1 + z`` is left to correct and no
        exponent bits are read. ``|s|`` reaches 0.2 (the general kernel: 0.1716): the
        float32 polynomial holds there (0.79 ulp), the float64 one does not (38 ulps), so
        float64 takes :func:`log1p` (see the end of :func:`make`)."""
        big = z > half
        f = z * half - half if big else z
        parts, half_f2 = log1p_parts(f)
        return (
            parts + (log_lo if big else zero) - half_f2 + f + (log_hi if big else zero)
        )

    @jit
    def log1p(z):
        """``log(1 + z)`` for ``-1 <= z <= 1`` (``-inf`` at -1)."""
        u = one + z
        c = (z - (u - one)) * (
            one / u
        )  # 1/u: callers computing sigmoid share the division
        return -inf if u == zero else log_kernel(u, c, zero)

    return exp, log, log1p, (log1p_unit if real is np.float32 else log1p)
