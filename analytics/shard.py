"""Sharded detection: several detector processes split the province by a stable hash.

``fansipan detect --shard I/N`` (or ``FANSIPAN_DETECT_SHARD=I/N``) runs shard I
of N (0 <= I < N).  Every process reads the same store and writes the same
incidents database; what each one does:

* **per-series detectors** (statistics: spikes, level shifts, drift, stuck
  sensors, seasonal; multivariate) keep state per device and cost the CPU: a
  device's series run in exactly one shard, the one :meth:`Shard.owner` gives
  its device id (the first 8 bytes of its SHA-1, modulo N: the same in every
  process, on every machine, in every Python run, unlike ``hash()``);
* **group decisions** need the whole group, so every shard computes them from
  the store and only the group's owner raises them:

  - silence and topology (one incident at the silent uplink or power feed, its
    dependants marked unreachable): last-seen times of all devices are one
    cheap query, so every shard evaluates all devices and keeps the incidents
    whose *root* device it owns.  A commune router in shard 0 with its devices
    in shards 1 and 2 is still one "uplink down" incident, raised by shard 0,
    and shards 1 and 2 know those devices are unreachable and raise nothing
    for them;
  - limits are one incident per (site, kind, field) ("CRAC failure heats
    twelve servers" is one incident): threshold checks are cheap, every shard
    checks every device and the owner of the *site* raises the incident;
  - peers (a sensor that disagrees with its neighbours) compare each device
    with every neighbour, whichever shard owns them; the device's owner raises;
  - conditions about no device (the ingest stall) belong to shard 0.

So each condition key is raised by one shard only, and the shared
:class:`~analytics.incidents.IncidentStore` (SQLite in WAL mode; each
reconcile is one ``BEGIN IMMEDIATE`` transaction; Python's sqlite3 waits up to
5 s on a lock) sees one writer per incident.  A shard that is down leaves its
incidents open until another resolves them after the clear hold; nothing else
of it is covered by the others: run every shard (one per machine or core),
under a supervisor that restarts it.

What the split does not reduce: every shard reads each kind's whole frame
(the group decisions need it), so the store serves N times the reads.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

SITE_GROUPED = frozenset({"limit"})  # condition kinds raised once per site, by the owner of the site


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``; ``Shard(0, 1)`` is the whole province (no sharding)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not (isinstance(self.count, int) and isinstance(self.index, int) and 1 <= self.count <= 1024
                and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index!r}/{self.count!r}: expected I/N with N from 1 to 1024 and "
                             f"0 <= I < N (e.g. 0/3, 1/3, 2/3 for three detector processes)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> Shard(I, N); ValueError naming the text otherwise."""
        index, sep, count = str(text).strip().partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            raise ValueError(f"shard {text!r}: expected I/N, e.g. 1/3 (shard 1 of 3, counted from 0)")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owner(self, key: str) -> int:
        """The shard that owns ``key`` (a device or site id): stable across processes and machines."""
        return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % self.count

    def owns(self, key: str) -> bool:
        return self.count == 1 or self.owner(key) == self.index

    def owns_condition(self, c) -> bool:
        """Whether this shard raises condition ``c`` (see the module docstring)."""
        if self.count == 1:
            return True
        if c.kind in SITE_GROUPED:
            return self.owns(c.site)
        if not c.device:
            return self.index == 0
        return self.owns(c.device)

    def mine(self, conditions: Iterable) -> list:
        return [c for c in conditions if self.owns_condition(c)]

    def select(self, devices: Iterable[str]) -> list[str]:
        """The devices of ``devices`` this shard owns, in their order."""
        return [d for d in devices if self.owns(d)]


WHOLE = Shard(0, 1)


def run_cycles(shard: Shard, cycles: int, environ: dict[str, str] | None = None, at_ns: int | None = None) -> dict:
    """Run ``cycles`` detection cycles as ``shard`` with the FANSIPAN_* settings; say what it did.

    ``at_ns``: evaluate as of that time (replaying stored history) instead of now.

    Returns ``{"shard", "devices": [...], "raised": [...], "changes": [...]}``: the
    devices its per-series detectors ran on, the condition keys it raised, and
    the incident changes it made.  For checking a deployment's split (and for
    the tests): ``python -m analytics.shard 1/3 --cycles 1``.
    """
    from device_profiles import load_registry
    from fansipan.config import Settings
    from storage.factory import open_store

    from .incidents import IncidentStore
    from .service import DetectionService

    settings = Settings.from_env(environ, mqtt=False)
    registry = load_registry(settings.profiles_path())
    raised: set[str] = set()

    class Recording(IncidentStore):
        def reconcile(self, conditions, now_ns):
            conditions = list(conditions)
            raised.update(c.key for c in conditions)
            return super().reconcile(conditions, now_ns)

    store = open_store(settings, registry)
    incidents = Recording(settings.incidents_path)
    changes = []
    try:
        clock = (lambda: at_ns) if at_ns is not None else time.time_ns
        service = DetectionService(registry, store, incidents, clock=clock, shard=shard)
        for _ in range(cycles):
            changes += [(event, inc.key) for event, inc in service.cycle()]
    finally:
        incidents.close()
        store.close()
    return {"shard": str(shard), "devices": sorted(d for v in service.owned.values() for d in v),
            "raised": sorted(raised), "changes": changes}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m analytics.shard",
                                description="Run detection cycles as one shard and print, as JSON, the devices its "
                                            "per-series detectors ran on and the incidents it raised. It reconciles "
                                            "incidents like a detector does: to only look, point "
                                            "FANSIPAN_INCIDENTS_PATH at a copy of the incidents database.")
    p.add_argument("shard", help="I/N, e.g. 1/3")
    p.add_argument("--cycles", type=int, default=1, help="detection cycles to run (default 1)")
    p.add_argument("--at", help="evaluate as of this ISO 8601 time with its offset, e.g. 2026-07-15T11:55:00+07:00 "
                                "(replays stored history; default now)")
    args = p.parse_args(argv)
    try:
        shard = Shard.parse(args.shard)
        at = datetime.fromisoformat(args.at) if args.at else None
    except ValueError as exc:
        p.error(str(exc))
    if at is not None and at.tzinfo is None:
        p.error(f"--at {args.at!r}: give the time zone offset (e.g. +07:00 or Z), the time is ambiguous without it")
    at_ns = int(at.timestamp()) * 10**9 + at.microsecond * 1000 if at else None
    print(json.dumps(run_cycles(shard, max(1, args.cycles), at_ns=at_ns)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
