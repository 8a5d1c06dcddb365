"""The Fansipan API: telemetry, devices, sites, incidents, the quarantine, a Grafana data source,
Prometheus metrics and a small status page (``python -m api``; see docs/api.md).

:func:`api.main.create_app` builds the application with its boundaries (registry,
store, incident store, key store, clock) injectable, so tests swap them.
"""
