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
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from device_profiles import load_registry
from storage.base import Point

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402  (starts a real influxd on 127.0.0.1, as the tests do)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "api_speed.md"
NS = 1_000_000_000
MINUTE_NS = 60 * NS
DAY_NS = 86_400 * NS
KIND = "bench_router"
FIELDS = ("latency_ms", "packet_loss_pct", "rx_mbps", "tx_mbps")
N_DISTRICTS, COMMUNES_PER_DISTRICT = 5, 10
TARGET_SERIES_MS = 100.0
TARGET_GRAFANA_MS = 300.0
GRAFANA_SERIES = 20

KIND_YAML = """\
# Synthetic kind for benchmarks/api_speed.py: a commune router reporting four floats every minute.
kind: bench_router
family: commune
title: {vi: "Bộ định tuyến xã (thử tải)", en: "Commune router (benchmark)"}
topic: "laocai/{site}/bench_router/{device}"
format: json
reporting:
  interval_s: 60
  jitter_s: 15
fields:
  latency_ms: {type: float, unit: "ms", min: 0, max: 60000}
  packet_loss_pct: {type: float, unit: "%", min: 0, max: 100}
  rx_mbps: {type: float, unit: "Mbit/s", min: 0, max: 10000}
  tx_mbps: {type: float, unit: "Mbit/s", min: 0, max: 10000}
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ registry


def write_registry(directory: Path, n_devices: int) -> None:
    """kinds/bench_router.yaml and a sites.yaml: province > 5 districts > 10 communes each > the devices."""
    (directory / "kinds").mkdir(parents=True)
    (directory / "kinds" / f"{KIND}.yaml").write_text(KIND_YAML, encoding="utf-8")
    communes = [(d, c) for d in range(1, N_DISTRICTS + 1) for c in range(1, COMMUNES_PER_DISTRICT + 1)]
    per_commune: dict[tuple[int, int], list[str]] = {dc: [] for dc in communes}
    for i in range(n_devices):
        d, c = communes[i % len(communes)]
        per_commune[(d, c)].append(f"d{d}-c{c:02d}-r{i:05d}")
    sites = [{"id": "bench_province", "type": "province", "name": "Tỉnh thử tải", "lat": 22.43, "lon": 104.02}]
    for d in range(1, N_DISTRICTS + 1):
        sites.append({"id": f"dist_{d}", "type": "district", "name": f"Huyện {d}", "parent": "bench_province",
                      "lat": 22.3 + d / 20, "lon": 103.8 + d / 20})
        for c in range(1, COMMUNES_PER_DISTRICT + 1):
            sites.append({"id": f"dist_{d}_c{c:02d}", "type": "commune", "name": f"Xã {d}.{c}",
                          "parent": f"dist_{d}", "lat": 22.3 + d / 20 + c / 200, "lon": 103.8 + d / 20 + c / 200,
                          "devices": [{"id": dev, "kind": KIND} for dev in per_commune[(d, c)]]})
    # JSON is YAML: no need to format it by hand
    (directory / "sites.yaml").write_text(json.dumps({"sites": sites}, ensure_ascii=False, indent=1), encoding="utf-8")


# ------------------------------------------------------------------------------------------ data


@dataclass
class Dataset:
    registry: object
    devices: list[str]
    start_ns: int  # first minute of the data
    end_ns: int  # end of the data (exclusive), on a minute
    n_minutes: int
    seed: int
    offsets_s: np.ndarray = field(repr=False, default=None)  # each device's second within the minute


def make_dataset(registry, days: int, seed: int) -> Dataset:
    devices = sorted(registry.devices)
    end_ns = (time.time_ns() // MINUTE_NS) * MINUTE_NS
    n_minutes = days * 1440
    rng = np.random.default_rng(seed)
    return Dataset(registry, devices, end_ns - n_minutes * MINUTE_NS, end_ns, n_minutes, seed,
                   rng.integers(0, 60, size=len(devices)))


def batches(ds: Dataset, devices_per_batch: int):
    """Yield lists of Points, ``devices_per_batch`` devices x every minute each (deterministic per seed)."""
    reg = ds.registry
    minutes = np.arange(ds.n_minutes, dtype=np.int64)
    base_ts = ds.start_ns + minutes * MINUTE_NS
    hour = ((base_ts // NS + 7 * 3600) % 86_400) / 3600.0  # local time (UTC+7)
    diurnal = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)  # 0 at 03:00, 1 at 15:00
    for b0 in range(0, len(ds.devices), devices_per_batch):
        devs = ds.devices[b0:b0 + devices_per_batch]
        rng = np.random.default_rng([ds.seed, b0])
        n = len(devs)
        scale = rng.uniform(0.5, 2.0, size=(n, 1))
        noise = rng.standard_normal((4, n, ds.n_minutes))
        lat = np.clip(15 * scale + 25 * scale * diurnal + 4 * noise[0], 0.5, 60_000)
        loss = np.clip(0.2 + 1.5 * diurnal + 0.3 * noise[1], 0.0, 100.0)
        rx = np.clip(20 * scale + 60 * scale * diurnal + 5 * noise[2], 0.0, 10_000)
        tx = np.clip(0.3 * rx + 2 * noise[3], 0.0, 10_000)
        cols = [np.round(a, 3).tolist() for a in (lat, loss, rx, tx)]
        ts = (base_ts[None, :] + ds.offsets_s[b0:b0 + n, None] * NS).tolist()
        delay = rng.integers(50_000_000, 2_000_000_000, size=(n, ds.n_minutes))
        arrived = (np.array(ts, dtype=np.int64) + delay).tolist()
        points = []
        f0, f1, f2, f3 = FIELDS
        for i, dev_id in enumerate(devs):
            dev = reg.devices[dev_id]
            site, district = dev.site, dev.district
            la, lo, r, t, tsi, ar = cols[0][i], cols[1][i], cols[2][i], cols[3][i], ts[i], arrived[i]
            points += [Point(KIND, dev_id, site, district, tsi[k], {f0: la[k], f1: lo[k], f2: r[k], f3: t[k]}, ar[k])
                       for k in range(ds.n_minutes)]
        yield points


def load(store, label: str, ds: Dataset, devices_per_batch: int) -> dict:
    """Write the whole dataset to ``store``; time store.write only."""
    t_write = t_gen = 0.0
    n_points = 0
    n_batches = -(-len(ds.devices) // devices_per_batch)
    t0 = time.perf_counter()
    gen = batches(ds, devices_per_batch)
    for i in range(n_batches):
        g0 = time.perf_counter()
        points = next(gen)
        g1 = time.perf_counter()
        store.write(points)
        t_write += time.perf_counter() - g1
        t_gen += g1 - g0
        n_points += len(points)
        if i == 0 or (i + 1) % max(1, n_batches // 10) == 0 or i + 1 == n_batches:
            done = (i + 1) / n_batches
            elapsed = time.perf_counter() - t0
            log(f"  {label}: {n_points:,} points ({done:.0%}), {n_points / t_write:,.0f} points/s in write(), "
                f"ETA {elapsed / done - elapsed:.0f} s")
    return {"store": label, "points": n_points, "values": n_points * len(FIELDS), "write_s": t_write, "gen_s": t_gen,
            "points_s": n_points / t_write, "values_s": n_points * len(FIELDS) / t_write,
            "batch_points": devices_per_batch * ds.n_minutes}


def wait_idle(pid: int, label: str, max_s: float = 240.0, idle_cpu: float = 0.05, quiet_s: float = 3.0) -> float:
    """Wait until process ``pid`` uses under ``idle_cpu`` of a core for ``quiet_s`` seconds (compactions done)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / tick  # utime + stime

    t0 = time.monotonic()
    quiet_since, last, last_t = None, cpu(), time.monotonic()
    while time.monotonic() - t0 < max_s:
        time.sleep(0.5)
        now_cpu, now_t = cpu(), time.monotonic()
        busy = (now_cpu - last) / (now_t - last_t)
        last, last_t = now_cpu, now_t
        if busy < idle_cpu:
            quiet_since = quiet_since or now_t
            if now_t - quiet_since >= quiet_s:
                break
        else:
            quiet_since = None
    waited = time.monotonic() - t0
    log(f"  {label} idle after {waited:.0f} s")
    return waited


