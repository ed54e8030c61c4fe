"""Wegman-Carter authentication: tags verify, any change fails, and every tag costs one pad."""

from __future__ import annotations

import random

import pytest

from qnet.security.its_mac import PRIME, MACKey, authenticate, forgery_probability, poly_hash, verify


def _keys(seed: int, pads: int = 4) -> tuple[MACKey, MACKey]:
    rng = random.Random(seed)
    k, p = rng.randrange(PRIME), [rng.randrange(PRIME) for _ in range(pads)]
    return MACKey(k, list(p)), MACKey(k, list(p))


def test_tag_verifies_and_consumes_a_pad() -> None:
    """The receiver with the same key accepts; each side used exactly one pad."""
    sender, receiver = _keys(1)
    tag = authenticate(b"parities", sender)
    assert verify(b"parities", tag, receiver)
    assert sender.pads_used == receiver.pads_used == 1 and len(sender.pads) == 3


@pytest.mark.parametrize("message", [b"parities!", b"paritie", b"parities\x00", b"Parities"])
def test_altered_message_fails(message: bytes) -> None:
    """Any change of the message (an appended zero byte included) makes verification fail."""
    sender, receiver = _keys(2)
    tag = authenticate(b"parities", sender)
    assert not verify(message, tag, receiver)


def test_altered_tag_fails() -> None:
    """Flipping one bit of the tag makes verification fail."""
    sender, receiver = _keys(3)
    tag = bytearray(authenticate(b"m", sender))
    tag[-1] ^= 1
    assert not verify(b"m", bytes(tag), receiver)


def test_hash_is_polynomial_evaluation_without_constant_term() -> None:
    """poly_hash evaluates c1 k^2 + c2 k for two blocks, each coefficient marked by a 0x01 byte."""
    k = 123456789
    m = bytes(range(30))  # two 15-byte blocks
    c1, c2 = int.from_bytes(b"\x01" + m[:15], "big"), int.from_bytes(b"\x01" + m[15:], "big")
    assert poly_hash(m, k) == (c1 * k**2 + c2 * k) % PRIME


@pytest.mark.parametrize(("original", "forged"), [
    (b"A" * 15 + b"\x05", b"A" * 15 + b"\x00\x05"),  # a leading zero byte in the last block
    (b"\x00" * 15 + b"key", b"key"),  # a leading all-zero block
    (b"", b"\x00"),
])
def test_length_and_zero_forgeries_fail(original: bytes, forged: bytes) -> None:
    """Messages that differ only by zero bytes or block boundaries hash to unrelated values: the tag
    of one does not verify the other (the forgeries a naive integer encoding allows)."""
    for seed in range(20):
        sender, receiver = _keys(seed)
        assert not verify(forged, authenticate(original, sender), receiver)


def test_key_repr_hides_the_secret() -> None:
    """A MAC key's repr shows how many pads are left, never k or the pads."""
    key = MACKey(123456789123456789, [987654321987654321])
    assert "123456789123456789" not in repr(key) and "987654321987654321" not in repr(key)


def test_empty_pool_is_an_error() -> None:
    """A tag without a one-time pad is refused."""
    with pytest.raises(LookupError, match="no one-time pad left"):
        authenticate(b"m", MACKey(5, []))


def test_forgery_bound_is_tiny() -> None:
    """A megabyte transcript: forgery probability below 2^-100 (blocks / P)."""
    assert forgery_probability(10**6) < 2.0**-100
