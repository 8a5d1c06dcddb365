"""InfluxQL over the HTTP ``/query`` endpoint: the read half shared by the InfluxDB 1.x and 2.x/3.x stores.

No query is built from a caller's text: devices, kinds and fields are first
checked against the registry (QueryError otherwise), and every identifier is
double-quoted and every string literal single-quoted with escaping anyway.

Row limits: a server with ``[http] max-row-limit`` set (0 = unlimited is the
default of InfluxDB 1.6, as ``influxd config`` shows; 1.2 shipped with 10000)
cuts a plain answer and marks it ``"partial": true``; :meth:`InfluxQLReader.run`
raises StoreError then.
:meth:`InfluxQLReader.frame` asks for a chunked answer (``chunked=true``),
which that limit does not apply to, reads it one chunk at a time, and bounds
it itself with ``LIMIT max_rows + 1``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import msgpack
import numpy as np
import orjson

from .base import AGGREGATES, Frame, Rejected, StoreError, Value
from .common import (
    check_limit,
    check_query,
    check_range,
    http_error,
    kind_from_tag,
    unreachable,
    value_caster,
)
from .frame import MAX_ROWS, assemble, check_frame, check_max_rows, empty, too_many
from .line_protocol import QUARANTINE_MEASUREMENT
from .window import RAW_BUDGET, expected_rows, windowed

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry

CHUNK_ROWS = 10_000  # rows per chunk of a chunked answer (InfluxDB's own default)
PARALLEL_QUERIES = 2  # query_many's requests in flight: the server's cores on a small machine


def _columns(values: list) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of an answer's ``[[time, value], ...]`` rows, nulls dropped; InfluxDB sends them by time."""
    ts, vals = zip(*values)
    try:
        return np.array(ts, dtype=np.int64), np.array(vals, dtype=np.float64)
    except TypeError:  # a null among the values
        keep = [i for i, v in enumerate(vals) if v is not None]
        return (np.array([ts[i] for i in keep], dtype=np.int64),
                np.array([vals[i] for i in keep], dtype=np.float64))


def _rows(ts: np.ndarray, vals: np.ndarray, cast) -> list[tuple[int, Value]]:
    """[(time, value)] with the value of the type every store returns (see storage.common.value_caster)."""
    if cast is int:
        return list(zip(ts.tolist(), vals.astype(np.int64).tolist()))
    return list(zip(ts.tolist(), vals.tolist()))


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted and escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted and escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


MSGPACK = "application/x-msgpack"


def decode(resp: httpx.Response) -> Any:
    """The body of an answer: MessagePack when the server sent it (InfluxDB 1.x, on request), else JSON."""
    if resp.headers.get("content-type", "").startswith(MSGPACK):
        return msgpack.unpackb(resp.content)
    return resp.json()


def error_text(resp: httpx.Response) -> str:
    try:
        body = decode(resp)
        if isinstance(body, dict) and (body.get("error") or body.get("message")):
            return str(body.get("error") or body.get("message"))
    except (ValueError, msgpack.UnpackException):
        pass
    return resp.headers.get("X-Influxdb-Error") or resp.text


