"""Fansipan's data in VictoriaMetrics: :class:`VictoriaMetricsStore`, and its reader (also InfluxV2Store's).

VictoriaMetrics takes InfluxDB line protocol on ``/write`` and ``/api/v2/write``
and stores ``kind,device=..,site=.. field=v`` as the metric ``kind_field`` with
labels ``device``, ``site``, ``district``.  :class:`VictoriaMetricsStore` writes
that (single node, or a cluster's vminsert) and reads with
:class:`VictoriaMetricsReader` (single node, or a cluster's vmselect), which fetches raw samples
with ``/api/v1/export`` (``frame()``: all the kind's metrics in one export,
``{__name__=~"kind_(f1|f2|..|arrived_ms)"}``) and aggregates windows itself (numpy), so the answers
match InfluxQL's ``GROUP BY time(..) fill(none)``: windows aligned on the
epoch, stamped with their start, empty ones left out.

What VictoriaMetrics cannot do, and therefore this reader cannot either:

* times are kept to the millisecond: points less than 1 ms apart collapse;
* it keeps every sample written, duplicates included, and does not remember
  which of two samples with the same timestamp came last: this reader keeps
  one sample per millisecond (identical re-deliveries are therefore stored
  once, but "last write wins" is not guaranteed for differing values);
* values keep about 12 significant digits (33.333333333333336 reads back as
  33.333333333333, measured on Debian 12's victoria-metrics 1.79.5; tests/test_bulk_store.py);
* it stores numbers only, so the quarantine's text (topic, detail, raw payload)
  is lost: :meth:`VictoriaMetricsReader.quarantined` raises NotImplementedError;
* freshly written samples show up in queries after about a second, unless
  flushed: with ``flush_before_read=True`` (the default) every read first calls
  ``/internal/force_flush``, which gives read-your-writes at the cost of extra
  disk work; turn it off for dashboards that poll;
* a write returns before the samples reach the disk (they are buffered for up
  to a second), so a crash of VictoriaMetrics can lose acknowledged writes.
"""

from __future__ import annotations

import gzip as _gzip
import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
import numpy as np
import orjson

from .base import Frame, Rejected, StoreError, Value
from .bulk_encode import WritesColumns
from .common import (
    ReadsThroughReader,
    WritesLineProtocol,
    check_query,
    float_fields,
    http_error,
    rows,
    safe_url,
    unreachable,
    value_caster,
)
from .frame import MAX_ROWS, check_frame, check_max_rows, empty, pivot, too_many
from .line_protocol import Encoder
from .window import windowed

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry

NS_PER_MS = 1_000_000
LAST_SEEN_LOOKBACK = "3650d"  # MetricsQL range of last_seen(): a device silent for ten years is forgotten
FUTURE_ALLOWANCE_S = 86_400  # last_seen() also sees points stamped up to a day ahead of this machine


def _seconds(ms: int) -> str:
    """Epoch milliseconds as the seconds-with-fraction VictoriaMetrics expects for start/end."""
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


