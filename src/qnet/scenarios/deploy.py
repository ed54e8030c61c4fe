"""From a network spec to a deployment directory: the PKI and one KME configuration per node.

``qnet pki init DIR --spec SPEC`` calls :func:`init_deployment`. The directory then holds::

    ca.pem, ca.key                      the local CA
    kme/NODE.pem, .key, .mldsa.key/.pub each KME's TLS identity and KM-to-KM signing key
    sae/SAE_ID.pem, .key                each SAE's client certificate (CN = SAE_ID)
    NODE.json                           each KME's configuration (``qnet kme serve DIR``)
    controller/controller.json, .pem    the controller's configuration and TLS identity
    operator/operator.pem, .key         the operator's client certificate (cuts links, opens sessions)
    store/                              the SQLite key stores, created on first start

Each link gets a fresh 128-bit secret seed from the OS CSPRNG, written only to its two ends'
configurations. Its first end's feeder runs the simulated link (``qnet.quantum.link``) once and
delivers each key to both ends' stores (``peer_store_url``), as a QKD device pair delivers one key to
its two KMEs. The link's device parameters from the spec (``misalignment``, ``detector_efficiency``,
...) go with it, so the live link is the link the planner planned. Ports are consecutive from ``base_port``, in the
spec's node order, then the controller's; the controller's dashboard (plain HTTP on loopback,
behind a random token in ``controller.json``) listens 1000 above the controller.

The controller admits sessions against each link's planned key rate (the planner's, times the feeds'
speed-up; unlimited for the PRNG stand-in).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.finite_key import DecoySettings
from qnet.quantum.link import block_settings, expected_rate_bps, feed_block_pulses, link_cpu_cores, plan_feeds
from qnet.scenarios.planner import link_length_km
from qnet.scenarios.spec import LinkSpec, NetworkSpec
from qnet.security.pki import PKI

__all__ = ["CONTROL_PERIOD_S", "FEED_DEVICE_PARAMS", "SAMPLED_FEED_COST", "Deployment", "feed_cores", "feed_cost",
           "feed_device", "feed_geometry", "feed_params", "feeder_groups", "init_deployment", "node_positions",
           "plan_feed_modes", "source_cpu_cores"]

CONTROL_PERIOD_S = 1.0
"""How often each KME reports to the controller (and learns the network's state)."""
LOW_WATER_UNITS = 1000
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
KME_CORES = 0.1
"""The share of a core one KME of a live network uses (measured on the Kanto network, 2 cores, its
pools filling: 5-12 % each, with its reports, synchronisation and KM-to-KM channels)."""


def feed_cores(cores: int, kmes: int) -> float:
    """The CPU cores a network's photon-level link simulations may use together on a machine with
    ``cores``: one core is kept for writing the links' keys into the stores, and each of the
    ``kmes`` KMEs has its share (:data:`KME_CORES`). Links beyond it sample their blocks
    (:func:`plan_feed_modes`).

    Examples:
        >>> feed_cores(2, 6), feed_cores(2, 11), feed_cores(16, 11)
        (0.4, 0.0, 13.9)
    """
    return round(max(cores - 1 - KME_CORES * kmes, 0.0), 6)
FEED_DEVICE_PARAMS = ("misalignment", "detector_efficiency", "dark_count_prob", "afterpulse_prob", "dead_time_s")
"""The spec's link ``params`` that the live link's device takes (the rest are the planner's)."""


@dataclass(frozen=True)
class Deployment:
    """What :func:`init_deployment` made."""

    root: Path
    kmes: dict[str, str]
    """node -> KME base URL."""
    configs: dict[str, Path]
    saes: dict[str, str]
    """SAE_ID -> node."""
    controller_url: str | None = None
    controller_config: Path | None = None


def init_deployment(root: Path, spec: NetworkSpec, *, base_port: int = 8443, ports: dict[str, int] | None = None,
                    source: dict[str, Any] | None = None, store_urls: dict[str, str] | None = None) -> Deployment:
    """Make the CA, every KME's and SAE's certificates, and every KME's configuration in ``root``.

    Args:
        root: the directory (made if missing; refused if it already holds a CA).
        spec: the network.
        base_port: the first node's port.
        ports: explicit ports per node, ``"controller"`` for the controller and ``"dashboard"`` for its
            dashboard (tests pick free ones).
        source: overrides for every link's source settings (e.g. ``{"kind": "prng"}``, ``{"speedup": 10}``).
        store_urls: explicit store URLs per node (e.g. PostgreSQL); SQLite files under ``store/`` otherwise.

    Raises:
        FileExistsError: if ``root`` already holds a CA.
    """
    root = Path(root)
    pki = PKI(root)
    pki.create_ca()
    nodes = [n.name for n in spec.nodes]
    ports = {**{name: base_port + i for i, name in enumerate([*nodes, "controller"])}, **(ports or {})}
    for node in nodes:
        pki.issue("kme", node)
    pki.issue("controller", "controller")
    pki.issue("operator", "operator")
    for app in spec.applications:
        pki.issue("sae", app.sae_id)
    (root / "store").mkdir(exist_ok=True)
    links: dict[str, list[dict[str, Any]]] = {n: [] for n in nodes}
    costs: dict[str, float] = {}
    sources: dict[str, dict[str, Any]] = {}
    if (source or {}).get("kind", "simulated") == "simulated":  # every link's settings in one batch, then cached
        plan_feeds((*feed_geometry(spec, link), feed_params(link)) for link in spec.links)
    for link in spec.links:
        length, attenuation = feed_geometry(spec, link)
        settings = sources[link.label] = {"kind": "simulated", "seed": secrets.randbits(128), "length_km": length,
                                          "attenuation_db_per_km": attenuation, "device": feed_device(link),
                                          **(source or {})}
        if settings["kind"] == "simulated":
            device = feed_params(link)
            settings.setdefault("pulses_per_block", feed_block_pulses(length, attenuation, device=device))
            pulses = int(settings["pulses_per_block"])
            costs[link.label] = link_cpu_cores(length, attenuation, pulses, device=device) * float(
                settings.get("speedup", 1.0))
            settings.setdefault("settings", asdict(block_settings(length, attenuation, pulses, device=device)))
    for label, mode in plan_feed_modes(costs, feed_cores(CORES, len(nodes))).items():
        sources[label]["mode"] = mode
    for link in spec.links:
        a, b = link.endpoints
        settings = sources[link.label]
        for here, peer in ((a, b), (b, a)):
            links[here].append({"link_id": link.label, "peer": peer, "peer_url": f"https://127.0.0.1:{ports[peer]}",
                                "peer_verify_key": f"kme/{peer}.mldsa.pub", "ends": [a, b],
                                "remote_saes": [s.sae_id for s in spec.applications if s.node == peer],
                                "low_water_units": LOW_WATER_UNITS, "source": settings,
                                "peer_store_url": (store_urls or {}).get(peer, f"sqlite:///store/{peer}.db")})
    network = {"nodes": nodes, "links": [[*lk.endpoints, lk.label] for lk in spec.links],
               "saes": {s.sae_id: s.node for s in spec.applications},
               "access": {s.sae_id: list(s.peers) for s in spec.applications if s.peers is not None},
               "max_hops": spec.policies.max_hops, "excluded_nodes": list(spec.policies.excluded_nodes),
               "min_key_rate_bps": spec.policies.min_key_rate_bps}
    controller_url = f"https://127.0.0.1:{ports['controller']}"
    configs = {}
    for node in nodes:
        config = {"kme_id": node, "host": "127.0.0.1", "port": ports[node],
                  "store_url": (store_urls or {}).get(node, f"sqlite:///store/{node}.db"),
                  "tls": {"ca": "ca.pem", "cert": f"kme/{node}.pem", "key": f"kme/{node}.key"},
                  "signing_key": f"kme/{node}.mldsa.key",
                  "saes": [s.sae_id for s in spec.applications if s.node == node], "links": links[node],
                  "network": network, "controller": {"url": controller_url, "period_s": CONTROL_PERIOD_S}}
        path = root / f"{node}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the link seeds
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=2)
        configs[node] = path
    dashboard_port = ports.get("dashboard", ports["controller"] + 1000)
    controller = _controller_config(root, spec, (ports["controller"], dashboard_port), network, source or {})
    return Deployment(root, {n: f"https://127.0.0.1:{ports[n]}" for n in nodes}, configs,
                      {s.sae_id: s.node for s in spec.applications}, controller_url, controller)


