"""What the QKD-keyed channels share (:mod:`~qnet.service.otp_channel`, :mod:`~qnet.service.aead_channel`).

Keys come as ETSI GS QKD 014 hands them out (ETSI GS QKD 014 V1.1.1 (2019), sec. 6.3-6.4): the
sender's ``fetch(n)`` is its ``enc_keys`` (keys of at least ``n`` bytes in all with their key_IDs,
or fewer when there are no more), the receiver's ``lookup(key_IDs)`` its ``dec_keys``. Both ends
read the keys as one stream of bytes, in the order the sender was handed them: a frame names the
bytes it used as references (key_ID, offset, length), the sender never hands out a byte twice
(:class:`KeyStream`), and the receiver accepts only the bytes right after those of the frame
before (:class:`KeyFollower`). The key-ID negotiation between the ends is this naming: no other
message passes.

References on the wire (big-endian)::

    refs u16 | refs x (id_len u8, key_ID (ASCII), offset u32, length u32)

Written here: no library frames externally supplied, identified keys.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qnet.errors import InvalidRequestError, UnavailableError

__all__ = ["Fetch", "FrameError", "Key", "KeyExhaustedError", "KeyFollower", "KeyStream", "KeyUse", "Lookup",
           "Ref", "pack_refs", "unpack_refs"]

MAX_REFS = 0xFFFF
"""The most key references a frame carries (a u16 count)."""
_POLL_S = 0.05  # how often a waiting sender asks fetch again


class KeyExhaustedError(UnavailableError):
    """Not enough key to send a message: nothing of it was sent, no key byte was used."""


class FrameError(InvalidRequestError):
    """A frame the receiver refuses (malformed, forged, replayed, reordered, or off the key stream)."""


@dataclass(frozen=True)
class Key:
    """A QKD key as ETSI 014 gives it."""

    key_ID: str
    key: bytes

    def __repr__(self) -> str:  # key material never appears in logs
        return f"Key({self.key_ID!r}, <{len(self.key)} bytes>)"


Ref = tuple[str, int, int]
"""(key_ID, offset, length): key bytes a frame used."""

Fetch = Callable[[int], Sequence[Key]]
"""The sender's key supply (ETSI 014 ``enc_keys``): keys of at least ``n`` bytes, or all there are."""

Lookup = Callable[[list[str]], Mapping[str, bytes]]
"""The receiver's key supply (ETSI 014 ``dec_keys``): key_ID -> key bytes, for those it knows."""


@dataclass(frozen=True)
class KeyUse:
    """A key in a channel's record: the first frame (``seq``) that used it and the key bytes it is."""

    first_seq: int
    refs: tuple[Ref, ...]

    @property
    def key_IDs(self) -> tuple[str, ...]:
        """The ETSI 014 keys its bytes come from, in order."""
        return tuple(dict.fromkeys(r[0] for r in self.refs))


