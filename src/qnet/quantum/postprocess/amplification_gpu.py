"""Privacy amplification on a GPU: the modified Toeplitz hash (I_m | T') of :mod:`amplification`,
bit for bit, with CuPy's cuFFT.

Optional: CuPy is not a dependency of qnet and the CPU path stays the default; :func:`available`
says whether this one can run. The arithmetic is the CPU path's (float64 real FFTs of the seed's
length, exact while every convolution value, at most n, is far below 2^53), so both paths give the
same bits and the tests compare them wherever a GPU is present.

Keys travel packed (8 bits a byte, ``numpy.packbits`` order) and are unpacked on the device, so a
2^24-bit block moves 2 MiB each way instead of 16 MiB.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["available", "modified_toeplitz_hash_gpu", "modified_toeplitz_hash_packed"]

U8 = npt.NDArray[np.uint8]

_FINISH_SOURCE = """
extern "C" __global__ void finish(const double* conv, const unsigned char* head, unsigned char* out,
                                  long long m) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < m) out[i] = (unsigned char)(((long long)rint(conv[i]) & 1) ^ head[i]);
}
"""
_kernels: dict[str, Any] = {}


def available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    try:
        return bool(_cupy().cuda.runtime.getDeviceCount() > 0)
    except Exception:  # no CuPy, no driver or no device all mean "not available"
        return False


def modified_toeplitz_hash_gpu(key: Any, seed: Any, m: int) -> Any:
    """(I_m | T') x on the device: the same bits as ``amplification.modified_toeplitz_hash_pair``.

    Args:
        key: the n key bits (uint8 0/1), a CuPy or NumPy array; a NumPy array is copied over.
        seed: the n - 1 seed bits, likewise.
        m: output length, 0 <= m < n.

    Returns:
        the m output bits as a CuPy array on the current device.

    Raises:
        ValueError: if the lengths do not fit.
    """
    cp = _cupy()
    key = cp.ascontiguousarray(cp.asarray(key, dtype=cp.uint8))
    seed = cp.asarray(seed, dtype=cp.uint8)
    n = int(key.size)
    if not 0 <= m < max(n, 1) or (m > 0 and seed.size != n - 1):
        raise ValueError(f"need 0 <= m < n and a seed of n - 1 bits; got n={n}, m={m}, seed={seed.size}")
    if m == 0:
        return cp.zeros(0, dtype=cp.uint8)
    tail, size = n - m, _fast_len(seed.size)
    fft = importlib.import_module("cupyx.scipy.fft")
    spectrum = fft.rfft(_padded(cp, seed, size), overwrite_x=True)
    spectrum *= fft.rfft(_padded(cp, key[m:], size), overwrite_x=True)
    conv = fft.irfft(spectrum, size, overwrite_x=True)
    out = cp.empty(m, dtype=cp.uint8)
    _finish()((-(-m // 256),), (256,), (conv[tail - 1:], key, out, cp.int64(m)))
    return out


def modified_toeplitz_hash_packed(key_packed: U8, seed_packed: U8, n: int, m: int) -> U8:
    """Host to host: packed key (n bits) and seed (n - 1 bits) in, packed m output bits out."""
    cp = _cupy()
    key = cp.unpackbits(cp.asarray(key_packed))[:n]
    seed = cp.unpackbits(cp.asarray(seed_packed))[:n - 1]
    packed: U8 = cp.asnumpy(cp.packbits(modified_toeplitz_hash_gpu(key, seed, m)))
    return packed


def _cupy() -> Any:
    """CuPy, imported on first use (it is optional)."""
    return importlib.import_module("cupy")


def _padded(cp: Any, bits: Any, size: int) -> Any:
    """bits as float64, zero-padded to size, in one conversion pass (no separate pad copy)."""
    out = cp.empty(size, dtype=cp.float64)
    out[:bits.size] = bits
    out[bits.size:] = 0
    return out


def _fast_len(length: int) -> int:
    """cuFFT is fastest at powers of two; the CPU path picks 5-smooth lengths, same bits either way."""
    return 1 << max(int(length - 1).bit_length(), 1)


def _finish() -> Any:
    """Round, reduce mod 2 and xor with the key's head in one pass (compiled once per process)."""
    if "finish" not in _kernels:
        _kernels["finish"] = _cupy().RawKernel(_FINISH_SOURCE, "finish")
    return _kernels["finish"]