def plan_feed_modes(costs: Mapping[str, float], cores: float) -> dict[str, str]:
    """How each simulated link makes its blocks live: ``photon`` by photon for the cheapest links
    whose CPU cost (cores at real time: :func:`qnet.quantum.link.link_cpu_cores`) fits in ``cores``
    together, ``sampled`` (block-level sampling of the same statistics) for the rest, so that every
    link keeps real time on the machine it runs on. Links planned photon-level still sample while
    the machine is too busy for them (``qnet.servers.feeder``).

    Examples:
        >>> plan_feed_modes({"a": 0.6, "b": 0.3, "c": 4.0}, 1.0)
        {'b': 'photon', 'a': 'photon', 'c': 'sampled'}
    """
    modes, used = {}, 0.0
    for label, cost in sorted(costs.items(), key=lambda kv: kv[1]):
        fits = used + cost <= cores
        used += cost if fits else 0.0
        modes[label] = "photon" if fits else "sampled"
    return modes


SAMPLED_FEED_COST = 0.05
"""The cores a sampled (or PRNG) link's feed is counted at when feeds are shared among processes:
its blocks cost milliseconds, and what remains is writing its keys."""


def feed_cost(config: Mapping[str, Any]) -> float:
    """The CPU cores the feeds a KME configuration runs need at real time: each link whose device
    pair it runs (the first end's, or every end's with no ``peer_store_url``), photon-level links at
    :func:`qnet.quantum.link.link_cpu_cores` with their planned settings, others at
    :data:`SAMPLED_FEED_COST`."""
    total = 0.0
    for link in config.get("links", []):
        if link.get("peer_store_url") is not None and link["ends"][0] != config["kme_id"]:
            continue
        src = link.get("source", {})
        if src.get("kind", "simulated") != "simulated" or src.get("mode") == "sampled":
            total += SAMPLED_FEED_COST
            continue
        total += source_cpu_cores(src)
    return total


