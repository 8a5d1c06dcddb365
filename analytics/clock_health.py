"""Clock health: devices whose clock is not synchronised, one device-health incident each.

The collector publishes what it saw of device clocks through the quarantine,
which every store keeps next to the telemetry (ingest/clock.py, docs/time.md):
readings refused with reason ``clock_skew``, evidence rows of the same reason
under the ``correct`` policy, and ``bad_timestamp`` refusals of a readable time
before 2000 or ahead of arrival.  Each cycle reads the rows that arrived since
the last one; a device has its clock off when, within its hold time
(``max(3 x interval + jitter, 180 s)``), it has a ``clock_skew`` row (the
collector's tracker already wants two messages in a row for one) or
``bad_timestamp`` refusals from two messages or more: one message with a time
from 1970 is a malformed message, and is only quarantined.

Such a device is heard from: its messages arrive, only their times are wrong.
The detection service therefore does not count it silent (a clock-skewed
device used to look silent, because its readings were all refused) and raises
"clock not synchronised" instead.

Stores that keep no quarantine text (VictoriaMetrics) cannot tell: clock
incidents are then not raised, which is logged once.
"""

from __future__ import annotations

import logging
import re

from device_profiles import Registry

from .incidents import Condition
from .topology import _site_label

log = logging.getLogger("fansipan.detect")

# bad_timestamp refusals that say the device clock is wrong (ingest/validate.py), as opposed to an unreadable one
_CLOCK_DETAIL = re.compile(r"is before 2000|ahead of arrival")
FAR_NS = 1 << 62
MIN_HOLD_S = 180.0  # the collector writes evidence rows at most once a minute under the correct policy
MIN_MESSAGES = 2  # bad_timestamp refusals from this many messages within the hold time make a clock off


def is_clock_symptom(reason: str, detail: str) -> bool:
    """Does a quarantined reading show a device clock that is not synchronised?

    ``clock_skew`` rows (ingest/clock.py) always do; ``bad_timestamp`` rows do when
    the time was readable but before 2000 or ahead of arrival, not when it was unreadable.
    """
    return reason == "clock_skew" or (reason == "bad_timestamp" and _CLOCK_DETAIL.search(detail or "") is not None)


class ClockHealth:
    def __init__(self, registry: Registry, since_ns: int, limit: int = 5000):
        self.registry = registry
        self.cursor = since_ns  # arrival time of the next quarantine row to read
        self.limit = limit
        self.enabled = True
        self.hold_ns = {d: int(max(3 * registry.kinds[e.kind].reporting.interval_s
                                   + registry.kinds[e.kind].reporting.jitter_s, MIN_HOLD_S) * 1e9)
                        for d, e in registry.devices.items()}
        self.facts: dict[str, dict] = {}  # device -> {"first_ns", "last_ns", "rows", "detail"}

    def read(self, store) -> None:
        """Fold the quarantine rows that arrived since the last read into the per-device facts."""
        if not self.enabled:
            return
        try:
            rows = store.quarantined(self.cursor, FAR_NS, limit=self.limit)
        except NotImplementedError:
            self.enabled = False
            log.warning("store %r keeps no quarantine text: clock-not-synchronised incidents are not raised "
                        "(use SQLite or InfluxDB for the quarantine)", store)
            return
        except Exception as exc:  # the telemetry detectors must go on without it
            log.warning("could not read the quarantine for device clock symptoms: %s; next cycle retries", exc)
            return
        if len(rows) >= self.limit:
            log.warning("more than %d quarantined readings since the last cycle: only the newest were read for "
                        "clock symptoms", self.limit)
        for r in reversed(rows):  # oldest first
            self.cursor = max(self.cursor, r.arrived_ns + 1)
            if r.device not in self.registry.devices or not is_clock_symptom(r.reason, r.detail):
                continue
            fact = self.facts.get(r.device)
            if fact is None or r.arrived_ns - fact["last_ns"] > self.hold_ns[r.device]:
                fact = self.facts[r.device] = {"first_ns": r.arrived_ns, "rows": 0, "messages": 0, "last_ns": None,
                                               "tracked": False}
            if r.arrived_ns != fact["last_ns"]:  # the rows of one message share its arrival time
                fact["messages"] += 1
            fact.update(last_ns=r.arrived_ns, detail=r.detail, reason=r.reason)
            fact["rows"] += 1
            fact["tracked"] = fact["tracked"] or r.reason == "clock_skew"

    def conditions(self, store, now_ns: int) -> list[Condition]:
        """Read new rows, then one warning per device whose clock is off now (by the wall clock)."""
        self.read(store)
        out = []
        for device, fact in list(self.facts.items()):
            if now_ns - fact["last_ns"] > self.hold_ns[device]:
                del self.facts[device]
                continue
            if not fact["tracked"] and fact["messages"] < MIN_MESSAGES:
                continue  # one message with a bad time is a malformed message, not yet a clock
            dev = self.registry.devices[device]
            out.append(Condition(
                key=f"clock:{device}", kind="clock_skew", severity="warning",
                title=f"Đồng hồ không đồng bộ / Clock not synchronised: {device} at {_site_label(self.registry, dev.site)}",
                cause=f"{device} ({dev.kind}) sends measurement times its profile cannot trust: {fact['detail']}",
                site=dev.site, district=dev.district, device=device, started_ns=fact["first_ns"],
                evidence={"last_symptom": fact["detail"], "reason": fact["reason"], "symptoms": fact["rows"]}))
        return out
