"""How long availability and the monthly report take over a month of N outage incidents.

    python -m benchmarks.availability --incidents 10000

Seeds a temporary incidents database with N outage incidents (random devices of the
shipped registry, 5 to 180 minutes, spread over October 2026, opened and resolved through
IncidentStore.reconcile as the detector does), then times analytics.availability.load for
the month and the HTML report.  Prints one line; figures go to docs/availability.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from analytics import availability, periods
from analytics.incidents import Condition, IncidentStore
from analytics.maintenance import MaintenanceStore
from device_profiles import load_registry

MIN = 60 * 10**9


def seed(store: IncidentStore, registry, n: int, start_ns: int, rnd: random.Random) -> None:
    devices = sorted(registry.devices)
    for s in sorted(start_ns + rnd.randrange(0, 30 * 1440) * MIN for _ in range(n)):
        dev = registry.devices[rnd.choice(devices)]
        c = Condition(key=f"silence:{dev.id}", kind="silence", severity="warning", title="bench", cause="bench",
                      site=dev.site, district=dev.district, device=dev.id, started_ns=s)
        end = s + rnd.randrange(5, 180) * MIN
        store.reconcile([c], s)
        store.reconcile([c], end)
        store.reconcile([], end)


def main(argv: list[str] | None = None) -> int:
    from reports import render
    from reports.monthly import build

    p = argparse.ArgumentParser(prog="python -m benchmarks.availability", description=__doc__.splitlines()[0])
    p.add_argument("--incidents", type=int, default=2000, help="outage incidents to seed (default 2000)")
    args = p.parse_args(argv)
    registry = load_registry()
    period = periods.parse("month", "2026-10")
    now = period.end_ns + 86_400 * 10**9
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "incidents.sqlite"
        incidents, windows = IncidentStore(path, clear_hold_s=0, reopen_s=0), MaintenanceStore(path)
        incidents._db.execute("PRAGMA synchronous=OFF")  # seeding only: durability is not what is measured
        seed(incidents, registry, args.incidents, period.start_ns, random.Random(8))
        t0 = time.perf_counter()
        a = availability.load(registry, incidents, windows, period, now)
        t1 = time.perf_counter()
        html = render(build(registry, incidents, windows, "2026-10", now), "html")
        t2 = time.perf_counter()
        incidents.close()
        windows.close()
    print(f"{args.incidents} incidents seeded ({len(a.outages)} outages after flap merging), "
          f"{len(registry.devices)} devices, {len(registry.sites)} sites: month {t1 - t0:.2f} s; "
          f"HTML report {t2 - t1:.2f} s ({len(html):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
