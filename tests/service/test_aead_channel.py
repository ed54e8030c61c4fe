"""The AES-256-GCM channel re-keyed from QKD keys (issue 14.2): a stream of messages arrives
identical; a flipped bit, a replayed or reordered frame, a retired or skipped key are refused; it
re-keys at exactly the byte and the time interval (a fake clock), and both ends record the same
key_IDs for the same frames; key exhaustion never reuses a key byte and sends nothing (a property
test over random message sizes); the sender waits for key, or fails after ``wait_s``."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.errors import InvalidRequestError
from qnet.service.aead_channel import (
    AES_KEY_BYTES,
    AESGCMReceiver,
    AESGCMSender,
    FrameError,
    Key,
    KeyExhaustedError,
    KeyUse,
)
from qnet.service.otp_channel import OTPReceiver, OTPSender


class Link:
    """What ETSI 014 gives the two ends: enc_keys at the sender, dec_keys (by key_ID) at the receiver."""

    def __init__(self, keys: int, size: int = 32) -> None:
        self.keys = [Key(f"key-{i}", os.urandom(size)) for i in range(keys)]
        self.handed = 0

    def fetch(self, n: int) -> list[Key]:
        out = []
        while n > 0 and self.handed < len(self.keys):
            out.append(self.keys[self.handed])
            n -= len(self.keys[self.handed].key)
            self.handed += 1
        return out

    def lookup(self, ids: list[str]) -> dict[str, bytes]:
        return {k.key_ID: k.key for k in self.keys[:self.handed] if k.key_ID in ids}


class Clock:
    """A fake monotonic clock; ``sleep`` moves it on."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def ends(keys: int = 100, size: int = 32, **options: object) -> tuple[Link, AESGCMSender, AESGCMReceiver]:
    link = Link(keys, size)
    return link, AESGCMSender(link.fetch, **options), AESGCMReceiver(link.lookup)  # type: ignore[arg-type]


def test_a_stream_of_messages_arrives_identical_and_both_ends_record_the_same_keys() -> None:
    _, sender, receiver = ends(rekey_bytes=5000)
    messages = [os.urandom(n) for n in (0, 1, 15, 16, 999, 4096, 5000, 3, 2500, 2500, 2501, 70)]
    assert [receiver.open(sender.frame(m)) for m in messages] == messages
    assert [u.first_seq for u in sender.key_log] == [0, 5, 6, 7, 9, 10]  # each key: <= 5000 message bytes
    assert receiver.key_log == sender.key_log
    assert sender.key_bytes_used == AES_KEY_BYTES * len(sender.key_log) and sender.seq == receiver.seq == 12


def test_an_aes_key_may_span_several_qkd_keys_and_the_frame_names_them_all() -> None:
    _, sender, receiver = ends(keys=30, size=12, rekey_bytes=100)
    messages = [os.urandom(60) for _ in range(6)]
    assert [receiver.open(sender.frame(m)) for m in messages] == messages
    assert sender.key_log[0].key_IDs == ("key-0", "key-1", "key-2")
    assert sender.key_log[1].key_IDs == ("key-2", "key-3", "key-4", "key-5")
    assert sender.key_log[1].refs == (("key-2", 8, 4), ("key-3", 0, 12), ("key-4", 0, 12), ("key-5", 0, 4))
    assert receiver.key_log == sender.key_log


def test_a_flipped_bit_anywhere_is_refused_and_changes_nothing() -> None:
    _, sender, receiver = ends()
    frame = sender.frame(b"attack at dawn")
    for at in range(len(frame)):  # the header (seq, key refs) is associated data: covered too
        bad = bytearray(frame)
        bad[at] ^= 0x01
        with pytest.raises(FrameError):
            receiver.open(bytes(bad))
    assert receiver.key_log == [] and receiver.seq == 0  # the refused first frame adopted no key
    assert receiver.open(frame) == b"attack at dawn"


def test_replayed_and_reordered_frames_are_refused() -> None:
    _, sender, receiver = ends()
    first, second, third = (sender.frame(m) for m in (b"one", b"two", b"three"))
    assert receiver.open(first) == b"one"
    with pytest.raises(FrameError, match="replayed or reordered"):
        receiver.open(first)
    with pytest.raises(FrameError, match="replayed or reordered"):
        receiver.open(third)
    assert receiver.open(second) == b"two" and receiver.open(third) == b"three"


