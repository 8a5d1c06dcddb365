"""Checks and conversions every store shares, so all of them answer alike.

* :func:`check_query` / :func:`check_range` refuse a query before any SQL or
  InfluxQL is built: the device must be in the registry, the field must be one
  of its kind's fields, the aggregate one of AGGREGATES, the window a positive
  whole number of seconds and the range non-empty.
* :func:`value_caster` gives the Python type a result value is returned as,
  whatever the backend sends back (InfluxDB's JSON turns 20.0 into 20,
  VictoriaMetrics turns every integer into a float): a float field reads back
  as float, int and bool fields as int (bools are stored as 0/1), a mean as
  float and a count as int.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from .base import AGGREGATES, QueryError, Rejected, StoreError, Value

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Device, Registry

NS_PER_S = 1_000_000_000
MAX_WINDOW_S = 100 * 366 * 86_400  # a century: larger windows would overflow 64-bit nanoseconds


class Reader(Protocol):
    """The read half of a Store: what InfluxV2Store delegates its queries to."""

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]: ...

    def last_seen(self) -> dict[str, int]: ...

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]: ...

    def close(self) -> None: ...




class WritesLineProtocol:
    """The write half shared by the InfluxDB stores: encode, then ``self._send(lines)`` (durable on return)."""

    _encoder: object
    where: str

    def write(self, points: Sequence, rejected: Sequence[Rejected] = ()) -> None:
        """Store a batch; durable when it returns. Writing it again is harmless (same series and time: stored once)."""
        try:
            lines = self._encoder.point_lines(points) + self._encoder.rejected_lines(rejected)
        except ValueError as exc:
            raise StoreError(f"{self.where}: batch refused before sending: {exc}", retryable=False) from exc
        self._send(lines)

    def write_incident_events(self, events) -> None:
        """Incident events next to the telemetry, for the boards' annotations (see line_protocol)."""
        from .line_protocol import incident_event_lines

        self._send(incident_event_lines(events))

    def _send(self, lines: list[str]) -> None:
        raise NotImplementedError


class ReadsThroughReader:
    """The read half of a store that writes one way and reads through ``self.reader``."""

    reader: Reader

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        return self.reader.query(device, field, start_ns, end_ns, window_s, agg)

    def frame(self, kind: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None):
        return self.reader.frame(kind, start_ns, end_ns, devices)

    def query_many(self, devices: Sequence[str], field: str, start_ns: int, end_ns: int,
                   window_s: int | None = None, agg: str | None = None) -> dict[str, list[tuple[int, Value]]]:
        """:meth:`query` of several devices of one kind: one request where the reader can, else one each."""
        many = getattr(self.reader, "query_many", None)
        if many is not None:
            return many(devices, field, start_ns, end_ns, window_s, agg)
        return {d: self.reader.query(d, field, start_ns, end_ns, window_s, agg) for d in devices}

    def last_seen(self) -> dict[str, int]:
        return self.reader.last_seen()

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        return self.reader.quarantined(start_ns, end_ns, limit)

def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_range(start_ns: int, end_ns: int) -> None:
    if not _is_int(start_ns) or not _is_int(end_ns):
        raise QueryError(f"start_ns and end_ns must be integers (epoch nanoseconds), got {start_ns!r} and {end_ns!r}")
    if start_ns >= end_ns:
        raise QueryError(f"empty time range: start_ns {start_ns} must be before end_ns {end_ns}")


def check_limit(limit: int) -> None:
    if not _is_int(limit) or limit <= 0:
        raise QueryError(f"limit must be a positive integer, got {limit!r}")


def check_query(registry: Registry, device: str, field: str, start_ns: int, end_ns: int,
                window_s: int | None, agg: str | None) -> tuple[Device, str]:
    """Validate a query against the registry; return the device and the field's type.

    Raises QueryError naming the offending value and what would be accepted.
    """
    dev = registry.devices.get(device) if isinstance(device, str) else None
    if dev is None:
        raise QueryError(f"unknown device {device!r}: it is not in the site registry ({registry.source})")
    profile = registry.kinds.get(dev.kind)
    spec = profile.fields.get(field) if profile is not None and isinstance(field, str) else None
    if spec is None:
        known = ", ".join(sorted(profile.fields)) if profile is not None else "none"
        raise QueryError(f"device {device!r} (kind {dev.kind!r}) has no field {field!r}; its fields are: {known}")
    if window_s is None:
        if agg is not None:
            raise QueryError(f"aggregate {agg!r} needs a window: pass window_s (seconds)")
    else:
        if not _is_int(window_s) or not 0 < window_s <= MAX_WINDOW_S:
            raise QueryError(f"window_s must be a whole number of seconds from 1 to {MAX_WINDOW_S}, "
                             f"got {window_s!r}")
        if agg not in AGGREGATES:
            raise QueryError(f"unknown aggregate {agg!r}: use one of {', '.join(AGGREGATES)}")
    check_range(start_ns, end_ns)
    return dev, spec.type


def value_caster(field_type: str, agg: str | None) -> Callable[[object], Value]:
    """The conversion that makes a result value the same type in every store."""
    if agg == "mean":
        return float
    if agg == "count" or field_type in ("int", "bool"):
        return int
    return float


def rows(pairs: Sequence[Sequence], cast: Callable[[object], Value]) -> list[tuple[int, Value]]:
    """[(ts, value)] with the value cast; rows whose value is null are dropped."""
    return [(int(t), cast(v)) for t, v in pairs if v is not None]


def float_fields(registry: Registry) -> dict[str, frozenset[str]]:
    """kind -> names of its float fields (an int sent for one is written as a float)."""
    return {k: frozenset(n for n, s in p.fields.items() if s.type == "float") for k, p in registry.kinds.items()}


def kind_from_tag(tag: str, registry: Registry) -> str:
    """Undo the quarantine's ``kind="unknown"`` placeholder (unless a real kind has that name)."""
    return "" if tag == "unknown" and "unknown" not in registry.kinds else tag


def safe_url(url: str) -> str:
    """The URL without any user:password part, fit for error messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(url))
    if "@" not in parts.netloc:
        return str(url).rstrip("/")
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])).rstrip("/")


_HINTS = {
    400: "the request was refused as malformed (a field type conflict, or a bug): retrying will not help",
    401: "check the credentials (username/password or token)",
    403: "the credentials lack the permission for this database/bucket",
    404: "check the URL and that the database/bucket exists",
    413: "the batch is larger than the server accepts: lower batch_size or raise the server's limit",
}


def http_error(status: int, detail: str, doing: str, where: str, retry_after: str | None = None) -> StoreError:
    """A StoreError for an HTTP answer: 408/429/5xx are retryable, other 4xx are not (413: split and resend)."""
    retryable = status in (408, 429) or status >= 500 or status == 0
    hint = "the server is unavailable or overloaded: retry later" if retryable else _HINTS.get(status, "")
    detail = " ".join(str(detail).split())[:500] or "(no error text)"
    return StoreError(f"{where}: cannot {doing}: HTTP {status}: {detail}" + (f" ({hint})" if hint else ""),
                      retryable=retryable, status=status or None, retry_after_s=parse_retry_after(retry_after))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def unreachable(exc: BaseException, doing: str, where: str) -> StoreError:
    """A retryable StoreError for a connection failure or timeout."""
    return StoreError(f"{where}: cannot {doing}: {type(exc).__name__}: {exc} "
                      "(is the server running and reachable? retry later)", retryable=True)
