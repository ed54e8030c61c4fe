"""The one-time-pad channel (issue 14.2): messages arrive byte-identical; a flipped bit, a replayed,
reordered or forged frame, key bytes used twice are refused; key exhaustion never reuses a key byte
and sends nothing (a property test over random message sizes)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.service.otp_channel import MAC_KEY_BYTES, FrameError, Key, KeyExhaustedError, OTPReceiver, OTPSender


class Link:
    """What ETSI 014 gives the two ends: enc_keys at the sender, dec_keys (by key_ID) at the receiver."""

    def __init__(self, keys: int, size: int = 32) -> None:
        self.keys = [Key(f"key-{i}", os.urandom(size)) for i in range(keys)]
        self.handed = 0
        self.looked_up: list[str] = []

    def fetch(self, n: int) -> list[Key]:
        out = []
        while n > 0 and self.handed < len(self.keys):
            out.append(self.keys[self.handed])
            n -= len(self.keys[self.handed].key)
            self.handed += 1
        return out

    def lookup(self, ids: list[str]) -> dict[str, bytes]:
        self.looked_up += ids
        return {k.key_ID: k.key for k in self.keys[:self.handed] if k.key_ID in ids}


def ends(keys: int = 100, size: int = 32) -> tuple[Link, OTPSender, OTPReceiver]:
    link = Link(keys, size)
    return link, OTPSender(link.fetch), OTPReceiver(link.lookup)


def test_a_file_arrives_byte_identical_and_costs_its_size_in_key() -> None:
    data = os.urandom(50_000)
    _, sender, receiver = ends(keys=2000)
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert b"".join(receiver.open(sender.frame(c)) for c in chunks) == data
    assert sender.key_bytes_used == len(data) + MAC_KEY_BYTES * len(chunks)


def test_a_flipped_bit_anywhere_is_refused_and_changes_nothing() -> None:
    _, sender, receiver = ends()
    frame = sender.frame(b"attack at dawn")
    for at in (0, 5, 20, len(frame) - 20, len(frame) - 1):
        bad = bytearray(frame)
        bad[at] ^= 0x01
        with pytest.raises(FrameError):
            receiver.open(bytes(bad))
    assert receiver.open(frame) == b"attack at dawn"  # the receiver's state did not move


def test_replayed_and_reordered_frames_are_refused() -> None:
    _, sender, receiver = ends()
    first, second, third = (sender.frame(m) for m in (b"one", b"two", b"three"))
    assert receiver.open(first) == b"one"
    with pytest.raises(FrameError, match="replayed or reordered"):
        receiver.open(first)
    with pytest.raises(FrameError, match="replayed or reordered"):
        receiver.open(third)
    assert receiver.open(second) == b"two" and receiver.open(third) == b"three"


def test_a_frame_reusing_key_bytes_is_refused_even_with_a_valid_tag() -> None:
    """A second sender handed the same keys (a key served twice) makes a frame whose tag checks out
    under the reused key: the receiver refuses it for its key bytes, not its tag."""
    link, sender, receiver = ends()
    assert receiver.open(sender.frame(b"first")) == b"first"
    rogue = OTPSender(lambda n: link.keys[:2])
    rogue.seq = 1
    with pytest.raises(FrameError, match="used twice, or skipped"):
        receiver.open(rogue.frame(b"again"))


def test_when_key_runs_out_nothing_is_sent_and_no_key_byte_is_used() -> None:
    _, sender, receiver = ends(keys=3)  # 96 key bytes
    assert receiver.open(sender.frame(b"x" * 40)) == b"x" * 40  # 72 bytes
    with pytest.raises(KeyExhaustedError, match="nothing was sent"):
        sender.frame(b"y" * 10)  # needs 42, 24 left
    assert sender.seq == 1 and sender.key_bytes_used == 72
    with pytest.raises(KeyExhaustedError):
        sender.frame(b"")  # even an empty message spends its MAC's 32 bytes


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=30), key_size=st.sampled_from([16, 32, 100]))
def test_no_key_byte_is_ever_used_twice_whatever_the_message_sizes(sizes: list[int], key_size: int) -> None:
    _, sender, receiver = ends(keys=60, size=key_size)
    used: set[tuple[str, int]] = set()
    for n in sizes:
        message = os.urandom(n)
        try:
            frame = sender.frame(message)
        except KeyExhaustedError:
            continue  # nothing sent; a shorter message may still fit
        for key_ID, offset, length in _refs(frame):
            spent = {(key_ID, i) for i in range(offset, offset + length)}
            assert not spent & used, "a key byte used twice"
            used |= spent
        assert receiver.open(frame) == message
    assert len(used) == sender.key_bytes_used <= 60 * key_size


def _refs(frame: bytes) -> list[tuple[str, int, int]]:
    from qnet.service.otp_channel import _parse

    return _parse(frame)[1]


def test_a_frame_that_skips_key_bytes_is_refused() -> None:
    link, sender, receiver = ends()
    assert receiver.open(sender.frame(b"12345")) == b"12345"  # key-0 whole, key-1 from byte 5 next
    skipper = OTPSender(lambda n: link.keys[2:4])
    skipper.seq, link.handed = 1, 4  # key-2 and key-3 are known to the receiver's KME too
    with pytest.raises(FrameError, match="used twice, or skipped"):
        receiver.open(skipper.frame(b"later"))
    assert receiver.open(sender.frame(b"next")) == b"next"


def test_a_megabyte_frame_arrives_and_a_flipped_bit_in_it_is_refused() -> None:
    """Frames over 2 kB take the strided hash (qnet.security.its_mac._strided)."""
    _, sender, receiver = ends(keys=2, size=(1 << 20) + 64)
    data = os.urandom(1 << 20)
    frame = sender.frame(data)
    for at in (40, len(frame) // 2, len(frame) - 17):
        bad = bytearray(frame)
        bad[at] ^= 0x80
        with pytest.raises(FrameError, match="tag does not match"):
            receiver.open(bytes(bad))
    assert receiver.open(frame) == data


def _horner_reference(message: bytes, k: int) -> int:
    """poly_hash as first written: block-wise Horner over the 0x01-marked 15-byte blocks."""
    from qnet.security.its_mac import PRIME

    acc = 0
    for i in range(0, len(message), 15):
        acc = (acc + int.from_bytes(b"\x01" + message[i:i + 15], "big")) * k % PRIME
    return acc


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 70_000), k=st.integers(0, (1 << 127) - 2), fill=st.sampled_from([None, 0x00, 0xFF]))
def test_the_strided_hash_equals_block_wise_horner(size: int, k: int, fill: int | None) -> None:
    from qnet.security.its_mac import poly_hash

    message = os.urandom(size) if fill is None else bytes([fill]) * size
    assert poly_hash(message, k) == _horner_reference(message, k)


@pytest.mark.parametrize("size", [1919, 1920, 1921, 3840 * 16, 3840 * 17 + 14, 1 << 20, (1 << 20) + 7])
def test_the_strided_hash_equals_block_wise_horner_at_its_seams(size: int) -> None:
    """The switch to strides, the stride sizes, a whole batch, leftovers; all 0xFF at k = P - 1
    (the largest limb sums)."""
    from qnet.security.its_mac import PRIME, poly_hash

    for message, k in ((os.urandom(size), int.from_bytes(os.urandom(16), "big") % PRIME), (b"\xff" * size, PRIME - 1)):
        assert poly_hash(message, k) == _horner_reference(message, k)
        assert poly_hash(memoryview(message), k) == poly_hash(bytearray(message), k) == _horner_reference(message, k)


def test_a_message_spanning_more_keys_than_a_frame_names_is_refused_and_costs_nothing() -> None:
    from qnet.errors import InvalidRequestError

    _, sender, _ = ends(keys=70_000, size=1)
    with pytest.raises(InvalidRequestError, match="span"):
        sender.frame(bytes(65_536))
    assert sender.key_bytes_used == 0 and sender.seq == 0
    assert len(sender.frame(bytes(1000))) > 1000  # the keys fetched are still there


def test_a_key_ID_a_frame_cannot_name_is_refused() -> None:
    from qnet.errors import InvalidRequestError

    sender = OTPSender(lambda n: [Key("clé-1", os.urandom(64))])
    with pytest.raises(InvalidRequestError, match="ASCII"):
        sender.frame(b"x")
