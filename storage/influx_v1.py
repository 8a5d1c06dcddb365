"""InfluxDB 1.x over its HTTP API: line protocol to ``/write``, InfluxQL to ``/query``.

:class:`~storage.influxql.InfluxQLReader` is the read half, shared with the
2.x/3.x store (their v1-compatible ``/query`` speaks the same InfluxQL); see
storage.influxql for how queries are built and how row limits are handled.

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
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx

from .base import StoreError
from .bulk_encode import WritesColumns
from .common import ReadsThroughReader, WritesLineProtocol, float_fields, http_error, safe_url, unreachable
from .frame import MAX_ROWS, check_max_rows
from .influxql import InfluxQLReader, error_text, ident, literal
from .line_protocol import Encoder

__all__ = ["InfluxV1Store", "InfluxQLReader", "ident", "literal"]  # the reader lived here before storage.influxql

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry


class InfluxV1Store(WritesColumns, WritesLineProtocol, ReadsThroughReader):
    """InfluxDB 1.x: telemetry and quarantine in one database (see the module docstring)."""

    def __init__(self, url: str, database: str, registry: Registry, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10, create_database: bool = True,
                 retention_policy: str | None = None, gzip: bool = False, batch_size: int = 5000,
                 max_rows: int = MAX_ROWS, write_concurrency: int = 2):
        if not database:
            raise ValueError("InfluxV1Store needs a database name")
        check_max_rows(max_rows)
        self.url = safe_url(url)
        self.database = database
        self.registry = registry
        self.gzip = gzip
        self.batch_size = batch_size  # lines per /write request
        self.write_concurrency = write_concurrency  # /write requests at once for a batch of several requests
        self._pool: ThreadPoolExecutor | None = None
        self.where = f"InfluxDB at {self.url} (database {database!r})"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.Client(base_url=url, auth=auth, timeout=timeout_s)
        self._params = {"db": database, **({"rp": retention_policy} if retention_policy else {})}
        self._create = create_database
        self._db_ready = not create_database
        self._encoder = Encoder(float_fields(registry))
        self.reader = InfluxQLReader(self._client, registry, dict(self._params), self.where,
                                     before_query=self._ensure_database if create_database else None,
                                     max_rows=max_rows, msgpack=True)

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
            err = http_error(resp.status_code, error_text(resp), "create the database", self.where)
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

    def _send(self, lines: list[str]) -> None:
        if not lines:
            return
        self._ensure_database()
        chunks = [lines[i:i + self.batch_size] for i in range(0, len(lines), self.batch_size)]
        if self.write_concurrency > 1 and len(chunks) > 1:
            # InfluxDB parses each request on its own: several at once use several cores. Each series goes
            # wholly into one request, in order, so "the last write of a point wins" still holds.
            buckets: list[list[str]] = [[] for _ in chunks]
            for line in lines:
                buckets[hash(line.partition(" ")[0]) % len(buckets)].append(line)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.write_concurrency, thread_name_prefix="fansipan-influx-write")
            errors = [f.exception() for f in [self._pool.submit(self._post, b) for b in buckets if b]]
            err = next((e for e in errors if e is not None and not getattr(e, "retryable", True)), None)
            err = err or next((e for e in errors if e is not None), None)
            if err is not None:
                raise err  # the whole batch is sent again or split: rewriting the parts that went through is harmless
            return
        for chunk in chunks:
            self._post(chunk)

    def _post(self, lines: list[str]) -> None:
        params = {**self._params, "precision": "ns"}
        body = "\n".join(lines).encode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = _gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._client.post("/write", params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, f"write {len(lines)} lines", self.where) from exc
        if resp.status_code != 204:
            text = error_text(resp)
            err = http_error(resp.status_code, text, f"write {len(lines)} lines", self.where,
                             retry_after=resp.headers.get("Retry-After"))
            if resp.status_code == 404 and "database not found" in text and self._create:
                self._db_ready = False  # dropped behind our back: create it again on the retry
                err.retryable = True
            raise err

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.reader.close()  # its query threads; it closes the shared client too
