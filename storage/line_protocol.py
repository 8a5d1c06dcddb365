"""Encode Points and Rejected payloads as InfluxDB line protocol.

One line per point::

    <kind>,device=<id>[,district=<id>],site=<id> <field>=<value>,...,arrived_ms=<ms>i <ts_ns>

Fields: float as Python's ``repr`` (shortest exact form; NaN and infinities
are refused with ValueError: the validator must have refused them earlier),
int with the ``i`` suffix, bool as ``1i``/``0i`` (stored as integers so that a
window's mean is a fraction), ``arrived_ms`` always.  Tags are sorted by key,
as InfluxDB prefers; ``district`` is left out when empty.

The quarantine goes to measurement ``fansipan_quarantine``: tags ``reason``
and ``kind`` (``unknown`` when empty), string fields ``topic``, ``device``,
``detail`` and ``raw`` (the payload decoded as UTF-8, undecodable bytes as
``\\xNN``, cut at 4096 characters), at the arrival time.

Escaping follows the line protocol reference: commas and spaces in
measurements; commas, equals signs and spaces in tag keys, tag values and field
keys; double quotes and backslashes in string field values.  A newline or
carriage return inside a string value is written as the two characters ``\\n``
or ``\\r``, so no input can ever start a new line (a new point).  Newlines
cannot be escaped in names and tags at all, and a trailing backslash there
would swallow the separator, so those are refused with ValueError; the
quarantine's tags are reduced to a safe alphabet instead, so that recording a
refusal can never itself fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .base import Point, Rejected

QUARANTINE_MEASUREMENT = "fansipan_quarantine"
RAW_MAX_CHARS = 4096

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
_STORED_TEXT = str.maketrans({"\n": "\\n", "\r": "\\r"})
_UNSAFE_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_CACHE = 100_000


def _check_name(s: str, what: str) -> str:
    if not isinstance(s, str) or not s:
        raise ValueError(f"{what} must be a non-empty string, got {s!r}")
    if "\n" in s or "\r" in s or s.endswith("\\"):
        raise ValueError(f"{what} {s!r} cannot be written as line protocol (newline or trailing backslash)")
    return s


# Measurement names and field keys come from the registry's identifiers. Anything else is refused rather
# than escaped: measured against influxd 1.x, a leading '#' turns the line into a comment, a leading tab
# or NUL is skipped, and some backslash sequences fail the whole write.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")


def _plain(s: str, what: str) -> str:
    if not isinstance(s, str) or not _PLAIN_NAME.fullmatch(s):
        raise ValueError(f"{what} {s!r} is not a plain name (letters, digits, _ . : -, not starting with . : -)")
    return s


def escape_measurement(s: str) -> str:
    return _plain(s, "measurement")


def escape_tag(s: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _check_name(s, "tag or field key/value").translate(_TAG)


def escape_string(s: str) -> str:
    """A string field value, quotes included."""
    return '"' + s.translate(_STRING) + '"'


def stored_text(s: str) -> str:
    """What a string field reads back as: the text with newlines spelled ``\\n`` (see escape_string)."""
    return s.translate(_STORED_TEXT)


def raw_text(raw: bytes) -> str:
    """The quarantine's ``raw`` field before escaping: UTF-8, bad bytes as ``\\xNN``, cut at RAW_MAX_CHARS."""
    return raw.decode("utf-8", errors="backslashreplace")[:RAW_MAX_CHARS]


def quarantine_tag(s: str, empty: str = "unknown") -> str:
    """A quarantine tag value reduced to ``[A-Za-z0-9_.:-]`` (other characters become ``_``)."""
    return _UNSAFE_TAG_CHARS.sub("_", s) if s else empty


def quarantine_times(rejected: Sequence[Rejected]) -> list[int]:
    """The point time of each refusal: its arrival time, moved 1 ns later while it collides.

    Two refusals of one payload share the arrival time, reason and kind, i.e.
    the same InfluxDB series and time, and the second would overwrite the
    first.  The shift depends only on the order within the batch, so writing
    the same batch again still stores it once.
    """
    seen: set[tuple[int, str, str]] = set()
    out = []
    for r in rejected:
        reason, kind = quarantine_tag(r.reason), quarantine_tag(r.kind)
        t = int(r.arrived_ns)
        while (t, reason, kind) in seen:
            t += 1
        seen.add((t, reason, kind))
        out.append(t)
    return out