def source_cpu_cores(src: Mapping[str, Any]) -> float:
    """The cores a simulated link's ``source`` configuration needs photon by photon at real time,
    at its speed-up (:func:`qnet.quantum.link.link_cpu_cores`, with its planned settings)."""
    device = replace(BB84DecoyParams(), **src.get("device", {}))
    settings = DecoySettings(**src["settings"]) if src.get("settings") else None
    return link_cpu_cores(float(src["length_km"]), float(src["attenuation_db_per_km"]), int(src["pulses_per_block"]),
                          device=device, settings=settings) * float(src.get("speedup", 1.0))


def feeder_groups(costs: Mapping[str, float], processes: int) -> list[list[str]]:
    """Share the KMEs whose feeds cost ``costs`` (cores; :func:`feed_cost`) among at most
    ``processes`` feeder processes, so each runs about the same CPU: the costliest first, each onto
    the least loaded. KMEs with nothing to feed are left out.

    Examples:
        >>> feeder_groups({"A": 0.9, "B": 0.1, "C": 0.5, "D": 0.0}, 2)
        [['A'], ['C', 'B']]
    """
    groups: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(max(processes, 1))]
    for name, cost in sorted(((n, c) for n, c in costs.items() if c > 0), key=lambda kv: -kv[1]):
        load, members = min(groups, key=lambda g: g[0])
        groups[groups.index((load, members))] = (load + cost, [*members, name])
    return [members for _, members in groups if members]


