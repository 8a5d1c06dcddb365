"""The detection service: every few seconds, read the store, detect, reconcile incidents.

One cycle:

1. silence, all devices at once, from the store's last-seen times;
2. topology: silent devices grouped under the uplink or power feed they share;
3. per device kind, the new columns of the time grid (by measurement time, up
   to a watermark that leaves room for the profile's jitter) go through the
   limit detector and the statistical detectors;
4. the conditions found are reconciled with the open incidents (deduplicated,
   flap-damped); the changes are returned and, where the store takes them,
   written as incident events next to the telemetry for the boards.

Devices marked unreachable by a topology incident raise nothing of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np

from device_profiles import Registry

from .backfill import Backfill
from .clock_health import ClockHealth
from .grid import align
from .incidents import Condition, Incident, IncidentStore
from .limits import LimitDetector
from .multivariate import MULTIVARIATE_KINDS, KindMultivariate
from .peers import PEER_FIELDS, KindPeers
from .shard import WHOLE, Shard
from .silence import SilenceDetector
from .statistics import KindStatistics
from .topology import Topology

log = logging.getLogger("fansipan.detect")


class DetectionService:
    def __init__(self, registry: Registry, store, incidents: IncidentStore, clock: Callable[[], int] = time.time_ns,
                 missed: int = 3, lag_s: float = 5.0, history_s: float = 3600.0, statistics: bool = True,
                 slack_s: float = 15.0, stall_s: float = 120.0, shard: Shard = WHOLE):
        self.registry = registry
        self.store = store
        self.incidents = incidents
        self.clock = clock
        self.lag_ns = int(lag_s * 1e9)
        self.slack_ns = int(slack_s * 1e9)
        self.stall_ns = int(stall_s * 1e9)
        now = clock()
        self.silence = SilenceDetector(registry, missed=missed, since_ns=now)
        # Device clocks and replayed data (docs/time.md): clock_health.py, backfill.py.
        self.clock_health = ClockHealth(registry, since_ns=min(now, time.time_ns()) - int(history_s * 1e9))
        self.backfill = Backfill(registry, store, incidents, missed=missed)
        self.topology = Topology(registry)
        self.devices = {k: sorted(d.id for d in registry.devices_of(k)) for k in registry.kinds}
        # Sharded (analytics/shard.py): per-series detectors run on this shard's devices only.
        self.shard = shard
        self.owned = {k: shard.select(v) for k, v in self.devices.items()}
        self._owned_rows = {k: np.flatnonzero([shard.owns(d) for d in v]) for k, v in self.devices.items()}
        self.limits = {k: LimitDetector(registry.kinds[k], self.devices[k]) for k in registry.kinds}
        self.stats = {k: KindStatistics(registry.kinds[k], self.owned[k]) for k in registry.kinds} if statistics else {}
        # Multivariate (data-center kinds, IsolationForest trained on an hour of clean history) and peers
        # (a sensor that disagrees with its neighbours of the same kind).
        self.multivariate = {k: KindMultivariate(registry.kinds[k], self.owned[k],
                                                 train_cols=max(60, int(3600 / registry.kinds[k].reporting.interval_s)))
                             for k in MULTIVARIATE_KINDS if k in registry.kinds and self.owned[k]} if statistics else {}
        self.peers = {k: KindPeers(registry.kinds[k], self.devices[k], registry)
                      for k in PEER_FIELDS if k in registry.kinds and self.devices[k]} if statistics else {}
        self.step_ns = {k: int(p.reporting.interval_s * 1e9) for k, p in registry.kinds.items()}
        # Start far enough back to warm the statistical baselines up on history.
        self.cursor = {k: (now - int(history_s * 1e9)) // s * s for k, s in self.step_ns.items()}
        self.latest: dict[str, dict[str, float]] = {}  # device -> field -> last value seen on the grid
        self.cycles = 0

    # --- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> list[tuple[str, Incident]]:
        wall = self.clock()
        last_seen = self.store.last_seen()
        now, stalled = self._effective_now(wall, last_seen)
        silent_mask, missed, last_s = self.silence.evaluate(last_seen, now)
        silent = {d: float(last_s[i]) for i, d in enumerate(self.silence.devices) if silent_mask[i]}
        clocks = self.clock_health.conditions(self.store, wall)
        for c in clocks:  # heard from, with a wrong clock: not silent
            silent.pop(c.device, None)
        for kind in self.registry.kinds:
            self._advance(kind, now)
        on_battery = {d: bool(v.get("on_battery", 0) >= 0.5) for d, v in self.latest.items() if "on_battery" in v}
        heard = {d: float(t) for d, t in zip(self.silence.devices, last_s)}
        conditions = self.topology.conditions(silent, on_battery, heard) + clocks
        if stalled is not None:
            conditions.append(stalled)
        unreachable = {m for c in conditions for m, _ in c.members}
        for kind in self.registry.kinds:
            for c in self._kind_conditions(kind):
                if c.device not in unreachable and c.device not in silent:
                    conditions.append(c)
        changes = self.incidents.reconcile(self.shard.mine(conditions), wall)
        changes = self.backfill.after_reconcile(changes, now, wall)
        for event, inc in changes:
            log.info("incident %s #%d [%s] %s", event, inc.id, inc.severity, inc.title)
        self._write_events(changes, now)
        self.incidents.heartbeat()  # wall clock: the API's detector-lag metric reads it
        self.cycles += 1
        return changes

    def _effective_now(self, wall: int, last_seen: dict[str, int]) -> tuple[int, Condition | None]:
        """Evaluate no further than the newest reading stored (plus a little): a lagging or stopped
        pipeline must not look like the whole province going silent. A stall is one incident."""
        if not last_seen:
            return wall, None
        newest = max(last_seen.values())
        now = min(wall, newest + self.slack_ns)
        if wall - newest < self.stall_ns:
            return now, None
        since = datetime.fromtimestamp(newest / 1e9, timezone.utc).isoformat(timespec="seconds")
        return now, Condition(
            key="ingest:stalled", kind="ingest_stalled", severity="critical",
            title=f"Không nhận được dữ liệu / No readings stored since {since}",
            cause="no device's reading has reached the store: check the collectors, the broker and the store "
                  "(or the provincial core network); device silence is not evaluated past that time",
            site=next(iter(self.registry.sites)), district="", device="", started_ns=newest,
            evidence={"newest_reading": since})

    def _advance(self, kind: str, now: int) -> None:
        """Feed the grid columns that are complete (up to the watermark) to the kind's detectors."""
        profile = self.registry.kinds[kind]
        step = self.step_ns[kind]
        watermark = (now - self.lag_ns - int(profile.reporting.jitter_s * 1e9)) // step * step
        start = self.cursor[kind]
        n_cols = int((watermark - start) // step)
        if n_cols <= 0 or not self.devices[kind]:
            return
        frame = self.store.frame(kind, start, watermark)
        fields = list(profile.fields)
        cols = align(frame, self.devices[kind], fields, start, step, n_cols)
        times = start + step * np.arange(n_cols, dtype=np.int64)
        self.limits[kind].update(cols, times)
        mine = cols if self.shard.whole else {f: b[self._owned_rows[kind]] for f, b in cols.items()}
        for per_kind, block in ((self.stats, mine), (self.multivariate, mine), (self.peers, cols)):
            if kind in per_kind:
                per_kind[kind].update(block, times)
        for f, block in cols.items():
            have = ~np.isnan(block)
            any_have = have.any(axis=1)
            if not any_have.any():
                continue
            last_col = block.shape[1] - 1 - np.argmax(have[:, ::-1], axis=1)
            vals = block[np.arange(block.shape[0]), last_col]
            for i in np.flatnonzero(any_have):
                self.latest.setdefault(self.devices[kind][i], {})[f] = float(vals[i])
        self.cursor[kind] = watermark

    def _kind_conditions(self, kind: str) -> list[Condition]:
        out = self.limits[kind].conditions(self.registry)
        for per_kind in (self.stats, self.multivariate, self.peers):
            if kind in per_kind:
                out += per_kind[kind].conditions(self.registry)
        return out

    def _write_events(self, changes, now: int) -> None:
        write = getattr(self.store, "write_incident_events", None)
        if write is None or not changes:
            return
        try:
            write([(now, event, inc) for event, inc in changes])
        except Exception as exc:  # the incident DB has the truth; the board's copy can lag
            log.warning("could not write %d incident events to the store: %s", len(changes), exc)

    # --- running --------------------------------------------------------------------------------

    def run(self, every_s: float, stop) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.cycle()
            except Exception:
                log.exception("detection cycle failed; retrying next cycle")
            stop.wait(max(0.0, every_s - (time.monotonic() - t0)))