class InfluxQLReader:
    """Queries in InfluxQL over ``GET /query?db=...&epoch=ns`` (InfluxDB 1.x, and 2.x/3.x with a DBRP mapping).

    ``client`` carries the base URL and authentication; ``params`` are sent
    with every query (``db``, optionally ``rp``); ``before_query`` runs first
    (the 1.x store creates its database there).  ``msgpack``: ask for
    MessagePack answers (InfluxDB 1.x answers big ones about twice as fast
    as JSON, which it encodes slowly); a server that answers JSON anyway is
    understood too.
    """

    def __init__(self, client: httpx.Client, registry: Registry, params: dict[str, str], where: str,
                 before_query: Callable[[], None] | None = None, max_rows: int = MAX_ROWS, msgpack: bool = False):
        self.client = client
        self.headers = {"Accept": MSGPACK} if msgpack else {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.registry = registry
        self.params = params
        self.where = where
        self.before_query = before_query
        self.max_rows = check_max_rows(max_rows)

    def run(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (``name``, ``tags``, ``columns``, ``values``)."""
        if self.before_query is not None:
            self.before_query()
        try:
            resp = self.client.get("/query", params={**self.params, "q": q, "epoch": "ns"}, headers=self.headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "query", self.where) from exc
        if resp.status_code != 200:
            raise http_error(resp.status_code, error_text(resp), f"run the query {q!r}", self.where)
        try:
            body = decode(resp)
        except (ValueError, msgpack.UnpackException) as exc:
            raise StoreError(f"{self.where}: the answer to {q!r} is not JSON: {resp.text[:200]!r}",
                             retryable=False) from exc
        return self._series(body, q, chunked=False)

    def _series(self, body: Any, q: str, chunked: bool) -> list[dict[str, Any]]:
        """The series of one answer (or of one chunk of a chunked answer); StoreError for an error in it."""
        if not isinstance(body, dict):
            raise StoreError(f"{self.where}: unexpected answer to {q!r}: {str(body)[:200]!r}", retryable=False)
        if body.get("error"):
            raise StoreError(f"{self.where}: query {q!r} failed: {body['error']}", retryable=False)
        series: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if result.get("error"):
                raise StoreError(f"{self.where}: query {q!r} failed: {result['error']}", retryable=False)
            for s in result.get("series", []):
                if s.get("partial") and not chunked:  # in a chunked answer it means "continued in the next chunk"
                    raise StoreError(
                        f"{self.where}: the server truncated the answer to {q!r} (its max-row-limit): "
                        "query a shorter range or use a window", retryable=False)
                series.append(s)
        return series

    def run_chunked(self, q: str) -> Iterator[dict[str, Any]]:
        """Run one InfluxQL statement with ``chunked=true``: yield its series chunk by chunk, as they arrive.

        The server's max-row-limit does not apply to chunked answers; one
        series may come in several pieces (all but the last marked partial).
        """
        if self.before_query is not None:
            self.before_query()
        params = {**self.params, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": str(CHUNK_ROWS)}
        try:
            with self.client.stream("GET", "/query", params=params) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise http_error(resp.status_code, error_text(resp), f"run the query {q!r}", self.where)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        body = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise StoreError(f"{self.where}: a chunk of the answer to {q!r} is not JSON: {line[:200]!r}",
                                         retryable=False) from exc
                    yield from self._series(body, q, chunked=True)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "query", self.where) from exc

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        """See storage.base.Store.query.

        With a window, when the raw rows are few (:data:`storage.window.RAW_BUDGET`
        at the kind's reporting interval) they are fetched and windowed in numpy:
        InfluxDB 1.6's ``GROUP BY time()`` costs about twice the raw read.
        """
        dev, ftype = check_query(self.registry, device, field, start_ns, end_ns, window_s, agg)
        cond = f"WHERE \"device\" = {literal(device)} AND time >= {int(start_ns)} AND time < {int(end_ns)}"
        interval = self.registry.kinds[dev.kind].reporting.interval_s
        local = window_s is not None and expected_rows(1, end_ns - start_ns, interval) <= RAW_BUDGET
        if window_s is None or local:
            q = f"SELECT {ident(field)} FROM {ident(dev.kind)} {cond}"
        else:
            assert agg in AGGREGATES  # checked above; the function name is never the caller's text
            q = f"SELECT {agg}({ident(field)}) FROM {ident(dev.kind)} {cond} GROUP BY time({window_s}s) fill(none)"
        values = [row for s in self.run(q) for row in s.get("values") or ()]
        if not values:
            return []
        ts, vals = _columns(values)
        order = np.argsort(ts, kind="stable")  # one series comes sorted; this keeps it so whatever the server does
        ts, vals = ts[order], vals[order]
        if local:
            ts, vals = windowed(ts, vals, window_s, agg)
        return _rows(ts, vals, value_caster(ftype, agg))

    def query_many(self, devices: Sequence[str], field: str, start_ns: int, end_ns: int,
                   window_s: int | None = None, agg: str | None = None) -> dict[str, list[tuple[int, Value]]]:
        """:meth:`query` for several devices: device -> rows, two requests at a time.

        One query per device, not one ``device = a OR device = b ...`` query:
        InfluxDB 1.6 answers the single-series queries faster in total (it
        scans the OR-ed series less efficiently), and two at a time use both
        cores of a small server (measured in BENCHMARKS.md, API speed).
        """
        for d in devices:  # every device checked before any request
            check_query(self.registry, d, field, start_ns, end_ns, window_s, agg)
        names = sorted(set(devices))
        if len(names) < 2:
            return {d: self.query(d, field, start_ns, end_ns, window_s, agg) for d in names}
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PARALLEL_QUERIES, thread_name_prefix="influxql")
        found = self._pool.map(lambda d: self.query(d, field, start_ns, end_ns, window_s, agg), names)
        return dict(zip(names, found))

    def frame(self, kind: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None) -> Frame:
        """See storage.base.Store.frame: one chunked SELECT over the kind's measurement.

        Without ``devices`` the query has no device condition, and points of
        devices no longer in the registry are dropped here (they still count
        towards ``max_rows``, which ``LIMIT max_rows + 1`` enforces on the server).
        """
        chosen, fields = check_frame(self.registry, kind, start_ns, end_ns, devices)
        if not chosen:
            return empty(fields)
        cond = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
        if devices is not None:  # each one checked against the registry by check_frame
            cond += " AND (" + " OR ".join(f"\"device\" = {literal(d)}" for d in chosen) + ")"
        columns = ", ".join(ident(f) for f in ("arrived_ms", *fields))
        q = f"SELECT \"device\"::tag, {columns} FROM {ident(kind)} WHERE {cond} LIMIT {self.max_rows + 1}"
        index = {d: i for i, d in enumerate(chosen)}
        parts: list[tuple[np.ndarray, ...]] = []
        n = 0
        for s in self.run_chunked(q):
            values = s.get("values") or []
            if not values:
                continue
            n += len(values)
            if n > self.max_rows:
                raise too_many(kind, start_ns, end_ns, self.max_rows)
            at = {c: i for i, c in enumerate(s["columns"])}
            cols = list(zip(*values))
            nulls = (None,) * len(values)
            dev = np.array([index.get(d, -1) for d in cols[at["device"]]], dtype=np.int32)
            arrived = np.array([-1 if a is None else a for a in cols[at["arrived_ms"]]], dtype=np.int64)
            parts.append((dev, np.array(cols[at["time"]], dtype=np.int64), arrived,
                          *(np.array(cols[at[f]] if f in at else nulls, dtype=np.float64) for f in fields)))
        if not parts:
            return empty(fields)
        dev, ts, arrived, *vals = (np.concatenate(c) for c in zip(*parts))
        keep = dev >= 0
        return assemble(chosen, dev[keep], ts[keep], arrived[keep], {f: v[keep] for f, v in zip(fields, vals)})

    def last_seen(self) -> dict[str, int]:
        """Device -> time of its latest point, over every kind in the registry."""
        if not self.registry.kinds:
            return {}
        q = (f"SELECT last(\"arrived_ms\") FROM {','.join(ident(k) for k in sorted(self.registry.kinds))} "
             "GROUP BY \"device\"")
        seen: dict[str, int] = {}
        for s in self.run(q):
            device = (s.get("tags") or {}).get("device")
            for row in s.get("values", []):
                if device and row[0] is not None and row[0] > seen.get(device, -1 << 63):
                    seen[device] = int(row[0])
        return seen

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        """See storage.base.Store.quarantined."""
        check_range(start_ns, end_ns)
        check_limit(limit)
        q = (f"SELECT \"topic\", \"device\", \"detail\", \"raw\", \"reason\", \"kind\" FROM "
             f"{ident(QUARANTINE_MEASUREMENT)} WHERE time >= {int(start_ns)} AND time < {int(end_ns)} "
             f"ORDER BY time DESC LIMIT {int(limit)}")
        out = []
        for s in self.run(q):
            cols = s["columns"]
            for row in s.get("values", []):
                r = dict(zip(cols, row))
                out.append(Rejected(
                    arrived_ns=int(r["time"]), topic=r.get("topic") or "", reason=r.get("reason") or "",
                    detail=r.get("detail") or "", raw=(r.get("raw") or "").encode("utf-8"),
                    kind=kind_from_tag(r.get("kind") or "", self.registry), device=r.get("device") or ""))
        out.sort(key=lambda r: r.arrived_ns, reverse=True)
        return out[:limit]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