@pytest.mark.parametrize("size", [1, 100, 300, 999, 1000])
def test_it_rekeys_exactly_at_the_byte_interval(size: int) -> None:
    _, sender, receiver = ends(keys=40, rekey_bytes=1000, rekey_s=1e9)
    for _ in range(30):
        receiver.open(sender.frame(os.urandom(size)))
    assert [u.first_seq for u in sender.key_log] == list(range(0, 30, 1000 // size))
    assert receiver.key_log == sender.key_log


def test_a_message_over_the_byte_interval_is_refused_and_costs_nothing() -> None:
    _, sender, _ = ends(rekey_bytes=1000)
    with pytest.raises(InvalidRequestError, match="rekey_bytes"):
        sender.frame(bytes(1001))
    assert sender.seq == 0 and sender.key_bytes_used == 0


def test_it_rekeys_exactly_at_the_time_interval() -> None:
    clock = Clock()
    _, sender, receiver = ends(rekey_s=1.0, clock=clock)
    for t in (0.0, 0.4, 0.999, 1.0, 1.5, 1.9999, 2.0, 7.0, 7.5):
        clock.t = t
        receiver.open(sender.frame(b"frame at %.4f" % t))
    assert [u.first_seq for u in sender.key_log] == [0, 3, 6, 7]  # keys taken at t = 0, 1, 2, 7
    assert receiver.key_log == sender.key_log


def test_whichever_interval_comes_first_rekeys() -> None:
    clock = Clock()
    _, sender, receiver = ends(rekey_bytes=300, rekey_s=1.0, clock=clock)
    for t in (0.0, 0.1, 0.2, 0.3, 1.4, 1.5):  # 100-byte frames: the 4th is over 300 bytes; t = 1.4 is 1.1 s on
        clock.t = t
        receiver.open(sender.frame(bytes(100)))
    assert [u.first_seq for u in sender.key_log] == [0, 3, 4] == [u.first_seq for u in receiver.key_log]


def test_a_retired_key_is_refused_even_with_a_valid_tag() -> None:
    """A second sender handed the same keys (a key served twice) makes a frame whose tag checks out
    under the re-used key: the receiver refuses it for its key, not its tag."""
    link, sender, receiver = ends(rekey_bytes=10)
    assert receiver.open(sender.frame(b"first")) == b"first"
    assert receiver.open(sender.frame(b"second key")) == b"second key"  # key-0 is retired
    rogue = AESGCMSender(lambda n: link.keys[:1])
    rogue.seq = 2
    with pytest.raises(FrameError, match="retired"):
        receiver.open(rogue.frame(b"again"))
    assert receiver.open(sender.frame(b"third")) == b"third"


def test_a_key_that_is_not_the_next_of_the_stream_is_refused() -> None:
    link, sender, receiver = ends(keys=10, size=48, rekey_bytes=10)
    assert receiver.open(sender.frame(b"12345")) == b"12345"  # key-0[0:32]; key-0[32:] is next
    link.handed = 3  # key-1 and key-2 are known to the receiver's KME too
    skipper = AESGCMSender(lambda n: link.keys[1:3])  # its key skips key-0[32:]
    skipper.seq = 1
    with pytest.raises(FrameError, match="used twice, or skipped"):
        receiver.open(skipper.frame(b"later"))
    link.handed = 1
    assert receiver.open(sender.frame(b"next key")) == b"next key"
    assert receiver.key_log[1].refs == (("key-0", 32, 16), ("key-1", 0, 16))
    assert receiver.key_log == sender.key_log


@pytest.mark.parametrize("frame", [b"", b"QAES", b"QOTP" + bytes(30), b"QAES" + bytes(8) + b"\x00\x00" + bytes(16),
                                   b"QAES" + bytes(8) + b"\x00\x01\x05key-0"])
def test_malformed_frames_are_refused(frame: bytes) -> None:
    _, _, receiver = ends()
    with pytest.raises(FrameError):
        receiver.open(frame)


def test_when_key_runs_out_nothing_is_sent_and_no_key_byte_is_used() -> None:
    _, sender, receiver = ends(keys=2, rekey_bytes=5)
    for m in (b"one", b"two"):  # key-0, then key-1 (6 bytes would be over 5)
        assert receiver.open(sender.frame(m)) == m
    with pytest.raises(KeyExhaustedError, match="nothing was sent"):
        sender.frame(b"three")  # due a new key: none left
    assert sender.seq == 2 and sender.key_bytes_used == 64
    assert receiver.open(sender.frame(b"xy")) == b"xy"  # fits key-1's interval: no new key due
    with pytest.raises(KeyExhaustedError):
        sender.frame(b"z")
    assert sender.seq == 3 and sender.key_bytes_used == 64 and len(sender.key_log) == 2


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=30), key_size=st.sampled_from([7, 32, 100]),
       rekey_bytes=st.sampled_from([300, 500, 1000]))
