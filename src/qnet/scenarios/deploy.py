"""From a network spec to a deployment directory: the PKI and one KME configuration per node.

``qnet pki init DIR --spec SPEC`` calls :func:`init_deployment`. The directory then holds::

    ca.pem, ca.key                      the local CA
    kme/NODE.pem, .key, .mldsa.key/.pub each KME's TLS identity and KM-to-KM signing key
    sae/SAE_ID.pem, .key                each SAE's client certificate (CN = SAE_ID)
    NODE.json                           each KME's configuration (``qnet kme serve DIR``)
    store/                              the SQLite key stores, created on first start

Each link gets a fresh 128-bit secret seed from the OS CSPRNG, written only to its two ends'
configurations: both ends run the same simulated link from it (``qnet.quantum.link``), which is how
two processes come to hold the same QKD keys. Ports are consecutive from ``base_port``, in the
spec's node order.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnet.scenarios.planner import link_length_km
from qnet.scenarios.spec import NetworkSpec
from qnet.security.pki import PKI

__all__ = ["Deployment", "init_deployment"]


@dataclass(frozen=True)
class Deployment:
    """What :func:`init_deployment` made."""

    root: Path
    kmes: dict[str, str]
    """node -> KME base URL."""
    configs: dict[str, Path]
    saes: dict[str, str]
    """SAE_ID -> node."""


def init_deployment(root: Path, spec: NetworkSpec, *, base_port: int = 8443, ports: dict[str, int] | None = None,
                    source: dict[str, Any] | None = None, store_urls: dict[str, str] | None = None) -> Deployment:
    """Make the CA, every KME's and SAE's certificates, and every KME's configuration in ``root``.

    Args:
        root: the directory (made if missing; refused if it already holds a CA).
        spec: the network.
        base_port: the first node's port.
        ports: explicit ports per node (tests pick free ones).
        source: overrides for every link's source settings (e.g. ``{"kind": "prng"}``, ``{"speedup": 10}``).
        store_urls: explicit store URLs per node (e.g. PostgreSQL); SQLite files under ``store/`` otherwise.

    Raises:
        FileExistsError: if ``root`` already holds a CA.
    """
    root = Path(root)
    pki = PKI(root)
    pki.create_ca()
    nodes = [n.name for n in spec.nodes]
    ports = ports or {name: base_port + i for i, name in enumerate(nodes)}
    for node in nodes:
        pki.issue("kme", node)
    for app in spec.applications:
        pki.issue("sae", app.sae_id)
    (root / "store").mkdir(exist_ok=True)
    links: dict[str, list[dict[str, Any]]] = {n: [] for n in nodes}
    for link in spec.links:
        a, b = link.endpoints
        settings = {"kind": "simulated", "seed": secrets.randbits(128), "length_km": link_length_km(spec, link),
                    **({"attenuation_db_per_km": link.attenuation_db_per_km} if link.attenuation_db_per_km else {}),
                    **(source or {})}
        for here, peer in ((a, b), (b, a)):
            links[here].append({"link_id": link.label, "peer": peer, "peer_url": f"https://127.0.0.1:{ports[peer]}",
                                "peer_verify_key": f"kme/{peer}.mldsa.pub", "ends": [a, b],
                                "remote_saes": [s.sae_id for s in spec.applications if s.node == peer],
                                "low_water_units": 1000, "source": settings})
    network = {"nodes": nodes, "links": [[*lk.endpoints, lk.label] for lk in spec.links],
               "saes": {s.sae_id: s.node for s in spec.applications},
               "access": {s.sae_id: list(s.peers) for s in spec.applications if s.peers is not None},
               "max_hops": spec.policies.max_hops, "excluded_nodes": list(spec.policies.excluded_nodes),
               "min_key_rate_bps": spec.policies.min_key_rate_bps}
    configs = {}
    for node in nodes:
        config = {"kme_id": node, "host": "127.0.0.1", "port": ports[node],
                  "store_url": (store_urls or {}).get(node, f"sqlite:///store/{node}.db"),
                  "tls": {"ca": "ca.pem", "cert": f"kme/{node}.pem", "key": f"kme/{node}.key"},
                  "signing_key": f"kme/{node}.mldsa.key",
                  "saes": [s.sae_id for s in spec.applications if s.node == node], "links": links[node],
                  "network": network}
        path = root / f"{node}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the link seeds
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=2)
        configs[node] = path
    return Deployment(root, {n: f"https://127.0.0.1:{ports[n]}" for n in nodes}, configs,
                      {s.sae_id: s.node for s in spec.applications})
