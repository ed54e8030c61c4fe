"""Discrete-event simulation kernel: Environment, events, generator processes, per-instance RNG
streams, and real-time pacing. Time is integer picoseconds. Filled by the QKD network issue (qnet
simulate); imports only units and errors.
"""
