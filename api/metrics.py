"""Prometheus metrics for Fansipan's own health, on the API's private CollectorRegistry.

Two halves:

* request counters and latencies, counted by a small ASGI middleware per route
  *template* (``/api/v1/devices/{device_id}``), never per raw path, so a
  scanner cannot blow up the label cardinality;
* gauges read at scrape time from the store and the incidents database
  (quarantined readings by reason over the last hour, open incidents by
  severity, detector lag, readings stored in the last minute, devices by
  status).  A part that fails is skipped and counted in
  ``fansipan_api_collect_errors_total``, so one slow store never hides the rest.

The collector's own counters (messages in, queue depth) live in the collector
process, not here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from analytics.incidents import SEVERITIES

log = logging.getLogger("fansipan.api")
NS = 1_000_000_000
QUARANTINE_SCAN = 10_000  # refusals read per scrape for the last-hour counts (newest first)


class ApiMetrics:
    def __init__(self, state_getter):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("fansipan_api_requests", "API requests by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("fansipan_api_request_duration_seconds", "API request duration by route template",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.collect_errors = Counter("fansipan_api_collect_errors", "parts of a scrape that failed, by source",
                                      ["source"], registry=self.registry)
        self.registry.register(_StateCollector(state_getter, self.collect_errors))


class RequestMetrics:
    """ASGI middleware: count every HTTP request by its matched route template (or 'unmatched')."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]
        t0 = time.perf_counter()

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            # the router writes the matched route into this same scope dict
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


class _StateCollector:
    def __init__(self, state_getter, errors: Counter):
        self.state = state_getter
        self.errors = errors

    def collect(self):
        state = self.state()
        now = state.clock()
        for source, part in (("quarantine", self._quarantine), ("incidents", self._incidents),
                             ("detector", self._detector), ("readings", self._readings), ("devices", self._devices)):
            try:
                yield from part(state, now)
            except NotImplementedError:
                continue  # VictoriaMetrics keeps no quarantine text: nothing to count
            except Exception as exc:  # one failing part must not fail the whole scrape
                log.warning("metrics: %s failed: %s", source, exc)
                self.errors.labels(source).inc()

    @staticmethod
    def _quarantine(state, now):
        rows = state.store.quarantined(now - 3600 * NS, now, QUARANTINE_SCAN)
        g = GaugeMetricFamily("fansipan_quarantined_last_hour", "readings refused in the last hour, by reason "
                              f"(counted over at most the newest {QUARANTINE_SCAN})", labels=["reason"])
        for reason, n in sorted(Tally(r.reason for r in rows).items()):
            g.add_metric([reason], n)
        yield g

    @staticmethod
    def _incidents(state, now):
        by = Tally(i.severity for i in state.incidents.open_incidents())
        g = GaugeMetricFamily("fansipan_incidents_open", "open or acknowledged incidents, by severity",
                              labels=["severity"])
        for sev in SEVERITIES:
            g.add_metric([sev], by.get(sev, 0))
        yield g

    @staticmethod
    def _detector(state, now):
        beat = state.incidents.last_heartbeat()
        if beat is None:
            return  # never ran against this database: alert on absent(fansipan_detector_lag_seconds)
        ts, beats = beat
        yield GaugeMetricFamily("fansipan_detector_lag_seconds", "seconds since the detector's last cycle "
                                "(wall clock)", value=max(0.0, (time.time_ns() - ts) / NS))
        yield GaugeMetricFamily("fansipan_detector_cycles", "detection cycles recorded", value=beats)

    @staticmethod
    def _readings(state, now):
        g = GaugeMetricFamily("fansipan_readings_stored_last_minute", "readings stored with a measurement time "
                              "in the last minute, by device kind", labels=["kind"])
        for kind in sorted(state.registry.kinds):
            if state.registry.devices_of(kind):
                g.add_metric([kind], int(state.store.frame(kind, now - 60 * NS, now).ts_ns.size))
        yield g

    @staticmethod
    def _devices(state, now):
        snap = state.live.snapshot(state.store, state.incidents, now)
        g = GaugeMetricFamily("fansipan_devices", "devices by live status", labels=["status"])
        for status, n in sorted(Tally(snap.device.values()).items()):
            g.add_metric([status], n)
        yield g
