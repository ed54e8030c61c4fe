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
