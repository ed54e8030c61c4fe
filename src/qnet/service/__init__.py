"""Service layer, no HTTP: ETSI GS QKD 014 semantics, one-time-pad and AES applications, secure
cloud, sensing and distributed-computing applications. Imports keys, control, security.
"""
