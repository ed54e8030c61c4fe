"""The configuration of one KME process: a JSON file that ``qnet pki init`` writes per node.

Example (paths relative to the file's directory are allowed)::

    {"kme_id": "Alice", "host": "127.0.0.1", "port": 8443,
     "store_url": "sqlite:///store/Alice.db",
     "tls": {"ca": "ca.pem", "cert": "kme/Alice.pem", "key": "kme/Alice.key"},
     "signing_key": "kme/Alice.mldsa.key",
     "saes": ["SAE_A"],
     "links": [{"link_id": "Alice-Bob", "peer": "Bob", "peer_url": "https://127.0.0.1:8444",
                "peer_verify_key": "kme/Bob.mldsa.pub", "ends": ["Alice", "Bob"],
                "remote_saes": ["SAE_B"],
                "source": {"kind": "simulated", "seed": 1234, "length_km": 25}}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from qnet.errors import Problem, SpecError
from qnet.security.names import check_name

__all__ = ["ControllerConfig", "KMEConfig", "LinkConfig", "NetworkView", "SourceConfig", "TLSFiles",
           "load_config", "load_controller_config"]


_M = TypeVar("_M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TLSFiles(_Model):
    """The CA every party trusts, and this server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


class DecoySettingsConfig(_Model):
    """The intensities and basis bias a simulated link sends with (``qnet.physics.finite_key.DecoySettings``)."""

    q_x: float = Field(gt=0, lt=1)
    p1: float = Field(gt=0, lt=1)
    p2: float = Field(gt=0, lt=1)
    mu1: float = Field(gt=0, le=10)
    mu2: float = Field(gt=0, le=10)


class SourceConfig(_Model):
    """Where a link's keys come from.

    ``simulated``: the photon-level decoy-BB84 link of ``qnet.quantum``, run once from the link's
    secret ``seed`` by the feeder of its first end, which delivers the same keys to both ends' stores
    (as a QKD device pair delivers to its two KMEs), at ``speedup`` times its physical rate; with no
    ``peer_store_url`` (the ends on different hosts), each end runs its own copy from the seed.
    ``prng``: SHAKE-256 of the seed, as fast as the store takes it: for load tests only, not QKD keys.
    ``device`` overrides the link's device parameters by name (``misalignment``, ``detector_efficiency``,
    ``dark_count_prob``, ...: the fields of :class:`qnet.physics.bb84.BB84DecoyParams`).
    """

    kind: Literal["simulated", "prng"] = "simulated"
    seed: int = Field(ge=0)
    length_km: float = Field(default=25.0, gt=0, le=500)
    attenuation_db_per_km: float = Field(default=0.2, ge=0, le=10)
    pulses_per_block: int = Field(default=10**8, ge=10**6, le=10**11)
    speedup: float = Field(default=1.0, gt=0, le=1e6)
    max_units: int = Field(default=100_000, ge=1)
    device: dict[str, float] = {}
    mode: Literal["photon", "sampled"] = "photon"
    """``sampled``: blocks by block-level sampling from the start (the machine has too few cores for
    this link's photon-level simulation); ``photon``: photon by photon, sampling only while behind."""
    settings: DecoySettingsConfig | None = None
    """What the deployment optimised for this link's block length (its feeder then need not, which
    costs about 0.3 s of CPU a link); optimised by the feeder when absent."""


class LinkConfig(_Model):
    """One QKD link of this KME."""

    link_id: str
    peer: str
    peer_url: str
    peer_verify_key: Path
    ends: tuple[str, str]
    remote_saes: list[str] = []
    low_water_units: int = Field(default=0, ge=0)
    """Below this many servable units the KME raises a ``pool-low`` event (0: never)."""
    source: SourceConfig
    peer_store_url: str | None = None
    """The peer KME's store, where this link's single simulation delivers the peer's copy of each key
    (None: each end simulates the link itself)."""


class NetworkView(_Model):
    """What every KME knows of the whole network: for relay routes and access control."""

    nodes: list[str] = []
    links: list[tuple[str, str, str]] = []
    """(node_a, node_b, link_id) for every QKD link."""
    saes: dict[str, str] = {}
    """SAE_ID -> node, for every SAE."""
    access: dict[str, list[str]] = {}
    """SAE_ID -> the SAEs it may share keys with (SAEs not named may pair with any)."""
    max_hops: int | None = Field(default=None, ge=1)
    excluded_nodes: list[str] = []
    min_key_rate_bps: float = Field(default=0.0, ge=0)


