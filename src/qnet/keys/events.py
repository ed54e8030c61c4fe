"""The words key managers use between themselves and towards the operator: the kinds of event a
key manager records (:meth:`qnet.keys.manager.KeyManager.event`, forwarded to the controller with
its reports) and the types of KM-to-KM message (the signed envelopes' ``type``).

They are :class:`~enum.StrEnum` members, so they travel as the same plain strings in JSON, logs and
stores as before, while code that names one names a member (a typo is an error, not a new kind).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["KMEEvent", "KMMessage"]


class KMEEvent(StrEnum):
    """What a key manager tells its operator (and the controller, which files them as ``kme-KIND``)."""

    SYNC_MISMATCH = "sync-mismatch"
    """Units one end had and the other never got, discarded by synchronisation."""
    RELAY_REROUTE = "relay-reroute"
    """A relay failed at a node and was retried on another route."""
    RELAY_REFUSED = "relay-refused"
    """A relay this node was asked to forward or store was refused."""
    POOL_LOW = "pool-low"
    """A link's servable stock here fell below its low-water mark."""
    POOL_OK = "pool-ok"
    """A link's stock is back above the low-water mark."""
    PEER_UNREACHABLE = "peer-unreachable"
    """A neighbouring key manager does not answer."""
    PEER_REACHABLE = "peer-reachable"
    """It answers again."""
    LINK_LAGGING = "link-lagging"
    """A link's feed samples its blocks (behind real time, planned so, or compiling)."""
    LINK_REAL_TIME = "link-real-time"
    """The feed has kept real time photon by photon again."""
    LINK_CUT = "link-cut"
    """The controller cut a link of this node."""
    LINK_RESTORED = "link-restored"
    """The controller put it back in service."""
    KM_MESSAGE_REFUSED = "km-message-refused"
    """A KM-to-KM message was forged, tampered with, replayed or stale (an authentication failure)."""
    CONTROLLER_UNREACHABLE = "controller-unreachable"
    """The controller does not answer this node's reports."""


class KMMessage(StrEnum):
    """The types of KM-to-KM message (the ``type`` of a signed envelope's body)."""

    ASSIGN = "assign"
    """Units of a link given to a master SAE's request: the peer holds them for the slaves."""
    BATCH = "batch"
    """Several assign and cede messages in one envelope."""
    CEDE = "cede"
    """Units this end hands to the other, which needs them more."""
    SYNC = "sync"
    """An offer of the units the peer has not confirmed (or a probe)."""
    RELAY = "relay"
    """Keys relayed hop by hop towards a non-adjacent node, one-time-pad encrypted per hop."""
