"""Pure physical models, numpy and scipy only: no simulation, no I/O.

Every model cites its paper and equation in its docstring and is tested against published numbers
(``tests/vectors/``). The public names:

- channels: :func:`fibre_transmittance`, :func:`link_transmittance`, :func:`channel_loss_db`
- detectors: :func:`click_probability`, :func:`with_afterpulses`, :func:`live_fraction`
- bounds: :func:`plob_bound`, :func:`single_repeater_bound`
- key rates: :data:`PROTOCOLS`, :func:`key_rate`, :func:`max_distance_km`, and per protocol
  :class:`BB84DecoyParams`/:func:`bb84_decoy_rate`, :func:`finite_key_rate`,
  :class:`CVQKDParams`/:func:`cv_qkd_rate`, :class:`MDIQKDParams`/:func:`mdi_qkd_rate`,
  :class:`TFQKDParams`/:func:`tf_qkd_rate`
- geometry: :func:`great_circle_km`, :func:`slant_range_km`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "BB84DecoyParams": "qnet.physics.bb84",
    "CVQKDParams": "qnet.physics.cvqkd",
    "KeyRatePoint": "qnet.physics.keyrate",
    "MDIQKDParams": "qnet.physics.mdiqkd",
    "PROTOCOLS": "qnet.physics.keyrate",
    "ProtocolModel": "qnet.physics.keyrate",
    "RatePoint": "qnet.physics.rates",
    "TFQKDParams": "qnet.physics.tfqkd",
    "bb84_decoy_rate": "qnet.physics.bb84",
    "binary_entropy": "qnet.physics.entropy",
    "channel_loss_db": "qnet.physics.channels",
    "click_probability": "qnet.physics.detectors",
    "cv_qkd_rate": "qnet.physics.cvqkd",
    "fibre_transmittance": "qnet.physics.channels",
    "finite_key_rate": "qnet.physics.finite_key",
    "get_protocol": "qnet.physics.keyrate",
    "great_circle_km": "qnet.physics.geometry",
    "key_rate": "qnet.physics.keyrate",
    "link_transmittance": "qnet.physics.channels",
    "live_fraction": "qnet.physics.detectors",
    "max_distance_km": "qnet.physics.keyrate",
    "mdi_qkd_rate": "qnet.physics.mdiqkd",
    "plob_bound": "qnet.physics.bounds",
    "single_repeater_bound": "qnet.physics.bounds",
    "slant_range_km": "qnet.physics.geometry",
    "tf_qkd_rate": "qnet.physics.tfqkd",
    "thermal_entropy": "qnet.physics.entropy",
    "with_afterpulses": "qnet.physics.detectors",
}
"""Where each public name lives: imported on first use (PEP 562), so that a process needing one
model (a link feeder: BB84) does not import scipy.stats for the others (0.8 s of start-up each)."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'qnet.physics' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


if TYPE_CHECKING:
    from qnet.physics.bb84 import BB84DecoyParams, bb84_decoy_rate
    from qnet.physics.bounds import plob_bound, single_repeater_bound
    from qnet.physics.channels import channel_loss_db, fibre_transmittance, link_transmittance
    from qnet.physics.cvqkd import CVQKDParams, cv_qkd_rate
    from qnet.physics.detectors import click_probability, live_fraction, with_afterpulses
    from qnet.physics.entropy import binary_entropy, thermal_entropy
    from qnet.physics.finite_key import finite_key_rate
    from qnet.physics.geometry import great_circle_km, slant_range_km
    from qnet.physics.keyrate import (
        PROTOCOLS,
        KeyRatePoint,
        ProtocolModel,
        get_protocol,
        key_rate,
        max_distance_km,
    )
    from qnet.physics.mdiqkd import MDIQKDParams, mdi_qkd_rate
    from qnet.physics.rates import RatePoint
    from qnet.physics.tfqkd import TFQKDParams, tf_qkd_rate

__all__ = [
    "PROTOCOLS",
    "BB84DecoyParams",
    "CVQKDParams",
    "KeyRatePoint",
    "MDIQKDParams",
    "ProtocolModel",
    "RatePoint",
    "TFQKDParams",
    "bb84_decoy_rate",
    "binary_entropy",
    "channel_loss_db",
    "click_probability",
    "cv_qkd_rate",
    "fibre_transmittance",
    "finite_key_rate",
    "get_protocol",
    "great_circle_km",
    "key_rate",
    "link_transmittance",
    "live_fraction",
    "max_distance_km",
    "mdi_qkd_rate",
    "plob_bound",
    "single_repeater_bound",
    "slant_range_km",
    "tf_qkd_rate",
    "thermal_entropy",
    "with_afterpulses",
]
