"""The bulk path: a whole batch of MQTT messages validated as numpy columns.

:meth:`BulkValidator.messages` gives the same points and the same rejects
(reason, detail, raw payload) as calling :meth:`ingest.validate.Validator.message`
on each message, but builds no Python object a reading on the way: readings
are gathered a kind at a time, decoded into columns (ingest.bulk_decode,
ingest.bulk_lp),
checked with numpy against per-field arrays of type, min and max and against
the time bounds, and handed on as a :class:`storage.columns.ColumnBatch`.

Only what is out of the ordinary leaves the columns, and then it goes through
the per-reading validator, which decides exactly as before:

* a whole message whose topic, device or size is refused, whose payload does
  not parse, whose format has no bulk decoder (``BULK_FORMATS``; e.g. formats
  registered later in ingest.decoders), or whose kind has an int range beyond
  +-2**53: :meth:`Validator.message`;
* one reading the bulk checks flag (a value out of range or of the wrong type,
  an unknown field, a time given as an RFC 3339 string, ...): the validator's
  per-reading check, with the same "reading n of N" detail.

A bug in the bulk path must not lose data: if it raises on a kind's rows,
those messages are validated again one by one (and the error is logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import orjson

from storage.base import Point, Rejected
from storage.columns import EXACT_INT, ColumnBatch, DeviceTable, KindColumns

from .bulk_clock import apply_clock
from .bulk_decode import Decoded, json_rows
from .bulk_lp import lp_rows, lp_texts
from .decoders import DecodeError, _json_reading, _lp_line
from .validate import MAX_READINGS_PER_MESSAGE, MIN_TS_NS, RAW_KEEP_BYTES, Validator

log = logging.getLogger("fansipan.collector")

BULK_FORMATS = ("json", "line_protocol")
_SPACE_LINE = re.compile(r"\n[^\S\n]+(?=\n)")  # a whitespace-only line inside a payload (found by its newline: fast)


def _no_line_skipped(text: str) -> bool:
    """True when the line-protocol reader (ingest.decoders) would skip no line: none blank, comment or CR-ended."""
    if "\r" in text or "#" in text or "\n\n" in text:
        return False
    if not text.partition("\n")[0].strip() or not text.rpartition("\n")[2].strip():
        return False
    return _SPACE_LINE.search(text) is None
_ROUTE_CACHE = 200_000


class _Spec(NamedTuple):
    profile: object
    kind: str
    fmt: str
    fields: tuple[str, ...]
    ftypes: tuple[str, ...]  # float | int | bool
    lo: np.ndarray
    hi: np.ndarray
    is_int: np.ndarray
    known: frozenset[str]
    future_tol_s: float
    bulk: bool


def _spec(profile, special: frozenset[str]) -> _Spec:
    fields = tuple(profile.fields)
    specs = [profile.fields[f] for f in fields]
    lo = np.array([-np.inf if s.min is None else s.min for s in specs], np.float64)
    hi = np.array([np.inf if s.max is None else s.max for s in specs], np.float64)
    exact = bool(np.all(np.abs(np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)]])) < EXACT_INT))
    return _Spec(profile, profile.kind, profile.format, fields, tuple(s.type for s in specs), lo, hi,
                 np.array([s.type == "int" for s in specs]), frozenset(fields) | {"ts", "device"},
                 # clock_policy correct: ingest/clock.py shifts a clock that runs ahead instead of refusing it
                 np.inf if getattr(profile.reporting, "clock_policy", "") == "correct"
                 else float(profile.reporting.future_tolerance_s),
                 exact and profile.format in BULK_FORMATS and profile.format not in special)


class _Rows(NamedTuple):
    """Where each row of a kind's group came from: numpy arrays, one entry a reading."""

    msg: np.ndarray  # the message's index in the batch
    item: np.ndarray  # the reading's index in its message
    count: np.ndarray  # the readings of its message
    dev: np.ndarray  # the device's index in the DeviceTable
    arrived: np.ndarray  # the message's arrival time, ns


