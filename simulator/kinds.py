"""One device kind as the simulator sees it: its devices' schedules, how to
compute their field values (vectorized over many readings) and how to encode
them in the profile's payload format (``json`` or ``line_protocol``).

Payloads follow exactly what the collector decodes:

* json: ``{"ts": <epoch s, ms precision>, "<field>": value, ...}``; bools as
  true/false, ints as JSON ints, floats as numbers; several readings of one
  device as a JSON list;
* line_protocol: ``<kind>,device=<id> f1=1.5,f2=3i,f3=true <ts_ns>``, one
  line per reading.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from . import shapes
from . import signals as sg
from .formats import codec_for

DEFAULT_TZ = "Asia/Ho_Chi_Minh"


def _hours(t) -> float:
    return t.hour + t.minute / 60 + t.second / 3600


class KindModel:
    """Devices of one kind, their reading schedule and their value/encoding machinery."""

    def __init__(self, seed: int, profile, devices: list):
        self.seed = seed
        self.profile = profile
        self.kind = profile.kind
        self.ids = [d.id for d in devices]
        self.index = {d: i for i, d in enumerate(self.ids)}
        self.topics = [profile.topic.format(site=d.site, device=d.id) for d in devices]
        self.sites = [d.site for d in devices]
        self.interval_s = float(profile.reporting.interval_s)
        self.keys = np.array([sg.key(seed, sg.stable_id(d.id)) for d in devices], dtype=np.uint64)
        self.region = np.array([sg.key(seed, sg.stable_id(d.district or d.site)) for d in devices], dtype=np.uint64)
        self.elev = np.array([sg.elevation_of(d.district) for d in devices], dtype=np.float64)
        self.phase = sg.uniform(self.keys, sg.key(seed, 99)) * self.interval_s
        self._jitter_max = min(1.0, 0.05 * profile.reporting.jitter_s, 0.05 * self.interval_s)
        duty = profile.reporting.duty_cycle
        self.offset_s = sg.tz_offset_s(duty.timezone if duty else DEFAULT_TZ, time.time())
        self.windows = [(_hours(w.start), _hours(w.end)) for w in duty.windows] if duty else None
        self.activity = shapes.KIND_ACTIVITY.get(self.kind) or shapes.FAMILY_ACTIVITY.get(profile.family, "daylight")
        self.t0 = 0.0  # simulation start (epoch s), set by the Simulation
        self._traits: dict[str, np.ndarray] = {}
        self.plan = self._plan()
        self._templates()

    # -------------------------------------------------------------- values

    def _plan(self):
        todo = [(n, s, *shapes.shape_for(self.kind, self.profile.family, n, s)) for n, s in self.profile.fields.items()]
        plan, done = [], set()
        while todo:  # dependencies ("of") first
            ready = [x for x in todo if x[3].get("of") in (None, *done)]
            if not ready:  # a dangling "of": fall back to the generic shape
                n, s = todo[0][:2]
                ready = [(n, s, *shapes.generic_shape(self.profile.family, n, s))]
                todo = [x for x in todo if x[0] != n] + ready
                continue
            for x in ready:
                plan.append((x[0], x[1], shapes.MODELS[x[2]], x[3]))
                done.add(x[0])
            todo = [x for x in todo if x[0] not in done]
        return plan

    def trait(self, name: str) -> np.ndarray:
        t = self._traits.get(name)
        if t is None:
            t = self._traits[name] = sg.device_uniform(self.seed, self.keys, name)
        return t

    def schedule(self, a: float, b: float):
        """Readings due in [a, b) (epoch s): (device positions, reading indexes, scheduled times), time-ordered.

        Reading k of device i is due at ``phase[i] + k * interval_s``; duty-cycled
        kinds keep only the readings inside their local-time windows.
        """
        I = self.interval_s
        first = np.ceil((a - self.phase) / I).astype(np.int64)
        counts = np.maximum(np.ceil((b - self.phase) / I).astype(np.int64) - first, 0)
        total = int(counts.sum())
        dev = np.repeat(np.arange(len(self.ids)), counts)
        k = np.repeat(first, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        t = self.phase[dev] + k * I
        if self.windows is not None:
            keep = sg.in_windows(t, self.offset_s, self.windows)
            dev, k, t = dev[keep], k[keep], t[keep]
        order = np.argsort(t, kind="stable")
        return dev[order], k[order], t[order]

    def timestamps(self, dev, k, t) -> np.ndarray:
        """Measurement times sent: the schedule plus a small per-reading jitter (< 1 s)."""
        return t + sg.uniform(self.keys[dev] ^ np.uint64(0x5EED), k) * self._jitter_max

    def values(self, dev, k, effects=None) -> dict[str, np.ndarray]:
        """Field values for readings (dev, k), in the profile's field order, clamped and rounded.

        ``effects(ctx)`` may change ``ctx.vals`` (raw floats) before they are finalized.
        """
        t = self.phase[dev] + k * self.interval_s
        c = shapes.Ctx(self, dev, k, t)
        for name, spec, fn, params in self.plan:
            v = fn(c, name, spec, **params)
            c.vals[name] = v if spec.type == "bool" else np.asarray(v, dtype=np.float64)
        if effects is not None:
            effects(c)
        return {n: shapes.finalize(s, c.vals[n]) for n, s in self.profile.fields.items()}

    # -------------------------------------------------------------- encoding

    def _templates(self) -> None:
        fields = self.profile.fields

        def conv(spec) -> str:  # fixed decimals: faster than repr, and values are rounded to them anyway
            return {"int": "%d", "bool": "%s"}.get(spec.type) or f"%.{shapes.decimals(spec)}f"

        self.lp = self.profile.format == "line_protocol"
        self.codec = codec_for(self.profile)  # senml, gateway, sparkplug_b (simulator/formats.py)
        if self.lp:
            body = ",".join(f"{n}={conv(s)}{'i' if s.type == 'int' else ''}" for n, s in fields.items())
            self.template = f"{self.kind},device=%s {body} %d"
        else:
            body = "".join(f',"{n}":{conv(s)}' for n, s in fields.items())
            self.template = '{"ts":%.3f' + body + "}"

    def _columns(self, vals):
        return [np.where(v, "true", "false").tolist() if v.dtype == bool else v.tolist() for v in vals.values()]

    def encode(self, dev, ts, vals) -> list[bytes]:
        """One encoded reading (JSON object or line) per row."""
        if self.codec is not None:
            return self.codec.encode([self.ids[i] for i in dev.tolist()], ts.tolist(), [v.tolist() for v in vals.values()])
        cols = self._columns(vals)
        tmpl = self.template
        if self.lp:
            ns = (np.round(ts * 1000).astype(np.int64) * 1_000_000).tolist()
            ids = [self.ids[i] for i in dev.tolist()]
            return [(tmpl % row).encode() for row in zip(ids, *cols, ns)]
        return [(tmpl % row).encode() for row in zip(ts.tolist(), *cols)]

    def join(self, frags: list[bytes]) -> bytes:
        """Several readings of one device in one payload."""
        if self.codec is not None:
            return self.codec.join(frags)
        if self.lp:
            return b"\n".join(frags)
        return frags[0] if len(frags) == 1 else b"[" + b",".join(frags) + b"]"

    # -------------------------------------------------------------- refused on purpose

    def _one(self, device: str, ts: float, fields: dict) -> bytes:
        if self.codec is not None:
            return self.codec.one(device, ts, fields)
        if not self.lp:
            return orjson.dumps({"ts": ts, **fields})

        def lp(v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return '"' + v.replace('"', '\\"') + '"'
            return f"{v}i" if isinstance(v, int) else repr(float(v))

        body = ",".join(f"{n}={lp(v)}" for n, v in fields.items())
        return f"{self.kind},device={device} {body} {int(round(ts * 1000)) * 1_000_000}".encode()

    def malformed(self, reason: str, variant: int, i: int, ts: float, row: dict) -> tuple[str, bytes] | None:
        """(topic, payload) holding ONE reading the collector refuses with ``reason``; None if impossible here.

        ``row`` holds the reading's valid values (Python scalars), ``ts`` its correct time.
        """
        device, topic = self.ids[i], self.topics[i]
        numeric = [n for n, s in self.profile.fields.items() if s.type != "bool"]
        if reason == "decode_error":
            if self.lp:
                bad = (b"\xff\xfe not utf-8", b"ERROR sensor timeout", f"{self.kind},device={device} {next(iter(row))}=".encode())
            else:
                good = self._one(device, ts, row)
                bad = (b"\xff\xfe not utf-8", b"ERROR sensor timeout", good[: len(good) // 2])
            return topic, bad[variant % len(bad)]
        if reason == "unknown_device":
            ghost = f"ghost-{variant:05d}"
            return self.profile.topic.format(site=self.sites[i], device=ghost), self._one(ghost, ts, row)
        if reason == "unknown_field":
            return topic, self._one(device, ts, {**row, "bogus_extra": 1.0})
        if reason == "wrong_type":
            name = (numeric or list(row))[0]
            return topic, self._one(device, ts, {**row, name: "n/a"})
        if reason == "out_of_range":
            if not numeric:
                return None
            spec = self.profile.fields[numeric[0]]
            over = spec.max + max(1.0, 0.5 * (spec.max - spec.min))
            return topic, self._one(device, ts, {**row, numeric[0]: int(over) if spec.type == "int" else float(over)})
        if reason == "bad_timestamp":
            return topic, self._one(device, 200 * 86400.0 + variant % 1000, row)  # July 1970
        raise ValueError(f"no malformed payload for reason {reason!r}")
