"""The collector's own health in Prometheus format: readings in, quarantined by reason, queue, spool.

Served by ``fansipan collect --metrics-port PORT`` (prometheus_client's HTTP
server on its own registry, so nothing global leaks in). Values are read from
the collector's counters at scrape time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class _CollectorMetrics:
    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        s = self.collector.stats.snapshot()
        c = CounterMetricFamily("fansipan_collector_messages", "MQTT messages processed")
        c.add_metric([], s["messages"])
        yield c
        c = CounterMetricFamily("fansipan_collector_readings_stored", "readings made durable (store or spool)",
                                labels=["kind"])
        for kind, n in sorted(s["stored_by_kind"].items()):
            c.add_metric([kind], n)
        yield c
        c = CounterMetricFamily("fansipan_collector_quarantined", "readings refused, by reason", labels=["reason"])
        for reason, n in sorted(s["quarantined_by_reason"].items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily("fansipan_collector_write_failures", "store writes that failed (then retried or spooled)")
        c.add_metric([], s["write_failures"])
        yield c
        g = GaugeMetricFamily("fansipan_collector_pending_messages", "messages received, not yet written or acknowledged")
        g.add_metric([], s["pending_messages"])
        yield g
        g = GaugeMetricFamily("fansipan_collector_connected", "1 when connected to the MQTT broker")
        g.add_metric([], 1 if s["connected"] else 0)
        yield g
        spool = s["spool"]
        for name, key, doc in (("spool_bytes", "bytes", "bytes waiting in the store-and-forward spool"),
                               ("spool_batches", "batches", "batches waiting in the spool"),
                               ("spool_oldest_age_seconds", "oldest_age_s", "age of the oldest spooled batch"),
                               ("spool_fill_ratio", "fill", "spool size over its limit (1 = backpressure)")):
            g = GaugeMetricFamily(f"fansipan_collector_{name}", doc)
            g.add_metric([], spool.get(key, 0))
            yield g


def registry_for(collector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    reg.register(_CollectorMetrics(collector))
    return reg


def serve_metrics(collector, port: int, host: str = "127.0.0.1"):
    """Start the metrics HTTP server in a daemon thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry_for(collector))
