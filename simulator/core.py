"""The Simulation: every device of the registry reporting on its schedule, with faults.

Usage::

    sim = Simulation(registry, faults=[Fault.parse("uplink_cut:y_ty")], seed=1, speed=60)
    sim.run(publisher.publish, duration_s=120)       # 120 wall seconds = 2 simulated hours
    sim.stats.snapshot()                              # what was sent, exactly

Time: simulated time starts at ``start`` and advances ``speed`` simulated
seconds per wall second (``speed=0``: as fast as possible).  Measurement times
are in simulated time.  The collector refuses times more than a couple of
minutes ahead of its wall clock, so when ``start`` is not given it is placed in
the past: far enough that the run ends at "now" (``duration_s`` known), or
:data:`BACKLOG_S` (:data:`FAST_BACKLOG_S` at speed 0) back for open-ended runs;
and then simulated time is never let run ahead of the wall clock: having caught
up, it goes on at real time.  An explicit ``start`` is taken as given (choose
it in the past: readings ahead of the collector's clock are refused).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime, timezone

import numpy as np

from . import signals as sg
from .faults import Fault, FaultPlan
from .kinds import KindModel

log = logging.getLogger(__name__)

MALFORMED_REASONS = ("decode_error", "unknown_device", "unknown_field", "wrong_type", "out_of_range", "bad_timestamp")
BACKLOG_S = 3600.0  # default head start into the past for open-ended accelerated runs
FAST_BACKLOG_S = 7 * 86400.0  # ... and for speed=0 runs
FAST_STEP_S = 600.0
MESSAGES_STEP_S = 300.0  # default step of messages()  # simulated seconds generated per step when running as fast as possible
TICK_WALL_S = 0.2  # how often a paced run wakes up to publish what fell due


@dataclass
class SimStats:
    """Counters of what was handed to ``publish``.

    Safe to read from another thread while the simulation runs: the dicts and
    the set are replaced, never changed in place, so iterating one is safe;
    :meth:`snapshot` gives a consistent copy of all of them.
    """

    published_messages: int = 0
    published_readings: int = 0  # valid readings: the collector must store exactly these
    malformed_by_reason: dict = field(default_factory=dict)  # reason -> readings it must refuse
    per_kind: dict = field(default_factory=dict)  # kind -> valid readings
    devices_published: set = field(default_factory=set)  # devices with at least one valid reading
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, msgs: int, valid: int, bad: dict, per_kind: dict, devices: set) -> None:
        with self._lock:
            if bad:
                merged = dict(self.malformed_by_reason)
                for k, n in bad.items():
                    merged[k] = merged.get(k, 0) + n
                self.malformed_by_reason = merged
            if per_kind:
                merged = dict(self.per_kind)
                for k, n in per_kind.items():
                    merged[k] = merged.get(k, 0) + n
                self.per_kind = merged
            if not devices <= self.devices_published:
                self.devices_published = self.devices_published | devices
            self.published_messages += msgs
            self.published_readings += valid

    def snapshot(self) -> dict:
        with self._lock:
            return {"published_messages": self.published_messages, "published_readings": self.published_readings,
                    "malformed_by_reason": dict(self.malformed_by_reason), "per_kind": dict(self.per_kind),
                    "devices_published": set(self.devices_published)}


def _count(stats: SimStats, msgs: list, kind: str | None) -> None:
    """Add a list of handed-out messages to ``stats`` (``kind``: the kind of all of them, None if mixed).

    A message is (topic, payload, valid readings, reason, refused readings, kind, device).
    """
    if not msgs:
        return
    valid = sum(map(itemgetter(2), msgs))
    if kind is not None:
        per_kind = {kind: valid} if valid else {}
    else:
        per_kind = {}
        for m in msgs:
            if m[2]:
                per_kind[m[5]] = per_kind.get(m[5], 0) + m[2]
    bad: dict = {}
    for m in msgs:
        if m[4]:
            bad[m[3]] = bad.get(m[3], 0) + m[4]
    stats.add(len(msgs), valid, bad, per_kind, {m[6] for m in msgs if m[2]})


class Simulation:
    """Every device of ``registry`` reporting per its profile, with ``faults`` injected.

    ``seed``: same seed, same start -> same readings (whatever the speed or step).
    ``speed``: simulated seconds per wall second, > 0; ``0`` (or
    ``as_fast_as_possible=True``) emits without sleeping.  ``start``: simulated
    start (aware datetime; naive is taken as UTC); default: see the module doc.
    ``batch``: readings per message for a device (>= 1).
    Raises ValueError for a bad speed/batch or a fault whose target is not in the registry.
    """

    def __init__(self, registry, faults=(), seed: int = 1, speed: float = 1.0, start: datetime | None = None,
                 batch: int = 1, *, as_fast_as_possible: bool = False):
        if speed < 0 or speed != speed:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch}")
        self.registry = registry
        self.seed = int(seed)
        self.speed = 0.0 if as_fast_as_possible else float(speed)
        self.batch = int(batch)
        self.faults = [Fault.parse(f) if isinstance(f, str) else f for f in faults]
        by_kind: dict[str, list] = {}
        for d in registry.devices.values():
            by_kind.setdefault(d.kind, []).append(d)
        self.models = {k: KindModel(self.seed, registry.kinds[k], devs) for k, devs in sorted(by_kind.items())}
        self.plan = FaultPlan(self.faults, registry, self.models)  # validates every target
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self.start = start
        self._pinned = start is not None  # an explicit start is never clamped to the wall clock
        self._t0: float | None = start.timestamp() if start else None
        self._cursor: float | None = self._t0
        self._buffers: dict[tuple[str, int], list] = {}  # (kind, device pos) -> [(frag, skewed)]
        self._held: dict[tuple[str, int], list] = {}  # link_replay: (kind, device pos) -> frags measured, not yet sent
        self._malformed_n = 0
        self.stats = SimStats()

    # -------------------------------------------------------------- time

    def _begin(self, backlog_s: float) -> float:
        if self._t0 is None:
            self._t0 = time.time() - backlog_s
            self.start = datetime.fromtimestamp(self._t0, timezone.utc)
            self._cursor = self._t0
            log.info("simulation starts at %s (simulated), speed %s", self.start.isoformat(), self.speed or "max")
        for m in self.models.values():
            m.t0 = self._t0
        return self._cursor

    @property
    def sim_time(self) -> datetime | None:
        """Simulated time reached so far (None before the first step)."""
        return None if self._cursor is None else datetime.fromtimestamp(self._cursor, timezone.utc)

    # -------------------------------------------------------------- generation

    def _chunks(self, a: float, b: float) -> Iterator[tuple[str, list]]:
        """Messages for readings due in [a, b): (kind, list) per kind, each list time-ordered.

        A message is (topic, payload, valid readings, reason, refused readings, kind, device).
        """
        t0, plan = self._t0, self.plan
        for kind, m in self.models.items():
            dev, k, t = m.schedule(a, b)
            if not len(dev):
                continue
            out: list = []
            silent = plan.silent(kind, dev, t - t0)
            if silent.any():
                if self.batch > 1:  # a device going dark sends what it holds first
                    for i in np.unique(dev[silent]).tolist():
                        out.extend(self._flush_one(m, i))
                keep = ~silent
                dev, k, t = dev[keep], k[keep], t[keep]
                if not len(dev):
                    yield kind, out
                    continue
            off = t - t0
            vals = m.values(dev, plan.stuck_at(m, dev, k, off), effects=lambda c: plan.apply(m, c, off))
            ts = m.timestamps(dev, k, t)
            skew = plan.skew_s(kind, dev, off)
            if skew.any():  # ahead of the collector's clock too, even when simulated time lags it
                ahead = max(skew.max(), m.profile.reporting.future_tolerance_s + 600.0)
                frags = m.encode(dev, np.where(skew > 0, np.maximum(ts, time.time()) + ahead, ts), vals)
            else:
                frags = m.encode(dev, ts, vals)
            skewed = (skew > 0).tolist()
            held = plan.holding(kind, dev, off).tolist() if kind in plan.held else None
            if held is not None:  # the link is back for these devices: their buffer goes first
                for i in sorted({i for j, i in enumerate(dev.tolist()) if not held[j] and (kind, i) in self._held}):
                    out.extend(self._replay(m, i))
            rate = plan.malformed_rate(off)
            broken = (sg.uniform(m.keys[dev] ^ np.uint64(0xBAD), k) < rate).tolist() if rate.any() else None
            ids, topics, batch = m.ids, m.topics, self.batch
            for j, i in enumerate(dev.tolist()):
                if held is not None and held[j]:
                    self._held.setdefault((kind, i), []).append(frags[j])
                elif broken is not None and broken[j]:
                    out.append(self._malformed(m, j, i, ts[j], vals))
                elif batch == 1:
                    sk = skewed[j]
                    out.append((topics[i], frags[j], 0 if sk else 1, "bad_timestamp", 1 if sk else 0, kind, ids[i]))
                else:
                    buf = self._buffers.setdefault((kind, i), [])
                    buf.append((frags[j], skewed[j]))
                    if len(buf) >= batch:
                        out.extend(self._flush_one(m, i))
            yield kind, out

    def _replay(self, m: KindModel, i: int, per_message: int = 60) -> list:
        held = self._held.pop((m.kind, i), [])
        return [(m.topics[i], m.join(held[k:k + per_message]), len(held[k:k + per_message]), "bad_timestamp", 0,
                 m.kind, m.ids[i]) for k in range(0, len(held), per_message)]

    def _flush_one(self, m: KindModel, i: int) -> list:
        buf = self._buffers.pop((m.kind, i), None)
        if not buf:
            return []
        nbad = sum(1 for _f, sk in buf if sk)
        return [(m.topics[i], m.join([f for f, _sk in buf]), len(buf) - nbad, "bad_timestamp", nbad, m.kind, m.ids[i])]

    def _flush_all(self) -> list:
        out = []
        for kind, i in sorted(self._buffers):
            out.extend(self._flush_one(self.models[kind], i))
        return out

    def _malformed(self, m: KindModel, j: int, i: int, ts: float, vals: dict):
        row = {n: v[j].item() for n, v in vals.items()}
        for _ in MALFORMED_REASONS:
            n = self._malformed_n
            self._malformed_n += 1
            reason = MALFORMED_REASONS[n % len(MALFORMED_REASONS)]
            made = m.malformed(reason, n // len(MALFORMED_REASONS), i, float(ts), row)
            if made is not None:
                return (made[0], made[1], 0, reason, 1, m.kind, m.ids[i])
        raise AssertionError("no malformed case applies")  # bad_timestamp always does

    def messages(self, n_steps: int, step_s: float | None = None) -> Iterator[tuple[str, bytes, int]]:
        """Generate ``n_steps`` steps of ``step_s`` simulated seconds without MQTT or sleeping.

        Yields (topic, payload, valid readings in it).  ``step_s`` defaults to
        :data:`MESSAGES_STEP_S` (bigger steps generate faster).  Partial batches are flushed at the
        end.  Every yielded message is counted in :attr:`stats` (the caller is
        taken to publish it) once its kind's chunk is handed out or the generator
        closes.  Simulated time continues from the previous call; with no
        ``start``, it begins ``n_steps * step_s`` (at most :data:`FAST_BACKLOG_S`) ago.
        """
        step = float(step_s or MESSAGES_STEP_S)
        a = self._begin(min(n_steps * step, FAST_BACKLOG_S))
        for _ in range(n_steps):
            b = a + step
            for kind, chunk in self._chunks(a, b):
                yield from self._handout(chunk, kind)
            a = self._cursor = b
        yield from self._handout(self._flush_all(), None)

    def _handout(self, chunk: list, kind: str | None):
        done = 0
        try:
            for msg in chunk:
                done += 1
                yield msg[0], msg[1], msg[2]
        finally:
            _count(self.stats, chunk if done == len(chunk) else chunk[:done], kind)

    # -------------------------------------------------------------- paced run

    def run(self, publish: Callable[[str, bytes], None], duration_s: float | None = None,
            stop: threading.Event | None = None) -> None:
        """Publish readings as they fall due, until ``duration_s`` is over or ``stop`` is set.

        ``duration_s``: wall-clock seconds when ``speed > 0``; simulated seconds when
        running as fast as possible (``speed == 0``), where wall time means nothing.
        ``None``: until ``stop``.  ``publish(topic, payload)`` may block (back-pressure)
        and may raise, which ends the run (messages it did not accept are not
        counted).  Partial batches are flushed before returning.  The caller
        flushes/closes its MQTT client.
        """
        stop = stop or threading.Event()
        fast = self.speed == 0
        if fast:
            backlog = FAST_BACKLOG_S if duration_s is None else duration_s
        elif duration_s is not None:
            backlog = max(0.0, duration_s * (self.speed - 1))
        else:
            backlog = BACKLOG_S if self.speed > 1 else 0.0
        a = self._begin(backlog)
        w0, s0 = time.monotonic(), a
        deadline = None if duration_s is None or fast else w0 + duration_s
        sim_end = a + duration_s if fast and duration_s is not None else math.inf
        caught_up = False
        while True:
            now = time.monotonic()
            if deadline is not None:
                now = min(now, deadline)
            b = min(a + FAST_STEP_S, sim_end) if fast else s0 + (now - w0) * self.speed
            if not self._pinned and b > time.time():
                if not caught_up and self.speed != 1:
                    log.warning("simulated time caught up with the wall clock: going on at real time")
                    caught_up = True
                b = time.time()
            if b > a:
                for kind, chunk in self._chunks(a, b):
                    self._publish(publish, chunk, kind)
                a = self._cursor = b
            if stop.is_set() or b >= sim_end or (deadline is not None and now >= deadline):
                break
            if not fast or caught_up:
                stop.wait(TICK_WALL_S if deadline is None else max(0.0, min(TICK_WALL_S, deadline - time.monotonic())))
        self._publish(publish, self._flush_all(), None)

    def _publish(self, publish, chunk: list, kind: str | None) -> None:
        done = 0
        try:
            for msg in chunk:
                publish(msg[0], msg[1])
                done += 1
        finally:
            _count(self.stats, chunk if done == len(chunk) else chunk[:done], kind)
