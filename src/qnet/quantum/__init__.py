"""The quantum layer: devices and links built on physics and sim; photon-level protocols (BB84 and
decoy, CV-QKD, entanglement) and QKD post-processing (sift, estimate, reconcile, verify, amplify,
authenticate). Filled by the quantum-layer issue. Imports physics, sim, units, errors.
"""
