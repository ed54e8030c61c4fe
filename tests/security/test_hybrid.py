"""Hybrid key establishment (issue 14.3): ML-KEM-768 and a QKD key through HKDF (ETSI TS 103 744
CatKDF). The two ends agree; the key changes when either secret changes (so it is secret while either
is); it names the parts it used; bad input is refused, naming what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnet.errors import InvalidRequestError
from qnet.security.hybrid import KEM, HybridInitiator, HybridReply, _combine, respond

QKD = bytes(range(32))


@pytest.mark.parametrize(("qkd_key", "key_id", "parts"), [(QKD, "k-1", ("qkd", KEM)), (None, None, (KEM,))])
def test_both_ends_get_the_same_key_and_name_its_parts(qkd_key: bytes | None, key_id: str | None,
                                                      parts: tuple[str, ...]) -> None:
    initiator = HybridInitiator()
    reply, mine = respond(initiator.public_key, qkd_key=qkd_key, key_id=key_id, length=48)
    theirs = initiator.finish(reply, qkd_key=qkd_key, key_id=key_id, length=48)
    assert mine == theirs and len(mine.key) == 48 and mine.parts == parts and mine.key_id == key_id
    assert mine.key != (qkd_key or b"")[:48]


def test_a_different_qkd_key_at_one_end_gives_different_keys() -> None:
    initiator = HybridInitiator()
    reply, mine = respond(initiator.public_key, qkd_key=QKD, key_id="k-1")
    theirs = initiator.finish(reply, qkd_key=bytes(31) + b"\x01", key_id="k-1")
    assert mine.key != theirs.key


def test_each_exchange_gives_a_fresh_key_with_the_same_qkd_key() -> None:
    keys = {respond(HybridInitiator().public_key, qkd_key=QKD, key_id="k-1")[1].key for _ in range(5)}
    assert len(keys) == 5  # the KEM's part is fresh each time: a known QKD key alone does not give it


@settings(max_examples=200, deadline=None)
@given(kem=st.binary(min_size=32, max_size=32), qkd=st.binary(min_size=16, max_size=64),
       which=st.sampled_from(["kem", "qkd", "key_id", "ciphertext"]), at=st.integers(0, 15))
def test_the_key_changes_when_any_input_changes(kem: bytes, qkd: bytes, which: str, at: int) -> None:
    """CatKDF's output depends on both secrets and on the transcript (computed here over HKDF)."""
    base = dict(kem_secret=kem, qkd_key=qkd, key_id="k-1", public_key=b"P" * 1184, ciphertext=b"C" * 1088)
    flipped = dict(base)
    if which == "key_id":
        flipped["key_id"] = "k-2"
    else:
        name = {"kem": "kem_secret", "qkd": "qkd_key", "ciphertext": "ciphertext"}[which]
        value = bytearray(base[name])  # type: ignore[arg-type]
        value[at % len(value)] ^= 0x01
        flipped[name] = bytes(value)
    assert _combine(**base, length=32).key != _combine(**flipped, length=32).key  # type: ignore[arg-type]


def test_bad_input_is_refused_naming_what_is_wrong() -> None:
    initiator = HybridInitiator()
    with pytest.raises(InvalidRequestError, match="public key"):
        respond(b"short")
    with pytest.raises(InvalidRequestError, match="give both or neither"):
        respond(initiator.public_key, qkd_key=QKD)
    with pytest.raises(InvalidRequestError, match="too short"):
        respond(initiator.public_key, qkd_key=b"k" * 8, key_id="k-1")
    reply, _ = respond(initiator.public_key, qkd_key=QKD, key_id="k-1")
    with pytest.raises(InvalidRequestError, match="used QKD key 'k-1', not 'k-2'"):
        initiator.finish(reply, qkd_key=QKD, key_id="k-2")
    with pytest.raises(InvalidRequestError, match="ciphertext"):
        initiator.finish(HybridReply(b"x" * 10, "k-1"), qkd_key=QKD, key_id="k-1")
