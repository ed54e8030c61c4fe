"""The key relay as one node runs it (ITU-T Y.3803 key relay): which route a relay takes, which
waiting requests travel together, what is tried when a hop fails, and what a node in the middle
does with a relay message.

- **Route**: the control layer's router (:class:`RelayRoutes`), around the links of peers that do
  not answer, links out of service (cut), nodes and links held down after a failed relay
  (:class:`~qnet.keys.relay_policy.HoldDown`) and nodes the operator drained; a session's route
  when the controller admitted one from here to the target and it is still usable.
- **Coalescing**: :data:`~qnet.keys.relay_policy.RELAY_IN_FLIGHT` relay per target node at a time;
  requests arriving meanwhile queue and the next relay carries them together
  (:func:`~qnet.keys.relay_policy.next_batch`): one signature, one transaction and one round trip
  per hop for all. A batch succeeds or fails whole, so no master holds a key its slave cannot get.
- **Split**: a batch the first hop's pool cannot serve whole is split in halves
  (:func:`~qnet.keys.relay_policy.split`), so the requests that fit alone are still served.
- **Retries**: a hop that fails holds down the node or link its answer names and the relay tries
  another route, :data:`~qnet.keys.relay_policy.RELAY_TRIES` routes in all.
- **Forwarding**: at a later node the message is applied (:meth:`KeyManager.relay_step`) and passed
  on; a hop this node refuses, or a failure further on, is answered with the failed element named
  (``{"failed": node or link}``), which the sender holds down.

Each attempt is recorded as a :class:`RelayDecision` (``decisions``): what ``qnet simulate`` and a
live KME decided, step by step, can be compared.

Pure logic with the clock and the transport passed in: ``send(peer, body)`` is an awaitable that
delivers a KM-to-KM message body and returns the peer's answer, or raises
:class:`~qnet.errors.PeerError` with the peer's error body. The KME server
(:mod:`qnet.servers.node`) signs the body and posts it over HTTPS from its event loop; ``qnet
simulate`` awaits the peer's :meth:`Relayer.hop` in the same process, whose awaits never suspend, so
:func:`run_now` runs a whole relay at once without an event loop.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from qnet.errors import NoRouteError, PeerError, UnavailableError
from qnet.keys.events import KMEEvent
from qnet.keys.manager import KeyManager
from qnet.keys.peers import Peers
from qnet.keys.relay import RelayRequest
from qnet.keys.relay_policy import RELAY_IN_FLIGHT, RELAY_TRIES, HoldDown, failed_element, next_batch, split
from qnet.keys.store import DeliveredKey, InsufficientKeyError, MalformedMessageError, StoreError
from qnet.security.envelope import EnvelopeError, Opened

__all__ = ["Outcome", "Pending", "RelayDecision", "RelayRoutes", "Relayer", "Waiting", "run_now"]

AsyncSend = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
OnRelayed = Callable[[Sequence[RelayRequest], list[list[DeliveredKey]], list[str], str], None]
T = TypeVar("T")


class RelayRoutes(Protocol):
    """The control layer's routing as a relay asks it (``qnet.control.routing.RelayRouting``):
    ``down`` names links (and nodes) that must not carry the relay, ``avoid_nodes`` nodes it must
    not pass through."""

    def route(self, src: str, dst: str, *, down: Collection[str], avoid_nodes: Collection[str]) -> list[str]:
        """A route from ``src`` to ``dst`` (both included). Raises NoRouteError if there is none."""
        ...

    def usable(self, route: Sequence[str], *, down: Collection[str]) -> bool:
        """Whether every hop of ``route`` has a usable link."""
        ...


class Pending(Protocol):
    """Where a waiting request's answer goes: an ``asyncio.Future`` (the server) or a
    ``concurrent.futures.Future`` (the simulation)."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(frozen=True)
class Waiting:
    """A request waiting for its relay; ``answer`` gets its keys or its error."""

    request: RelayRequest
    answer: Pending

    def fail(self, exc: BaseException) -> None:
        """Answer with ``exc`` (unless the client left)."""
        if not self.answer.done():
            self.answer.set_exception(exc)


