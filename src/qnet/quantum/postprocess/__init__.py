"""QKD post-processing, one module per step: sifting, parameter estimation, error reconciliation
(Cascade, polar codes), verification, privacy amplification and authentication, chained over
blocks by :mod:`qnet.quantum.postprocess.pipeline`."""