class KeyStream:
    """The sender's key bytes, in order, each handed out once.

    When ``fetch`` gives too little, :meth:`take` asks again every 50 ms until ``wait_s`` seconds
    of ``clock`` have passed (``sleep`` in between), then fails; ``wait_s=0`` asks once.
    """

    def __init__(self, fetch: Fetch, *, wait_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not wait_s >= 0:
            raise InvalidRequestError(f"wait_s must be >= 0 seconds, not {wait_s}")
        self._fetch, self._wait_s, self._clock, self._sleep = fetch, wait_s, clock, sleep
        self._keys: deque[Key] = deque()
        self._offset = 0  # into the head key
        self._held = 0  # bytes at hand: in the keys, less the head's offset
        self.used = 0

    def take(self, n: int) -> tuple[list[Ref], bytes]:
        """The next ``n`` key bytes and the references that name them.

        Raises:
            KeyExhaustedError: when ``fetch`` does not supply them in time (nothing is consumed).
            InvalidRequestError: when they would span more keys than a frame can name.
        """
        if not self._fill(n):
            raise KeyExhaustedError(f"{n} key bytes are needed and {self._held} are at hand; nothing was sent")
        self._check_span(n)
        refs, parts, left = [], [], n
        while left:
            head = self._keys[0]
            part = min(left, len(head.key) - self._offset)
            refs.append((head.key_ID, self._offset, part))
            parts.append(memoryview(head.key)[self._offset:self._offset + part])
            self._offset, left = self._offset + part, left - part
            if self._offset == len(head.key):
                self._keys.popleft()
                self._offset = 0
        self._held -= n
        self.used += n
        return refs, b"".join(parts)

    def _fill(self, n: int) -> bool:
        deadline = None
        while True:
            if self._held < n:
                got = [k for k in self._fetch(n - self._held) if k.key]
                bad = [k.key_ID for k in got if not (k.key_ID.isascii() and 0 < len(k.key_ID) <= 255)]
                if bad:
                    raise InvalidRequestError(f"key_ID(s) {', '.join(map(repr, bad))} are not 1-255 ASCII "
                                              "characters, as a frame names them")
                self._keys.extend(got)
                self._held += sum(len(k.key) for k in got)
            if self._held >= n:
                return True
            now = self._clock()
            deadline = now + self._wait_s if deadline is None else deadline
            if now >= deadline:
                return False
            self._sleep(min(_POLL_S, deadline - now))

    def _check_span(self, n: int) -> None:
        count, left = 0, n + self._offset
        for key in self._keys:
            count, left = count + 1, left - len(key.key)
            if left <= 0:
                break
        if count > MAX_REFS:
            raise InvalidRequestError(f"{n} key bytes span {count} keys, over the {MAX_REFS} a frame names; "
                                      "send smaller messages (nothing was sent)")


MAX_FETCHED = 4096
"""Keys a receiver keeps that it looked up for a frame it refused (the genuine frame may follow)."""


class KeyFollower:
    """The receiver's place in the key stream: which bytes the next new key reference must start at."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._keys: dict[str, bytes] = {}  # keys partly used, kept for the next frames
        self._next: tuple[str, int] | None = None  # where the next key bytes start (None: a new key's 0)
        self._used: set[str] = set()
        self._fetched: dict[str, bytes] = {}  # looked up (and so erased at the KME), not used yet: a
        # refused frame must not lose them, or the genuine frame after a forged one could not open

    def material(self, refs: Sequence[Ref]) -> tuple[bytes, dict[str, bytes]]:
        """The key bytes ``refs`` name, and the keys they come from (for :meth:`advance`).

        Raises:
            FrameError: for an unknown key_ID, a retired one, or bytes that are not the next of
                the stream (nothing changes).
        """
        keys = self._keys_for(refs)
        at, out = self._next, bytearray()
        for key_ID, offset, length in refs:
            key = keys[key_ID]
            if not (at == (key_ID, offset) if at is not None else offset == 0 and key_ID not in self._used):
                if key_ID in self._used and (at is None or at[0] != key_ID):
                    raise FrameError(f"key_ID {key_ID} is retired (a re-used key: key bytes used twice, or skipped)")
                raise FrameError(f"key bytes {key_ID}[{offset}:] are not the next of the key stream "
                                 "(used twice, or skipped)")
            if length <= 0 or offset + length > len(key):
                raise FrameError(f"key bytes {key_ID}[{offset}:{offset + length}] are outside the key")
            out += key[offset:offset + length]
            at = (key_ID, offset + length) if offset + length < len(key) else None
        return bytes(out), keys

    def advance(self, refs: Sequence[Ref], keys: Mapping[str, bytes]) -> None:
        """Move past ``refs`` (checked by :meth:`material`)."""
        for key_ID, offset, length in refs:
            self._used.add(key_ID)
            done = offset + length == len(keys[key_ID])
            self._next = None if done else (key_ID, offset + length)
            self._fetched.pop(key_ID, None)
            if done:
                self._keys.pop(key_ID, None)
            else:
                self._keys[key_ID] = keys[key_ID]

    def _keys_for(self, refs: Sequence[Ref]) -> dict[str, bytes]:
        ids = [r[0] for r in refs]
        missing = [i for i in dict.fromkeys(ids) if i not in self._keys and i not in self._fetched]
        found = dict(self._lookup(missing)) if missing else {}
        self._fetched.update((i, k) for i, k in found.items() if i not in self._used)
        while len(self._fetched) > MAX_FETCHED:
            self._fetched.pop(next(iter(self._fetched)))
        keys = {i: self._keys.get(i) or self._fetched.get(i) or found.get(i) for i in ids}
        unknown = [i for i, k in keys.items() if not k]
        if unknown:
            raise FrameError(f"unknown key_ID(s) {', '.join(unknown)}")
        return {i: k for i, k in keys.items() if k}


def pack_refs(refs: Sequence[Ref]) -> bytes:
    """``refs`` as they go on the wire."""
    out = bytearray(struct.pack(">H", len(refs)))
    for key_ID, offset, length in refs:
        raw = key_ID.encode("ascii")
        out += struct.pack(">B", len(raw)) + raw + struct.pack(">II", offset, length)
    return bytes(out)


def unpack_refs(frame: bytes, at: int) -> tuple[list[Ref], int]:
    """(the references starting at ``frame[at]``, where they end).

    Raises:
        FrameError: for references that do not parse, or none.
    """
    try:
        (count,) = struct.unpack_from(">H", frame, at)
        at, refs = at + 2, []
        for _ in range(count):
            (n,) = struct.unpack_from(">B", frame, at)
            key_ID = frame[at + 1:at + 1 + n].decode("ascii")
            offset, length = struct.unpack_from(">II", frame, at + 1 + n)
            refs.append((key_ID, offset, length))
            at += 1 + n + 8
    except (struct.error, UnicodeDecodeError):
        raise FrameError("a truncated or malformed frame header") from None
    if not refs:
        raise FrameError("a frame that names no key")
    return refs, at