def _label(value: str) -> str:
    """A label value inside a series selector, double-quoted and escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class VictoriaMetricsReader:
    """query/last_seen over VictoriaMetrics' HTTP API (see the module docstring for its limits)."""

    def __init__(self, url: str, registry: Registry, timeout_s: float = 10, flush_before_read: bool = True,
                 headers: dict[str, str] | None = None, max_rows: int = MAX_ROWS):
        self.url = safe_url(url)
        self.registry = registry
        self.flush_before_read = flush_before_read
        self.max_rows = check_max_rows(max_rows)
        self.where = f"VictoriaMetrics at {self.url}"
        self._client = httpx.Client(base_url=url, timeout=timeout_s, headers=headers)

    def __repr__(self) -> str:
        return f"VictoriaMetricsReader({self.url!r})"

    def _flush(self) -> None:
        if self.flush_before_read:
            flush = self._client.get("/internal/force_flush")
            if flush.status_code != 200:
                raise http_error(flush.status_code, flush.text, "flush recent writes", self.where)

    def _get(self, path: str, params: dict | list, doing: str) -> httpx.Response:
        try:
            self._flush()
            resp = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise unreachable(exc, doing, self.where) from exc
        if resp.status_code != 200:
            raise http_error(resp.status_code, resp.text, doing, self.where)
        return resp

    def _export(self, selector: str, start_ms: int, end_ms: int, doing: str) -> list[dict]:
        """Raw samples of every series matching ``selector`` with start_ms <= t <= end_ms."""
        resp = self._get("/api/v1/export",
                         {"match[]": selector, "start": _seconds(start_ms), "end": _seconds(end_ms)}, doing)
        try:
            return [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        except ValueError as exc:
            raise StoreError(f"{self.where}: cannot {doing}: the export is not JSON lines", retryable=False) from exc

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        """See storage.base.Store.query (times in ms precision, one sample per ms)."""
        dev, ftype = check_query(self.registry, device, field, start_ns, end_ns, window_s, agg)
        # samples are whole ms: t_ms * 1e6 is in [start_ns, end_ns) iff ceil(start/1e6) <= t_ms < ceil(end/1e6)
        first_ms, stop_ms = -(-start_ns // NS_PER_MS), -(-end_ns // NS_PER_MS)
        if first_ms >= stop_ms:
            return []
        selector = f"{{__name__={_label(f'{dev.kind}_{field}')},device={_label(device)}}}"
        series = self._export(selector, first_ms, stop_ms - 1, f"export {device}.{field}")
        ts = np.array([t for s in series for t in s.get("timestamps", [])], dtype=np.int64)
        vals = np.array([v for s in series for v in s.get("values", [])], dtype=np.float64)
        if ts.size != vals.size:
            raise StoreError(f"{self.where}: export of {device}.{field} has unequal timestamps and values",
                             retryable=False)
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        keep = (ts >= first_ms) & (ts < stop_ms)
        ts, vals = ts[keep], vals[keep]
        if ts.size:  # duplicates (re-deliveries): keep the last sample of each millisecond
            last = np.r_[ts[1:] != ts[:-1], True]
            ts, vals = ts[last], vals[last]
        ts = ts * NS_PER_MS
        if window_s is None:
            pairs = list(zip(ts.tolist(), vals.tolist()))
        else:
            starts, out = windowed(ts, vals, window_s, agg)
            pairs = list(zip(starts.tolist(), out.tolist()))
        return rows(pairs, value_caster(ftype, agg))

    def frame(self, kind: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None) -> Frame:
        """See storage.base.Store.frame: one ``/api/v1/export`` of the kind's metrics, merged with numpy.

        Times in ms precision, one sample per ms and metric (the last one
        exported).  The export is read line by line (one series a line) and
        given up as soon as it holds more samples than ``max_rows`` readings
        can (one per field plus ``arrived_ms``; stored duplicates count too).
        Series of devices not (or no longer) of ``kind`` in the registry are
        skipped, which also keeps out a kind whose name extends this one's.
        """
        chosen, fields = check_frame(self.registry, kind, start_ns, end_ns, devices)
        first_ms, stop_ms = -(-start_ns // NS_PER_MS), -(-end_ns // NS_PER_MS)  # as in query()
        if not chosen or first_ms >= stop_ms:
            return empty(fields)
        metrics = (*fields, "arrived_ms")  # kinds and fields are [a-z0-9_-], escaped for the regex anyway
        selector = f"__name__=~{_label(re.escape(kind) + '_(' + '|'.join(map(re.escape, metrics)) + ')')}"
        if devices is not None:  # each one checked against the registry by check_frame
            selector += f",device=~{_label('|'.join(map(re.escape, chosen)))}"
        metric_idx = {f"{kind}_{m}": i for i, m in enumerate(metrics)}
        dev_idx = {d: i for i, d in enumerate(chosen)}
        bound = self.max_rows * len(metrics)
        parts: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        n = 0
        for s in self._export_lines("{" + selector + "}", first_ms, stop_ms - 1, f"export a frame of {kind}"):
            metric = s.get("metric") or {}
            d, m = dev_idx.get(metric.get("device")), metric_idx.get(metric.get("__name__"))
            ts, vals = s.get("timestamps") or [], s.get("values") or []
            if d is None or m is None or not ts:  # a device not (or no longer) of this kind
                continue
            if len(ts) != len(vals):
                raise StoreError(f"{self.where}: export of {metric} has unequal timestamps and values",
                                 retryable=False)
            n += len(ts)
            if n > bound:
                raise too_many(kind, start_ns, end_ns, self.max_rows)
            parts.append((d, m, np.asarray(ts, dtype=np.int64), np.asarray(vals, dtype=np.float64)))
        if not parts:
            return empty(fields)
        ts = np.concatenate([p[2] for p in parts])
        dev = np.concatenate([np.full(p[2].size, p[0], np.int32) for p in parts])
        metric = np.concatenate([np.full(p[2].size, p[1], np.int32) for p in parts])
        vals = np.concatenate([p[3] for p in parts])
        keep = (ts >= first_ms) & (ts < stop_ms)
        frame = pivot(chosen, metrics, dev[keep], ts[keep] * NS_PER_MS, metric[keep], vals[keep])
        if frame.ts_ns.size > self.max_rows:
            raise too_many(kind, start_ns, end_ns, self.max_rows)
        return frame

    def _export_lines(self, selector: str, start_ms: int, end_ms: int, doing: str):
        """Like :meth:`_export`, but streamed: yield each series as its line arrives."""
        params = {"match[]": selector, "start": _seconds(start_ms), "end": _seconds(end_ms)}
        try:
            self._flush()
            with self._client.stream("GET", "/api/v1/export", params=params) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise http_error(resp.status_code, resp.text, doing, self.where)
                for line in resp.iter_lines():
                    if line.strip():
                        try:
                            yield orjson.loads(line)
                        except orjson.JSONDecodeError as exc:
                            raise StoreError(f"{self.where}: cannot {doing}: the export is not JSON lines",
                                             retryable=False) from exc
        except httpx.HTTPError as exc:
            raise unreachable(exc, doing, self.where) from exc

    def last_seen(self) -> dict[str, int]:
        """Device -> time of its latest point (ms precision), from each kind's ``arrived_ms`` metric."""
        if not self.registry.kinds:
            return {}
        names = "|".join(f"{k}_arrived_ms" for k in sorted(self.registry.kinds))  # kinds are [a-z0-9_-]
        q = f'max by (device) (tlast_over_time({{__name__=~"{names}"}}[{LAST_SEEN_LOOKBACK}]))'
        params = {"query": q, "time": str(int(time.time()) + FUTURE_ALLOWANCE_S), "nocache": "1"}
        resp = self._get("/api/v1/query", params, "read last_seen")
        try:
            result = resp.json()["data"]["result"]
            return {r["metric"]["device"]: round(float(r["value"][1]) * 1000) * NS_PER_MS
                    for r in result if r.get("metric", {}).get("device")}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise StoreError(f"{self.where}: cannot read last_seen: unexpected answer {resp.text[:200]!r}",
                             retryable=False) from exc

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        raise NotImplementedError(
            "VictoriaMetrics stores numbers only: the quarantine's topic, detail and raw payload are dropped "
            "on write, so refused payloads cannot be read back from it. Keep the quarantine in a store that "
            "keeps strings (SQLite, InfluxDB).")

    def close(self) -> None:
        self._client.close()


class VictoriaMetricsStore(WritesColumns, WritesLineProtocol, ReadsThroughReader):
    """VictoriaMetrics, single node or cluster, behind the Store contract.

    Writes: InfluxDB line protocol (ns precision) POSTed to ``<url>/write``, in
    chunks of ``batch_size`` lines; a 204 means VictoriaMetrics has taken the
    batch into its in-memory buffer (flushed to disk within about a second, see
    the module docstring).  Reads: :class:`VictoriaMetricsReader` on
    ``read_url`` (default: ``url``).

    * single node: ``url = read_url = http://host:8428``;
    * cluster: ``url = http://vminsert:8480/insert/<tenant>/influx`` and
      ``read_url = http://vmselect:8481/select/<tenant>/prometheus``; there is
      no ``/internal/force_flush`` on vmselect, so reads do not flush
      (``flush_before_read`` defaults to True only when both URLs are the same).

    The ``db`` query argument is never sent: VictoriaMetrics would turn it into
    a ``db`` label on every series.  Errors: connection failures, timeouts,
    408, 429 and 5xx raise ``StoreError(retryable=True)``, other 4xx
    ``StoreError(retryable=False)`` with VictoriaMetrics' own error text.
    """

    def __init__(self, url: str, registry: Registry, read_url: str | None = None, timeout_s: float = 10,
                 gzip: bool = False, batch_size: int = 5000, flush_before_read: bool | None = None,
                 headers: dict[str, str] | None = None, max_rows: int = MAX_ROWS):
        if not url or not str(url).startswith(("http://", "https://")):
            raise ValueError(f"VictoriaMetricsStore needs an http(s):// URL, got {url!r}")
        if not 1 <= batch_size <= 1_000_000:
            raise ValueError(f"batch_size must be 1..1000000 lines, got {batch_size!r}")
        read_url = read_url or url
        if flush_before_read is None:
            flush_before_read = read_url.rstrip("/") == str(url).rstrip("/")
        self.url = safe_url(url)
        self.registry = registry
        self.gzip = gzip
        self.batch_size = batch_size
        self.where = f"VictoriaMetrics at {self.url}"
        self._client = httpx.Client(base_url=str(url).rstrip("/") + "/", timeout=timeout_s, headers=headers)
        self._encoder = Encoder(float_fields(registry))
        self.reader = VictoriaMetricsReader(read_url, registry, timeout_s=timeout_s,
                                            flush_before_read=flush_before_read, headers=headers, max_rows=max_rows)

    def __repr__(self) -> str:
        return f"VictoriaMetricsStore({self.url!r})"

    def _send(self, lines: list[str]) -> None:
        doing = f"write {len(lines)} lines"
        for i in range(0, len(lines), self.batch_size):
            body = "\n".join(lines[i:i + self.batch_size]).encode("utf-8")
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if self.gzip:
                body = _gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            try:
                resp = self._client.post("write", params={"precision": "ns"}, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise unreachable(exc, doing, self.where) from exc
            if resp.status_code not in (200, 204):
                raise http_error(resp.status_code, resp.text, doing, self.where,
                                 retry_after=resp.headers.get("Retry-After"))

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            self.reader.close()
