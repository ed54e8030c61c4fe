"""One-way error reconciliation with polar codes (syndrome coding, successive-cancellation decoding).

Arikan's polar codes (IEEE Trans. Inf. Theory 55, 3051 (2009)) used for QKD reconciliation as in
Jouguet and Kunz-Jacques, Quantum Inf. Comput. 14, 329 (2014) and Nakassis and Mink, Proc. SPIE
9123 (2014): Alice computes u = x G_N with G_N = F^{(x)n}, F = [[1, 0], [1, 1]] (G_N is its own
inverse over GF(2)), and sends Bob only the frozen part u_F; Bob decodes u from his noisy copy by
successive cancellation (SC) with the frozen bits known, and re-encodes x. One message, no
interaction: the leak is exactly |F| bits per frame of N = 2^m bits.

**Rate adaptation.** The frozen set is chosen per frame from the estimated QBER p: the synthetic
channels of BSC(p) are ranked by their error probabilities under SC decoding (density evolution:
exact on quantised LLR densities for the first 2^12 channels, Gaussian approximation below), and the
most reliable ones carry information until the sum of their error probabilities (the SC union
bound) reaches the target frame error rate. A lower QBER frees more bits, a higher one freezes more:
the code rate follows the channel. Designs are cached per (N, p rounded up to 1e-4).

Written by hand in numba (the SC decoder is O(N log N)); no maintained Python package offers polar
syndrome decoding for QKD.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numba
import numpy as np
import numpy.typing as npt
from scipy.special import erfc

from qnet.physics.entropy import reconciliation_efficiency

__all__ = ["PolarResult", "frozen_set", "polar_encode", "polar_reconcile"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PolarResult:
    """The outcome of polar reconciliation of one frame.

    Attributes:
        corrected: Bob's decoded copy of Alice's bits (equal to them unless the frame failed).
        leak: bits Alice sent (the frozen part of u).
        syndrome: those bits.
    """

    corrected: U8 = field(repr=False)
    leak: int
    syndrome: U8 = field(repr=False)

    def efficiency(self, qber: float) -> float:
        """f = leak / (N h(QBER))."""
        return reconciliation_efficiency(self.leak, self.corrected.size, qber)


_SPLIT = 10.0  # below: tabulated phi; above: its asymptotic form


@functools.cache
def _phi_table() -> tuple[F64, F64]:
    """(log x, log phi(x)) on a grid of x in [1e-9, 10], phi computed by Gauss-Hermite quadrature
    of its definition phi(x) = 1 - E[tanh(U/2)], U ~ N(x, 2x)."""
    t, w = np.polynomial.hermite.hermgauss(120)
    xs = np.geomspace(1e-9, _SPLIT, 600)
    u = xs[:, None] + np.sqrt(4.0 * xs)[:, None] * t[None, :]
    phi = 1.0 - (np.tanh(u / 2.0) * w).sum(axis=1) / math.sqrt(math.pi)
    return np.log(xs), np.log(phi)


def _phi(x: F64) -> F64:
    """phi of Gaussian density evolution (Chung, Richardson, Urbanke, IEEE Comm. Lett. 5, 58
    (2001)): tabulated below 10, sqrt(pi/x) e^(-x/4) (1 - 10/(7x)) above."""
    x = np.maximum(x, 1e-9)
    log_x, log_phi = _phi_table()
    small = np.exp(np.interp(np.log(np.minimum(x, _SPLIT)), log_x, log_phi))
    large = np.sqrt(np.pi / x) * np.exp(-x / 4.0) * (1.0 - 10.0 / (7.0 * x))
    return np.where(x < _SPLIT, small, large)


def _phi_inv(y: F64) -> F64:
    """Inverse of :func:`_phi`: from the table above phi(10), Newton steps on log(phi) below."""
    log_x, log_phi = _phi_table()
    log_y = np.log(np.clip(y, 1e-300, 1.0))
    x = np.exp(np.interp(-log_y, -log_phi, log_x))  # log phi decreases: interpolate on its negative
    big = log_y < log_phi[-1]
    if np.any(big):
        t, target = np.full(int(big.sum()), _SPLIT), log_y[big]
        for _ in range(40):
            f = 0.5 * np.log(np.pi / t) - t / 4.0 + np.log1p(-10.0 / (7.0 * t)) - target
            df = -0.5 / t - 0.25 + (10.0 / 7.0) / (t * t * (1.0 - 10.0 / (7.0 * t)))
            t = np.maximum(t - f / df, _SPLIT)
        x[big] = t
    return x


_EXACT_LEVELS = 12  # exact density evolution for the first 2^12 synthetic channels, then Gaussian
_BINS_PER_LLR = 8  # LLR grid: the BSC's LLR L = log((1-p)/p) spans 8 bins
_LLR_MAX = 48.0  # LLRs beyond this are clipped (error probabilities below e^-48 do not matter)


def _bsc_density(p: float) -> tuple[F64, int, float]:
    """The LLR density of BSC(p) on a symmetric grid: (probabilities, index of zero, bin width)."""
    llr = math.log((1.0 - p) / p)
    delta = llr / max(1, round(llr * _BINS_PER_LLR))
    half = round(_LLR_MAX / delta)
    density = np.zeros(2 * half + 1)
    density[half + round(llr / delta)] += 1.0 - p
    density[half - round(llr / delta)] += p
    return density, half, delta


def _variable_node(h: F64, half: int) -> F64:
    """Density of the sum of two independent LLRs with density h (per row; the plus channel),
    by FFT convolution, clipped to the grid."""
    width = h.shape[1]
    size = 1 << math.ceil(math.log2(2 * width - 1))
    spectrum = np.fft.rfft(h, size, axis=1)
    conv = np.maximum(np.fft.irfft(spectrum * spectrum, size, axis=1)[:, : 2 * width - 1], 0.0)
    out = conv[:, half:half + width].copy()
    out[:, 0] += conv[:, :half].sum(axis=1)
    out[:, -1] += conv[:, half + width:].sum(axis=1)
    return out


def _check_node(h: F64, half: int) -> F64:
    """Density of sign(a) sign(b) min(|a|, |b|) for independent a, b with density h (per row; the
    minus channel under the decoder's min-sum rule), from tail sums in O(bins)."""
    pos, neg = h[:, half:].copy(), h[:, half::-1].copy()  # by magnitude 0..half
    pos[:, 0] = neg[:, 0] = h[:, half] / 2.0  # a zero LLR counts half to each sign

    def above(a: F64) -> F64:  # sum over strictly larger magnitudes
        tail = np.cumsum(a[:, ::-1], axis=1)[:, ::-1]
        return np.concatenate([tail[:, 1:], np.zeros((a.shape[0], 1))], axis=1)

    tp, tn = above(pos), above(neg)
    same = 2.0 * (pos * tp + neg * tn) + pos * pos + neg * neg
    differ = 2.0 * (pos * tn + neg * tp) + 2.0 * pos * neg
    out = np.zeros_like(h)
    out[:, half:] += same
    out[:, : half + 1] += differ[:, ::-1]
    return out


def _split(values: F64, minus: F64, plus: F64) -> F64:
    """Interleave children: each channel is followed by its minus (first) and plus (second) child."""
    out = np.empty((2 * values.shape[0], *values.shape[1:]))
    out[0::2], out[1::2] = minus, plus
    return out


@functools.cache
def _gaussian_capacity_table() -> tuple[F64, F64]:
    """(capacities, means) of the binary-input channel with LLR ~ N(m, 2m), m on a log grid."""
    t, w = np.polynomial.hermite.hermgauss(120)
    means = np.geomspace(1e-6, 400.0, 2000)
    u = means[:, None] + np.sqrt(4.0 * means)[:, None] * t[None, :]
    caps = 1.0 - (np.logaddexp(0.0, -u) * w).sum(axis=1) / math.sqrt(math.pi) / math.log(2.0)
    return caps, means


@functools.cache
def _error_probabilities(n: int, p: float) -> F64:
    """Error probability of each of the N synthetic channels of BSC(p) under SC decoding.

    Exact density evolution (quantised LLR densities, Mori and Tanaka, IEEE Comm. Lett. 13, 519
    (2009)) for the first levels, where the BSC's two-valued LLR is far from Gaussian; then Gaussian
    approximation (Trifonov, IEEE Trans. Commun. 60, 3221 (2012)), each channel entering it with the
    Gaussian mean of equal capacity: a minus child of mean m has phi^-1(1 - (1 - phi(m))^2), a plus
    child 2m, and a channel of mean m errs with probability Q(sqrt(m/2)).
    """
    density, half, delta = _bsc_density(p)
    h = density[None, :]
    for _ in range(min(_EXACT_LEVELS, int(math.log2(n)))):
        h = _split(h, _check_node(h, half), _variable_node(h, half))
        h /= h.sum(axis=1, keepdims=True)
    if h.shape[0] == n:
        pe: F64 = h[:, :half].sum(axis=1) + 0.5 * h[:, half]
        return pe
    llrs = (np.arange(h.shape[1]) - half) * delta
    capacity = 1.0 - (h * np.logaddexp(0.0, -llrs)[None, :]).sum(axis=1) / math.log(2.0)
    caps, means = _gaussian_capacity_table()
    m = np.interp(np.clip(capacity, caps[0], caps[-1]), caps, means)
    while m.size < n:
        phi = _phi(m)
        m = _split(m, np.minimum(_phi_inv(2.0 * phi - phi * phi), m), 2.0 * m)
    return 0.5 * erfc(np.sqrt(m) / 2.0)  # type: ignore[no-any-return]


def frozen_set(n: int, qber: float, target_fer: float = 0.1) -> npt.NDArray[np.bool_]:
    """Frozen positions for a frame of n = 2^m bits at QBER ``qber``: every synthetic channel
    except the most reliable ones whose error probabilities sum to at most ``target_fer``."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"polar frames must be a power of two, got {n}")
    design = math.ceil(min(max(qber, 1e-4), 0.49) * 1e4) / 1e4  # rounded up: cached, conservative
    pe = _error_probabilities(n, design)
    order = np.argsort(pe, kind="stable")
    info = int(np.searchsorted(np.cumsum(pe[order]), target_fer, side="right"))
    frozen = np.ones(n, dtype=bool)
    frozen[order[:info]] = False
    return frozen


@numba.njit(cache=True)
def _transform(u: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """x = u G_N, in place on a copy (butterflies of F^{(x)m})."""
    x = u.copy()
    n = x.size
    half = n // 2
    while half >= 1:
        for start in range(0, n, 2 * half):
            for i in range(start, start + half):
                x[i] ^= x[i + half]
        half //= 2
    return x


def polar_encode(u: U8) -> U8:
    """x = u G_N over GF(2); G_N is an involution, so this also computes u from x."""
    return _transform(np.ascontiguousarray(u, dtype=np.uint8))


@numba.njit(cache=True)
def _boxplus(a: float, b: float) -> float:
    """LLR of the XOR of two bits (min-sum approximation with its sign rule)."""
    s = 1.0 if (a >= 0) == (b >= 0) else -1.0
    return s * min(abs(a), abs(b))


@numba.njit(cache=True)
def _sc(llr: npt.NDArray[np.float64], frozen: npt.NDArray[np.bool_], values: npt.NDArray[np.uint8],
        u: npt.NDArray[np.uint8], offset: int) -> npt.NDArray[np.uint8]:
    """Successive-cancellation decoding of the frame with channel LLRs ``llr``; writes the decided
    u bits at ``offset`` and returns the re-encoded codeword x."""
    n = llr.size
    if n == 1:
        bit = values[offset] if frozen[offset] else (1 if llr[0] < 0 else 0)
        u[offset] = bit
        out = np.empty(1, dtype=np.uint8)
        out[0] = bit
        return out
    half = n // 2
    left = np.empty(half)
    for i in range(half):
        left[i] = _boxplus(llr[i], llr[i + half])
    c1 = _sc(left, frozen, values, u, offset)
    right = np.empty(half)
    for i in range(half):
        right[i] = llr[i + half] + (llr[i] if c1[i] == 0 else -llr[i])
    c2 = _sc(right, frozen, values, u, offset + half)
    x = np.empty(n, dtype=np.uint8)
    for i in range(half):
        x[i] = c1[i] ^ c2[i]
        x[i + half] = c2[i]
    return x


def polar_reconcile(alice: U8, bob: U8, qber: float, *, target_fer: float = 0.1) -> PolarResult:
    """Reconcile one frame of n = 2^m bits by polar syndrome coding.

    Args:
        alice: Alice's bits.
        bob: Bob's bits, same length.
        qber: the estimated error rate (sets the frozen set and Bob's LLRs).
        target_fer: the frame error rate the frozen set is designed for (SC union bound).
    """
    n = alice.size
    if bob.size != n:
        raise ValueError(f"alice and bob must have the same length, got {n} and {bob.size}")
    frozen = frozen_set(n, qber, target_fer)
    u_alice = polar_encode(alice)
    syndrome = u_alice[frozen]
    values = np.zeros(n, dtype=np.uint8)
    values[frozen] = syndrome
    p = min(max(qber, 1e-9), 0.5 - 1e-9)
    llr = (1.0 - 2.0 * bob.astype(np.float64)) * math.log((1.0 - p) / p)
    u_bob = np.zeros(n, dtype=np.uint8)
    corrected = _sc(llr, frozen, values, u_bob, 0)
    return PolarResult(corrected, int(frozen.sum()), syndrome)
