"""API read speed at 1,000 devices x 7 days of one-minute data, against InfluxDB 1.6.7 and the embedded store.

    python -m benchmarks.api_speed [--devices 1000 --days 7] [--requests 200 --grafana-requests 50]

What it does, in one run:

1. builds a synthetic registry in a temp dir (one kind, ``bench_router``: four
   float fields every 60 s; ``--devices`` devices over 5 districts x 10 communes);
2. generates ``--days`` of one-minute readings per device with numpy (a diurnal
   cycle + noise; each device at its own second of the minute) and writes them as
   batches of :class:`storage.base.Point` to a real InfluxDB 1.6.7
   (``tests/servers.py``) and then to the embedded SQLiteStore on a temp file,
   timing only ``store.write`` (the write rates printed);
3. waits until influxd's own compactions have settled (its CPU idle), then, per store,
   starts the real API (``api.main.create_app``) under uvicorn in a separate process
   on 127.0.0.1 and measures, with one keep-alive client sending one request at a time:

   * ``GET /api/v1/telemetry/{device}/{field}?start&end&window=1m&agg=mean``: 24 h of one series
     (1,440 windows), random device, field and day of the data, ``--requests`` times; and the same
     query straight on the store (``store.query``) in this process, for the API's overhead;
   * ``POST /api/v1/grafana/query`` with 20 ``telemetry`` targets (20 random devices, one series
     each), 24 h, intervalMs 60000, maxDataPoints 1440, ``--grafana-requests`` times; and the 20
     ``store.query`` calls it makes, done directly.

   Targets (issue 4, item 5): p95 < 100 ms for the one-series query, p95 < 300 ms for the Grafana query.

The markdown section is printed and written to benchmarks/results/api_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from device_profiles import load_registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402  (starts a real influxd on 127.0.0.1, as the tests do)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "api_speed.md"
from benchmarks.api_world import (
    DAY_NS,
    FIELDS,
    GRAFANA_SERIES,
    KIND,
    MINUTE_NS,
    NS,
    TARGET_GRAFANA_MS,
    TARGET_SERIES_MS,
    ApiProcess,
    Dataset,
    load,
    log,
    make_dataset,
    wait_idle,
    write_registry,
)

# ------------------------------------------------------------------------------------------ measuring


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_ranges(ds: Dataset, rng: random.Random, n: int) -> list[tuple[int, int]]:
    """``n`` random 24-hour ranges inside the data, on whole minutes."""
    last = ds.n_minutes - 1440
    out = []
    for _ in range(n):
        s = ds.start_ns + rng.randint(0, max(0, last)) * MINUTE_NS
        out.append((s, s + DAY_NS))
    return out


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": a.size, "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def measure_store(label: str, store, api: ApiProcess, token: str, ds: Dataset, args) -> dict:
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {token}"}
    expected = 1440
    out: dict = {"store": label}
    with httpx.Client(base_url=api.url, headers=headers, timeout=60) as client:
        # (1) one series, 24 h at one minute
        cases = [(rng.choice(ds.devices), rng.choice(FIELDS), r) for r in day_ranges(ds, rng, args.requests)]
        warm = cases[:args.warmup]
        for dev, fld, (s, e) in warm:  # warm-up (connection, first imports, caches); not counted
            client.get(f"/api/v1/telemetry/{dev}/{fld}", params={"start": iso(s), "end": iso(e), "window": "1m",
                                                                "agg": "mean"}).raise_for_status()
        api_ms, bodies = [], []
        for dev, fld, (s, e) in cases:
            params = {"start": iso(s), "end": iso(e), "window": "1m", "agg": "mean"}
            t0 = time.perf_counter()
            resp = client.get(f"/api/v1/telemetry/{dev}/{fld}", params=params)
            _ = resp.content
            api_ms.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
            bodies.append(resp.content)
        counts = [json.loads(b)["count"] for b in bodies]
        if any(c != expected for c in counts):
            raise RuntimeError(f"{label}: telemetry answers hold {sorted(set(counts))} points, expected {expected}")
        out["series_bytes"] = int(np.mean([len(b) for b in bodies]))
        out["series_api"] = stats(api_ms)
        log(f"  {label}: telemetry route p50 {out['series_api']['p50']:.1f} ms, p95 {out['series_api']['p95']:.1f} ms")

        direct_ms = []
        for dev, fld, (s, e) in warm:
            store.query(dev, fld, s, e, 60, "mean")
        for dev, fld, (s, e) in cases:
            t0 = time.perf_counter()
            rows = store.query(dev, fld, s, e, 60, "mean")
            direct_ms.append((time.perf_counter() - t0) * 1000)
            if len(rows) != expected:
                raise RuntimeError(f"{label}: store.query returned {len(rows)} rows, expected {expected}")
        out["series_direct"] = stats(direct_ms)
        log(f"  {label}: store.query       p50 {out['series_direct']['p50']:.1f} ms, "
            f"p95 {out['series_direct']['p95']:.1f} ms")

        # (2) Grafana /query, 20 series
        g_cases = [(rng.sample(ds.devices, GRAFANA_SERIES), rng.choice(FIELDS), r)
                   for r in day_ranges(ds, rng, args.grafana_requests)]

        def body(devs, fld, s, e) -> dict:
            return {"range": {"from": iso(s), "to": iso(e), "raw": {"from": "now-24h", "to": "now"}},
                    "intervalMs": 60000, "maxDataPoints": 1440, "requestId": "Q1",
                    "targets": [{"refId": chr(65 + i), "target": "telemetry", "datasource": {"uid": "fansipan-api"},
                                 "payload": {"kind": KIND, "field": fld, "device": dev, "agg": "mean"}}
                                for i, dev in enumerate(devs)]}

        for devs, fld, (s, e) in g_cases[:max(1, args.warmup // 4)]:
            client.post("/api/v1/grafana/query", json=body(devs, fld, s, e)).raise_for_status()
        g_ms, g_bytes = [], []
        for devs, fld, (s, e) in g_cases:
            payload = body(devs, fld, s, e)
            t0 = time.perf_counter()
            resp = client.post("/api/v1/grafana/query", json=payload)
            _ = resp.content
            g_ms.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
            answer = resp.json()
            sizes = {len(s_["datapoints"]) for s_ in answer}
            if len(answer) != GRAFANA_SERIES or sizes != {expected}:
                raise RuntimeError(f"{label}: grafana answered {len(answer)} series of {sizes} points")
            g_bytes.append(len(resp.content))
        out["grafana_bytes"] = int(np.mean(g_bytes))
        out["grafana_api"] = stats(g_ms)
        log(f"  {label}: grafana /query    p50 {out['grafana_api']['p50']:.1f} ms, p95 {out['grafana_api']['p95']:.1f} ms")

        gd_ms = []
        for devs, fld, (s, e) in g_cases:
            t0 = time.perf_counter()
            for dev in devs:
                store.query(dev, fld, s, e, 60, "mean")
            gd_ms.append((time.perf_counter() - t0) * 1000)
        out["grafana_direct"] = stats(gd_ms)
        log(f"  {label}: 20 x store.query  p50 {out['grafana_direct']['p50']:.1f} ms, "
            f"p95 {out['grafana_direct']['p95']:.1f} ms")
    out["series_met"] = out["series_api"]["p95"] < TARGET_SERIES_MS
    out["grafana_met"] = out["grafana_api"]["p95"] < TARGET_GRAFANA_MS
    return out


# ------------------------------------------------------------------------------------------ report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(command: str, args, ds: Dataset, writes: list[dict], results: list[dict], meta: dict) -> str:
    def row(name: str, s: dict, target: float | None = None) -> str:
        met = "" if target is None else (" **met**" if s["p95"] < target else " **missed**")
        return (f"| {name} | {s['n']} | {s['p50']:.1f} | {s['p95']:.1f}{met} | {s['p99']:.1f} | {s['mean']:.1f} | "
                f"{s['max']:.1f} |")

    n_dev, n_pts = len(ds.devices), len(ds.devices) * ds.n_minutes
    lines = [
        "## API read speed (issue 4, item 5)", "",
        f"Command: `{command}`  ",
        f"Machine: nproc {meta['nproc']} ({meta['cpu']}), {meta['mem_gib']:.0f} GiB; Python {platform.python_version()}; "
        f"InfluxDB {meta['influx_version']}; SQLite {meta['sqlite_version']}; uvicorn {meta['uvicorn']} "
        f"(1 process, {meta['loop']}); date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"whole run {meta['total_s'] / 60:.1f} min.", "",
        f"Data: {n_dev:,} devices (one kind, 4 float fields, one reading a minute) x {args.days} days = "
        f"{n_pts:,} points, {n_pts * len(FIELDS):,} values, generated with numpy (diurnal cycle + noise), "
        f"written in batches of {writes[0]['batch_points']:,} points "
        f"(device by device, oldest first; InfluxDB: {meta['influx_batch']:,} lines per /write).", "",
        "| store | points | values | write() s | points/s | values/s |", "|---|---|---|---|---|---|",
    ]
    for w in writes:
        lines.append(f"| {w['store']} | {w['points']:,} | {w['values']:,} | {w['write_s']:.1f} | {w['points_s']:,.0f} | "
                     f"{w['values_s']:,.0f} |")
    lines += [
        "",
        f"Queries: the real API (`api.main.create_app`, admin key) under uvicorn in its own process on 127.0.0.1, "
        f"one keep-alive httpx client, one request at a time, timed to the last byte; random device, field and "
        f"24-hour range inside the data; {args.warmup} warm-up requests not counted. InfluxDB measured after its "
        f"compactions settled (waited {meta['influx_idle_s']:.0f} s). \"direct\" is the same `store.query` "
        f"call(s) the route makes, from the benchmark process: the difference is the API's own cost. "
        f"Client, API and influxd share the machine's {meta['nproc']} cores.", "",
        "| store | what | n | p50 ms | p95 ms | p99 ms | mean ms | max ms |", "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        st = r["store"]
        lines += [
            row(f"{st} | GET telemetry, 1 series, 24 h @ 1 min (1,440 points, {r['series_bytes'] / 1024:.0f} KiB)",
                r["series_api"], TARGET_SERIES_MS),
            row(f"{st} | direct: store.query, same queries", r["series_direct"]),
            row(f"{st} | POST grafana/query, 20 series x 24 h @ 1 min ({r['grafana_bytes'] / 1024:.0f} KiB)",
                r["grafana_api"], TARGET_GRAFANA_MS),
            row(f"{st} | direct: 20 x store.query, same queries", r["grafana_direct"]),
        ]
    lines += ["", f"Targets: one series p95 < {TARGET_SERIES_MS:.0f} ms, Grafana 20 series p95 < "
                  f"{TARGET_GRAFANA_MS:.0f} ms."]
    for r in results:
        lines.append(f"- {r['store']}: one series {'met' if r['series_met'] else 'MISSED'} "
                     f"(p95 {r['series_api']['p95']:.1f} ms); Grafana {'met' if r['grafana_met'] else 'MISSED'} "
                     f"(p95 {r['grafana_api']['p95']:.1f} ms)")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main


def run(args, command: str) -> str:
    import sqlite3

    import uvicorn

    from analytics.incidents import IncidentStore
    from api.keys import KeyStore
    from storage.influx_v1 import InfluxV1Store
    from storage.sqlite import SQLiteStore

    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fansipan-apispeed-", dir=args.tmpdir))
    influxd = None
    stores = []
    try:
        reg_dir = tmp / "profiles"
        write_registry(reg_dir, args.devices)
        registry = load_registry(reg_dir)
        ds = make_dataset(registry, args.days, args.seed)
        n_pts = len(ds.devices) * ds.n_minutes
        log(f"registry: {len(registry.devices):,} devices in {len(registry.sites)} sites; data {iso(ds.start_ns)} .. "
            f"{iso(ds.end_ns)}: {n_pts:,} points, {n_pts * len(FIELDS):,} values; temp dir {tmp}")

        influxd = servers.start_influxd(tmp)
        influx_version = httpx.get(influxd.url + "/ping").headers.get("X-Influxdb-Version", "?")
        log(f"influxd {influx_version} at {influxd.url} (pid {influxd.proc.pid})")
        influx = InfluxV1Store(influxd.url, "bench", registry, batch_size=args.influx_batch, timeout_s=120)
        sqlite_path = tmp / "bench.sqlite"
        sqlite = SQLiteStore(sqlite_path, registry)
        stores = [influx, sqlite]

        writes = []
        log(f"writing to InfluxDB ({args.devices_per_batch} devices x {ds.n_minutes:,} minutes per write())")
        writes.append(load(influx, "InfluxDB 1.6.7", ds, args.devices_per_batch))
        log(f"writing to SQLite {sqlite_path}")
        writes.append(load(sqlite, "SQLite (embedded)", ds, args.devices_per_batch))
        sqlite._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log(f"  SQLite file {sqlite_path.stat().st_size / 2**20:,.0f} MiB")
        for w in writes:
            log(f"  {w['store']}: {w['points_s']:,.0f} points/s ({w['values_s']:,.0f} values/s) in write(); "
                f"numpy + Points took {w['gen_s']:.0f} s more")
        log("waiting for influxd's compactions to settle")
        influx_idle_s = wait_idle(influxd.proc.pid, "influxd")

        incidents = tmp / "incidents.sqlite"
        IncidentStore(incidents).close()
        keys = KeyStore(incidents)
        _, token = keys.create("api-speed benchmark", "admin")
        keys.close()

        results = []
        for label, store, spec in [
            ("InfluxDB 1.6.7", influx, {"store": "influx", "url": influxd.url, "database": "bench"}),
            ("SQLite (embedded)", sqlite, {"store": "sqlite", "path": str(sqlite_path)}),
        ]:
            spec.update(registry=str(reg_dir), incidents=str(incidents), port=servers.free_port())
            log(f"measuring {label}: API at 127.0.0.1:{spec['port']}")
            with ApiProcess(spec, tmp) as api:
                results.append(measure_store(label, store, api, token, ds, args))

        meta = {"nproc": os.cpu_count(), "cpu": _cpu_model(),
                "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                "influx_version": influx_version, "sqlite_version": sqlite3.sqlite_version,
                "uvicorn": uvicorn.__version__, "loop": _loop_kind(), "influx_batch": args.influx_batch,
                "influx_idle_s": influx_idle_s, "total_s": time.perf_counter() - t_start}
        return report(command, args, ds, writes, results, meta)
    finally:
        for s in stores:
            s.close()
        if influxd is not None:
            influxd.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _loop_kind() -> str:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1000, help="devices (default 1000)")
    p.add_argument("--days", type=int, default=7, help="days of one-minute data (default 7; at least 2)")
    p.add_argument("--requests", type=int, default=200, help="one-series requests per store (default 200)")
    p.add_argument("--grafana-requests", type=int, default=50, help="Grafana /query requests per store (default 50)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up requests, not counted (default 20)")
    p.add_argument("--devices-per-batch", type=int, default=10,
                   help="devices per write() call (default 10: 100,800 points at 7 days)")
    p.add_argument("--influx-batch", type=int, default=10_000, help="lines per InfluxDB /write (default 10000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS, help=f"markdown output (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--tmpdir", default=None, help="where the temp dir goes (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    args = p.parse_args(argv)
    if args.days < 2:
        p.error("--days must be at least 2 (24-hour ranges are drawn inside the data)")
    if args.devices < GRAFANA_SERIES:
        p.error(f"--devices must be at least {GRAFANA_SERIES} (the Grafana query asks for {GRAFANA_SERIES} series)")
    command = ("python -m benchmarks.api_speed " + " ".join(argv)).strip()
    text = run(args, command)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    log(f"written to {args.out}")


if __name__ == "__main__":
    main()
