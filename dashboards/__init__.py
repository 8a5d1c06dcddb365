"""Grafana boards for the Lào Cai operations center, as code.

``python -m dashboards.build`` renders every board to ``dashboards/json/<uid>.json``
(what Grafana provisions from ``dashboards/provisioning/``); ``dashboards.push``
uploads them to a running Grafana through its HTTP API.

The boards read two data sources, both provisioned under fixed uids so the JSON
can name them: "Fansipan InfluxDB" (InfluxQL, uid ``fansipan-influxdb``) and
"Fansipan API" (the simpod JSON plugin over ``/api/v1/grafana``, uid
``fansipan-api``, contract in docs/grafana-datasource.md).
"""