class ControlSettings(_Model):
    """Where a KME finds the network's controller, and how often it reports to it."""

    url: str
    period_s: float = Field(default=1.0, gt=0, le=3600)


KMEName = Annotated[str, AfterValidator(lambda name: check_name(name, "kme_id"))]
"""A KME_ID: a safe identity name (:mod:`qnet.security.names`), not a role's."""


class KMEConfig(_Model):
    """One KME process."""

    kme_id: KMEName
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)]
    store_url: str
    tls: TLSFiles
    signing_key: Path
    saes: list[str] = []
    links: list[LinkConfig] = []
    unit_bits: int = Field(default=256, ge=8, multiple_of=8)
    key_lifetime_s: float = Field(default=86400.0, gt=0)
    network: NetworkView = NetworkView()
    controller: ControlSettings | None = None


class ControllerConfig(_Model):
    """The controller process (``qnet controller serve``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)]
    tls: TLSFiles
    network: NetworkView
    capacity_bps: dict[str, float] = {}
    """Planned key rate per link_id, for session admission (missing: unlimited)."""
    control_period_s: float = Field(default=1.0, gt=0, le=3600)
    qber_threshold: float = Field(default=0.11, gt=0, le=0.5)
    low_water_units: int = Field(default=0, ge=0)
    operators: list[str] = ["operator"]
    """Certificate CNs allowed to cut and restore links and to open sessions for any SAE."""
    store_url: str | None = None
    """Where alarms and events are kept (SQLAlchemy URL); in memory if None."""
    name: str = "qnet"
    """The network's name (the dashboard's title)."""
    dashboard_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """The dashboard's port: plain HTTP on 127.0.0.1 only, behind :attr:`dashboard_token` (no dashboard if None)."""
    dashboard_token: str | None = Field(default=None, min_length=16)
    """The secret in the dashboard's URL (``?token=``); a fresh random one per start if None."""
    positions: dict[str, tuple[float, float]] = {}
    """Where the dashboard draws each node: (x, y) in [0, 1], y downwards (a circle if empty)."""


def _resolve(config: KMEConfig, base: Path) -> KMEConfig:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    tls = TLSFiles(ca=fix(config.tls.ca), cert=fix(config.tls.cert), key=fix(config.tls.key))
    def fix_url(url: str) -> str:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str(fix(Path(url.removeprefix("sqlite:///"))))
        return url

    links = [link.model_copy(update={"peer_verify_key": fix(link.peer_verify_key),
                                     "peer_store_url": link.peer_store_url and fix_url(link.peer_store_url)})
             for link in config.links]
    return config.model_copy(update={"tls": tls, "links": links, "signing_key": fix(config.signing_key),
                                     "store_url": fix_url(config.store_url)})


def load_config(path: Path) -> KMEConfig:
    """Read and check a KME configuration; relative paths are taken from the file's directory.

    Raises:
        SpecError: naming the file and every field that is wrong.
    """
    return _resolve(_load(Path(path), KMEConfig), Path(path).parent)


def load_controller_config(path: Path) -> ControllerConfig:
    """Read and check the controller's configuration (relative paths from the file's directory).

    Raises:
        SpecError: naming the file and every field that is wrong.
    """
    config = _load(Path(path), ControllerConfig)
    base = Path(path).parent

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    url = config.store_url
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + str(fix(Path(url.removeprefix("sqlite:///"))))
    return config.model_copy(update={"tls": TLSFiles(ca=fix(config.tls.ca), cert=fix(config.tls.cert),
                                                     key=fix(config.tls.key)), "store_url": url})


def _load(path: Path, model: type[_M]) -> _M:
    try:
        raw = json.loads(path.read_text())
        config = model.model_validate(raw)
    except OSError as exc:
        raise SpecError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(str(path), [Problem("", f"not JSON: {exc}")]) from None
    except ValidationError as exc:
        raise SpecError(str(path), [Problem(".".join(str(p) for p in e["loc"]), e["msg"])
                                    for e in exc.errors()]) from None
    return config
