"""ETSI GS QKD 014 v1.1.1 key delivery semantics, without HTTP.

The REST adapter (``qnet.servers.kme``) turns requests into calls here and :class:`Etsi014Error` into
the standard's error body ``{"message", "details"}``. The status codes are the standard's only:
200, 400 (bad request), 401 (unauthorised: unknown caller, or an SAE pair this KME does not
serve), 503 (not enough key, or the peer KME is unreachable).

The caller's SAE_ID is passed in by the adapter, which takes it from the client certificate (sec.
4.3); a request never names its own caller.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qnet.keys.store import DeliveredKey, NotEnoughKey, StoreError

__all__ = ["Etsi014Error", "Etsi014Service", "KeyManagerLike", "KmeLimits", "keys_body"]


class Etsi014Error(Exception):
    """An ETSI 014 error response: ``status`` (400, 401 or 503), ``message`` and ``details``."""

    def __init__(self, status: int, message: str, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, list(details)

    def body(self) -> dict[str, Any]:
        """The standard's Error data format (sec. 6.3)."""
        return {"message": self.message, "details": self.details} if self.details else {"message": self.message}


@dataclass(frozen=True)
class KmeLimits:
    """What a KME announces in Status (sec. 6.1)."""

    key_size: int = 256
    min_key_size: int = 8
    max_key_size: int = 8192
    max_key_per_request: int = 1024
    max_key_count: int = 100_000
    max_SAE_ID_count: int = 8


class KeyManagerLike(Protocol):
    """What the service needs from the key manager (``qnet.keys.manager.KeyManager``)."""

    kme_id: str
    unit_bits: int

    def local_sae(self, sae_id: str) -> bool: ...
    def peer_of(self, sae_id: str) -> str | None: ...
    def stock_for(self, peer: str) -> int: ...
    def enc_keys(self, master: str, slaves: Sequence[str], number: int, size: int) -> list[DeliveredKey]: ...
    def dec_keys(self, slave: str, master: str, key_ids: Sequence[str]) -> list[DeliveredKey]: ...


def keys_body(keys: Sequence[DeliveredKey]) -> dict[str, Any]:
    """The Key container data format (sec. 6.3): key bytes in base64."""
    return {"keys": [{"key_ID": k.key_ID, "key": base64.b64encode(k.key).decode()} for k in keys]}


class Etsi014Service:
    """The three ETSI 014 methods over one KME's key manager."""

    def __init__(self, manager: KeyManagerLike, limits: KmeLimits | None = None) -> None:
        self.manager, self.limits = manager, limits or KmeLimits()

    def status(self, caller: str, slave: str) -> dict[str, Any]:
        """Get status (sec. 5.1) of the link between the caller (master) and ``slave``."""
        peer = self._pair(caller, slave)
        per_key = -(-self.limits.key_size // self.manager.unit_bits)
        lim = self.limits
        return {"source_KME_ID": self.manager.kme_id, "target_KME_ID": peer, "master_SAE_ID": caller,
                "slave_SAE_ID": slave, "key_size": lim.key_size,
                "stored_key_count": self.manager.stock_for(peer) // per_key, "max_key_count": lim.max_key_count,
                "max_key_per_request": lim.max_key_per_request, "max_key_size": lim.max_key_size,
                "min_key_size": lim.min_key_size, "max_SAE_ID_count": lim.max_SAE_ID_count}

    def enc_keys(self, caller: str, slave: str, number: int | None = None, size: int | None = None,
                 additional_slaves: Sequence[str] | None = None,
                 extension_mandatory: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Get key (sec. 5.2): ``number`` keys of ``size`` bits for the caller and its slave(s)."""
        peer = self._pair(caller, slave)
        number = 1 if number is None else number
        size = self.limits.key_size if size is None else size
        self._check_request(number, size, additional_slaves or [], extension_mandatory or [])
        for extra in additional_slaves or []:
            if self.manager.peer_of(extra) != peer:
                raise Etsi014Error(401, "additional slave SAE not reachable through the same KME pair",
                                   [{"additional_slave_SAE_ID": extra, "target_KME_ID": peer}])
        slaves = [slave, *(s for s in additional_slaves or [] if s != slave)]
        try:
            return keys_body(self.manager.enc_keys(caller, slaves, number, size))
        except NotEnoughKey as exc:
            raise Etsi014Error(503, exc.message, exc.details) from None
        except StoreError as exc:
            raise Etsi014Error(503, exc.message, exc.details) from None

    def dec_keys(self, caller: str, master: str, key_ids: Sequence[Any]) -> dict[str, Any]:
        """Get key with key IDs (sec. 5.3): the caller (a slave) fetches keys its master was given."""
        if not self.manager.local_sae(caller):
            raise Etsi014Error(401, "unknown SAE: no SAE with this certificate's SAE_ID is attached to this KME",
                               [{"SAE_ID": caller}])
        if self.manager.peer_of(master) is None:
            raise Etsi014Error(401, "no key link to the master SAE's KME", [{"master_SAE_ID": master}])
        if not key_ids:
            raise Etsi014Error(400, "no key_IDs given")
        if len(key_ids) > self.limits.max_key_per_request:
            raise Etsi014Error(400, f"at most {self.limits.max_key_per_request} key_IDs per request",
                               [{"count": len(key_ids)}])
        bad = [str(k) for k in key_ids if not _is_uuid(k)]
        if bad:
            raise Etsi014Error(400, "malformed key_ID: not a UUID", [{"key_ID": b} for b in bad[:10]])
        if len(set(key_ids)) != len(key_ids):
            raise Etsi014Error(400, "the same key_ID is asked for twice")
        try:
            return keys_body(self.manager.dec_keys(caller, master, list(key_ids)))
        except StoreError as exc:
            raise Etsi014Error(400, exc.message, exc.details) from None

    def _pair(self, caller: str, slave: str) -> str:
        if not self.manager.local_sae(caller):
            raise Etsi014Error(401, "unknown SAE: no SAE with this certificate's SAE_ID is attached to this KME",
                               [{"SAE_ID": caller}])
        peer = self.manager.peer_of(slave)
        if peer is None:
            raise Etsi014Error(401, "this KME has no key link to the slave SAE", [{"slave_SAE_ID": slave}])
        return peer

    def _check_request(self, number: int, size: int, additional: Sequence[str],
                       mandatory: Sequence[dict[str, Any]]) -> None:
        lim = self.limits
        if number < 1 or number > lim.max_key_per_request:
            raise Etsi014Error(400, f"number must be between 1 and max_key_per_request ({lim.max_key_per_request})",
                               [{"number": number}])
        if size % 8 or not lim.min_key_size <= size <= lim.max_key_size:
            raise Etsi014Error(400, f"size must be a multiple of 8 between {lim.min_key_size} and {lim.max_key_size}",
                               [{"size": size}])
        if len(additional) > lim.max_SAE_ID_count:
            raise Etsi014Error(400, f"at most {lim.max_SAE_ID_count} additional_slave_SAE_IDs",
                               [{"count": len(additional)}])
        names = [name for ext in mandatory for name in ext]
        if names:
            raise Etsi014Error(400, "unsupported mandatory extension", [{"extension": n} for n in names])


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None
