"""Incidents raised on a quiet province (no fault injected) over a long simulated span.

    python -m benchmarks.false_alarms HOURS STEP_S START_ISO
    e.g. python -m benchmarks.false_alarms 24 120 2026-01-15T00:00:00+00:00

The simulator's readings go through the validator into the embedded store and
the detection service runs a cycle every STEP_S simulated seconds. Prints the
incidents by kind and device group: on a quiet province every one of them is a
false alarm, except limit marks that the simulated weather really crosses
(winter PM2.5 in Lào Cai city, monsoon rain intensity).
"""

import collections
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from device_profiles import load_registry
from ingest.validate import Validator
from simulator.core import Simulation
from storage.sqlite import SQLiteStore
R = load_registry()
if len(sys.argv) != 4:
    sys.exit(__doc__)
hours, step = float(sys.argv[1]), int(sys.argv[2])
start = datetime.fromisoformat(sys.argv[3])
d = Path(tempfile.mkdtemp())
store = SQLiteStore(d / "t.sqlite", R)
inc = IncidentStore(d / "i.sqlite")
sim = Simulation(R, seed=5, speed=0, start=start)
v = Validator(R)
t0 = int(start.timestamp() * 1e9)
now = [t0]
svc = DetectionService(R, store, inc, clock=lambda: now[0], history_s=0, lag_s=0)
t = time.time()
for k in range(int(hours * 3600 / step)):
    now[0] = t0 + (k + 1) * step * 10**9
    pts = []
    for topic, payload, _ in sim.messages(1, step_s=step):
        pts += v.message(topic, payload, now[0])[0]
    store.write(pts)
    svc.cycle()
print("took %.0f s" % (time.time() - t))
c = collections.Counter((i.kind, i.device.split('-')[0] if i.kind != 'limit' else i.key) for i in inc.all())
print(f"command: python -m benchmarks.false_alarms {' '.join(sys.argv[1:])}")
print(f"{len(inc.all())} incidents in {hours:g} simulated hours, {len(R.devices)} devices, no fault injected")
for k, n in c.most_common(40):
    print(f"  {n:>4}  {k}")