class Outcome(StrEnum):
    """How one relay attempt ended."""

    RELAYED = "relayed"
    """Every hop took it; the keys are stored at the target."""
    HOP_FAILED = "hop-failed"
    """A hop did not answer or refused it (``failed`` names the element held down)."""
    SHORT = "short"
    """The first hop's pool is short for the batch (it is split, or fails alone)."""
    NO_ROUTE = "no-route"
    """No usable route is left."""


@dataclass(frozen=True)
class RelayDecision:
    """One relay attempt from this node."""

    time_s: float
    target: str
    route: tuple[str, ...]
    """Empty for ``no-route``."""
    requests: int
    keys: int
    outcome: Outcome
    failed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"time_s": self.time_s, "target": self.target, "route": list(self.route), "requests": self.requests,
                "keys": self.keys, "outcome": self.outcome.value, "failed": self.failed}


class Relayer:
    """The relay of one node's key manager.

    Args:
        manager: the key manager (its store, links and events).
        routes: the control layer's router.
        send: delivers a relay message body to a peer (see the module's docstring).
        peers: which peers answer (their links are routed around).
        clock: seconds.
    """

    def __init__(self, manager: KeyManager, routes: RelayRoutes, send: AsyncSend, *, peers: Peers,
                 clock: Callable[[], float]) -> None:
        self.manager, self.routes, self.send, self.peers, self.clock = manager, routes, send, peers, clock
        self.kme_id = manager.kme_id
        self.hold_down = HoldDown()
        """Nodes and links that failed a relay recently (routed around)."""
        self.drained: set[str] = set()
        """Nodes the operator drained: no relay passes through them (from the controller)."""
        self.session_routes: dict[str, list[str]] = {}
        """Target node -> the route of a session the controller admitted from here."""
        self.on_relayed: OnRelayed | None = None
        """Called with (requests, their keys, route, first hop's link_id) before the keys go to their
        masters (the audit log); an error it raises fails the batch."""
        self.on_stored: Callable[[dict[str, Any]], None] | None = None
        """Called with a relay message whose keys were stored here for their slaves (the audit log)."""
        self.decisions: deque[RelayDecision] = deque(maxlen=10_000)
        self._queues: defaultdict[str, deque[Waiting]] = defaultdict(deque)
        self._workers: defaultdict[str, int] = defaultdict(int)

    # -- at the first node ---------------------------------------------------------------------------

    def route_to(self, node: str) -> list[str]:
        """A relay route from here to ``node`` (see the module's docstring).

        Raises:
            NoRouteError: if the policy or the failures leave none.
        """
        held = self.hold_down.held(self.clock())
        down = {lk.link_id for lk in self.manager.by_id.values()
                if not self.peers.ok(lk.peer) or lk.link_id in self.manager.out_of_service}
        down |= set(held)
        avoid = held + sorted(self.drained)
        pinned = self.session_routes.get(node)
        if pinned and not set(pinned[1:-1]) & set(avoid) and self.routes.usable(pinned, down=down):
            return list(pinned)
        return self.routes.route(self.kme_id, node, down=down, avoid_nodes=avoid)

    def submit(self, target: str, waiting: Waiting) -> bool:
        """Queue a request for ``target``. True if the caller must now run :meth:`work` for it
        (no relay to it is in flight); else the relay in flight takes it next."""
        self._queues[target].append(waiting)
        if self._workers[target] >= RELAY_IN_FLIGHT:
            return False
        self._workers[target] += 1
        return True

    async def work(self, target: str) -> None:
        """Relay the queue for ``target``, batch after batch, until it is empty."""
        queue, unit_bits = self._queues[target], self.manager.unit_bits
        try:
            while batch := next_batch(queue, lambda w: w.request.units(unit_bits), alive=lambda w: not w.answer.done()):
                await self._batch(target, batch)
        finally:
            self._workers[target] -= 1

    async def _batch(self, target: str, batch: list[Waiting]) -> None:
        """Relay one batch and answer each request in it; split it if the first hop is short."""
        try:
            results = await self._tries(target, [w.request for w in batch])
        except InsufficientKeyError as exc:
            if len(batch) == 1:
                batch[0].fail(UnavailableError(exc.message, exc.details))
                return
            for part in split(batch):
                await self._batch(target, part)
            return
        except Exception as exc:  # a QNetError, or a bug: every request of the batch fails alike
            for waiting in batch:
                waiting.fail(exc)
            return
        for waiting, keys in zip(batch, results, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(keys)

    async def _tries(self, target: str, requests: list[RelayRequest]) -> list[list[DeliveredKey]]:
        """Relay ``requests`` in one message per hop, on up to :data:`RELAY_TRIES` routes.

        Raises:
            InsufficientKeyError: if the first hop's pool is short for them all.
            UnavailableError: if no route works (each try's failure is named).
        """
        failures: list[str] = []
        count = sum(r.number for r in requests)
        for _ in range(RELAY_TRIES):
            try:
                route = self.route_to(target)
            except NoRouteError as exc:
                self._decide(target, (), requests, Outcome.NO_ROUTE)
                failures.append(str(exc))
                break
            try:
                keys, hop = self.manager.relay_start(requests, route)
            except InsufficientKeyError:
                self._decide(target, route, requests, Outcome.SHORT)
                raise  # the caller may split the batch
            except StoreError as exc:
                raise UnavailableError(exc.message, exc.details) from None
            try:
                await self.send(str(hop.next_node), hop.body)
            except PeerError as exc:
                failed = self._failed(str(hop.next_node), exc)
                self._decide(target, route, requests, Outcome.HOP_FAILED, failed)
                failures.append(f"{' -> '.join(route)}: {exc}")
                self.manager.event(KMEEvent.RELAY_REROUTE,
                                   f"relay to {target} failed at {failed}; trying another route")
                continue
            self._decide(target, route, requests, Outcome.RELAYED)
            if self.on_relayed is not None:
                self.on_relayed(requests, keys, route, str(hop.body["link_id"]))
            return keys
        raise UnavailableError(f"key relay to {target} failed ({count} keys)", [{"try": f} for f in failures])

    def _decide(self, target: str, route: Sequence[str], requests: Sequence[RelayRequest], outcome: Outcome,
                failed: str | None = None) -> None:
        self.decisions.append(RelayDecision(self.clock(), target, tuple(route), len(requests),
                                            sum(r.number for r in requests), outcome, failed))

    def _failed(self, next_node: str, exc: PeerError) -> str:
        """Note what failed (a node or link further on, else the next node) and hold it down."""
        failed = failed_element(next_node, exc.body)
        if exc.peer_status is None:
            self.peers.mark(next_node, False, str(exc))
        self.hold_down.hold(failed, self.clock())
        return failed

    # -- at a later node -----------------------------------------------------------------------------

    async def hop(self, opened: Opened) -> dict[str, Any]:
        """Apply a relay message and pass it on; the answer comes back once the last node stored it.

        Raises:
            EnvelopeError: a replay, or no link with the sender.
            MalformedMessageError: not a relay message of the protocol (the sender's fault).
            UnavailableError: this hop refused it, or a later one failed; ``details`` name the
                failed node or link (``{"failed": ...}``), which the sender holds down.
        """
        try:
            step = self.manager.relay_step(opened)
        except (EnvelopeError, MalformedMessageError) as exc:
            if isinstance(exc, MalformedMessageError):
                self.manager.event(KMEEvent.RELAY_REFUSED, exc.message)
            raise
        except StoreError as exc:  # this hop failed: the sender routes around this node
            self.manager.event(KMEEvent.RELAY_REFUSED, exc.message)
            raise UnavailableError(exc.message, [*exc.details, {"failed": self.kme_id}]) from None
        if step.next_node is None:
            if self.on_stored is not None:
                self.on_stored(step.body)
            return {"ok": True, "stored": len(step.key_ids), "at": self.kme_id}
        try:
            return await self.send(step.next_node, step.body)
        except PeerError as exc:
            failed = self._failed(step.next_node, exc)
            raise UnavailableError(f"relay failed at {failed}: {exc}", [{"failed": failed}]) from None


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (an in-process relay) to its end, without an event loop.

    Raises:
        RuntimeError: if it does suspend (it awaited real I/O).
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("an in-process relay awaited something that suspends")
