"""httpx clients for qnet's own servers and any ETSI GS QKD 014 KME. Filled by the KME issue and
after.
"""
