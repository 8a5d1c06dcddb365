"""One router per resource (telemetry, devices, sites, incidents, quarantine, keys, grafana, metrics,
health, status page), each with its prefix and tag; api.main includes them all."""
