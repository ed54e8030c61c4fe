"""Control layer (Y.3804): routing and re-routing as free functions over cost callables, relay
capacity, sessions, access control, policy. Imports keys, security, units, errors.
"""
