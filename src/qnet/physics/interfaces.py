"""Quantum frequency conversion: moving a matter qubit's photon to a telecom wavelength.

A converter passes a photon with probability ``efficiency`` (external device efficiency: from
input fibre to output fibre, filtering included) and adds noise photons, mostly from the pump
(Raman, spontaneous parametric processes), at ``noise_rate_hz`` in the detection band.

- **Noise per window**: N = 1 - exp(-R tau) for a detection window tau (Poisson noise).
- **What noise does to a heralded pair**: a detected photon is the signal with probability
  w = S / (S + N), S the probability that the converted signal reaches the detector; a noise
  photon is uncorrelated with the memory, so the conditional state is w rho + (1 - w) I/4: the
  Werner visibility is multiplied by w, and a pair of fidelity F0 becomes
  F = w F0 + (1 - w) / 4; for a perfect pair F = (1 + 3 w)/4 (Werner, PRA 40, 4277 (1989)).
  Coincidences of signal and noise (order S N) are left out.
- **When conversion pays**: with native attenuation a_n and telecom attenuation a_t (dB/km),
  conversion wins beyond L* = 10 log10(1 / efficiency) / (a_n - a_t).

Presets (:data:`PRESETS`) carry a ``source`` saying which numbers were read from which paper's
abstract and which are illustrative. Fibre attenuations at the native wavelengths
(:data:`NATIVE_ATTENUATION_DB_PER_KM`) are typical, illustrative values for visible and
near-infrared single-mode fibre; no datasheet or paper was checked for them here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from qnet.physics.channels import fibre_transmittance
from qnet.physics.memories import werner_fidelity, werner_parameter

__all__ = [
    "NATIVE_ATTENUATION_DB_PER_KM",
    "PRESETS",
    "FrequencyConverter",
    "conversion_gain",
    "crossover_distance_km",
    "get_converter",
]


@dataclass(frozen=True, kw_only=True)
class FrequencyConverter:
    """A quantum frequency converter.

    Attributes:
        name: its key in :data:`PRESETS`, or any label.
        input_nm: wavelength of the matter qubit's photon.
        output_nm: wavelength after conversion.
        efficiency: external device efficiency, in [0, 1].
        noise_rate_hz: added noise photons per second in the detection band.
        source: where the numbers come from, and which are illustrative.

    Examples:
        >>> qfc = FrequencyConverter(name="x", input_nm=780, output_nm=1550, efficiency=0.5, noise_rate_hz=100.0)
        >>> round(qfc.noise_probability(1e-6), 10)
        9.9995e-05
        >>> FrequencyConverter(name="x", input_nm=780, output_nm=1550, efficiency=0.5, noise_rate_hz=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: FrequencyConverter.noise_rate_hz must be >= 0, got -1.0
    """

    name: str
    input_nm: float
    output_nm: float
    efficiency: float
    noise_rate_hz: float
    source: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.efficiency <= 1.0:
            raise ValueError(f"FrequencyConverter.efficiency must be in [0, 1], got {self.efficiency!r}")
        if self.noise_rate_hz < 0:
            raise ValueError(f"FrequencyConverter.noise_rate_hz must be >= 0, got {self.noise_rate_hz!r}")
        for name in ("input_nm", "output_nm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FrequencyConverter.{name} must be > 0, got {getattr(self, name)!r}")

    def noise_probability(self, window_s: float) -> float:
        """Probability of at least one noise photon in a detection window: 1 - exp(-R tau)."""
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s!r}")
        return -math.expm1(-self.noise_rate_hz * window_s)

    def signal_fraction(self, signal_prob: float, window_s: float) -> float:
        """w = S / (S + N): the probability that a detection is the converted signal.

        Args:
            signal_prob: probability that the photon reaches the converter's input and, after it,
                the detector (all losses but the converter's own).
            window_s: detection window.
        """
        s, n = signal_prob * self.efficiency, self.noise_probability(window_s)
        return s / (s + n) if s + n > 0 else 0.0

    def converted_fidelity(self, signal_prob: float, window_s: float, *, fidelity0: float = 1.0) -> float:
        """Fidelity of a memory-photon pair after conversion and detection: w F0 + (1 - w)/4.

        Examples:
            >>> qfc = PRESETS["Ca-854-to-1310"]
            >>> round(qfc.converted_fidelity(0.1, 1e-6), 5)  # 11.4 noise photons/s in a 1 us window
            0.99968
        """
        return werner_fidelity(self.signal_fraction(signal_prob, window_s) * werner_parameter(fidelity0))


def _preset(name: str, input_nm: float, output_nm: float, efficiency: float, noise_rate_hz: float,
            source: str) -> FrequencyConverter:
    return FrequencyConverter(name=name, input_nm=input_nm, output_nm=output_nm, efficiency=efficiency,
                              noise_rate_hz=noise_rate_hz, source=source)


PRESETS: Mapping[str, FrequencyConverter] = MappingProxyType({
    c.name: c for c in (
        _preset("Ca-854-to-1310", 854, 1310, 0.265, 11.4,
                "Bock et al., Nat. Commun. 9, 1998 (2018), abstract: '26.5% external frequency conversion "
                "efficiency and only 11.4 photons/s conversion-induced unconditional background' (both read)"),
        _preset("Rb-780-to-1522", 780, 1522, 0.57, 100.0,
                "van Leent et al., PRL 124, 010510 (2020), abstract: 'external device conversion efficiency "
                "of 57%' (read); noise rate 100 /s illustrative, not read from the paper"),
        _preset("NV-637-to-1588", 637, 1588, 0.17, 100.0,
                "Dreau et al., arXiv:1801.03304 (2018), abstract: 'overall efficiency of this one-step "
                "conversion reaches 17%' (read); noise rate 100 /s illustrative (the abstract gives a "
                "signal-to-noise ratio of about 7 for its signal, not a rate)"),
        _preset("Ca-854-to-1550", 854, 1550, 0.25, 100.0,
                "wavelengths as in Krutyanskiy et al., npj Quantum Inf. 5, 72 (2019) (854 nm to the 1550 nm "
                "C band); efficiency 25% and noise rate 100 /s illustrative, not read from the paper"),
    )
})
"""Converters by name; each one's ``source`` says which of its numbers were read from a paper."""

NATIVE_ATTENUATION_DB_PER_KM: Mapping[str, float] = MappingProxyType({
    "637 nm": 8.0,
    "780 nm": 3.5,
    "854 nm": 3.0,
    "1310 nm": 0.35,
    "1550 nm": 0.2,
})
"""Typical, illustrative single-mode fibre attenuation (dB/km) by wavelength; not checked here
against a datasheet or paper (0.2 dB/km at 1550 nm is the G.652 value of :mod:`qnet.physics.channels`)."""


def get_converter(name: str) -> FrequencyConverter:
    """The preset named ``name``.

    Raises:
        ValueError: if there is no such preset; the message lists them.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown converter {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def conversion_gain(length_km: float, converter: FrequencyConverter, *, native_db_per_km: float,
                    telecom_db_per_km: float = 0.2) -> float:
    """Transmittance with conversion over transmittance without it, over ``length_km`` of fibre:
    efficiency * 10^((a_n - a_t) L / 10). Above 1, conversion pays.

    Examples:
        >>> round(conversion_gain(2.0, PRESETS["NV-637-to-1588"], native_db_per_km=8.0), 2)  # 0.17 x 10^1.56
        6.17
    """
    converted = converter.efficiency * float(fibre_transmittance(length_km, telecom_db_per_km))
    return converted / float(fibre_transmittance(length_km, native_db_per_km))


def crossover_distance_km(converter: FrequencyConverter, *, native_db_per_km: float,
                          telecom_db_per_km: float = 0.2) -> float:
    """Fibre length beyond which conversion pays: L* = 10 log10(1 / efficiency) / (a_n - a_t).

    ``math.inf`` when the native wavelength is not lossier than the telecom one (or efficiency is 0).

    Examples:
        >>> round(crossover_distance_km(PRESETS["NV-637-to-1588"], native_db_per_km=8.0), 3)
        0.987
    """
    excess = native_db_per_km - telecom_db_per_km
    if excess <= 0 or converter.efficiency <= 0:
        return math.inf
    return -10.0 * math.log10(converter.efficiency) / excess
