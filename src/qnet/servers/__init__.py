"""ASGI apps and daemons, adapters only: KME, KM-to-KM, controller, cloud storage, dashboard.
Filled by the KME issue and after.
"""
