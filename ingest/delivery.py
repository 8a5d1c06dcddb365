"""Delivering a batch to the store, with write errors sorted by meaning.

* success: done;
* 413 (too large): split the batch in halves and send each;
* any other refusal of the batch itself (4xx, a value the store cannot take):
  split until the offending rows are alone, and put each of those in the
  quarantine with reason ``store_rejected`` and the store's words, so one bad row
  never holds back the rest;
* retryable (unreachable, timeout, 429, 5xx): raised to the caller, which
  spools or waits (``backoff_s`` honours the server's Retry-After).
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from storage.base import Point, Rejected, StoreError
from storage.columns import ColumnBatch

log = logging.getLogger("fansipan.collector")

MAX_RETRY_AFTER_S = 300.0


def _point_as_reject(p: Point, why: str) -> Rejected:
    raw = f"{p.kind},device={p.device} " + ",".join(f"{k}={v!r}" for k, v in p.fields.items()) + f" {p.ts_ns}"
    return Rejected(p.arrived_ns, f"(stored point of {p.device})", "store_rejected", why[:500], raw.encode(), p.kind, p.device)


def as_points(points) -> list[Point]:
    """A list of Points, from a list of Points or a ColumnBatch (the bulk path's batch)."""
    return points.points() if isinstance(points, ColumnBatch) else points


def count_by_kind(points) -> Counter:
    return points.count_by_kind() if isinstance(points, ColumnBatch) else Counter(p.kind for p in points)


def device_ids(points) -> set[str]:
    return points.device_ids() if isinstance(points, ColumnBatch) else {p.device for p in points}


def prepare(store, points, rejected: list[Rejected]):
    """Encode a ColumnBatch for ``store`` now, on the validating thread, so the writing thread only sends.

    Stores with ``encode_columns`` (storage.bulk_encode.WritesColumns); a batch they cannot encode is left
    as it is: ``deliver`` meets the same refusal again and handles it there.
    """
    encode = getattr(store, "encode_columns", None)
    if encode is not None and isinstance(points, ColumnBatch):
        try:
            points.encoded = encode(points, rejected)
        except StoreError:
            points.encoded = None
    return points


def deliver(store, points: list[Point] | ColumnBatch, rejected: list[Rejected]) -> int:
    """Write the batch; returns how many points the store refused (now quarantined). Raises retryable StoreError.

    A ColumnBatch goes to ``store.write_columns`` when the store has it (one encode in bulk, one request);
    a store without it, or a batch it refuses, is handled as Points: split until the bad rows are alone.
    """
    if isinstance(points, ColumnBatch):
        write_columns = getattr(store, "write_columns", None)
        if write_columns is not None:
            try:
                write_columns(points, rejected)
                return 0
            except StoreError as exc:
                if exc.retryable:
                    raise
                log.warning("store refused a bulk batch of %d rows (%s): splitting it to find the bad rows",
                            len(points) + len(rejected), exc)
        points = points.points()
    try:
        store.write(points, rejected)
        return 0
    except StoreError as exc:
        if exc.retryable:
            raise
        if len(points) + len(rejected) <= 1:
            return _refused_alone(store, points, rejected, exc)
        if exc.status == 413:
            log.info("store says the batch of %d rows is too large: splitting it", len(points) + len(rejected))
        else:
            log.warning("store refused a batch of %d rows (%s): splitting it to find the bad rows",
                        len(points) + len(rejected), exc)
    mid_p, mid_r = len(points) // 2, len(rejected) // 2
    return (deliver(store, points[:mid_p], rejected[:mid_r])
            + deliver(store, points[mid_p:], rejected[mid_r:]))


def _refused_alone(store, points, rejected, exc: StoreError) -> int:
    if points:
        log.error("store refused %s at %d: %s; it goes to the quarantine", points[0].device, points[0].ts_ns, exc)
        store.write([], [_point_as_reject(points[0], str(exc))])
        return 1
    # Not even the quarantine record can be stored: there is nowhere left to keep it but the log.
    log.error("store refused a quarantine record (topic %s, reason %s): %s; logged here and dropped",
              rejected[0].topic, rejected[0].reason, exc)
    return 0


_JITTER = random.Random()  # its own generator: the global one belongs to the application (and its tests' seeds)


def backoff_s(attempt: int, exc: StoreError | None = None, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's Retry-After if it gave one, else
    exponential with full jitter, so many collectors coming back do not hammer the store in step."""
    if exc is not None and exc.retry_after_s is not None:
        return min(exc.retry_after_s, MAX_RETRY_AFTER_S)
    return _JITTER.uniform(0.5, 1.0) * min(cap, base * 2 ** attempt)
