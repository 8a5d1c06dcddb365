"""The Grafana JSON data source: request/response models, the catalogue (metrics, variables, tags), /query."""