# ------------------------------------------------------------------------------------------ the API server


def serve(spec: dict) -> None:
    """Child process: the real app (create_app) under uvicorn, over the store named in ``spec``."""
    import uvicorn

    from analytics.incidents import IncidentStore
    from api.keys import KeyStore
    from api.main import create_app
    from api.settings import ApiSettings
    from fansipan.config import Settings

    registry = load_registry(spec["registry"])
    if spec["store"] == "sqlite":
        from storage.sqlite import SQLiteStore

        store = SQLiteStore(spec["path"], registry)
    else:
        from storage.influx_v1 import InfluxV1Store

        store = InfluxV1Store(spec["url"], spec["database"], registry)
    settings = Settings(incidents_path=spec["incidents"], profiles_dir=spec["registry"])
    app = create_app(settings, registry, store, IncidentStore(spec["incidents"]), keys=KeyStore(spec["incidents"]),
                     api_settings=ApiSettings(port=spec["port"]))
    # as api.main.serve() runs it, without the per-request access log line
    uvicorn.run(app, host="127.0.0.1", port=spec["port"], log_level="warning", access_log=False, proxy_headers=False)


class ApiProcess:
    def __init__(self, spec: dict, logdir: Path):
        self.spec = spec
        self.log_path = logdir / f"api-{spec['store']}.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{spec['port']}"

    def __enter__(self) -> ApiProcess:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api_speed", "--serve", json.dumps(self.spec)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.spec["port"]), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the API did not start in 60 s: {self.log_path.read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
    if argv[:1] == ["--serve"]:  # the child process of ApiProcess
        serve(json.loads(argv[1]))
        return
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
