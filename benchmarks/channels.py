"""Benchmark: payload rates of the QKD-keyed channels, sender and receiver in one process, one core.

Goal (issue 14.2): the AES-256-GCM channel (``qnet.service.aead_channel``, re-keyed every second)
carries >= 500 MB/s of payload on the 2 cores; measured here on one, framing and opening both.
Keys come from the PRNG stand-in, ``secrets.token_bytes``, served as ETSI 014 keys.

Anchors, measured side by side on the same buffers:
- AES-GCM: a bare ``AESGCM.encrypt`` + ``decrypt`` under one key (what OpenSSL does with no framing,
  no key stream, no records);
- OTP: numpy's xor of the message with a pad, twice (encrypt and decrypt), with no MAC.

The OTP channel is timed twice: keys already at hand (the channel's own cost), and drawing them from
``secrets.token_bytes`` as it goes. Live, it is bound by the key rate instead: a frame of F bytes
spends F + 32 key bytes (the pad, and the Wegman-Carter MAC's hash key and pad), so its payload rate
is the key rate / (1 + 32 / F). The hot paths it had before (a generator xor and block-wise Horner
for the MAC's polynomial hash) are timed side by side at 1 MiB.

Run: python benchmarks/channels.py [--sizes 65536,1048576] [--aes-mib 512] [--otp-mib 64]
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable
from functools import partial
from itertools import count

from _common import best_of, emit, machine, one_core
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy import bitwise_xor, frombuffer, uint8

from qnet.security.its_mac import PRIME, poly_hash
from qnet.service.aead_channel import AESGCMReceiver, AESGCMSender
from qnet.service.otp_channel import MAC_KEY_BYTES, Key, OTPReceiver, OTPSender

KEY_RATES_MBPS = (1.0, 13.72, 100.0)
"""Secret-key rates (Mbit/s) to show the OTP channel's live bound at: a metro link's order, the record
13.72 Mbit/s of Yuan et al. over a 2 dB channel (J. Lightwave Technol. 36, 3427 (2018)), and 100."""


class PRNGKeys:
    """ETSI 014 in miniature over ``secrets.token_bytes``: enc_keys hands out fresh keys, dec_keys
    finds them by key_ID (and forgets them, as a KME does once both ends have them)."""

    def __init__(self) -> None:
        self._ids = count()
        self._keys: dict[str, bytes] = {}

    def _new(self, n: int) -> Key:
        key = Key(f"k{next(self._ids)}", secrets.token_bytes(n))
        self._keys[key.key_ID] = key.key
        return key

    def fetch(self, n: int) -> list[Key]:
        return [self._new(n)]

    def lookup(self, ids: list[str]) -> dict[str, bytes]:
        return {i: self._keys.pop(i) for i in ids if i in self._keys}


class HeldKeys(PRNGKeys):
    """The same keys, generated before the clock starts: the channel's own cost."""

    def __init__(self, frames: int, size: int) -> None:
        super().__init__()
        self._ready = [self._new(size + MAC_KEY_BYTES) for _ in range(frames)]
        self._ready.reverse()

    def fetch(self, n: int) -> list[Key]:
        return [self._ready.pop()] if self._ready else []


def horner(message: bytes, k: int) -> int:
    """The MAC's polynomial hash as it was: block-wise Horner over 0x01-marked 15-byte blocks."""
    acc = 0
    for i in range(0, len(message), 15):
        acc = (acc + int.from_bytes(b"\x01" + message[i:i + 15], "big")) * k % PRIME
    return acc


def pump(frame: Callable[[bytes], bytes], open_: Callable[[bytes], bytes], message: bytes, frames: int) -> bool:
    """Frame and open ``message`` ``frames`` times; whether the last arrived identical."""
    out = b""
    for _ in range(frames):
        out = open_(frame(message))
    return out == message