def feed_device(link: LinkSpec) -> dict[str, float]:
    """The device parameters of the photon-level link that feeds ``link`` live: those of
    :data:`FEED_DEVICE_PARAMS` its spec sets (the default decoy-BB84 device's otherwise).

    Examples:
        >>> from qnet.scenarios.spec import LinkSpec
        >>> feed_device(LinkSpec(endpoints=("A", "B"), length_km=10, params={"misalignment": 0.02, "mu": 0.5}))
        {'misalignment': 0.02}
    """
    return {name: float(value) for name, value in link.params.items()
            if name in FEED_DEVICE_PARAMS and isinstance(value, int | float)}


def feed_params(link: LinkSpec) -> BB84DecoyParams:
    """The live link's device: the default decoy-BB84 device with :func:`feed_device`'s overrides
    (what ``qnet simulate`` should plan with, to predict what ``qnet up`` delivers)."""
    overrides: dict[str, Any] = feed_device(link)
    return BB84DecoyParams(**overrides)


def feed_geometry(spec: NetworkSpec, link: LinkSpec) -> tuple[float, float]:
    """(length km, attenuation dB/km) of the photon-level link that feeds ``link`` live: its fibre
    length and attenuation, with the spec's extra loss spread over the length (0.2 dB/km if unset)."""
    length = link_length_km(spec, link)
    attenuation = (link.attenuation_db_per_km if link.attenuation_db_per_km is not None else 0.2)
    return length, attenuation + link.extra_loss_db / length


def node_positions(spec: NetworkSpec) -> dict[str, tuple[float, float]]:
    """Where a map draws each node: (x, y) in [0, 1], y downwards; from the nodes' longitude and
    latitude (equirectangular, to scale) when every node has a location, else on a circle.

    Examples:
        >>> from qnet.scenarios.spec import NetworkSpec
        >>> spec = NetworkSpec.model_validate({"name": "n", "nodes": [{"name": "A"}, {"name": "B"}], "links": []})
        >>> node_positions(spec)
        {'A': (0.5, 0.0), 'B': (0.5, 1.0)}
    """
    nodes = spec.nodes
    if nodes and all(n.location is not None for n in nodes):
        mid = math.radians(sum(n.location.lat for n in nodes if n.location) / len(nodes))
        xy = {n.name: (n.location.lon * math.cos(mid), -n.location.lat) for n in nodes if n.location}
    else:
        xy = {n.name: (math.sin(2 * math.pi * i / len(nodes)), -math.cos(2 * math.pi * i / len(nodes)))
              for i, n in enumerate(nodes)}
    xs, ys = [x for x, _ in xy.values()], [y for _, y in xy.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    ox, oy = (1 - (max(xs) - min(xs)) / span) / 2, (1 - (max(ys) - min(ys)) / span) / 2
    return {name: (round(ox + (x - min(xs)) / span, 4), round(oy + (y - min(ys)) / span, 4))
            for name, (x, y) in xy.items()}


def _controller_config(root: Path, spec: NetworkSpec, ports: tuple[int, int], network: dict[str, Any],
                       source: dict[str, Any]) -> Path:
    capacity: dict[str, float] = {}
    if source.get("kind", "simulated") == "simulated":
        speedup = float(source.get("speedup", 1.0))
        for link in spec.links:
            length, attenuation = feed_geometry(spec, link)
            device = feed_params(link)
            pulses = int(source.get("pulses_per_block") or feed_block_pulses(length, attenuation, device=device))
            capacity[link.label] = expected_rate_bps(length, attenuation, pulses, device=device) * speedup
    config = {"host": "127.0.0.1", "port": ports[0], "name": spec.name,
              "dashboard_port": ports[1], "dashboard_token": secrets.token_urlsafe(16),
              "positions": node_positions(spec),
              "tls": {"ca": "../ca.pem", "cert": "controller.pem", "key": "controller.key"},
              "network": network, "capacity_bps": capacity, "control_period_s": CONTROL_PERIOD_S,
              "qber_threshold": spec.policies.qber_alarm_threshold, "low_water_units": LOW_WATER_UNITS,
              "store_url": "sqlite:///controller.db"}
    path = root / "controller" / "controller.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the dashboard's token
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    return path
