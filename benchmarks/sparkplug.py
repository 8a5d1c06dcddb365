"""Sparkplug B decode rate against the JSON decoder, measured in the same run.

    python -m benchmarks.sparkplug [--seconds 2] [--metrics 4 40 400]

For each N (metrics per message), the same readings -- N/4 readings of 4
fields, each reading at its own time -- are encoded two ways:

* Sparkplug B: a DDATA of N metrics by alias (with seq), for a pump_station
  behind its edge node, after NBIRTH/DBIRTH;
* JSON: a list of N/4 objects ``{"ts": ..., 4 fields}`` for a dc_ups (the JSON
  decoder of the collector, the baseline).

Two levels are timed: the decoder alone (Sparkplug: protobuf parse plus every
metric's value; JSON: ingest.decoders.decode_json) and the whole validator
(``Validator.message``: decode, resolve aliases and sequence, check against the
profile, build points), which is what the collector's writer thread does per
message. Single thread; the best of three timed rounds of ``--seconds`` each, JSON and
Sparkplug rounds alternating so that load from elsewhere hits both alike.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from datetime import datetime, timezone

import orjson

from device_profiles import load_registry
from ingest.decoders import decode_json
from ingest.sparkplug_codec import decode_payload, encode_payload, metric_value
from ingest.validate import Validator
from simulator.sparkplug import EdgeNode

REGISTRY = load_registry()
PUMP_FIELDS = ("Pump/Flow", "Outlet/Pressure", "Tank/Level", "Pump/Running")
UPS_FIELDS = ("load_pct", "battery_charge_pct", "input_voltage_v", "on_battery")


def _rates(contenders: list, seconds: float, rounds: int = 3) -> list[float]:
    """Items per second of each (fn, items), best of ``rounds``; rounds alternate between the
    contenders, so a noisy neighbour on a shared machine slows them alike. Each cycles through its
    items in order, carried across rounds (a Sparkplug session's seq must stay continuous)."""
    best = [0.0] * len(contenders)
    pos = [0] * len(contenders)
    for _ in range(rounds):
        for c, (fn, items) in enumerate(contenders):
            n_items, i, done = len(items), pos[c], 0
            start = time.perf_counter()
            deadline = start + seconds
            while True:
                for _ in range(64):
                    fn(items[i])
                    i = i + 1 if i + 1 < n_items else 0
                done += 64
                now = time.perf_counter()
                if now >= deadline:
                    break
            pos[c] = i
            best[c] = max(best[c], done / (now - start))
    return best


def sparkplug_messages(n_metrics: int, t0_ms: int) -> tuple[Validator, list[tuple[str, bytes]]]:
    node = EdgeNode("laocai", "cocleu-edge-gw-1", {"cocleu-pump-1": {f: (True if f == "Pump/Running" else 1.0) for f in PUMP_FIELDS}})
    v = Validator(REGISTRY)
    for topic, payload in node.births(t0_ms):
        v.message(topic, payload, t0_ms * 1_000_000)
    msgs = []
    for m in range(512):  # two full turns of seq: the wrap 255 -> 0 is in the loop
        metrics = []
        for r in range(n_metrics // 4):
            ts = t0_ms - 3_600_000 + (m * 1000 + r) * 10
            metrics += [{"alias": node.alias[("cocleu-pump-1", f)], "value": (r % 2 == 0) if f == "Pump/Running" else 5.0 + (r % 64) / 16,
                         "timestamp": ts} for f in PUMP_FIELDS]
        payload = encode_payload(metrics, seq=node._next_seq(), timestamp_ms=t0_ms)
        msgs.append((node.topic("DDATA", "cocleu-pump-1"), payload))
    return v, msgs


def json_messages(n_metrics: int, t0_ms: int) -> list[tuple[str, bytes]]:
    msgs = []
    for m in range(512):
        rows = [{"ts": (t0_ms - 3_600_000 + (m * 1000 + r) * 10) / 1000, "load_pct": 30.0 + r / 8, "battery_charge_pct": 99.5,
                 "input_voltage_v": 401.25, "on_battery": False} for r in range(n_metrics // 4)]
        msgs.append(("laocai/dc_laocai/dc_ups/dc-ups-a", orjson.dumps(rows)))
    return msgs


def _decode_spb(payload: bytes) -> None:
    for m in decode_payload(payload).metrics:
        metric_value(m)


def measure(n_metrics: int, seconds: float) -> list[dict]:
    t0_ms = int(time.time() * 1000)
    arrived = t0_ms * 1_000_000
    v_spb, spb = sparkplug_messages(n_metrics, t0_ms)
    v_json = Validator(REGISTRY)
    js = json_messages(n_metrics, t0_ms)
    # sanity: both paths turn every message into N/4 points and nothing refused
    for v, (topic, payload) in ((v_spb, spb[0]), (v_json, js[0])):
        points, rejected = v.message(topic, payload, arrived)
        assert len(points) == n_metrics // 4 and not rejected, (topic, rejected[:1])
    v_spb, spb = sparkplug_messages(n_metrics, t0_ms)  # a fresh session: the sequence starts again at the births
    rows = []
    for level, spb_fn, json_fn, spb_items, json_items in (
        ("decoder", _decode_spb, decode_json, [p for _t, p in spb], [p for _t, p in js]),
        ("validator", lambda m: v_spb.message(m[0], m[1], arrived), lambda m: v_json.message(m[0], m[1], arrived), spb, js),
    ):
        json_rate, spb_rate = _rates([(json_fn, json_items), (spb_fn, spb_items)], seconds)
        for fmt, per_s, items in (("JSON (baseline)", json_rate, js), ("Sparkplug B", spb_rate, spb)):
            rows.append({"level": level, "format": fmt, "metrics": n_metrics, "bytes": sum(len(p) for _t, p in items) // len(items),
                         "msg_s": per_s, "values_s": per_s * n_metrics})
    assert v_spb.sparkplug.rebirths_requested == 0, "the benchmark's sequence broke: rebirths were requested"
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each timed round")
    ap.add_argument("--metrics", type=int, nargs="+", default=[4, 40, 400], help="metrics per message (multiples of 4)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    cmd = "python -m benchmarks.sparkplug" + (f" --seconds {args.seconds:g}" if args.seconds != 2.0 else "") + (
        f" --metrics {' '.join(map(str, args.metrics))}" if args.metrics != [4, 40, 400] else "")
    print(f"Command: `{cmd}`  ")
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; "
          f"date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; one thread, best of 3 alternating rounds of {args.seconds:g} s.\n")
    print("| level | format | metrics/message | bytes/message | messages/s | values/s | vs JSON (values/s) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.metrics:
        rows = measure(n, args.seconds)
        base = {r["level"]: r["values_s"] for r in rows if r["format"].startswith("JSON")}
        for r in rows:
            print(f"| {r['level']} | {r['format']} | {n} | {r['bytes']:,} | {r['msg_s']:,.0f} | {r['values_s']:,.0f} | "
                  f"{r['values_s'] / base[r['level']]:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
