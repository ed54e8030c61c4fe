"""The registry of key-rate models, and key rate against distance.

Every protocol qnet can plan with is a :class:`ProtocolModel`: its parameter dataclass (the same
parameter names in the CLI, spec files and Python), its rate function of channel transmittance, and
the bound it must respect. :func:`key_rate` evaluates one over fibre distances.

Examples:
    >>> point = key_rate("bb84-decoy", 50.0)
    >>> round(point.rate_per_pulse, 7), round(point.rate_bps)
    (0.0002226, 222596)
    >>> sorted(PROTOCOLS)
    ['bb84-decoy', 'cv-qkd', 'mdi-qkd', 'tf-qkd']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.optimize import brentq

from qnet.errors import UnknownProtocolError
from qnet.physics import _params
from qnet.physics.bb84 import BB84DecoyParams, bb84_decoy_rate
from qnet.physics.bounds import plob_bound, single_repeater_bound
from qnet.physics.channels import channel_loss_db
from qnet.physics.cvqkd import CVQKDParams, cv_qkd_rate
from qnet.physics.finite_key import finite_key_rate
from qnet.physics.mdiqkd import MDIQKDParams, mdi_qkd_rate
from qnet.physics.rates import RatePoint
from qnet.physics.tfqkd import TFQKDParams, tf_qkd_rate
from qnet.units import db_to_transmittance

__all__ = [
    "PROTOCOLS",
    "KeyRatePoint",
    "ProtocolModel",
    "get_protocol",
    "key_rate",
    "key_rate_at_transmittance",
    "max_distance_km",
]


@dataclass(frozen=True)
class ProtocolModel:
    """A key-rate model of one protocol.

    Attributes:
        name: the protocol's name in the CLI and spec files.
        summary: one line for ``--help`` and reports.
        params_type: the frozen dataclass of its parameters.
        rate: secret bits per pulse (or symbol) given parameters and channel transmittance.
        bound: the capacity bound no rate may exceed at a channel transmittance.
        per: what one channel use is called: ``"pulse"`` or ``"symbol"``.
    """

    name: str
    summary: str
    params_type: type[Any]
    rate: Callable[[Any, float], RatePoint]
    bound: Callable[[float], float]
    per: str = "pulse"

    def params(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The default parameters with ``overrides`` applied and checked.

        Raises:
            ParameterError: naming each unknown or out-of-range parameter.
        """
        return _params.build(self.params_type, dict(overrides or {}))

    @property
    def parameter_names(self) -> list[str]:
        """The names of this model's parameters."""
        return [f.name for f in fields(self.params_type)]


def _bb84(p: BB84DecoyParams, transmittance: float) -> RatePoint:
    if p.block_size is not None:
        return finite_key_rate(p, transmittance)
    return bb84_decoy_rate(p, transmittance)


def _bound(fn: Callable[[float], Any]) -> Callable[[float], float]:
    return lambda eta: float(fn(eta))


PROTOCOLS: dict[str, ProtocolModel] = {
    m.name: m
    for m in (
        ProtocolModel(
            "bb84-decoy",
            "decoy-state BB84 (GLLP, Lo-Ma-Chen 2005; finite key: Lim et al. 2014)",
            BB84DecoyParams, _bb84, _bound(plob_bound),
        ),
        ProtocolModel(
            "cv-qkd",
            "GG02 CV-QKD, homodyne, reverse reconciliation (Fossier et al. 2009)",
            CVQKDParams, cv_qkd_rate, _bound(plob_bound), per="symbol",
        ),
        ProtocolModel(
            "mdi-qkd",
            "MDI-QKD, infinite decoys (Lo-Curty-Qi 2012; Xu et al. 2013)",
            MDIQKDParams, mdi_qkd_rate, _bound(plob_bound),
        ),
        ProtocolModel(
            "tf-qkd",
            "twin-field QKD, phase-matching (Ma-Zeng-Zhou 2018)",
            TFQKDParams, tf_qkd_rate, _bound(single_repeater_bound),
        ),
    )
}


