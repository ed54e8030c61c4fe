"""ETSI 004 stream logic at one KME (pure, clock passed in): how many keys the source hands out
ahead (a window that follows the slower end's pace, bounded by max_bps), index bookkeeping, and
the QoS checks."""

from __future__ import annotations

import pytest

from qnet.errors import InvalidRequestError
from qnet.keys.store import DeliveredKey
from qnet.service.etsi004 import BATCH, MAX_AHEAD, MAX_WINDOW, MIN_WINDOW, KeyStream, QoS


def _stream(**qos: object) -> KeyStream:
    return KeyStream("k", "SA", "SA", "SB", QoS.from_dict(qos), opened_s=0.0, peer_connected=True)


def _hand(stream: KeyStream, n: int) -> None:
    stream.handed([DeliveredKey(f"id{stream.next_handed + i}", b"k" * 32) for i in range(n)])


def test_nothing_is_handed_out_before_the_peer_connects() -> None:
    stream = _stream()
    stream.peer_connected = False
    assert stream.wanted(0.0) == 0 and stream.wanted(0.0, up_to=5) == 0


def test_the_window_follows_the_slower_ends_pace() -> None:
    """A quiet stream holds MIN_WINDOW keys ahead; one taking 1,000 keys/s gets a window of four
    seconds' use (capped at MAX_WINDOW) in batches of half of it (capped at BATCH)."""
    stream = _stream()
    assert stream.wanted(0.0) == MIN_WINDOW // 2
    _hand(stream, MIN_WINDOW)
    assert stream.wanted(0.1) == 0  # the window is full
    for index in range(500):  # both ends take 500 keys in half a second
        stream.keys.setdefault(index, DeliveredKey("x", b"k"))
        stream.deliver(index)
    stream.peer_read_upto = 500
    assert stream.wanted(0.5) == min(MAX_WINDOW // 2, BATCH)
    assert stream.rate == pytest.approx(1000.0)


def test_max_bps_bounds_what_is_handed_out() -> None:
    """32-byte keys at max_bps 2,048: 8 keys/s; after 10 s no more than 80 keys and one window."""
    stream = _stream(max_bps=2048.0, min_bps=0.0)
    total = 0
    for step in range(100):
        n = stream.wanted(step * 0.1)
        _hand(stream, n)
        total += n
    assert total <= 80 + MIN_WINDOW
    while n := stream.wanted(9.9, up_to=1000):  # an application waiting far ahead does not break it
        _hand(stream, n)
    assert stream.next_handed == int(2048 * 9.9 / 256) + MIN_WINDOW


def test_an_index_is_delivered_once_and_not_too_far_ahead() -> None:
    stream = _stream()
    _hand(stream, 3)
    assert stream.check_index(None) == 0
    stream.deliver(1)
    assert stream.check_index(None) == 0 and stream.next_index() == 0
    with pytest.raises(InvalidRequestError, match="delivered already"):
        stream.check_index(1)
    stream.deliver(0)
    assert stream.next_index() == 2 and stream.delivered_below == 2
    with pytest.raises(InvalidRequestError, match="ahead"):
        stream.check_index(2 + MAX_AHEAD)
    assert stream.key_bits_delivered == 2 * 256
