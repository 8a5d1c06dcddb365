"""InfluxDB 2.x / 3.x: line protocol written through ``influxdb-client``, InfluxQL read on ``/query``.

Writes use the client's synchronous WriteApi (no background batching, no
silent retries: the caller decides), precision ns, the same line protocol as
the 1.x store.  InfluxDB 2.x answers 204 once the write is in its WAL.

Reads use the v1-compatible ``GET /query?db=<bucket>`` with
``Authorization: Token <token>``, through the same :class:`InfluxQLReader` as
the 1.x store.  InfluxDB 2.x needs a DBRP mapping from the bucket name to the
bucket for that (``influx v1 dbrp create --db <bucket> --rp autogen
--bucket-id <id> --default``); 3.x maps database = bucket by itself.  Any
other reader (e.g. :class:`storage.victoria.VictoriaMetricsReader`) can be
injected with ``reader=``.

Errors: connection failures, timeouts, 408, 429 and 5xx raise
``StoreError(retryable=True)``; other 4xx raise ``StoreError(retryable=False)``
with the server's message.  Messages name the URL, org and bucket, never the
token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from .common import Reader, ReadsThroughReader, WritesLineProtocol, float_fields, http_error, safe_url, unreachable
from .frame import MAX_ROWS, check_max_rows
from .influxql import InfluxQLReader
from .line_protocol import Encoder

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry


class InfluxV2Store(WritesLineProtocol, ReadsThroughReader):
    """InfluxDB 2.x/3.x (or any server taking ``/api/v2/write``) behind the Store contract.

    ``reader`` (default: InfluxQL on this server's ``/query``) answers the
    queries; the store owns it and closes it in :meth:`close`.  ``max_rows``
    bounds the default reader's :meth:`frame`; an injected reader has its own.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, registry: Registry,
                 reader: Reader | None = None, timeout_s: float = 10, gzip: bool = False,
                 batch_size: int = 5000, max_rows: int = MAX_ROWS):
        if not bucket or not org:
            raise ValueError("InfluxV2Store needs an org and a bucket")
        check_max_rows(max_rows)
        self.url = safe_url(url)
        self.org = org
        self.bucket = bucket
        self.registry = registry
        self.batch_size = batch_size
        self.where = f"InfluxDB at {self.url} (org {org!r}, bucket {bucket!r})"
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._encoder = Encoder(float_fields(registry))
        if reader is None:
            http = httpx.Client(base_url=url, timeout=timeout_s, headers={"Authorization": f"Token {token}"})
            reader = InfluxQLReader(http, registry, {"db": bucket}, self.where, max_rows=max_rows)
        self.reader = reader

    def __repr__(self) -> str:
        return f"InfluxV2Store({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def _send(self, lines: list[str]) -> None:
        doing = f"write {len(lines)} lines"
        for i in range(0, len(lines), self.batch_size):
            body = "\n".join(lines[i:i + self.batch_size])
            try:
                self._write_api.write(bucket=self.bucket, org=self.org, record=body,
                                      write_precision=WritePrecision.NS)
            except ApiException as exc:
                status = exc.status or 0
                detail = exc.message if getattr(exc, "message", None) else (exc.body or exc.reason or "")
                headers = getattr(exc, "headers", None) or {}
                err = http_error(status, str(detail), doing, self.where, retry_after=headers.get("Retry-After"))
                if status == 404:
                    err.args = (err.args[0] + "; an InfluxDB 1.x server has no /api/v2/write before 1.8: "
                                "use InfluxV1Store for it",)
                raise err from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise unreachable(exc, doing, self.where) from exc

    def close(self) -> None:
        try:
            self._write_api.close()
            self._client.close()
        finally:
            self.reader.close()
