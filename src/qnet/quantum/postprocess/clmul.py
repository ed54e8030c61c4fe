"""Toeplitz matrix-vector products over GF(2) with the CPU's carry-less multiply instruction.

Privacy amplification multiplies the key by a random Toeplitz matrix over GF(2). The FFT path in
``amplification`` computes it with three float64 FFTs of the key's length; this module computes the
same bits with the instruction x86 CPUs have for GF(2)[x] (PCLMULQDQ: two 64-bit polynomials to
their 128-bit product; VPCLMULQDQ does 2 or 4 at once on AVX2 or AVX-512 registers), at 2^24 bits
about five times faster than the FFT on one core.

Why by hand: no maintained Python package multiplies GF(2) polynomials with that instruction
(``galois`` works bit-wise in numba without it; gf2x, by Brent, Gaudry, Thomé and Zimmermann, and
NTL are C/C++ libraries with no maintained binding on PyPI). numba, already a dependency, emits the
instruction through an LLVM intrinsic; nothing here is compiled at install time.

Method:
- Words: n bits are n/64 little-endian 64-bit words, each a polynomial of degree < 64.
- An N x N Toeplitz matrix T[i, j] = s[i - j + N - 1] times x is the middle product: y_i is
  coefficient i + N - 1 of s(z) x(z). Shifting s up by one bit (s~ = z s) makes it coefficients
  [N, 2N) of s~ x: whole words.
- Split into 2 x 2 blocks [[T1, T0], [T2, T1]], T costs three half-size products (the two-way
  Toeplitz matrix-vector split of Fan and Hasan, IEEE Trans. Computers 56, 224 (2007)):
  P0 = T1 (x0 + x1), P1 = (T0 + T1) x1, P2 = (T2 + T1) x0; y0 = P0 + P1, y1 = P0 + P2. The
  matrices' sums are sums of their diagonals, word-wise xors of seed windows. O(N^1.585).
- At ``b`` words (a multiple of 8 up to 56; 32 for powers of two) a kernel multiplies directly: for
  each x word it multiplies a sliding window of seed words, landing every product on fixed
  accumulator registers (one set for products at even word offsets, one for odd), 2 b^2 / w
  instructions for w-word registers, unrolled in LLVM IR.
- The lowest levels of the split run breadth-first in one numba call over a cache-sized work array
  (a recursive numba call costs more than the xors of a small level); the top levels recurse in numpy.
- A rectangular matrix is tiled with square blocks of b 2^depth words, the tiling chosen for the
  least kernel work; every block's seed window starts on a word once the seed is shifted by
  ``pad`` bits.

The FFT is O(n log n) and the split O(n^1.585); ``amplification`` takes the FFT above
``CLMUL_MAX_BITS``, where it becomes the faster of the two on these machines.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.core import config as numba_config
from numba.extending import intrinsic

__all__ = ["CLMUL_MAX_BITS", "available", "toeplitz_product", "vector_words"]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

CLMUL_MAX_BITS = 1 << 28
"""Above this dimension the FFT takes over: `benchmarks/amplification.py --sweep` measured clmul 3.5x
faster at 2^26 key bits, 1.6x at 2^28, the ratio falling about 0.7x per doubling."""

_log = logging.getLogger(__name__)

_I64, _I32, _I8 = ir.IntType(64), ir.IntType(32), ir.IntType(8)
_INTRINSICS = {2: "llvm.x86.pclmulqdq", 4: "llvm.x86.pclmulqdq.256", 8: "llvm.x86.pclmulqdq.512"}
_BASES = (8, 16, 24, 32, 40, 48, 56)
_BREADTH_FIRST_LEVELS = 7


@functools.cache
def vector_words() -> int:
    """64-bit words per carry-less multiply on this CPU: 8 (AVX-512), 4 (AVX2), 2 (PCLMULQDQ) or 0
    (none, or numba told to compile for another CPU than this one)."""
    if getattr(numba_config, "CPU_NAME", None) not in (None, "host"):
        return 0
    features = llvm.get_host_cpu_features()
    words = 0
    if features.get("pclmul") and features.get("sse4.1"):
        words = 2
        if features.get("vpclmulqdq") and features.get("avx2"):
            words = 4
            if features.get("avx512f"):
                words = 8
    return words


@functools.cache
def available() -> bool:
    """True where this CPU has a carry-less multiply and a small product through it comes out right
    (checked once per process against Python's integers; any failure to compile means False)."""
    if vector_words() == 0:
        return False
    rng = np.random.default_rng(0)
    s, x = rng.integers(0, 2, 1023, dtype=np.uint8), rng.integers(0, 2, 512, dtype=np.uint8)
    try:
        got = _product(x, s, 512, vector_words())
    except Exception as exc:  # an LLVM that cannot emit the instruction: use the FFT
        _log.warning("carry-less multiply unavailable (%s); privacy amplification uses the FFT", exc)
        return False
    return bool(np.array_equal(got, _reference(x, s, 512)))


def _reference(x: U8, seed: U8, m: int) -> U8:
    """T x by Python integers: bit i of the product s(z) x(z) at i + nx - 1, shift-and-xor."""
    s_int = int.from_bytes(np.packbits(seed, bitorder="little").tobytes(), "little")
    x_int = int.from_bytes(np.packbits(x, bitorder="little").tobytes(), "little")
    product = 0
    while x_int:
        low = x_int & -x_int
        product ^= s_int * low
        x_int ^= low
    return np.array([(product >> (i + x.size - 1)) & 1 for i in range(m)], dtype=np.uint8)


def _declare(module: ir.Module, signature: ir.FunctionType, name: str) -> ir.Function:
    """The LLVM intrinsic ``name`` in ``module``, declared once."""
    existing = module.globals.get(name)
    return existing if existing is not None else ir.Function(module, signature, name=name)


def _kernel(b: int, w: int) -> Any:
    """An intrinsic: y[yo:yo+b] = words [b, 2b) of s[so:so+2b] * x[xo:xo+b], fully unrolled."""
    vec, v2 = ir.VectorType(_I64, w), ir.VectorType(_I64, 2)

    @intrinsic
    def kernel(typingctx: Any, s: Any, so: Any, x: Any, xo: Any, y: Any, yo: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            def address(i: int, offset: int) -> Any:
                data = context.make_array(signature.args[i])(context, builder, args[i]).data
                return builder.gep(data, [builder.add(args[i + 1], ir.Constant(_I64, offset))])

            def splat(value: Any, kind: ir.VectorType) -> Any:
                one = builder.insert_element(ir.Constant(kind, ir.Undefined), value, ir.Constant(_I32, 0))
                return builder.shuffle_vector(one, ir.Constant(kind, ir.Undefined),
                                              ir.Constant(ir.VectorType(_I32, kind.count), [0] * kind.count))

            wide = _declare(builder.module, ir.FunctionType(vec, [vec, vec, _I8]), _INTRINSICS[w])
            narrow = _declare(builder.module, ir.FunctionType(v2, [v2, v2, _I8]), _INTRINSICS[2])
            even = [ir.Constant(vec, None)] * (b // w)
            odd = [ir.Constant(vec, None)] * (b // w)
            edge = ir.Constant(_I64, 0)
            for j in range(b):
                xj = builder.load(address(2, j), align=8)
                xs = splat(xj, vec)
                for t in range(b // w):  # seed words b - j + w t + (0..w-1): products land on b + w t + ...
                    window = builder.load(builder.bitcast(address(0, b - j + w * t), vec.as_pointer()), align=8)
                    even[t] = builder.xor(even[t], builder.call(wide, [window, xs, ir.Constant(_I8, 0x00)]))
                    odd[t] = builder.xor(odd[t], builder.call(wide, [window, xs, ir.Constant(_I8, 0x01)]))
                below = builder.load(address(0, b - j - 1), align=8)  # its high word lands on word b
                product = builder.call(narrow, [splat(below, v2), splat(xj, v2), ir.Constant(_I8, 0)])
                edge = builder.xor(edge, builder.extract_element(product, ir.Constant(_I32, 1)))
            previous = builder.insert_element(ir.Constant(vec, None), edge, ir.Constant(_I32, w - 1))
            shift = ir.Constant(ir.VectorType(_I32, w), [w - 1, *range(w, 2 * w - 1)])
            for t in range(b // w):  # odd products sit one word up
                out = builder.xor(even[t], builder.shuffle_vector(previous, odd[t], shift))
                builder.store(out, builder.bitcast(address(4, w * t), vec.as_pointer()), align=8)
                previous = odd[t]
            return context.get_dummy_value()

        return types.void(s, so, x, xo, y, yo), codegen

    return kernel


@njit(cache=True, nogil=True, inline="always")
def _split_level(seed: U64, seeds: U64, x: U64, xs: U64, h: int) -> None:
    """The three children's seeds (T1, T0 + T1, T2 + T1) and vectors (x0 + x1, x1, x0).

    Every loop here runs on slices: indexing one array at two offsets keeps LLVM from vectorising.
    """
    low, middle, high = seed[:2 * h], seed[h:3 * h], seed[2 * h:4 * h]
    s0, s1, s2 = seeds[:2 * h], seeds[2 * h:4 * h], seeds[4 * h:6 * h]
    for i in range(2 * h):
        t1 = middle[i]
        s0[i] = t1
        s1[i] = low[i] ^ t1
        s2[i] = high[i] ^ t1
    x0, x1 = x[:h], x[h:2 * h]
    v0, v1, v2 = xs[:h], xs[h:2 * h], xs[2 * h:3 * h]
    for i in range(h):
        v0[i] = x0[i] ^ x1[i]
        v1[i] = x1[i]
        v2[i] = x0[i]


@njit(cache=True, nogil=True, inline="always")
def _join_level(products: U64, y: U64, h: int) -> None:
    """y0 = P0 + P1, y1 = P0 + P2 from the children's products (P0 | P1 | P2)."""
    p0, p1, p2 = products[:h], products[h:2 * h], products[2 * h:3 * h]
    y0, y1 = y[:h], y[h:2 * h]
    for i in range(h):
        y0[i] = p0[i] ^ p1[i]
        y1[i] = p0[i] ^ p2[i]


@njit(cache=True, nogil=True)
def _expand(work: U64, levels: npt.NDArray[np.int64]) -> None:
    """Each level's problems split into three children, breadth-first (layout: ``_levels``)."""
    count = 1
    for level in range(levels.shape[0] - 1):
        size, h = levels[level, 3], levels[level, 3] // 2
        seeds, vectors = levels[level, 0], levels[level, 1]
        child_seeds, child_vectors = levels[level + 1, 0], levels[level + 1, 1]
        for p in range(count):
            sp, xp = seeds + 2 * size * p, vectors + size * p
            cs, cx = child_seeds + 3 * size * p, child_vectors + 3 * h * p
            _split_level(work[sp:sp + 4 * h], work[cs:cs + 6 * h], work[xp:xp + 2 * h], work[cx:cx + 3 * h], h)
        count *= 3


@njit(cache=True, nogil=True)
def _join(work: U64, levels: npt.NDArray[np.int64]) -> None:
    """Each problem's product from its three children's, deepest level first."""
    count = 3 ** (levels.shape[0] - 1)
    for level in range(levels.shape[0] - 2, -1, -1):
        count //= 3
        size, h = levels[level, 3], levels[level, 3] // 2
        for p in range(count):
            yp, cy = levels[level, 2] + size * p, levels[level + 1, 2] + 3 * h * p
            _join_level(work[cy:cy + 3 * h], work[yp:yp + 2 * h], h)


@functools.cache
def _leaves(b: int, w: int) -> Callable[..., None]:
    """The kernel over ``count`` consecutive problems of the deepest level, for a narrower width than
    this CPU's (tests); the CPU's own width runs ``_host_leaves``, which numba caches on disk."""
    kernel = _kernel(b, w)

    @njit(nogil=True)
    def run(work: U64, seeds: int, vectors: int, products: int, count: int, b_: int) -> None:
        # b_ (== b) keeps the call the same as _host_leaves'
        for p in range(count):
            kernel(work, seeds + 2 * b * p, work, vectors + b * p, work, products + b * p)

    return run


_K8, _K16, _K24, _K32, _K40, _K48, _K56 = (_kernel(b, max(vector_words(), 2)) for b in _BASES)


@njit(cache=True, nogil=True)
def _host_leaves(work: U64, seeds: int, vectors: int, products: int, count: int, b: int) -> None:
    """The kernel of size b over ``count`` consecutive problems, at this CPU's width. One function for
    every b so that numba's on-disk cache holds them all: compiled once per machine, not per process
    (numba needs each intrinsic named statically, hence the chain of branches)."""
    for p in range(count):
        s, x, y = seeds + 2 * b * p, vectors + b * p, products + b * p
        if b == 8:
            _K8(work, s, work, x, work, y)
        elif b == 16:
            _K16(work, s, work, x, work, y)
        elif b == 24:
            _K24(work, s, work, x, work, y)
        elif b == 32:
            _K32(work, s, work, x, work, y)
        elif b == 40:
            _K40(work, s, work, x, work, y)
        elif b == 48:
            _K48(work, s, work, x, work, y)
        else:
            _K56(work, s, work, x, work, y)


@functools.cache
def _levels(n: int, depth: int) -> tuple[npt.NDArray[np.int64], int]:
    """Offsets in the work array of each level's seeds, vectors and products, its problem size,
    and the work array's length: level l holds 3^l problems of n / 2^l words."""
    rows, at = [], 0
    for level in range(depth + 1):
        size, count = n >> level, 3 ** level
        rows.append((at, at + 2 * size * count, at + 3 * size * count, size))
        at += 4 * size * count
    return np.array(rows, dtype=np.int64), at


def _breadth_first(s: U64, x: U64, y: U64, b: int, depth: int, work: U64, width: int) -> None:
    """y = words [n, 2n) of s x, n = b 2^depth, every level in one pass over ``work``."""
    levels, _ = _levels(b << depth, depth)
    n = b << depth
    work[:2 * n] = s
    work[levels[0, 1]:levels[0, 1] + n] = x
    _expand(work, levels)
    leaves = _host_leaves if width == vector_words() else _leaves(b, width)
    leaves(work, levels[depth, 0], levels[depth, 1], levels[depth, 2], 3 ** depth, b)
    _join(work, levels)
    y[:] = work[levels[0, 2]:levels[0, 2] + n]


def _split(s: U64, x: U64, y: U64, b: int, depth: int, work: U64, width: int) -> None:
    """y = words [n, 2n) of s x for n = b 2^depth: the top levels of the split, in numpy."""
    if depth <= _BREADTH_FIRST_LEVELS:
        _breadth_first(s, x, y, b, depth, work, width)
        return
    h = x.size // 2
    _split(s[h:3 * h], x[:h] ^ x[h:], y[:h], b, depth - 1, work, width)  # P0 = T1 (x0 + x1)
    y[h:] = y[:h]
    product = np.empty(h, dtype=np.uint64)
    _split(s[:2 * h] ^ s[h:3 * h], x[h:], product, b, depth - 1, work, width)  # P1 = (T0 + T1) x1
    y[:h] ^= product
    _split(s[2 * h:] ^ s[h:3 * h], x[:h], product, b, depth - 1, work, width)  # P2 = (T2 + T1) x0
    y[h:] ^= product


def _square_size(words: int) -> tuple[int, int]:
    """The kernel size b and the number of splits for the smallest b 2^levels >= words."""
    levels = 0
    while -(-words // (1 << levels)) > _BASES[-1]:
        levels += 1
    b = next(base for base in _BASES if base << levels >= words)
    return b, levels


_BLOCK_OVERHEAD = 100_000
"""The Python-side cost of one block in units of the kernel's b^2 (one block costs about 15 us, a
32-word kernel 0.14 us): it steers a skinny matrix to a few large blocks instead of many small ones."""


def _block_words(rows: int, cols: int) -> int:
    """The square block (words) that tiles a rows x cols matrix at the least work."""
    best, best_cost = 0, float("inf")
    for levels in range(24):
        for b in _BASES:
            size = b << levels
            cost = -(-rows // size) * -(-cols // size) * (3 ** levels * b * b + _BLOCK_OVERHEAD)
            if cost < best_cost:
                best, best_cost = size, cost
            if size > 2 * max(rows, cols):
                return best
    return best


def _pack(bits: U8, words: int, offset: int = 0) -> U64:
    """``bits`` placed at bit ``offset`` of a zeroed array of ``words`` little-endian words."""
    out = np.zeros(64 * words, dtype=np.uint8)
    out[offset:offset + bits.size] = bits
    return np.packbits(out, bitorder="little").view(np.uint64)


def _square_product(s: U64, x: U64, y: U64, width: int) -> None:
    """y = words [n, 2n) of s x: the n x n Toeplitz product, n = x.size = b 2^depth words."""
    b, depth = _square_size(x.size)
    assert b << depth == x.size, "blocks are sized b 2^depth by _block_words"
    bottom = min(depth, _BREADTH_FIRST_LEVELS)
    work = np.empty(_levels(b << bottom, bottom)[1], dtype=np.uint64)
    _split(s, x, y, b, depth, work, width)


def toeplitz_product(x: U8, seed: U8, m: int, *, width: int | None = None) -> U8:
    """T x for T[i, j] = seed[i - j + nx - 1] (i < m, j < nx = x.size), with carry-less multiplies.

    Args:
        x: nx bits, one per byte.
        seed: nx + m - 1 bits, the diagonals of T.
        m: output bits, >= 1.
        width: 64-bit words per multiply instruction, 2, 4 or 8 (default: the widest this CPU has;
            narrower ones are for tests).

    Raises:
        RuntimeError: if this CPU has no carry-less multiply (``available()`` is False).
        ValueError: if the lengths do not fit, or for a width this CPU does not have.
    """
    if not available():
        raise RuntimeError("this CPU has no carry-less multiply instruction (PCLMULQDQ); use the FFT path")
    if (width is not None and width not in (2, 4, 8)) or (width or 0) > vector_words():
        raise ValueError(f"width must be 2, 4 or 8 words and at most this CPU's {vector_words()}; got {width}")
    if m < 1 or x.size < 1 or seed.size != x.size + m - 1:
        raise ValueError(f"need m >= 1, nx >= 1 and a seed of nx + m - 1 bits; "
                         f"got nx={x.size}, m={m}, seed={seed.size}")
    return _product(x, seed, m, width or vector_words())


def _product(x: U8, seed: U8, m: int, width: int) -> U8:
    """``toeplitz_product`` without the checks: tile T into square blocks of b 2^depth words."""
    nx = x.size
    rows, cols = -(-m // 64), -(-nx // 64)
    size = _block_words(rows, cols)
    kr, kc = -(-rows // size), -(-cols // size)
    # z[q] = seed[q - pad]: every block's seed window then starts on a word (see the module docstring)
    pad = kc * 64 * size - nx + 1
    z = _pack(seed, size * (kr + kc), pad)
    xw = _pack(x, size * kc)
    y = np.zeros(size * kr, dtype=np.uint64)
    for i in range(kr):
        part = y[size * i:size * (i + 1)] if kc == 1 else np.empty(size, dtype=np.uint64)
        for j in range(kc):
            window = size * (i - j + kc - 1)
            _square_product(z[window:window + 2 * size], xw[size * j:size * (j + 1)], part, width)
            if kc > 1:
                y[size * i:size * (i + 1)] ^= part
    return np.unpackbits(y.view(np.uint8), bitorder="little")[:m]
