"""ETSI GS QKD 014 v1.1.1 key delivery semantics, without HTTP.

The REST adapter (``qnet.servers.kme``) turns requests into calls here, and the errors raised here
(:mod:`qnet.errors`' tree) into the standard's error body ``{"message", "details"}`` through its one
table (:data:`qnet.servers.errors.ETSI014_STATUS`). The status codes are the standard's only:
200, 400 (bad request), 401 (unauthorised: unknown caller, an SAE pair this KME does not serve, or
a dec_keys for keys not handed out for the caller), 503 (not enough key, or the peer KME is
unreachable). The standard's "Get key with key IDs" says: "The KME shall reject the request with a
401 HTTP status code if the SAE ID of the requestor was not an SAE ID supplied to the 'Get key'
method each time it was called resulting in the return of any of the Key IDs being requested"; so
a master SAE that asks its own KME for the keys it was just given gets 401, as does any other SAE
that was not named as their slave.

The caller's SAE_ID is passed in by the adapter, which takes it from the client certificate (sec.
4.3); a request never names its own caller.

A slave SAE at a node without a QKD link to this one is served by key relay: :meth:`enc_plan`
checks the request and access rights and finds the route (``route_to``, the control layer's
router), and the adapter runs the relay, which needs the network. Access control (Y.3804): an SAE
whose spec entry lists ``peers`` shares keys with those SAEs only; any other pair gets 401.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qnet.errors import InvalidRequestError, NoRouteError, UnauthorizedError, UnavailableError
from qnet.keys.store import NOT_FOR_SAE, DeliveredKey, InsufficientKeyError, StoreError
from qnet.service.usage import ETSI004, ETSI014, KeyUsage

__all__ = ["ETSI014Service", "EncPlan", "KMELimits", "KeyManagerLike", "keys_body"]

NOT_FOR_CALLER = NOT_FOR_SAE
"""The store's reason for a key_ID whose keys were given for other slave SAEs (ETSI 014: 401)."""


@dataclass(frozen=True)
class KMELimits:
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
    def node_of(self, sae_id: str) -> str | None: ...
    def peer_of_node(self, node: str) -> bool: ...
    def allowed(self, sae_a: str, sae_b: str) -> bool: ...
    def stock_for(self, peer: str) -> int: ...
    def enc_keys(self, master: str, slaves: Sequence[str], number: int, size: int) -> list[DeliveredKey]: ...
    def dec_keys(self, slave: str, master: str, key_ids: Sequence[str]) -> list[DeliveredKey]: ...


def keys_body(keys: Sequence[DeliveredKey]) -> dict[str, Any]:
    """The Key container data format (sec. 6.3): key bytes in base64."""
    return {"keys": [{"key_ID": k.key_ID, "key": base64.b64encode(k.key).decode()} for k in keys]}


@dataclass(frozen=True)
class EncPlan:
    """A checked ``enc_keys`` request: for the slaves at ``target`` (a peer, or reached over ``route``)."""

    master: str
    slaves: list[str]
    number: int
    size: int
    target: str
    route: list[str]
    stream: str | None = None
    """The ETSI 004 key stream (Key_stream_ID) the keys are for, if any (accounting, audit)."""

    @property
    def relayed(self) -> bool:
        """Whether the keys must be relayed through trusted nodes."""
        return len(self.route) > 2


def _no_routes(node: str) -> list[str]:
    raise NoRouteError("", node, "this KME has no routing")