def get_protocol(name: str) -> ProtocolModel:
    """The model registered under ``name``.

    Raises:
        UnknownProtocolError: listing the known names.
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UnknownProtocolError(name, list(PROTOCOLS)) from None


@dataclass(frozen=True)
class KeyRatePoint:
    """The key rate of a protocol at one distance.

    Attributes:
        protocol: the protocol's name.
        distance_km: the link length.
        loss_db: the channel loss, fibre plus extra loss.
        rate_per_pulse: secret bits per pulse (per symbol for CV-QKD).
        rate_bps: secret bits per second at the parameters' ``rep_rate_hz``.
        mu: the signal mean photon number used, if the protocol has one and makes key.
        qber: the expected QBER, where it applies.
        bound: the capacity bound at this loss (PLOB; one-relay bound for TF-QKD).
    """

    protocol: str
    distance_km: float
    loss_db: float
    rate_per_pulse: float
    rate_bps: float
    mu: float | None
    qber: float | None
    bound: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return {
            "protocol": self.protocol,
            "distance_km": self.distance_km,
            "loss_db": self.loss_db,
            "rate_per_pulse": self.rate_per_pulse,
            "rate_bps": self.rate_bps,
            "mu": self.mu,
            "qber": self.qber,
            "bound": self.bound,
        }


def key_rate_at_transmittance(
    protocol: str | ProtocolModel, params: Any, transmittance: float, *, distance_km: float, loss_db: float
) -> KeyRatePoint:
    """Evaluate a protocol at a channel transmittance, labelled with its distance and loss."""
    model = protocol if isinstance(protocol, ProtocolModel) else get_protocol(protocol)
    point = model.rate(params, transmittance)
    return KeyRatePoint(
        protocol=model.name,
        distance_km=float(distance_km),
        loss_db=float(loss_db),
        rate_per_pulse=point.rate_per_pulse,
        rate_bps=point.rate_per_pulse * params.rep_rate_hz,
        mu=point.mu,
        qber=point.qber,
        bound=model.bound(transmittance),
    )


def key_rate(
    protocol: str, distance_km: float, params: Mapping[str, Any] | Any | None = None
) -> KeyRatePoint:
    """The key rate of ``protocol`` over ``distance_km`` of fibre.

    Args:
        protocol: a name in :data:`PROTOCOLS`.
        distance_km: fibre length (km), >= 0.
        params: a parameter dataclass, or a mapping of overrides of the defaults.

    Raises:
        UnknownProtocolError: if the protocol is unknown.
        ParameterError: if a parameter is unknown or out of range.
    """
    model = get_protocol(protocol)
    p = _resolve(model, params)
    loss = float(channel_loss_db(distance_km, p.attenuation_db_per_km, p.extra_loss_db))
    return key_rate_at_transmittance(model, p, float(db_to_transmittance(loss)), distance_km=distance_km, loss_db=loss)


def _resolve(model: ProtocolModel, params: Mapping[str, Any] | Any | None) -> Any:
    """A parameter dataclass as given, or the defaults with a mapping of overrides applied."""
    return model.params(params) if params is None or isinstance(params, Mapping) else params


def max_distance_km(protocol: str, params: Mapping[str, Any] | Any | None = None, *, upto_km: float = 1000.0) -> float:
    """The fibre length at which the key rate falls to zero (0 if there is no key at 0 km, ``inf``
    if there is still key at ``upto_km``: asymptotic GG02, for one, never reaches zero).

    Found by bisection on the sign of the rate, to 0.01 km.
    """
    p = _resolve(get_protocol(protocol), params)

    def rate(d: float) -> float:
        return key_rate(protocol, d, p).rate_per_pulse

    if rate(0.0) <= 0.0:
        return 0.0
    if rate(upto_km) > 0.0:
        return math.inf
    grid = np.linspace(0.0, upto_km, 41)
    last = next(d for d in grid if rate(float(d)) <= 0.0)
    step = grid[1] - grid[0]
    # brentq on a step function: rate is positive below the reach and exactly 0 above it.
    return float(brentq(lambda d: 1.0 if rate(d) > 0 else -1.0, last - step, last, xtol=0.01))
