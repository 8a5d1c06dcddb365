"""Synthetic probes: measure what citizens depend on (portals, DNS, the data center) and publish it over MQTT."""
