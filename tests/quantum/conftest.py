"""Shared devices for the quantum-layer tests."""

from __future__ import annotations

from qnet.physics.bb84 import BB84DecoyParams

# Lim et al. (2014) sec. IV device without after-pulses, so that simulation and analytic model agree
LIM_DEVICE = BB84DecoyParams(attenuation_db_per_km=0.2, detector_efficiency=0.1, dark_count_prob=1.2e-6,
                             misalignment=0.005, ec_efficiency=1.16, decoy="vacuum+weak")
