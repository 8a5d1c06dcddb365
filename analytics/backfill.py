"""Late and replayed data: close an outage at its true end, and re-evaluate the gap without paging.

A device (or the gateway in front of it) that loses its link keeps measuring
and buffers; when the link comes back it replays the buffer.  The collector
stores those readings at their measurement times, marked ``historical=1``
(ingest/clock.py).  By then the silence incident that covered the gap was
opened, and it resolves as the device is heard again.  When it resolves, this
module reads what the store now holds for the gap and (docs/time.md):

* **device outage**: the gaps in *measurement* time of at least the silence
  threshold (``missed x interval + jitter``) between the last reading before
  the incident and the first live one.  None if the replay fills the gap: the
  device measured throughout, its outage ends where it began;
* **link (delivery) outage**: from the last reading heard before the incident
  to the first reading that *arrived* after it;
* the incident's ``resolved_ns`` becomes its true end: for a lone device the
  end of its last device outage (its own start if the replay fills the gap:
  nothing was lost but delivery); for an incident at an uplink or power feed
  (with unreachable members) the end of the link outage: the link was down,
  whatever the devices measured;
* the limit detector is run afresh over the recovered readings; what it finds
  is recorded in the annotation and the evidence, as history: no incident is
  opened and nobody is paged for a window that is already over;
* the incident is annotated "Đã khôi phục dữ liệu / Data recovered" (event
  ``data_recovered``).

Incidents resolved without late readings in the gap are left as they are.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import numpy as np

from device_profiles import Registry

from .grid import align
from .incidents import Incident, IncidentStore
from .limits import LimitDetector

log = logging.getLogger("fansipan.detect")

SILENCE_KINDS = ("silence", "uplink_down", "power_loss", "dependants_silent")
MARGIN_NS = 1_000_000  # last-heard times travel as float seconds: 1 ms keeps the last reading out of the gap


def _iso(ts_ns: float) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


class Backfill:
    def __init__(self, registry: Registry, store, incidents: IncidentStore, missed: int = 3):
        self.registry = registry
        self.store = store
        self.incidents = incidents
        self.missed = missed

    def after_reconcile(self, changes: list[tuple[str, Incident]], now_ns: int, wall_ns: int) -> list[tuple[str, Incident]]:
        """``changes`` plus a ``data_recovered`` change for each silence incident just resolved over replayed data."""
        out = list(changes)
        for event, inc in changes:
            if event != "resolved" or inc.kind not in SILENCE_KINDS or inc.resolved_by is not None:
                continue
            try:
                amended = self.recover(inc, now_ns, wall_ns)
            except Exception:  # the incident stays resolved as it was; detection goes on
                log.exception("could not re-evaluate incident #%d over late data; it stays as resolved", inc.id)
                continue
            if amended is not None:
                out.append(("data_recovered", amended))
        return out

    def recover(self, inc: Incident, now_ns: int, wall_ns: int) -> Incident | None:
        heard = {d: int(s * 1e9) + MARGIN_NS for d, s in (inc.evidence.get("last_heard") or {}).items()
                 if d in self.registry.devices}
        if not heard:
            return None
        by_kind: dict[str, list[str]] = {}
        for d in heard:
            by_kind.setdefault(self.registry.devices[d].kind, []).append(d)
        per_device, findings, recovered = {}, [], 0
        for kind, devs in by_kind.items():
            rep = self.registry.kinds[kind].reporting
            lo = min(heard[d] for d in devs)
            frame = self.store.frame(kind, lo, max(now_ns, lo) + 1, devices=sorted(devs))
            late_ns = (rep.interval_s + rep.jitter_s) * 1e9
            threshold = (self.missed * rep.interval_s + rep.jitter_s) * 1e9
            ends = []
            for i, d in enumerate(frame.devices):
                sel = (frame.device_idx == i) & (frame.ts_ns > heard[d])
                ts, arr = frame.ts_ns[sel], frame.arrived_ms[sel].astype(np.float64) * 1e6
                arr = np.where(arr < 0, ts, arr)  # arrival unknown: count it as live
                if ts.size == 0:
                    continue
                late = arr - ts > late_ns
                cut = int(ts[~late].min()) if (~late).any() else int(ts.max())  # the first live reading
                times = np.r_[heard[d] - MARGIN_NS, ts[ts <= cut]]
                gaps = np.flatnonzero(np.diff(times) >= threshold)
                n_late = int((late & (ts <= cut)).sum())
                per_device[d] = {"recovered": n_late, "link_end_ns": float(arr.min()),
                                 "device_outage": [(int(times[g]), int(times[g + 1])) for g in gaps]}
                recovered += n_late
                ends.append(cut)
            if ends:
                findings += self._reevaluate(kind, frame, lo, int(max(ends)))
        if recovered == 0:
            return None
        return self._annotate(inc, heard, per_device, findings, recovered, wall_ns)

    def _reevaluate(self, kind: str, frame, lo: int, hi: int) -> list[str]:
        """Titles of what the limit detector finds over [lo, hi], column by column; nothing is reconciled."""
        profile = self.registry.kinds[kind]
        step = int(profile.reporting.interval_s * 1e9)
        start = lo // step * step
        n_cols = int((hi - start) // step) + 1
        devices = list(frame.devices)
        if not devices or n_cols <= 0:
            return []
        detector = LimitDetector(profile, devices)
        cols = align(frame, devices, list(profile.fields), start, step, n_cols)
        seen: dict[str, str] = {}
        for j in range(n_cols):
            detector.update({f: b[:, j:j + 1] for f, b in cols.items()}, np.array([start + j * step]))
            for c in detector.conditions(self.registry):
                seen.setdefault(c.key, f"{c.title} (from {_iso(c.started_ns)})")
        return list(seen.values())

    def _annotate(self, inc: Incident, heard: dict, per_device: dict, findings: list[str], recovered: int,
                  wall_ns: int) -> Incident | None:
        link_end = min((v["link_end_ns"] for v in per_device.values()), default=None)
        root = per_device.get(inc.device, {})
        if inc.members:  # an uplink or a power feed: the link outage is what the incident is about
            resolved = int(link_end) if link_end is not None else inc.resolved_ns
        elif root.get("device_outage"):
            resolved = root["device_outage"][-1][1]
        else:  # the replay fills the gap: the device measured throughout
            resolved = inc.started_ns
        resolved = max(resolved, inc.started_ns)
        outages = {d: [[_iso(a), _iso(b)] for a, b in v["device_outage"]] for d, v in per_device.items()}
        evidence = {"data_recovered": {
            "readings": recovered,
            "device_outage": outages,
            "link_outage": [_iso(min(heard.values())), _iso(link_end)] if link_end is not None else None,
            "found_in_recovered_data": findings,
        }}
        lone = [d for d, o in outages.items() if not o]
        detail = (f"Đã khôi phục dữ liệu / Data recovered: {recovered} readings measured during the outage arrived "
                  f"late and are stored at their measurement times (historical=1). "
                  + (f"No device outage for {', '.join(sorted(lone))}: measured throughout. " if lone else "")
                  + "".join(f"{d} measured nothing from {o[0][0]} to {o[-1][1]}. " for d, o in outages.items() if o)
                  + (f"Link (delivery) outage until {_iso(link_end)}. " if link_end is not None else "")
                  + f"Resolved at its true end, {_iso(resolved)}. "
                  + ("Re-evaluated over the recovered readings (history, nobody paged): " + "; ".join(findings)
                     if findings else "Re-evaluated over the recovered readings: no limit crossed."))
        log.info("incident #%d: %s", inc.id, detail)
        return self.incidents.amend_resolution(inc.id, resolved, evidence, wall_ns, "data_recovered", detail)