class Encoder:
    """Encodes points fast: tag sets and field keys are escaped once and cached.

    ``float_fields`` (kind -> names of float fields, see storage.common.float_fields)
    makes an int sent for a float field be written as a float, so the field
    keeps one type forever.
    """

    def __init__(self, float_fields: Mapping[str, frozenset[str]] | None = None):
        self._float_fields = dict(float_fields or {})
        self._prefixes: dict[tuple[str, str, str, str], str] = {}
        self._keys: dict[str, str] = {}

    def _prefix(self, p: Point) -> str:
        return self.tag_prefix(p.kind, p.device, p.site, p.district)

    def tag_prefix(self, kind: str, device: str, site: str, district: str) -> str:
        """``<kind>,device=..[,district=..],site=..``: the start of every line of that device."""
        key = (kind, device, site, district)
        prefix = self._prefixes.get(key)
        if prefix is None:
            tags = [("device", device), ("district", district), ("site", site)]
            prefix = escape_measurement(kind) + "".join(
                f",{k}={escape_tag(v)}" for k, v in tags if v or k == "device" or k == "site"
            )
            if len(self._prefixes) > _MAX_CACHE:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def field_key(self, name: str) -> str:
        """A field key as written (a plain name; ``arrived_ms`` is reserved). Raises ValueError."""
        return self._keys.get(name) or self._key(name)

    def _key(self, name: str) -> str:
        k = self._keys.get(name)
        if k is None:
            if name == "arrived_ms":
                raise ValueError("field name 'arrived_ms' is reserved: the store writes it")
            k = _plain(name, "field key")
            if len(self._keys) > _MAX_CACHE:
                self._keys.clear()
            self._keys[name] = k
        return k

    def point_lines(self, points: Iterable[Point]) -> list[str]:
        out = []
        keys = self._keys
        floats_of = self._float_fields
        for p in points:
            parts = []
            floats = floats_of.get(p.kind, ())
            for name, v in p.fields.items():
                k = keys.get(name) or self._key(name)
                t = type(v)
                if t is float:
                    if v - v != 0.0:  # NaN or +-inf
                        raise ValueError(f"{p.kind} {p.device} field {name!r} is {v!r}: not a finite number")
                    parts.append(f"{k}={v!r}")
                elif t is int:
                    parts.append(f"{k}={float(v)!r}" if name in floats else f"{k}={v}i")
                elif t is bool:
                    parts.append(f"{k}=1i" if v else f"{k}=0i")
                else:
                    n = to_number(v, name in floats, f"{p.kind} {p.device} field {name!r}")
                    parts.append(f"{k}={float.__repr__(n)}" if type(n) is float else f"{k}={n}i")
            parts.append(f"arrived_ms={int(p.arrived_ns) // 1_000_000}i")
            out.append(f"{self._prefix(p)} {','.join(parts)} {int(p.ts_ns)}")
        return out

    @staticmethod
    def rejected_lines(rejected: Sequence[Rejected]) -> list[str]:
        out = []
        for r, t in zip(rejected, quarantine_times(rejected)):
            out.append(
                f"{QUARANTINE_MEASUREMENT},kind={quarantine_tag(r.kind)},reason={quarantine_tag(r.reason)} "
                f"detail={escape_string(r.detail)},device={escape_string(r.device)},"
                f"raw={escape_string(raw_text(r.raw))},topic={escape_string(r.topic)} {t}"
            )
        return out

    def encode(self, points: Iterable[Point], rejected: Sequence[Rejected] = ()) -> str:
        """The whole batch as one line-protocol body (lines joined by newlines)."""
        return "\n".join(self.point_lines(points) + self.rejected_lines(rejected))


INCIDENT_MEASUREMENT = "fansipan_incident"


def incident_event_lines(events) -> list[str]:
    """Incident events for the boards: ``events`` are (ts_ns, event, incident) from the detector.

    Tags are the bounded ones (incident kind, severity, site, event); the
    incident id, title and device are fields.  Two events of one tag set at the
    same nanosecond would overwrite each other, so each is shifted by its
    incident id modulo 1e6 ns (under a millisecond, deterministic).
    """
    out = []
    for ts_ns, event, inc in events:
        out.append(
            f"{INCIDENT_MEASUREMENT},event={escape_tag(event)},kind={escape_tag(inc.kind)},"
            f"severity={escape_tag(inc.severity)},site={escape_tag(inc.site)} "
            f"id={int(inc.id)}i,status={escape_string(inc.status)},title={escape_string(inc.title)},"
            f"device={escape_string(inc.device)},started_ns={int(inc.started_ns)}i {int(ts_ns) + int(inc.id) % 1_000_000}"
        )
    return out


def to_number(v: object, as_float: bool, what: str) -> int | float:
    """A value that is not exactly float/int/bool (numpy scalars, subclasses) as a Python int or float.

    Bools become 0/1, integers become float when ``as_float``; NaN, infinities
    and non-numbers raise ValueError naming ``what``.
    """
    import numbers

    if isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_")):
        return 1 if v else 0
    if isinstance(v, numbers.Integral):
        return float(v) if as_float else int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        if f - f != 0.0:
            raise ValueError(f"{what} is {v!r}: not a finite number")
        return f
    raise ValueError(f"{what} has unsupported type {type(v).__name__} ({v!r})")


def encode(points: Iterable[Point], rejected: Sequence[Rejected] = (),
           float_fields: Mapping[str, frozenset[str]] | None = None) -> str:
    """One-off encoding; stores keep an :class:`Encoder` to reuse its caches."""
    return Encoder(float_fields).encode(points, rejected)