class _Group:
    """The rows of one kind gathered from a batch: one entry a reading."""

    __slots__ = ("spec", "raw", "msg", "item", "count", "dev", "arrived")

    def __init__(self, spec: _Spec):
        self.spec = spec
        self.raw, self.msg, self.item, self.count, self.dev, self.arrived = [], [], [], [], [], []

    def add(self, mi: int, items: list, gi: int, arrived: int) -> None:
        m = len(items)
        if m == 1:
            self.raw.append(items[0])
            self.msg.append(mi)
            self.item.append(0)
            self.count.append(1)
            self.dev.append(gi)
            self.arrived.append(arrived)
            return
        self.raw.extend(items)
        self.msg.extend([mi] * m)
        self.item.extend(range(m))
        self.count.extend([m] * m)
        self.dev.extend([gi] * m)
        self.arrived.extend([arrived] * m)

    def rows(self) -> _Rows:
        return _Rows(*(np.array(x, np.int64) for x in (self.msg, self.item, self.count, self.dev, self.arrived)))

    def line(self, i: int):
        """Row ``i``'s reading as gathered: a JSON value, a line, or (line number, line)."""
        return self.raw[i]


class _Texts:
    """The line-protocol messages of one kind gathered from a batch, whole: one entry a message."""

    __slots__ = ("spec", "texts", "msg", "dev", "arrived", "counts", "_ends", "_lines")

    def __init__(self, spec: _Spec):
        self.spec = spec
        self.texts, self.msg, self.dev, self.arrived = [], [], [], []
        self.counts: np.ndarray | None = None  # readings a message, once decoded
        self._lines: dict[int, list[str]] = {}

    def add(self, mi: int, text: str, gi: int, arrived: int) -> None:
        self.texts.append(text[:-1] if text.endswith("\n") else text)  # one final newline ends the last line
        self.msg.append(mi)
        self.dev.append(gi)
        self.arrived.append(arrived)

    def read(self, counts: np.ndarray) -> None:
        """Its texts were read whole: ``counts`` readings a message."""
        self.counts, self._ends = counts, np.cumsum(counts)

    def rows(self) -> _Rows:
        c = self.counts
        first = self._ends - c
        return _Rows(np.repeat(self.msg, c), np.arange(int(c.sum())) - np.repeat(first, c), np.repeat(c, c),
                     np.repeat(self.dev, c), np.repeat(np.array(self.arrived, np.int64), c))

    def line(self, i: int) -> str:
        """Row ``i``'s line (split again only for the rows that leave the columns)."""
        k = int(np.searchsorted(self._ends, i, side="right"))
        if k not in self._lines:
            self._lines[k] = self.texts[k].split("\n")
        return self._lines[k][i - int(self._ends[k] - self.counts[k])]