class ETSI014Service:
    """The three ETSI 014 methods over one KME's key manager.

    Args:
        manager: the key manager.
        limits: what the KME announces.
        route_to: node -> route from this node (both ends included), for relayed keys.
    """

    def __init__(self, manager: KeyManagerLike, limits: KMELimits | None = None,
                 route_to: Callable[[str], list[str]] = _no_routes) -> None:
        self.manager, self.limits, self.route_to = manager, limits or KMELimits(), route_to
        self.usage = KeyUsage()
        """Keys handed out, per application, peer and API (:mod:`qnet.service.usage`)."""

    def status(self, caller: str, slave: str) -> dict[str, Any]:
        """Get status (sec. 5.1) of the key supply between the caller (master) and ``slave``."""
        target = self._pair(caller, slave)
        route = self._route(target)
        per_key = -(-self.limits.key_size // self.manager.unit_bits)
        lim = self.limits
        return {"source_KME_ID": self.manager.kme_id, "target_KME_ID": target, "master_SAE_ID": caller,
                "slave_SAE_ID": slave, "key_size": lim.key_size,
                "stored_key_count": self.manager.stock_for(route[1]) // per_key, "max_key_count": lim.max_key_count,
                "max_key_per_request": lim.max_key_per_request, "max_key_size": lim.max_key_size,
                "min_key_size": lim.min_key_size, "max_SAE_ID_count": lim.max_SAE_ID_count}

    def enc_keys(self, caller: str, slave: str, number: int | None = None, size: int | None = None,
                 additional_slaves: Sequence[str] | None = None,
                 extension_mandatory: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Get key (sec. 5.2) from a peer's link: ``number`` keys of ``size`` bits for the caller and
        its slave(s). A relayed pair gets 503 here: the adapter runs relays (:meth:`enc_plan`)."""
        return self.deliver(self.enc_plan(caller, slave, number, size, additional_slaves, extension_mandatory))

    def enc_plan(self, caller: str, slave: str, number: int | None = None, size: int | None = None,
                 additional_slaves: Sequence[str] | None = None,
                 extension_mandatory: Sequence[dict[str, Any]] | None = None) -> EncPlan:
        """Check an enc_keys request (caller, access, sizes, route) without taking any key."""
        target = self._pair(caller, slave)
        number = 1 if number is None else number
        size = self.limits.key_size if size is None else size
        self._check_request(number, size, additional_slaves or [], extension_mandatory or [])
        for extra in additional_slaves or []:
            if self.manager.node_of(extra) != target or not self.manager.allowed(caller, extra):
                raise UnauthorizedError("additional slave SAE not attached to the same KME as the slave, or not "
                                        "allowed to share keys with the master",
                                   [{"additional_slave_SAE_ID": extra, "target_KME_ID": target}])
        slaves = [slave, *(s for s in additional_slaves or [] if s != slave)]
        return EncPlan(caller, slaves, number, size, target, self._route(target))

    def deliver(self, plan: EncPlan) -> dict[str, Any]:
        """Hand out the keys of a planned request over the link to the target's KME."""
        if plan.relayed:
            raise UnavailableError(f"keys for {plan.target} must be relayed over {' -> '.join(plan.route)}")
        try:
            keys = self.manager.enc_keys(plan.master, plan.slaves, plan.number, plan.size)
            self.count_enc(plan, keys)
            return keys_body(keys)
        except InsufficientKeyError as exc:
            raise UnavailableError(exc.message, exc.details) from None
        except StoreError as exc:
            raise UnavailableError(exc.message, exc.details) from None

    def count_enc(self, plan: EncPlan, keys: Sequence[DeliveredKey]) -> None:
        """Count keys handed to a plan's master (for each of its slaves)."""
        bits = sum(8 * len(k.key) for k in keys)
        for slave in plan.slaves:
            self.usage.served(plan.master, slave, ETSI004 if plan.stream else ETSI014, keys=len(keys), bits=bits)

    def dec_keys(self, caller: str, master: str, key_ids: Sequence[Any], *,
                 stream: str | None = None) -> dict[str, Any]:
        """Get key with key IDs (sec. 5.3): the caller (a slave) fetches keys its master was given
        (for the ETSI 004 key ``stream``, if named: accounting)."""
        if not self.manager.local_sae(caller):
            raise UnauthorizedError("unknown SAE: no SAE with this certificate's SAE_ID is attached to this KME",
                               [{"SAE_ID": caller}])
        if self.manager.node_of(master) is None:
            raise UnauthorizedError("unknown master SAE: not attached to any KME of this network",
                               [{"master_SAE_ID": master}])
        if not self.manager.allowed(master, caller):
            raise UnauthorizedError("access control: these SAEs may not share keys",
                               [{"master_SAE_ID": master, "slave_SAE_ID": caller}])
        if not key_ids:
            raise InvalidRequestError("no key_IDs given")
        if len(key_ids) > self.limits.max_key_per_request:
            raise InvalidRequestError(f"at most {self.limits.max_key_per_request} key_IDs per request",
                               [{"count": len(key_ids)}])
        bad = [str(k) for k in key_ids if not _is_uuid(k)]
        if bad:
            raise InvalidRequestError("malformed key_ID: not a UUID", [{"key_ID": b} for b in bad[:10]])
        if len(set(key_ids)) != len(key_ids):
            raise InvalidRequestError("the same key_ID is asked for twice")
        try:
            keys = self.manager.dec_keys(caller, master, list(key_ids))
        except StoreError as exc:
            not_ours = [d for d in exc.details if d.get("reason") == NOT_FOR_CALLER]
            if not_ours:  # "Get key with key IDs": the caller is not a slave the master named for these keys
                raise UnauthorizedError(f"key_ID {not_ours[0]['key_ID']}: {NOT_FOR_CALLER}", not_ours) from None
            raise InvalidRequestError(exc.message, exc.details) from None
        self.usage.served(caller, master, ETSI004 if stream else ETSI014, keys=len(keys),
                          bits=sum(8 * len(k.key) for k in keys))
        return keys_body(keys)

    def _pair(self, caller: str, slave: str) -> str:
        if not self.manager.local_sae(caller):
            raise UnauthorizedError("unknown SAE: no SAE with this certificate's SAE_ID is attached to this KME",
                               [{"SAE_ID": caller}])
        target = self.manager.node_of(slave)
        if target is None or target == self.manager.kme_id:
            why = "is attached to this same KME" if target else "is not attached to any KME of this network"
            raise UnauthorizedError(f"no key supply to the slave SAE: it {why}", [{"slave_SAE_ID": slave}])
        if not self.manager.allowed(caller, slave):
            raise UnauthorizedError("access control: these SAEs may not share keys",
                               [{"master_SAE_ID": caller, "slave_SAE_ID": slave}])
        return target

    def _route(self, target: str) -> list[str]:
        if self.manager.peer_of_node(target):
            return [self.manager.kme_id, target]
        try:
            return self.route_to(target)
        except NoRouteError as exc:
            raise UnavailableError(f"no relay route to {target}: {exc}", [{"target_KME_ID": target}]) from None

    def _check_request(self, number: int, size: int, additional: Sequence[str],
                       mandatory: Sequence[dict[str, Any]]) -> None:
        lim = self.limits
        if number < 1 or number > lim.max_key_per_request:
            raise InvalidRequestError(f"number must be between 1 and max_key_per_request ({lim.max_key_per_request})",
                               [{"number": number}])
        if size % 8 or not lim.min_key_size <= size <= lim.max_key_size:
            raise InvalidRequestError(f"size must be a multiple of 8 between {lim.min_key_size} and {lim.max_key_size}",
                               [{"size": size}])
        if len(additional) > lim.max_SAE_ID_count:
            raise InvalidRequestError(f"at most {lim.max_SAE_ID_count} additional_slave_SAE_IDs",
                               [{"count": len(additional)}])
        names = [name for ext in mandatory for name in ext]
        if names:
            raise InvalidRequestError("unsupported mandatory extension", [{"extension": n} for n in names])


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None
