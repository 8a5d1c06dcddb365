"""The world of benchmarks/api_speed.py: a synthetic registry, its one-minute data, and the API in a child process.

    python -m benchmarks.api_world --serve '<spec json>'   (run by ApiProcess, not by hand)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_profiles import load_registry
from storage.base import Point

ROOT = Path(__file__).resolve().parent.parent
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
            self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api_world", "--serve", json.dumps(self.spec)],
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




if __name__ == "__main__":
    if sys.argv[1:2] != ["--serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.api_world --serve '<spec json>' (started by benchmarks/api_speed.py)")
    serve(json.loads(sys.argv[2]))
