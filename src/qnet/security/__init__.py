"""Recipes over cryptographic primitives: post-quantum signatures and certificates, KEM, one-time
pad, information-theoretically secure MACs. Imports only units and errors.
"""
