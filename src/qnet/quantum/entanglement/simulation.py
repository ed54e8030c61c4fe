"""The entanglement network in discrete-event time: link layer, swapping, purification, cut-offs, delivery.

Each reserved memory slot of each link runs :meth:`Simulation._generate`, a process that reads top to
bottom: wait until both memories are free, wait the sampled number of attempts until a herald
(geometric with the link's per-attempt probability: the same distribution as running every attempt,
with one event instead of thousands), store the pair. From there a pair moves by messages:

- a router learns of a pair when its herald or the swap's outcome reaches it (fibre delay);
- the pair's *consumer* (the router of the swapping plan that joins it, or both ends for delivery or
  purification) acts as soon as it knows of a matching pair: it swaps (Bell measurement, success with
  the BSM's probability), purifies two pairs of the same ends (both ends measure, the outcome is known
  after the one-way delay), or, for an end-to-end pair known at both ends, delivers it;
- every stored qubit decays from its storage time (applied when the pair is next touched: channels on
  different qubits commute) and is discarded at its memory's cut-off, freeing the pair's memories.

States are tracked by the chosen formalism (:mod:`.states`), so a delivered pair's fidelity is that of
its state at delivery, not a bookkeeping estimate. Pauli corrections of swaps are applied in the frame
(the far end's correction is exact for Pauli noise; with T1 damping in the density-matrix formalism it
is deferred to the end).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import simpy

from qnet.physics import bell
from qnet.physics import density as dm
from qnet.quantum.entanglement.components import FIBRE_S_PER_KM, LinkModel, MemoryModel
from qnet.quantum.entanglement.report import Delivery, Report, flow_report
from qnet.quantum.entanglement.states import FORMALISMS, Formalism, formalism
from qnet.quantum.entanglement.topology import ORDERS, Request, Reservation, reserve, swap_plan
from qnet.sim.kernel import Kernel
from qnet.units import PS_PER_S

__all__ = ["Policy", "Purification", "Simulation", "simulate"]


@dataclass(frozen=True)
class Purification:
    """Purify pairs before they are used: ``rounds`` rounds of ``protocol`` (``dejmps`` or ``bbpssw``) on
    the pairs of ``spans`` (``links``: elementary links; ``end``: end-to-end pairs; ``all``: every pair),
    in the ``recurrence`` scheme (two pairs of the same round) or ``pumping`` (with a fresh pair)."""

    rounds: int = 1
    protocol: str = "dejmps"
    spans: str = "links"
    scheme: str = "recurrence"

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"purification rounds must be >= 1, got {self.rounds!r}")
        if self.protocol not in ("dejmps", "bbpssw"):
            raise ValueError(f"purification protocol must be dejmps or bbpssw, got {self.protocol!r}")
        if self.spans not in ("links", "end", "all"):
            raise ValueError(f"purification spans must be links, end or all, got {self.spans!r}")
        if self.scheme not in ("recurrence", "pumping"):
            raise ValueError(f"purification scheme must be recurrence or pumping, got {self.scheme!r}")


@dataclass(frozen=True)
class Policy:
    """How routers use their pairs: swapping order and Bell measurement, purification, formalism."""

    order: str = "nested"
    swap_success: float = 1.0
    swap_depolarising: float = 0.0
    purification: Purification | None = None
    formalism: str = "bell_diagonal"
    swap_handshake: bool = False
    """Before measuring, the swapping router confirms both pairs with their far ends (a round trip to the
    farther one, as SeQUeNCe's swapping protocol does); the pairs keep decaying meanwhile."""

    def __post_init__(self) -> None:
        if not 0.0 < self.swap_success <= 1.0:
            raise ValueError(f"swap_success must be in (0, 1], got {self.swap_success!r}")
        if not 0.0 <= self.swap_depolarising <= 1.0:
            raise ValueError(f"swap_depolarising must be in [0, 1], got {self.swap_depolarising!r}")
        if self.order not in ORDERS:
            raise ValueError(f"swapping order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.formalism not in FORMALISMS:
            raise ValueError(f"formalism must be one of {', '.join(FORMALISMS)}, got {self.formalism!r}")
        if self.formalism == "stabilizer" and self.purification and self.purification.protocol != "dejmps":
            raise ValueError("the stabilizer formalism purifies with dejmps only (BBPSSW's twirl is no circuit)")


class _Memory:
    __slots__ = ("busy_ps", "cutoff_ps", "decay", "free", "generation", "pair", "since_ps", "slot")

    def __init__(self, slot: _Slot, model: MemoryModel) -> None:
        self.slot = slot
        self.decay = model.decay
        self.cutoff_ps = None if math.isinf(model.cutoff_s) else round(model.cutoff_s * PS_PER_S)
        self.pair: _Pair | None = None
        self.free = True
        self.generation = 0
        self.since_ps = 0
        self.busy_ps = 0


class _Slot:
    """One memory at each end of a link, reserved for one request."""

    __slots__ = ("ends", "wake")

    def __init__(self, a: MemoryModel, b: MemoryModel) -> None:
        self.ends = (_Memory(self, a), _Memory(self, b))
        self.wake: simpy.Event | None = None


@dataclass(eq=False)
class _Pair:
    a: int
    b: int
    state: Any
    memories: tuple[_Memory, _Memory]
    stored_ps: tuple[int, int]
    touched_ps: list[int]
    rounds: int = 0
    alive: bool = True
    known: list[bool] = field(default_factory=lambda: [False, False])


class _Flow:
    """One reservation's run-time state."""

    def __init__(self, reservation: Reservation, policy: Policy) -> None:
        self.reservation = reservation
        self.links = len(reservation.path) - 1
        self.plan = swap_plan(self.links, policy.order)
        self.consumer = {span: r for r, (a, b) in self.plan.items() for span in ((a, r), (r, b))}
        self.held: dict[tuple[int, int], deque[_Pair]] = {}
        self.pool: dict[tuple[int, int, int], deque[_Pair]] = {}
        self.deliveries: list[Delivery] = []
        self.delay_ps = [round(x * FIBRE_S_PER_KM * PS_PER_S) for x in reservation.positions_km]

    def delay(self, i: int, j: int) -> int:
        return abs(self.delay_ps[j] - self.delay_ps[i])


class Simulation:
    """One run: a network, its requests and a policy, on a :class:`~qnet.sim.kernel.Kernel`."""

    def __init__(self, graph: nx.Graph, requests: Sequence[Request], policy: Policy | None = None, *,
                 seed: int = 0) -> None:
        self.graph = graph
        self.policy = policy or Policy()
        self.kernel = Kernel(seed)
        self.env = self.kernel.env
        self.rng = self.kernel.rng("entanglement")
        self.states: Formalism = formalism(self.policy.formalism, seed)
        self.reservations, self.refused = reserve(graph, requests)
        self.flows = [_Flow(r, self.policy) for r in self.reservations]
        self._swap_noise = bell.depolarising_channel(self.policy.swap_depolarising)
        self.events = self.swaps = self.swap_failures = self.cutoffs = 0
        self.purifications = self.purification_failures = 0
        self._memories: list[_Memory] = []

    def run(self, duration_s: float, progress: Callable[[float], None] | None = None) -> Report:
        """Simulate ``duration_s`` seconds; ``progress`` is called with the simulated time every 1 % of it."""
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
        end_ps = round(duration_s * PS_PER_S)
        for flow in self.flows:
            self._start(flow, end_ps)
        if progress is None:
            self.env.run(until=end_ps)
        else:
            for step in range(1, 101):
                self.env.run(until=end_ps * step // 100)
                progress(duration_s * step / 100)
        return self.report(duration_s)

    def report(self, duration_s: float) -> Report:
        """What the run measured so far (:class:`~qnet.quantum.entanglement.report.Report`)."""
        now = int(self.env.now)
        busy = sum(m.busy_ps + (0 if m.free else now - m.since_ps) for m in self._memories)
        occupancy = busy / (len(self._memories) * now) if self._memories and now else 0.0
        flows = []
        for flow in self.flows:
            path = flow.reservation.path
            flows.append(flow_report(
                flow.reservation, flow.deliveries, duration_s,
                attenuation_db_per_km=self.graph.edges[path[0], path[1]]["link"].attenuation_db_per_km,
                mode_rate_hz=self.graph.nodes[path[0]]["memory"].frequency_hz))
        return Report(
            duration_s=duration_s, formalism=self.policy.formalism, order=self.policy.order, flows=tuple(flows),
            refused=tuple((r.source, r.destination, why) for r, why in self.refused), events=self.events,
            swaps=self.swaps, swap_failures=self.swap_failures, purifications=self.purifications,
            purification_failures=self.purification_failures, cutoffs=self.cutoffs, memory_occupancy=occupancy)

    # -- link layer -----------------------------------------------------------------------------------
    def _start(self, flow: _Flow, end_ps: int) -> None:
        request = flow.reservation.request
        stop = end_ps if math.isinf(request.end_s) else min(end_ps, round(request.end_s * PS_PER_S))
        for i in range(flow.links):
            u, v = flow.reservation.path[i], flow.reservation.path[i + 1]
            link: LinkModel = self.graph.edges[u, v]["link"]
            memory: MemoryModel = self.graph.nodes[u]["memory"]
            for _ in range(flow.reservation.slots[i]):
                slot = _Slot(memory, self.graph.nodes[v]["memory"])
                self._memories.extend(slot.ends)
                self.env.process(self._generate(flow, i, slot, link, memory, request.start_s, stop))

    def _generate(self, flow: _Flow, i: int, slot: _Slot, link: LinkModel, memory: MemoryModel,
                  start_s: float, stop_ps: int) -> Any:
        """Heralded generation on link i, one memory slot: attempt until a herald, store, repeat."""
        p = link.success_probability(memory)
        attempt_ps = max(round(link.attempt_s(memory) * PS_PER_S), 1)
        stored_ps = round(link.emission_to_herald_s(memory) * PS_PER_S)
        raw = link.initial_state(memory)
        yield self.env.timeout(round(start_s * PS_PER_S))
        while True:
            while not (slot.ends[0].free and slot.ends[1].free):
                slot.wake = self.env.event()
                yield slot.wake
            attempts = int(self.rng.geometric(p)) if p < 1 else 1
            herald_ps = int(self.env.now) + attempts * attempt_ps
            if herald_ps >= stop_ps:
                return
            yield self.env.timeout(attempts * attempt_ps)
            self.events += 1
            emitted = int(self.env.now) - stored_ps
            pair = _Pair(i, i + 1, self.states.create(raw), slot.ends, (emitted, emitted), [emitted, emitted])
            for m in slot.ends:
                self._occupy(m, pair)
            self._learn(flow, pair, 0)
            self._learn(flow, pair, 1)

    # -- memories -------------------------------------------------------------------------------------
    def _occupy(self, m: _Memory, pair: _Pair) -> None:
        """A new qubit is stored in ``m``; it is discarded at the memory's cut-off."""
        m.free = False
        m.generation += 1
        m.since_ps = int(self.env.now)
        m.pair = pair
        if m.cutoff_ps is not None:
            self._after(m.cutoff_ps, self._expire, m, m.generation)

    def _release(self, m: _Memory) -> None:
        if m.free:
            return
        m.free = True
        m.busy_ps += int(self.env.now) - m.since_ps
        wake = m.slot.wake
        if wake is not None and not wake.triggered and m.slot.ends[0].free and m.slot.ends[1].free:
            m.slot.wake = None
            wake.succeed()

    def _discard(self, pair: _Pair) -> None:
        if pair.alive:
            pair.alive = False
            self.states.discard(pair.state)
            for m in pair.memories:
                self._release(m)

    def _expire(self, m: _Memory, generation: int) -> None:
        if m.generation == generation and not m.free and m.pair is not None:
            self.cutoffs += 1
            self._discard(m.pair)

    def _after(self, delay_ps: int, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` ``delay_ps`` from now (a message in flight, a timer)."""
        self.env.timeout(delay_ps).callbacks.append(lambda _: action(*args))

    # -- what a router does with a pair it learns of ---------------------------------------------------
    def _learn(self, flow: _Flow, pair: _Pair, end: int) -> None:
        """The router at ``pair``'s end ``end`` (0: a, 1: b) now knows of it."""
        if not pair.alive:
            return
        self.events += 1
        pair.known[end] = True
        span = (pair.a, pair.b)
        if self._wants_purification(flow, pair):
            if pair.known[0] and pair.known[1]:
                self._purify_or_wait(flow, pair)
            return
        if span == (0, flow.links):
            if pair.known[0] and pair.known[1]:
                self._deliver(flow, pair)
            return
        at = pair.b if end == 1 else pair.a
        if flow.consumer.get(span) == at:
            self._swap_or_wait(flow, pair, at)

    def _wants_purification(self, flow: _Flow, pair: _Pair) -> bool:
        rule = self.policy.purification
        if rule is None or pair.rounds >= rule.rounds:
            return False
        is_link, is_end = pair.b - pair.a == 1, (pair.a, pair.b) == (0, flow.links)
        return rule.spans == "all" or (rule.spans == "links" and is_link) or (rule.spans == "end" and is_end)

    def _swap_or_wait(self, flow: _Flow, pair: _Pair, r: int) -> None:
        a, b = flow.plan[r]
        mine, other = ((pair.a, r), (r, b)) if pair.b == r else ((r, pair.b), (a, r))
        waiting = flow.held.get(other)
        while waiting and not waiting[0].alive:
            waiting.popleft()
        if not waiting:
            flow.held.setdefault(mine, deque()).append(pair)
            return
        partner = waiting.popleft()
        left, right = (pair, partner) if pair.b == r else (partner, pair)
        if self.policy.swap_handshake:
            wait = 2 * max(flow.delay(r, left.a), flow.delay(r, right.b))
            self._after(wait, self._swap_if_alive, flow, left, right, r)
        else:
            self._swap(flow, left, right, r)

    def _swap_if_alive(self, flow: _Flow, left: _Pair, right: _Pair, r: int) -> None:
        if left.alive and right.alive:
            self._swap(flow, left, right, r)
        else:  # one of them was cut off during the handshake: the other waits for a new partner
            for pair in (left, right):
                if pair.alive:
                    self._swap_or_wait(flow, pair, r)

    def _swap(self, flow: _Flow, left: _Pair, right: _Pair, r: int) -> None:
        """Bell measurement at router r on left = (a, r) and right = (r, b)."""
        now = int(self.env.now)
        self.swaps += 1
        l_state = self._decay(left, 1, now)
        r_state = self._decay(right, 0, now)
        for m in (left.memories[1], right.memories[0]):
            m.pair = None
            self._release(m)
        left.alive = right.alive = False
        outer = (left.memories[0], right.memories[1])
        if self.rng.random() >= self.policy.swap_success:
            self.swap_failures += 1
            self.states.discard(l_state)
            self.states.discard(r_state)
            for m, end in zip(outer, (left.a, right.b), strict=True):
                m.pair = None
                self._after(flow.delay(r, end), self._release_if, m, m.generation)
            return
        state = self.states.swap(l_state, r_state, self._swap_noise)
        joined = _Pair(left.a, right.b, state, outer, (left.stored_ps[0], right.stored_ps[1]),
                       [left.touched_ps[0], right.touched_ps[1]], rounds=0)
        for m in outer:
            m.pair = joined
        self._after(flow.delay(r, left.a), self._learn, flow, joined, 0)
        self._after(flow.delay(r, right.b), self._learn, flow, joined, 1)

    def _release_if(self, m: _Memory, generation: int) -> None:
        if m.generation == generation:
            self._release(m)

    def _decay(self, pair: _Pair, qubit: int, now: int) -> Any:
        """The pair's state with qubit 0 or 1 decayed up to ``now``."""
        decay = pair.memories[qubit].decay
        elapsed = now - pair.touched_ps[qubit]
        if elapsed > 0:
            pair.state = self.states.decay(pair.state, qubit, elapsed / PS_PER_S, decay)
            pair.touched_ps[qubit] = now
        return pair.state

    def _purify_or_wait(self, flow: _Flow, pair: _Pair) -> None:
        """Recurrence: purify with a pair of the same round. Pumping: a purified pair with a fresh one."""
        rule = self.policy.purification
        assert rule is not None
        if rule.scheme == "recurrence":
            wanted = [pair.rounds]
        else:
            wanted = [0] if pair.rounds > 0 else [*range(rule.rounds - 1, 0, -1), 0]
        for rounds in wanted:
            waiting = flow.pool.get((pair.a, pair.b, rounds))
            while waiting and not waiting[0].alive:
                waiting.popleft()
            if waiting:
                partner = waiting.popleft()
                keep, sacrifice = (partner, pair) if partner.rounds >= pair.rounds else (pair, partner)
                self._purify(flow, keep, sacrifice, rule.protocol)
                return
        flow.pool.setdefault((pair.a, pair.b, pair.rounds), deque()).append(pair)

    def _purify(self, flow: _Flow, keep: _Pair, sacrifice: _Pair, protocol: str) -> None:
        """Both ends measure the sacrificed pair; the kept pair's fate is known after the one-way delay."""
        now = int(self.env.now)
        self.purifications += 1
        for pair in (keep, sacrifice):
            self._decay(pair, 0, now)
            self._decay(pair, 1, now)
        sacrifice.alive = False
        result = self.states.purify(keep.state, sacrifice.state, protocol, self.rng)
        for m in sacrifice.memories:
            m.pair = None
            self._release(m)
        keep.known = [False, False]
        if result is None:
            self.purification_failures += 1
            keep.alive = False
            for m in keep.memories:
                m.pair = None
                self._after(flow.delay(keep.b, keep.a), self._release_if, m, m.generation)
            return
        keep.state = result
        keep.rounds += 1
        delay = flow.delay(keep.a, keep.b)
        self._after(delay, self._learn, flow, keep, 0)
        self._after(delay, self._learn, flow, keep, 1)

    def _deliver(self, flow: _Flow, pair: _Pair) -> None:
        """Both ends know the end-to-end pair: it is handed to the application (and its memories freed)."""
        now = int(self.env.now)
        self._decay(pair, 0, now)
        self._decay(pair, 1, now)
        fid = self.states.fidelity(pair.state)
        age = now - min(pair.stored_ps)
        flow.deliveries.append(Delivery(now / PS_PER_S, fid, age / PS_PER_S, self._bell(pair.state)))
        self._discard(pair)


    def _bell(self, state: Any) -> bell.BellDiagonal | None:
        if self.policy.formalism == "bell_diagonal":
            return tuple(state)
        if self.policy.formalism == "density_matrix":
            return dm.bell_coefficients(state)
        return None


def simulate(graph: nx.Graph, requests: Sequence[Request], duration_s: float, policy: Policy | None = None, *,
             seed: int = 0, progress: Callable[[float], None] | None = None) -> Report:
    """Build a :class:`Simulation` and run it for ``duration_s``."""
    return Simulation(graph, requests, policy, seed=seed).run(duration_s, progress)