def test_no_key_byte_is_ever_used_twice_whatever_the_message_sizes(sizes: list[int], key_size: int,
                                                                   rekey_bytes: int) -> None:
    _, sender, receiver = ends(keys=8, size=key_size, rekey_bytes=rekey_bytes)
    used: set[tuple[str, int]] = set()
    for n in sizes:
        message = os.urandom(n)
        keys_before = len(sender.key_log)
        try:
            frame = sender.frame(message)
        except KeyExhaustedError:
            assert len(sender.key_log) == keys_before
            continue
        for key_ID, offset, length in (r for u in sender.key_log[keys_before:] for r in u.refs):
            spent = {(key_ID, i) for i in range(offset, offset + length)}
            assert not spent & used, "a key byte used twice"
            used |= spent
        assert receiver.open(frame) == message
    assert len(used) == sender.key_bytes_used <= 8 * key_size
    assert receiver.key_log == sender.key_log


class SlowLink(Link):
    """Keys that reach the sender's KME only from ``arrives`` seconds on."""

    def __init__(self, clock: Clock, arrives: float) -> None:
        super().__init__(10)
        self.clock, self.arrives, self.asked = clock, arrives, 0

    def fetch(self, n: int) -> list[Key]:
        self.asked += 1
        return super().fetch(n) if self.clock.t >= self.arrives else []


@pytest.mark.parametrize("channel", ["aes", "otp"])
def test_the_sender_waits_for_key_that_arrives_in_time(channel: str) -> None:
    clock = Clock()
    link = SlowLink(clock, arrives=0.3)
    make = AESGCMSender if channel == "aes" else OTPSender
    sender = make(link.fetch, wait_s=1.0, clock=clock, sleep=clock.sleep)
    receiver = (AESGCMReceiver if channel == "aes" else OTPReceiver)(link.lookup)
    assert receiver.open(sender.frame(b"late key")) == b"late key"
    assert 0.3 <= clock.t < 0.4 and link.asked > 2 and max(clock.slept) <= 0.05


@pytest.mark.parametrize("channel", ["aes", "otp"])
def test_the_sender_fails_after_wait_s_without_key(channel: str) -> None:
    clock = Clock()
    link = SlowLink(clock, arrives=5.0)
    make = AESGCMSender if channel == "aes" else OTPSender
    sender = make(link.fetch, wait_s=0.5, clock=clock, sleep=clock.sleep)
    with pytest.raises(KeyExhaustedError):
        sender.frame(b"no key")
    assert clock.t == pytest.approx(0.5) and sender.seq == 0 and sender.key_bytes_used == 0


def test_without_wait_s_the_sender_asks_once_and_never_sleeps() -> None:
    clock = Clock()
    link = SlowLink(clock, arrives=0.1)
    with pytest.raises(KeyExhaustedError):
        AESGCMSender(link.fetch, clock=clock, sleep=clock.sleep).frame(b"x")
    assert link.asked == 1 and clock.slept == []


@pytest.mark.parametrize("channel", ["aes", "otp"])
def test_the_two_channels_swap(channel: str) -> None:
    """Same constructor shape, same frame/open, seq and key_bytes_used."""
    link = Link(1000)
    sender = (AESGCMSender if channel == "aes" else OTPSender)(link.fetch)
    receiver = (AESGCMReceiver if channel == "aes" else OTPReceiver)(link.lookup)
    data = [os.urandom(700) for _ in range(5)]
    assert [receiver.open(sender.frame(m)) for m in data] == data
    assert sender.seq == receiver.seq == 5
    assert sender.key_bytes_used == (32 if channel == "aes" else 5 * (700 + 32))


def test_key_use_names_its_key_IDs_once_each_in_order() -> None:
    use = KeyUse(3, (("b", 10, 6), ("a", 0, 20), ("b", 0, 6)))
    assert use.key_IDs == ("b", "a")


def test_bad_options_are_refused() -> None:
    for options in ({"rekey_bytes": 0}, {"rekey_s": 0.0}, {"wait_s": -1.0}, {"rekey_bytes": 2**31}):
        with pytest.raises(InvalidRequestError):
            AESGCMSender(Link(1).fetch, **options)


def test_a_forged_frame_does_not_cost_the_genuine_one_its_keys() -> None:
    """The receiver looks keys up (at a KME: dec_keys, which erases them there) before it checks a
    frame's tag; a forged frame naming the next key must not lose that key for the genuine frame."""
    served: dict[str, bytes] = {}
    pool = [Key(f"k{i}", bytes([i]) * 32) for i in range(4)]

    def lookup(ids: list[str]) -> dict[str, bytes]:  # a KME: each key handed out once
        out = {i: k.key for k in pool for i in ids if k.key_ID == i and i not in served}
        served.update(out)
        return out

    sender = AESGCMSender(lambda n: pool[:1], rekey_bytes=1 << 20)
    receiver = AESGCMReceiver(lookup)
    genuine = sender.frame(b"hello")
    forged = genuine[:-1] + bytes([genuine[-1] ^ 1])
    with pytest.raises(FrameError):
        receiver.open(forged)
    assert receiver.open(genuine) == b"hello"
