"""An AES-256-GCM channel re-keyed from QKD keys (issue 14, item 2: the fast channel).

The shape of :mod:`~qnet.service.otp_channel`, so that callers swap the two: :class:`AESGCMSender`
turns messages into frames (bytes), :class:`AESGCMReceiver` turns frames back into messages, and
what carries the frames is the caller's. Each AES key is 32 bytes of the QKD key stream (ETSI 014
keys from ``fetch``, as in the OTP channel; one AES key may span several of them), used for the
frames of at most ``rekey_bytes`` message bytes and ``rekey_s`` seconds of ``clock``, whichever
comes first; then the next 32 bytes. So it is the scheme of the Micius intercontinental video
call, AES re-seeded from QKD keys every second (Liao et al., PRL 120, 030501 (2018)), here with
AES-256 and GCM's authentication: secret and authentic as long as AES is, at 32 key bytes per
re-key instead of the OTP's one per message byte.

Frame (big-endian)::

    b"QAES" | seq u64 | refs u16 | refs x (id_len u8, key_ID, offset u32, length u32)
            | ciphertext (as long as the message) | GCM tag (16 bytes)

Everything before the ciphertext (the header) is GCM's associated data, so a changed seq or key
reference fails the tag. The 96-bit nonce is ``0 u32 | seq u64``, the deterministic construction of
NIST SP 800-38D sec. 8.2.1 (a fixed field and an invocation counter): ``seq`` never repeats within
a channel and a key is never used outside it (key bytes are handed out once), so no (key, nonce)
pair repeats. Every frame names its AES key's bytes: that is the whole key-ID negotiation, and a
receiver can check each frame alone.

What the receiver refuses (:class:`FrameError`, nothing delivered, its state unchanged): a frame that
does not parse, a bad tag (a flipped bit anywhere), a ``seq`` other than the next one (a replay or a
reordered frame), a key whose key_ID is retired (a re-used key), and key bytes other than the current
key or the 32 right after it. What the sender never does: use a key byte twice; when the next key is
due and the keys have run out, it raises :class:`KeyExhaustedError` and sends nothing (with
``wait_s``, after asking ``fetch`` again for that long).

Recipe over the `cryptography` package's AESGCM (OpenSSL, AES-NI): ``benchmarks/channels.py``
measures it against a bare ``AESGCM.encrypt`` + ``decrypt`` of the same buffers.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qnet.errors import InvalidRequestError
from qnet.service._frames import (
    Fetch,
    FrameError,
    Key,
    KeyExhaustedError,
    KeyFollower,
    KeyStream,
    KeyUse,
    Lookup,
    Ref,
    pack_refs,
    unpack_refs,
)

__all__ = ["AES_KEY_BYTES", "AESGCMReceiver", "AESGCMSender", "FrameError", "Key", "KeyExhaustedError", "KeyUse"]

MAGIC = b"QAES"
AES_KEY_BYTES = 32
"""Key bytes each re-key spends: one AES-256 key."""
REKEY_BYTES = 1 << 30
"""Default: message bytes under one key (1 GiB, far inside GCM's limits, SP 800-38D sec. 5.2.1.1)."""
REKEY_S = 1.0
"""Default: seconds under one key (the Micius video call's re-seeding interval)."""
_TAG_BYTES = 16
_MAX_MESSAGE = 1 << 30


class AESGCMSender:
    """Frames messages under AES-256-GCM keys of 32 bytes each from ``fetch(n_bytes)``.

    A new key is taken before the frame that would bring the current one over ``rekey_bytes``
    message bytes, or that comes ``rekey_s`` or more seconds of ``clock`` after the key was taken.
    When ``fetch`` gives too little it is asked again for up to ``wait_s`` seconds (``sleep`` in
    between). ``key_log`` records each key and the first frame that used it.
    """

    def __init__(self, fetch: Fetch, *, rekey_bytes: int = REKEY_BYTES, rekey_s: float = REKEY_S,
                 wait_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not (isinstance(rekey_bytes, int) and 1 <= rekey_bytes <= _MAX_MESSAGE):
            raise InvalidRequestError(f"rekey_bytes must be 1 to 2^30 bytes, not {rekey_bytes}")
        if not rekey_s > 0:
            raise InvalidRequestError(f"rekey_s must be > 0 seconds, not {rekey_s}")
        self._stream = KeyStream(fetch, wait_s=wait_s, clock=clock, sleep=sleep)
        self._rekey_bytes, self._rekey_s, self._clock = rekey_bytes, rekey_s, clock
        self._aead: AESGCM | None = None
        self._refs = b""  # the current key's references, packed
        self._since = 0.0  # when it was taken
        self._under_key = 0  # message bytes sent under it
        self.seq = 0
        self.key_log: list[KeyUse] = []

    @property
    def key_bytes_used(self) -> int:
        """Key bytes spent so far (32 per key)."""
        return self._stream.used

    def frame(self, message: bytes) -> bytes:
        """The frame of ``message``, under a new key when one is due.

        Raises:
            KeyExhaustedError: when a key is due and ``fetch`` cannot supply it (nothing is sent).
            InvalidRequestError: for a message over ``rekey_bytes`` (it would need a key of its own
                over the interval).
        """
        if len(message) > self._rekey_bytes:
            raise InvalidRequestError(f"a message of {len(message)} bytes is over the {self._rekey_bytes} "
                                      "bytes a key may encrypt (rekey_bytes); nothing was sent")
        aead = self._aead
        if aead is None or self._due(len(message)):
            aead = self._rekey()
        header = MAGIC + struct.pack(">Q", self.seq) + self._refs
        frame = header + aead.encrypt(_nonce(self.seq), message, header)
        self._under_key += len(message)
        self.seq += 1
        return frame

    def _due(self, size: int) -> bool:
        return self._under_key + size > self._rekey_bytes or self._clock() - self._since >= self._rekey_s

    def _rekey(self) -> AESGCM:
        refs, material = self._stream.take(AES_KEY_BYTES)  # raises before anything changes
        self._aead, self._refs = AESGCM(material), pack_refs(refs)
        self._since, self._under_key = self._clock(), 0
        self.key_log.append(KeyUse(self.seq, tuple(refs)))
        return self._aead


class AESGCMReceiver:
    """Checks and opens frames, with keys from ``lookup(key_IDs)`` (key_ID -> key bytes).

    ``key_log`` records each key and the first frame that used it (the sender's, frame for frame).
    """

    def __init__(self, lookup: Lookup) -> None:
        self._follower = KeyFollower(lookup)
        self._aead: AESGCM | None = None
        self._refs: tuple[Ref, ...] = ()
        self.seq = 0
        self.key_log: list[KeyUse] = []

    def open(self, frame: bytes) -> bytes:
        """The message of ``frame``.

        Raises:
            FrameError: naming why the frame is refused (the receiver's state is unchanged).
        """
        seq, refs, start = _parse(frame)
        if seq != self.seq:
            raise FrameError(f"frame {seq} where frame {self.seq} is next (replayed or reordered)")
        aead, keys = self._aead, None
        if aead is None or refs != self._refs:  # a new key: the 32 bytes after the current one's
            material, keys = self._follower.material(refs)
            if len(material) != AES_KEY_BYTES:
                raise FrameError(f"the frame's key is {len(material)} bytes, not {AES_KEY_BYTES}")
            aead = AESGCM(material)
        view = memoryview(frame)
        try:
            message = aead.decrypt(_nonce(seq), view[start:], view[:start])
        except InvalidTag:
            raise FrameError("the frame's tag does not match (forged or corrupted)") from None
        if keys is not None:
            self._follower.advance(refs, keys)
            self._aead, self._refs = aead, refs
            self.key_log.append(KeyUse(seq, refs))
        self.seq += 1
        return message


def _nonce(seq: int) -> bytes:
    """The 96-bit GCM nonce of frame ``seq``: a zero fixed field and the counter (SP 800-38D 8.2.1)."""
    return struct.pack(">IQ", 0, seq)


def _parse(frame: bytes) -> tuple[int, tuple[Ref, ...], int]:
    """(seq, refs, where the ciphertext starts).

    Raises:
        FrameError: for a frame that does not parse.
    """
    if frame[:4] != MAGIC:
        raise FrameError("not a qnet AES-GCM frame (its magic is wrong)")
    if len(frame) < 12:
        raise FrameError("a truncated or malformed frame header")
    (seq,) = struct.unpack_from(">Q", frame, 4)
    refs, at = unpack_refs(frame, 12)
    if len(frame) < at + _TAG_BYTES:
        raise FrameError(f"a frame of {len(frame)} bytes, shorter than its header and tag ({at + _TAG_BYTES})")
    return seq, tuple(refs), at
