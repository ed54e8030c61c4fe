"""Types and constants shared by the physics models."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

__all__ = ["E0", "ArrayLike", "Decoy"]

ArrayLike = float | npt.NDArray[np.float64]
"""A float, or an array of floats evaluated element-wise."""

E0 = 0.5
"""Error probability of a click that carries no information (a dark count, an after-pulse)."""


class Decoy(StrEnum):
    """How the single-photon contribution of decoy-state BB84 is bounded."""

    INFINITE = "infinite"
    VACUUM_WEAK = "vacuum+weak"
    NONE = "none"