def aes_rows(size: int, total: int) -> dict[str, float]:
    message, frames = secrets.token_bytes(size), max(8, total // size)
    keys = PRNGKeys()
    sender, receiver = AESGCMSender(keys.fetch), AESGCMReceiver(keys.lookup)  # re-keyed every second
    chan_s, same = best_of(lambda: pump(sender.frame, receiver.open, message, frames))
    aead, nonce, header = AESGCM(secrets.token_bytes(32)), bytes(12), bytes(24)
    bare_s, _ = best_of(lambda: pump(lambda m: aead.encrypt(nonce, m, header),
                                     lambda c: aead.decrypt(nonce, c, header), message, frames))
    chan, bare = size * frames / chan_s / 1e6, size * frames / bare_s / 1e6
    print(f"AES-GCM channel, {size:>8} B frames: {chan:8.0f} MB/s of payload (frame + open, {len(sender.key_log)} "
          f"keys); bare AESGCM encrypt + decrypt {bare:8.0f} MB/s; ratio {chan / bare:.2f}; identical: {same}")
    return {f"aes_{size}_mb_per_s": chan, f"aes_anchor_{size}_mb_per_s": bare, f"aes_{size}_ratio": chan / bare}


def otp_rows(size: int, total: int) -> dict[str, float]:
    message, frames = secrets.token_bytes(size), max(4, total // size)
    pad = secrets.token_bytes(size)
    held_s: list[float] = []
    drawn_s: list[float] = []
    for _ in range(3):  # fresh keys each run: a key byte is never used twice
        for keys, times in ((HeldKeys(frames, size), held_s), (PRNGKeys(), drawn_s)):
            sender, receiver = OTPSender(keys.fetch), OTPReceiver(keys.lookup)
            times.append(best_of(partial(pump, sender.frame, receiver.open, message, frames), repeat=1)[0])
    xor_s, _ = best_of(lambda: pump(lambda m: bitwise_xor(frombuffer(m, uint8), frombuffer(pad, uint8)).tobytes(),
                                    lambda c: bitwise_xor(frombuffer(c, uint8), frombuffer(pad, uint8)).tobytes(),
                                    message, frames))
    mb = size * frames / 1e6
    held_r, drawn_r, xor_r = mb / sorted(held_s)[1], mb / sorted(drawn_s)[1], mb / xor_s
    per_byte = 1 + MAC_KEY_BYTES / size
    print(f"OTP channel,     {size:>8} B frames: {held_r:8.0f} MB/s of payload with keys at hand, {drawn_r:6.0f} "
          f"drawing them from secrets.token_bytes; numpy xor x2 {xor_r:8.0f} MB/s; ratio {held_r / xor_r:.3f}")
    bound = ", ".join(f"{k:g} Mbit/s key -> {k / per_byte:.4g} Mbit/s payload" for k in KEY_RATES_MBPS)
    print(f"    live bound: {per_byte:.6f} key bytes per payload byte (1 + 32/{size}): {bound}")
    return {f"otp_{size}_mb_per_s": held_r, f"otp_prng_{size}_mb_per_s": drawn_r,
            f"otp_anchor_{size}_mb_per_s": xor_r, f"otp_{size}_key_bytes_per_byte": per_byte}


def hot_paths(size: int = 1 << 20) -> dict[str, float]:
    """The OTP channel's two hot paths at ``size`` bytes, as they were and as they are."""
    a, b, k = secrets.token_bytes(size), secrets.token_bytes(size), secrets.randbelow(PRIME)
    timings = {
        "xor_generator": best_of(lambda: bytes(x ^ y for x, y in zip(a, b, strict=True)), repeat=1)[0],
        "xor_numpy": best_of(lambda: bitwise_xor(frombuffer(a, uint8), frombuffer(b, uint8)).tobytes())[0],
        "hash_horner": best_of(lambda: horner(a, k), repeat=1)[0],
        "hash_strided": best_of(lambda: poly_hash(a, k))[0],
    }
    assert poly_hash(a, k) == horner(a, k)
    rates = {name: size / s / 1e6 for name, s in timings.items()}
    print(f"hot paths at {size} B: xor {rates['xor_generator']:.1f} MB/s (generator) -> {rates['xor_numpy']:.0f} "
          f"(numpy); MAC hash {rates['hash_horner']:.1f} MB/s (block-wise Horner) -> {rates['hash_strided']:.0f} "
          f"(strided, equal tags): {rates['hash_strided'] / rates['hash_horner']:.0f}x")
    return {f"{name}_mb_per_s": r for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="65536,1048576", help="comma-separated frame sizes (bytes)")
    parser.add_argument("--aes-mib", type=int, default=512, help="payload per AES-GCM measurement (MiB)")
    parser.add_argument("--otp-mib", type=int, default=64, help="payload per OTP measurement (MiB)")
    args = parser.parse_args()
    print(f"machine: {machine()} ({one_core()})")
    start = time.perf_counter()
    result: dict[str, float | str] = {"benchmark": "channels"}
    for size in (int(s) for s in args.sizes.split(",")):
        result |= aes_rows(size, args.aes_mib << 20)
        result |= otp_rows(size, args.otp_mib << 20)
    result |= hot_paths()
    print(f"({time.perf_counter() - start:.0f} s)")
    emit(result)


if __name__ == "__main__":
    main()
