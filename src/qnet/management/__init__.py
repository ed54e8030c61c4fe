"""Management layer (Y.3804 FCAPS): inventory in ETSI GS QKD 015 shapes, monitoring, alarms,
accounting, audit. Subscribes to events; nothing below imports it. Filled by the management issue.
"""
