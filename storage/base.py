"""The storage contract: what every store (embedded, InfluxDB 1.x, 2.x/3.x) accepts and answers.

Data model, the same in every store:

* one *point* per device and measurement time, holding every field of that
  reading; in InfluxDB the measurement is the device kind, the tags are
  ``device``, ``site`` and ``district`` (low cardinality, all from the
  registry), and the fields are the profile's fields plus ``arrived_ms``, the
  arrival time in epoch milliseconds (the point's own time is the device's
  measurement time);
* bool fields are stored as integers 0/1, so a window's mean is the fraction of
  time a link was up;
* values read back typed by the profile: float fields as float, int and bool
  fields as int; a window's mean as float, its count as int;
* writing the same point twice stores it once (same device and measurement
  time -> the last write wins; VictoriaMetrics keeps times to the millisecond
  and cannot promise which of two differing writes wins), which is what makes
  redelivery after a crash harmless;
* refused payloads (the quarantine) are stored next to the telemetry, with the
  raw payload, the topic and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

AGGREGATES = ("mean", "min", "max", "last", "count")

Value = float | int | bool


class Point(NamedTuple):
    """One reading of one device: every field it sent for one measurement time."""

    kind: str
    device: str
    site: str
    district: str
    ts_ns: int  # measurement time (the device's clock, or arrival time if it sent none)
    fields: dict[str, Value]
    arrived_ns: int  # when the collector received it


class Rejected(NamedTuple):
    """A payload, or one reading of it, that was refused as telemetry.

    Stored as text: ``raw`` decoded as UTF-8 (undecodable bytes as ``\\xNN``), cut
    at 4096 characters; newlines and carriage returns in text fields read back as
    ``\\n``/``\\r``; refusals sharing arrival time, reason and kind are stored
    1 ns apart so none overwrites another.
    """

    arrived_ns: int
    topic: str
    reason: str  # one of ingest.validate.REASONS
    detail: str  # what exactly was wrong, for the engineer reading it later
    raw: bytes  # the payload as received (truncated by the collector if huge)
    kind: str = ""
    device: str = ""


class Frame(NamedTuple):
    """All readings of one kind in a time range: long format, columnar, sorted by (device, ts_ns).

    Row ``i`` is one reading (one point): device ``devices[device_idx[i]]``,
    measured at ``ts_ns[i]``, received at ``arrived_ms[i]`` (epoch ms, -1 where
    unknown), and ``values[field][i]`` for every field of the kind's profile
    (NaN where that reading lacks the field).  Bools read as 0.0/1.0, ints as
    floats (exact up to 2**53).  ``devices`` holds only the devices that have
    rows, sorted; an empty frame has no devices and zero-length arrays, and
    still a key for every field.
    """

    devices: tuple[str, ...]
    device_idx: np.ndarray  # int32 [n_rows], index into devices
    ts_ns: np.ndarray  # int64 [n_rows], measurement time
    arrived_ms: np.ndarray  # int64 [n_rows], -1 where unknown
    values: dict[str, np.ndarray]  # field -> float64 [n_rows]


class StoreError(Exception):
    """A write or query failed.

    ``retryable`` tells the caller whether trying again later can succeed (the
    server is down, overloaded, timed out) or not (the request itself is wrong).
    ``status`` is the HTTP status when there was one (413: split the batch and
    resend); ``retry_after_s`` what the server asked to wait (Retry-After).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class QueryError(ValueError):
    """A query names a device, field, aggregate or range that is not allowed."""


class Store(Protocol):
    def write(self, points: Sequence[Point], rejected: Sequence[Rejected] = ()) -> None:
        """Store a batch durably: when this returns, the batch survives a crash.

        Raises StoreError: retryable=True for transient failures (unreachable,
        timeout, 408/429/5xx, database busy, disk full); retryable=False when the
        batch itself cannot be stored (NaN/inf or non-numeric value, field type
        conflict, other 4xx).
        """

    def query(
        self,
        device: str,
        field: str,
        start_ns: int,
        end_ns: int,
        window_s: int | None = None,
        agg: str | None = None,
    ) -> list[tuple[int, Value]]:
        """Readings of one field of one device in [start_ns, end_ns), oldest first.

        Without ``window_s`` the raw readings; with it, one row per window that
        holds readings, aligned on the epoch, timestamped at the window's start,
        aggregated with ``agg`` (one of AGGREGATES). Raises QueryError for an
        unknown device, a field not of the device's kind, window_s without agg or
        agg without window_s, an agg not in AGGREGATES, a window_s that is not a
        positive int, or start_ns >= end_ns; StoreError if the server fails.
        """

    def frame(self, kind: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None) -> Frame:
        """Every reading of every device of ``kind`` (or only of ``devices``) measured in [start_ns, end_ns).

        One request to the backend instead of one per device and field; see
        :class:`Frame` for the layout.  Devices are those of the registry (a
        store holding points of a device no longer registered leaves them
        out).  Raises QueryError for an unknown kind, a device that is not of
        that kind, start_ns >= end_ns, or when more than the store's
        ``max_rows`` readings would be returned (narrow the range or the
        devices); StoreError if the server fails.
        """

    def last_seen(self) -> dict[str, int]:
        """Device id -> latest measurement time (ns) stored for it."""

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        """Refused payloads that arrived in [start_ns, end_ns), newest first.

        Raises QueryError if start_ns >= end_ns or limit < 1; NotImplementedError
        on a backend that keeps no text (VictoriaMetrics).
        """

    def close(self) -> None: ...