class BulkValidator:
    """Validates batches of messages in bulk, with the rules of ``validator`` (see the module docstring)."""

    def __init__(self, validator: Validator):
        self.validator = validator
        self.registry = validator.registry
        self.table = DeviceTable.from_registry(self.registry)
        special = frozenset(getattr(validator, "_special", None) or ())  # formats the validator hands elsewhere
        self.specs = {k: _spec(p, special) for k, p in self.registry.kinds.items()}
        self._sparkplug_prefix = getattr(validator, "_sparkplug_prefix", None) if getattr(validator, "sparkplug", None) else None
        self._routes: dict[str, tuple[_Spec, int] | None] = {}

    def _route(self, topic: str) -> tuple[_Spec, int] | None:
        """(kind spec, device index) when the topic names a registered device of that kind and site."""
        try:
            return self._routes[topic]
        except KeyError:
            pass
        out = None
        found = None
        if not (self._sparkplug_prefix and topic.startswith(self._sparkplug_prefix)):
            found = self.validator.router.route(topic)
        if found is not None:
            route, device_id, site_id = found
            dev = self.registry.devices.get(device_id)
            if dev is not None and dev.kind == route.profile.kind and (site_id is None or site_id == dev.site):
                out = (self.specs[dev.kind], self.table.index[device_id])
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = out
        return out

    def messages(self, msgs: Iterable[tuple[str, bytes, int]], clock=None) -> tuple[ColumnBatch, list[Rejected]]:
        """``msgs``: (topic, payload, arrival time in ns). Returns the accepted readings and the rejects.

        With ``clock`` (an ingest.clock.ClockTracker) its decisions are applied too, as the collector's
        per-message path applies them after the validator.
        """
        msgs = list(msgs)
        batch = ColumnBatch(self.table)
        rejects: list[tuple[int, Rejected]] = []
        groups: dict[str, _Group | _Texts] = {}
        for mi, (topic, payload, arrived) in enumerate(msgs):
            try:
                items = None
                r = self._route(topic) if len(payload) <= self.validator.max_payload_bytes else None
                if r is not None and r[0].bulk:
                    items = self._items(r[0], payload)
            except Exception:  # a bulk-path bug: the per-reading path decides
                log.exception("bulk path failed on a message on topic %s; validating it one reading at a time", topic)
                items = None
            if items is None:
                self._one_by_one(mi, msgs[mi], batch, rejects)
                continue
            g = groups.get(r[0].kind)
            if g is None:
                g = groups[r[0].kind] = _Group(r[0]) if r[0].fmt == "json" else _Texts(r[0])
            g.add(mi, items, r[1], arrived)
        for g in groups.values():
            mark = len(batch.kinds), len(batch.extra), len(rejects)
            try:
                self._group(g, msgs, batch, rejects)
            except Exception:
                log.exception("bulk path failed on %d %s messages; validating them one at a time",
                              len(set(g.msg)), g.spec.kind)
                del batch.kinds[mark[0]:], batch.extra[mark[1]:], batch.extra_order[mark[1]:], rejects[mark[2]:]
                for mi in sorted(set(g.msg)):
                    self._one_by_one(mi, msgs[mi], batch, rejects)
        if clock is not None:
            apply_clock(clock, batch, msgs, rejects)
        rejects.sort(key=lambda kr: kr[0])
        return batch, [r for _k, r in rejects]

    @staticmethod
    def _items(spec: _Spec, payload: bytes) -> list | str | None:
        """The readings of a payload in bulk form (line protocol: its text, read by _group), or None to leave
        the whole message to the per-reading path."""
        if spec.fmt == "json":
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
            items = [doc] if type(doc) is dict else doc if type(doc) is list and doc else None
            return items if items is not None and len(items) <= MAX_READINGS_PER_MESSAGE else None
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return None if "\\" in text or '"' in text else text  # escapes and string values: the per-reading parser

    @staticmethod
    def _lines(text: str) -> list | None:
        """A line-protocol text's readings, one a line: the lines, or (line number, line) when some is skipped."""
        if _no_line_skipped(text):
            items = text.split("\n")  # no line to skip: line n is item n - 1
            return items if len(items) <= MAX_READINGS_PER_MESSAGE else None
        items = []
        for n, line in enumerate(text.split("\n"), 1):
            line = line.strip("\r")
            if line.strip() and not line.lstrip().startswith("#"):
                items.append((n, line))
        return items if items and len(items) <= MAX_READINGS_PER_MESSAGE else None

    def _lp_group(self, g: _Texts, batch: ColumnBatch, rejects: list, msgs: list) -> tuple[_Group | _Texts, Decoded]:
        """Whole texts in one layout (lp_texts), else their lines one by one (lp_rows), as a group and its rows."""
        s, ids = g.spec, self.table.ids
        got = lp_texts(g.texts, [ids[d] for d in g.dev], s.kind, s.fields, s.ftypes)
        if got is not None and int(got[1].max()) <= MAX_READINGS_PER_MESSAGE:
            g.read(got[1])
            return g, got[0]
        lines = [self._lines(t) for t in g.texts]
        rows = _Group(s)
        for mi, items, gi, arrived in zip(g.msg, lines, g.dev, g.arrived):
            if items is None:
                self._one_by_one(mi, msgs[mi], batch, rejects)
            else:
                rows.add(mi, items, gi, arrived)
        return rows, lp_rows([r if type(r) is str else r[1] for r in rows.raw], [ids[d] for d in rows.dev], s.kind,
                             s.fields, s.ftypes)

    def _one_by_one(self, mi: int, msg: tuple[str, bytes, int], batch: ColumnBatch, rejects: list) -> None:
        topic, payload, arrived = msg
        try:
            points, rejected = self.validator.message(topic, payload, arrived)
        except Exception as exc:  # a validator bug must not kill the collector or lose the message
            log.exception("validator failed on topic %s", topic)
            points, rejected = [], [Rejected(arrived, topic, "decode_error", f"internal error: {exc!r}",
                                             bytes(payload[:RAW_KEEP_BYTES]))]
        for j, p in enumerate(points):
            batch.extra.append(p)
            batch.extra_order.append(mi << 16 | j)
        rejects.extend((mi << 16 | j, r) for j, r in enumerate(rejected))

    def _group(self, g: _Group | _Texts, msgs: list, batch: ColumnBatch, rejects: list) -> None:
        s = g.spec
        if s.fmt == "json":
            dec = json_rows(g.raw, [self.table.ids[d] for d in g.dev], s.fields, s.ftypes, s.known)
        else:
            g, dec = self._lp_group(g, batch, rejects, msgs)
        rows = g.rows()
        vals, pres, arrived = dec.values, dec.present, rows.arrived
        with np.errstate(invalid="ignore"):
            bad = pres & (~np.isfinite(vals) | (vals < s.lo) | (vals > s.hi) | (s.is_int & (vals != np.floor(vals))))
        flag = dec.flag | bad.any(axis=1) | ~pres.any(axis=1)
        ts = np.where(dec.ts_given, dec.ts_ns, arrived)
        with np.errstate(over="ignore"):
            ahead_s = (ts - arrived).astype(np.float64) / 1e9
        flag |= dec.ts_given & ((ts < MIN_TS_NS) | (ahead_s > s.future_tol_s))
        order = rows.msg << 16 | rows.item
        for i in np.flatnonzero(flag).tolist():
            self._one_reading(g, rows, i, int(order[i]), msgs, batch, rejects)
        ok = ~flag
        if ok.any():
            batch.kinds.append(KindColumns(s.kind, s.fields, tuple("float" if t == "float" else "int" for t in s.ftypes),
                                           rows.dev.astype(np.int32)[ok], ts[ok], arrived[ok], vals[ok], pres[ok],
                                           order[ok], None if dec.body is None else dec.body[ok],
                                           None if dec.ts_text is None else dec.ts_text[ok]))

    def _one_reading(self, g: _Group | _Texts, rows: _Rows, i: int, key: int, msgs: list, batch: ColumnBatch,
                     rejects: list) -> None:
        s = g.spec
        mi, item, count = int(rows.msg[i]), int(rows.item[i]), int(rows.count[i])
        topic, payload, arrived = msgs[mi]
        device_id = self.table.ids[int(rows.dev[i])]
        raw = g.line(i)
        if s.fmt == "json":
            item_read = _json_reading(raw)
        else:
            n, line = (item + 1, raw) if type(raw) is str else raw
            try:
                item_read = _lp_line(line)
            except DecodeError as exc:
                item_read = DecodeError(f"line {n}: {exc}")
        got = self.validator._check(item_read, s.profile, device_id, arrived)
        if isinstance(got, Point):  # a Point: the per-reading path takes what the bulk checks would not
            batch.extra.append(got)
            batch.extra_order.append(key)
            return
        reason, detail = got
        if count > 1:
            detail = f"reading {item + 1} of {count}: {detail}"
        rejects.append((key, Rejected(arrived, topic, reason, detail, bytes(payload[:RAW_KEEP_BYTES]), s.kind,
                                      device_id[:64])))
