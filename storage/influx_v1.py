"""InfluxDB 1.x over its HTTP API: line protocol to ``/write``, InfluxQL to ``/query``.

:class:`InfluxQLReader` is the read half, shared with the 2.x/3.x store
(their v1-compatible ``/query`` speaks the same InfluxQL).  No query is built
from a caller's text: device and field are first checked against the registry
(QueryError otherwise), and every identifier is double-quoted and every string
literal single-quoted with escaping anyway.

Durability: InfluxDB 1.x answers 204 to ``/write`` only after the batch is in
its WAL, fsynced (``wal-fsync-delay = "0s"``, the default), so a returned
:meth:`InfluxV1Store.write` survives a crash of the server.

Errors: connection failures, timeouts, 408, 429 and 5xx raise
``StoreError(retryable=True)``; other 4xx raise ``StoreError(retryable=False)``
with the server's error text.  Messages name the server URL (never the
credentials) and the database.
"""

from __future__ import annotations

import gzip as _gzip
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from .base import AGGREGATES, Point, Rejected, StoreError, Value
from .common import (check_limit, check_query, check_range, float_fields, http_error, kind_from_tag, rows,
                     safe_url, unreachable, value_caster)
from .line_protocol import QUARANTINE_MEASUREMENT, Encoder

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted and escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted and escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and (body.get("error") or body.get("message")):
            return str(body.get("error") or body.get("message"))
    except ValueError:
        pass
    return resp.headers.get("X-Influxdb-Error") or resp.text


class InfluxQLReader:
    """Queries in InfluxQL over ``GET /query?db=...&epoch=ns`` (InfluxDB 1.x, and 2.x/3.x with a DBRP mapping).

    ``client`` carries the base URL and authentication; ``params`` are sent
    with every query (``db``, optionally ``rp``); ``before_query`` runs first
    (the 1.x store creates its database there).
    """

    def __init__(self, client: httpx.Client, registry: Registry, params: dict[str, str], where: str,
                 before_query: Callable[[], None] | None = None):
        self.client = client
        self.registry = registry
        self.params = params
        self.where = where
        self.before_query = before_query

    def run(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (``name``, ``tags``, ``columns``, ``values``)."""
        if self.before_query is not None:
            self.before_query()
        try:
            resp = self.client.get("/query", params={**self.params, "q": q, "epoch": "ns"})
        except httpx.HTTPError as exc:
            raise unreachable(exc, "query", self.where) from exc
        if resp.status_code != 200:
            raise http_error(resp.status_code, _error_text(resp), f"run the query {q!r}", self.where)
        try:
            body = resp.json()
        except ValueError as exc:
            raise StoreError(f"{self.where}: the answer to {q!r} is not JSON: {resp.text[:200]!r}",
                             retryable=False) from exc
        if body.get("error"):
            raise StoreError(f"{self.where}: query {q!r} failed: {body['error']}", retryable=False)
        series: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if result.get("error"):
                raise StoreError(f"{self.where}: query {q!r} failed: {result['error']}", retryable=False)
            for s in result.get("series", []):
                if s.get("partial"):
                    raise StoreError(
                        f"{self.where}: the server truncated the answer to {q!r} (its max-row-limit): "
                        "query a shorter range or use a window", retryable=False)
                series.append(s)
        return series

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        """See storage.base.Store.query."""
        dev, ftype = check_query(self.registry, device, field, start_ns, end_ns, window_s, agg)
        cond = f"WHERE \"device\" = {literal(device)} AND time >= {int(start_ns)} AND time < {int(end_ns)}"
        if window_s is None:
            q = f"SELECT {ident(field)} FROM {ident(dev.kind)} {cond}"
        else:
            assert agg in AGGREGATES  # checked above; the function name is never the caller's text
            q = f"SELECT {agg}({ident(field)}) FROM {ident(dev.kind)} {cond} GROUP BY time({window_s}s) fill(none)"
        pairs = [row[:2] for s in self.run(q) for row in s.get("values", [])]
        pairs.sort(key=lambda r: r[0])
        return rows(pairs, value_caster(ftype, agg))

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
        self.client.close()


class InfluxV1Store:
    """InfluxDB 1.x: telemetry and quarantine in one database (see the module docstring)."""

    def __init__(self, url: str, database: str, registry: Registry, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10, create_database: bool = True,
                 retention_policy: str | None = None, gzip: bool = False, batch_size: int = 5000):
        if not database:
            raise ValueError("InfluxV1Store needs a database name")
        self.url = safe_url(url)
        self.database = database
        self.registry = registry
        self.gzip = gzip
        self.batch_size = batch_size
        self.where = f"InfluxDB at {self.url} (database {database!r})"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.Client(base_url=url, auth=auth, timeout=timeout_s)
        self._params = {"db": database, **({"rp": retention_policy} if retention_policy else {})}
        self._create = create_database
        self._db_ready = not create_database
        self._encoder = Encoder(float_fields(registry))
        self.reader = InfluxQLReader(self._client, registry, dict(self._params), self.where,
                                     before_query=self._ensure_database if create_database else None)

    def __repr__(self) -> str:
        return f"InfluxV1Store({self.url!r}, {self.database!r})"

    def _ensure_database(self) -> None:
        """``CREATE DATABASE`` once (idempotent on the server); retried on the next call if it fails."""
        if self._db_ready:
            return
        try:
            resp = self._client.post("/query", data={"q": f"CREATE DATABASE {ident(self.database)}"})
        except httpx.HTTPError as exc:
            raise unreachable(exc, "create the database", self.where) from exc
        if resp.status_code != 200:
            err = http_error(resp.status_code, _error_text(resp), "create the database", self.where)
        else:
            try:
                error = (resp.json().get("results") or [{}])[0].get("error")
            except ValueError:
                error = f"the answer is not JSON: {resp.text[:200]!r}"
            if not error:
                self._db_ready = True
                return
            err = StoreError(f"{self.where}: cannot create the database: {error}", retryable=False)
        if not err.retryable:
            err.args = (err.args[0] + "; create it yourself (CREATE DATABASE), or give this user admin rights",)
        raise err

    def write(self, points: Sequence[Point], rejected: Sequence[Rejected] = ()) -> None:
        """POST the batch to /write in chunks of ``batch_size`` lines; durable when it returns.

        A failure part-way leaves the earlier chunks written; writing the whole
        batch again is harmless (same series and time -> stored once).
        """
        try:
            lines = self._encoder.point_lines(points) + self._encoder.rejected_lines(rejected)
        except ValueError as exc:
            raise StoreError(f"{self.where}: batch refused before sending: {exc}", retryable=False) from exc
        if not lines:
            return
        self._ensure_database()
        params = {**self._params, "precision": "ns"}
        for i in range(0, len(lines), self.batch_size):
            body = "\n".join(lines[i:i + self.batch_size]).encode("utf-8")
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if self.gzip:
                body = _gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            try:
                resp = self._client.post("/write", params=params, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise unreachable(exc, f"write {len(lines)} lines", self.where) from exc
            if resp.status_code != 204:
                text = _error_text(resp)
                err = http_error(resp.status_code, text, f"write {len(lines)} lines", self.where)
                if resp.status_code == 404 and "database not found" in text and self._create:
                    self._db_ready = False  # dropped behind our back: create it again on the retry
                    err.retryable = True
                raise err

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        return self.reader.query(device, field, start_ns, end_ns, window_s, agg)

    def last_seen(self) -> dict[str, int]:
        return self.reader.last_seen()

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        return self.reader.quarantined(start_ns, end_ns, limit)

    def close(self) -> None:
        self._client.close()
