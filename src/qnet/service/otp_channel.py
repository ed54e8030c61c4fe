"""A one-time-pad channel keyed by QKD keys (issue 14, item 2: the information-theoretic channel).

Transport-independent: :class:`OTPSender` turns messages into frames (bytes), :class:`OTPReceiver`
turns frames back into messages; what carries the frames (TCP, a file, a queue) is the caller's.
Each message byte consumes one key byte, and each frame 32 more for its Wegman-Carter MAC
(:mod:`qnet.security.its_mac`: a 16-byte hash key and a 16-byte one-time pad, both fresh per frame),
so the channel is information-theoretically secret and authentic as long as the keys are.

Keys come as ETSI GS QKD 014 hands them out: the sender's ``fetch(n)`` is its ``enc_keys`` (keys
with their key_IDs), the receiver's ``lookup(key_IDs)`` its ``dec_keys``. A frame names the key
bytes it used (key_ID, offset, length), so the two ends agree on them without any other negotiation.

Frame (big-endian)::

    b"QOTP" | seq u64 | refs u16 | refs x (id_len u8, key_ID, offset u32, length u32) | size u32
            | ciphertext (size bytes) | tag (16 bytes, over everything before it)

What the receiver refuses (:class:`FrameError`, nothing delivered, its state unchanged): a frame
that does not parse, a bad tag (a flipped bit anywhere), a ``seq`` other than the next one (a replay
or a reordered frame), and key bytes other than those right after the previous frame's (a key byte
used twice, or skipped). What the sender never does: use a key byte twice; when the keys run out it
raises :class:`KeyExhaustedError` and consumes nothing of the message it could not send (with
``wait_s``, after asking ``fetch`` again for that long). The key stream, its references and the
errors are shared with :mod:`~qnet.service.aead_channel` (:mod:`qnet.service._frames`), so the two
channels swap.

Speed: the pad is applied with numpy's xor, the tag over the whole frame with the strided
polynomial hash of :mod:`~qnet.security.its_mac`; live, the channel is bound by the key rate
(1 + 32 / size key bytes per message byte): ``benchmarks/channels.py``.

Written here: no library frames a one-time pad over externally supplied, identified keys.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import numpy as np

from qnet.errors import InvalidRequestError
from qnet.security.its_mac import PAD_BITS, MACKey, authenticate, verify
from qnet.service._frames import (
    Fetch,
    FrameError,
    Key,
    KeyExhaustedError,
    KeyFollower,
    KeyStream,
    Lookup,
    Ref,
    pack_refs,
    unpack_refs,
)

__all__ = ["MAC_KEY_BYTES", "FrameError", "Key", "KeyExhaustedError", "OTPReceiver", "OTPSender", "Ref"]

MAGIC = b"QOTP"
MAC_KEY_BYTES = 2 * PAD_BITS // 8
"""Key bytes each frame spends on its MAC: the hash key and the pad."""
_TAG_BYTES = PAD_BITS // 8
_MAX_MESSAGE = 1 << 30


class OTPSender:
    """Frames messages under one-time pads from ``fetch(n_bytes)`` (keys of at least that many
    bytes in all, or fewer when there are no more); when they are too few, asks again for up to
    ``wait_s`` seconds of ``clock`` (``sleep`` in between) before giving up."""

    def __init__(self, fetch: Fetch, *, wait_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._stream = KeyStream(fetch, wait_s=wait_s, clock=clock, sleep=sleep)
        self.seq = 0

    @property
    def key_bytes_used(self) -> int:
        """Key bytes spent so far (message bytes and 32 per frame)."""
        return self._stream.used

    def frame(self, message: bytes) -> bytes:
        """The frame of ``message``.

        Raises:
            KeyExhaustedError: when ``fetch`` cannot supply the key (nothing is consumed).
            InvalidRequestError: for a message over 1 GiB.
        """
        if len(message) > _MAX_MESSAGE:
            raise InvalidRequestError(f"a message of {len(message)} bytes is over the 1 GiB a frame holds")
        refs, pad = self._stream.take(len(message) + MAC_KEY_BYTES)
        header = _header(self.seq, refs, len(message))
        out = bytearray(len(header) + len(message) + _TAG_BYTES)  # one buffer: no copies of the message
        out[:len(header)] = header
        _xor_into(memoryview(out)[len(header):-_TAG_BYTES], message, memoryview(pad)[MAC_KEY_BYTES:])
        out[-_TAG_BYTES:] = authenticate(memoryview(out)[:-_TAG_BYTES], _mac_key(pad[:MAC_KEY_BYTES]))
        self.seq += 1
        return bytes(out)


class OTPReceiver:
    """Checks and opens frames, with keys from ``lookup(key_IDs)`` (key_ID -> key bytes)."""

    def __init__(self, lookup: Lookup) -> None:
        self._follower = KeyFollower(lookup)
        self.seq = 0

    def open(self, frame: bytes) -> bytes:
        """The message of ``frame``.

        Raises:
            FrameError: naming why the frame is refused (the receiver's state is unchanged).
        """
        seq, refs, size, start = _parse(frame)
        if seq != self.seq:
            raise FrameError(f"frame {seq} where frame {self.seq} is next (replayed or reordered)")
        pad, keys = self._follower.material(refs)
        if len(pad) != size + MAC_KEY_BYTES:
            raise FrameError(f"the frame's key bytes ({len(pad)}) do not cover its {size} bytes and MAC")
        if not verify(memoryview(frame)[:-_TAG_BYTES], frame[-_TAG_BYTES:], _mac_key(pad[:MAC_KEY_BYTES])):
            raise FrameError("the frame's tag does not match (forged or corrupted)")
        message = _xor(memoryview(frame)[start:start + size], memoryview(pad)[MAC_KEY_BYTES:])
        self._follower.advance(refs, keys)
        self.seq += 1
        return message


def _xor(data: bytes | memoryview, pad: bytes | memoryview) -> bytes:
    """data xor pad, byte by byte (numpy's xor: about 10 GB/s here; a generator of ints, 20 MB/s)."""
    return np.bitwise_xor(np.frombuffer(data, np.uint8), np.frombuffer(pad, np.uint8)).tobytes()


def _xor_into(out: memoryview, data: bytes, pad: memoryview) -> None:
    """Write data xor pad into ``out`` (a slice of the frame being built: no copy of the message)."""
    np.bitwise_xor(np.frombuffer(data, np.uint8), np.frombuffer(pad, np.uint8), out=np.frombuffer(out, np.uint8))


def _mac_key(material: bytes) -> MACKey:
    half = len(material) // 2
    return MACKey.from_bytes(material[:half], [material[half:]])


def _header(seq: int, refs: list[Ref], size: int) -> bytes:
    return MAGIC + struct.pack(">Q", seq) + pack_refs(refs) + struct.pack(">I", size)


def _parse(frame: bytes) -> tuple[int, list[Ref], int, int]:
    """(seq, refs, size, where the ciphertext starts).

    Raises:
        FrameError: for a frame that does not parse.
    """
    if frame[:4] != MAGIC:
        raise FrameError("not a qnet OTP frame (its magic is wrong)")
    if len(frame) < 12:
        raise FrameError("a truncated or malformed frame header")
    (seq,) = struct.unpack_from(">Q", frame, 4)
    refs, at = unpack_refs(frame, 12)
    if len(frame) < at + 4:
        raise FrameError("a truncated or malformed frame header")
    (size,) = struct.unpack_from(">I", frame, at)
    if len(frame) != at + 4 + size + _TAG_BYTES:
        raise FrameError(f"a frame of {len(frame)} bytes where its header says {at + 4 + size + _TAG_BYTES}")
    return seq, refs, size, at + 4
