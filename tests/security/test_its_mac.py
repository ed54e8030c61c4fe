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


def test_hash_is_linear_polynomial_evaluation() -> None:
    """poly_hash evaluates the block polynomial with the length as constant term (Horner)."""
    k = 123456789
    m = bytes(range(30))  # two 15-byte blocks
    b1, b2 = int.from_bytes(m[:15], "big"), int.from_bytes(m[15:], "big")
    assert poly_hash(m, k) == (b1 * k**2 + b2 * k + 30) % PRIME


def test_empty_pool_is_an_error() -> None:
    """A tag without a one-time pad is refused."""
    with pytest.raises(LookupError, match="no one-time pad left"):
        authenticate(b"m", MACKey(5, []))


def test_forgery_bound_is_tiny() -> None:
    """A megabyte transcript: forgery probability below 2^-100."""
    assert forgery_probability(10**6) < 2.0**-100
