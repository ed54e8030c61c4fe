"""Hybrid key establishment: a QKD key and an ML-KEM-768 shared secret combined through a KDF, so
the result is secret if either part is (issue 14, item 3).

Where a link's QKD key runs short or is absent (a satellite between passes, a new node), two
applications can still agree on a key: the initiator sends an ML-KEM-768 public key (FIPS 203, from
``cryptography``), the responder encapsulates to it, and both ends feed the KEM's shared secret and,
when there is one, the QKD key they share (the same key_ID from ETSI GS QKD 014) into HKDF-SHA256.
The combiner is the concatenation KDF of ETSI TS 103 744 (CatKDF): the secrets concatenated as the
input key material, and a context that binds the protocol label, which parts were used, the QKD
key_ID and the KEM's public key and ciphertext (the transcript), so that neither end can be led to a
secret of another exchange. An attacker who breaks ML-KEM still lacks the QKD key, and one who holds
the QKD key (a compromised trusted node) still lacks the KEM's secret; HKDF is a dual PRF in its
input key material for this use (Bindel et al., "Hybrid key encapsulation mechanisms and
authenticated key exchange", PQCrypto 2019).

Written here because no library combines a QKD key with a KEM: this is a few lines over
``cryptography``'s ML-KEM and HKDF, and names the parts it used (:attr:`HybridKey.parts`), which an
application should log: ``("qkd", "ml-kem-768")``, or ``("ml-kem-768",)`` without QKD key.

Examples:
    >>> initiator = HybridInitiator()
    >>> reply, mine = respond(initiator.public_key, qkd_key=b"k" * 32, key_id="k1")
    >>> theirs = initiator.finish(reply, qkd_key=b"k" * 32, key_id="k1")
    >>> mine.key == theirs.key, mine.parts
    (True, ('qkd', 'ml-kem-768'))
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qnet.errors import InvalidRequestError

__all__ = ["KEM", "HybridInitiator", "HybridKey", "HybridReply", "respond"]

KEM = "ml-kem-768"
_LABEL = b"qnet hybrid key v1"


@dataclass(frozen=True)
class HybridKey:
    """The established key and the parts it came from (``qkd`` only when a QKD key went in)."""

    key: bytes
    parts: tuple[str, ...]
    key_id: str | None


@dataclass(frozen=True)
class HybridReply:
    """What the responder sends back: the KEM ciphertext (and the QKD key_ID it used, if any)."""

    ciphertext: bytes
    key_id: str | None


def _combine(kem_secret: bytes, qkd_key: bytes | None, key_id: str | None, public_key: bytes,
             ciphertext: bytes, length: int) -> HybridKey:
    if (qkd_key is None) != (key_id is None):
        raise InvalidRequestError("a QKD key and its key_ID go together: give both or neither")
    if qkd_key is not None and len(qkd_key) < 16:
        raise InvalidRequestError(f"a QKD key of {len(qkd_key)} bytes is too short to add security (at least 16)")
    parts = ("qkd", KEM) if qkd_key is not None else (KEM,)
    context = b"\0".join([_LABEL, ",".join(parts).encode(), (key_id or "").encode(), public_key, ciphertext])
    secret = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=context).derive(
        kem_secret + (qkd_key or b""))
    return HybridKey(secret, parts, key_id)


class HybridInitiator:
    """The end that starts: a fresh ML-KEM-768 key pair per exchange (never reused)."""

    def __init__(self) -> None:
        self._private = mlkem.MLKEM768PrivateKey.generate()
        self.public_key = self._private.public_key().public_bytes_raw()
        """To send to the responder (1,184 bytes)."""

    def finish(self, reply: HybridReply, *, qkd_key: bytes | None = None, key_id: str | None = None,
               length: int = 32) -> HybridKey:
        """The key, from the responder's reply and the QKD key named by the reply's key_ID.

        Raises:
            InvalidRequestError: for a malformed ciphertext, or a key_ID other than the reply's.
        """
        if key_id != reply.key_id:
            raise InvalidRequestError(f"the responder used QKD key {reply.key_id!r}, not {key_id!r}")
        try:
            kem_secret = self._private.decapsulate(reply.ciphertext)
        except ValueError as exc:
            raise InvalidRequestError(f"malformed ML-KEM-768 ciphertext: {exc}") from None
        return _combine(kem_secret, qkd_key, key_id, self.public_key, reply.ciphertext, length)


def respond(public_key: bytes, *, qkd_key: bytes | None = None, key_id: str | None = None,
            length: int = 32) -> tuple[HybridReply, HybridKey]:
    """The responder's side: encapsulate to ``public_key``; the reply to send and the key.

    Raises:
        InvalidRequestError: for a malformed public key, or a QKD key without its key_ID.
    """
    try:
        kem_secret, ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(public_key).encapsulate()
    except ValueError as exc:
        raise InvalidRequestError(f"malformed ML-KEM-768 public key: {exc}") from None
    return HybridReply(ciphertext, key_id), _combine(kem_secret, qkd_key, key_id, public_key, ciphertext, length)
