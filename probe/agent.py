"""The probe agent: run every check concurrently each round, publish the results as readings.

A round measures every target at once (bounded by ``concurrency``), stamps the
readings with the round's start time and hands them to ``publish(topic,
payload)``, the same call the simulator uses (simulator.publisher.MqttPublisher
in production).  The collector, the detector, the boards and the availability
reports then treat a probe like any field device.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import httpx
import orjson

from .checks import check_dns, check_http, check_tcp
from .config import KIND, Check, ProbeConfig

log = logging.getLogger("fansipan.probe")


class ProbeAgent:
    def __init__(self, config: ProbeConfig, registry):
        self.config = config
        profile = registry.kinds[KIND]
        self.interval_s = config.interval_s or float(profile.reporting.interval_s)
        self.topics = {c.device: profile.topic.format(site=registry.devices[c.device].site, device=c.device)
                       for c in config.checks}
        self.rounds = 0
        self.failures = 0  # checks that failed, over all rounds

    async def _one(self, client: httpx.AsyncClient, check: Check, sem: asyncio.Semaphore) -> dict:
        timeout = check.timeout_s or self.config.timeout_s
        async with sem:
            jobs = []
            if check.http:
                jobs.append(check_http(client, check.http, timeout))
            if check.dns:
                jobs.append(check_dns(check.dns, timeout))
            if check.tcp:
                jobs.append(check_tcp(check.tcp, timeout))
            results = await asyncio.gather(*jobs)
        fields: dict = {}
        for values, why in results:
            fields.update(values)
            if why:
                self.failures += 1
                log.warning("probe %s: %s", check.device, why)
        return fields

    async def _round(self) -> dict[str, dict]:
        sem = asyncio.Semaphore(self.config.concurrency)
        # verify=False only where a check asks for it: one client per TLS setting.
        clients = {v: httpx.AsyncClient(verify=v, trust_env=self.config.use_env_proxy, timeout=self.config.timeout_s)
                   for v in (True, False)}
        try:
            results = await asyncio.gather(*(
                self._one(clients[c.http.verify_tls if c.http else True], c, sem) for c in self.config.checks))
        finally:
            for cl in clients.values():
                await cl.aclose()
        return {c.device: r for c, r in zip(self.config.checks, results)}

    def round(self, ts_s: float | None = None) -> list[tuple[str, bytes]]:
        """Run every check once; return (topic, JSON payload) per device, stamped ``ts_s`` (default: now)."""
        ts = time.time() if ts_s is None else ts_s
        results = asyncio.run(self._round())
        self.rounds += 1
        return [(self.topics[dev], orjson.dumps({"ts": round(ts, 3), **fields})) for dev, fields in results.items()]

    def run(self, publish: Callable[[str, bytes], None], stop: threading.Event) -> None:
        """A round every ``interval_s`` on a fixed schedule (a slow round does not shift the next) until ``stop``."""
        log.info("probe: %d target(s), a round every %g s, timeout %g s", len(self.topics), self.interval_s,
                 self.config.timeout_s)
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            for topic, payload in self.round():
                try:
                    publish(topic, payload)
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.error("probe: could not publish on %s: %s (is the broker reachable?)", topic, exc)
            n = max(n + 1, int((time.monotonic() - start) / self.interval_s) + 1)  # skip rounds we overran
            stop.wait(max(0.0, start + n * self.interval_s - time.monotonic()))
