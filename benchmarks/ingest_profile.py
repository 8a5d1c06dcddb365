"""Where the collector's CPU goes, per reading, without MQTT or a store: the profile behind BENCHMARKS.md.

    python -m benchmarks.ingest_profile [--messages 40000] [--batched-messages 2000] [--top 5]

For each scenario (one JSON reading a message; 100 JSON readings; 100
line-protocol readings) and each path (``per-reading``: Validator.message +
ClockTracker.apply + Encoder, as the collector did before issue 6; ``bulk``:
BulkValidator.messages with the clock + BulkLines), the same simulator
messages, restamped as live, are validated and encoded in batches of the
collector's default size, under cProfile.  Prints readings/s of each stage and
the top functions by own time (cProfile's overhead slows both paths; the
ratio between them is the figure to read, and benchmarks.ingest gives the
end-to-end one).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from benchmarks.ingest import REGISTRY, backlog, restamp
from ingest.bulk import BulkValidator
from ingest.clock import ClockTracker
from ingest.validate import Validator
from storage.bulk_encode import BulkLines
from storage.common import float_fields
from storage.line_protocol import Encoder

BATCH = 5000  # messages: fansipan.config.Settings.batch_size


def _per_reading(msgs):
    v, clock, enc = Validator(REGISTRY), ClockTracker(REGISTRY), Encoder(float_fields(REGISTRY))
    t_val = t_enc = 0.0
    for i in range(0, len(msgs), BATCH):
        t0 = time.perf_counter()
        points, rejected = [], []
        for topic, payload, arrived in msgs[i:i + BATCH]:
            p, r = v.message(topic, payload, arrived)
            p, r = clock.apply(p, r, topic, payload)
            points += p
            rejected += r
        t1 = time.perf_counter()
        enc.point_lines(points) + enc.rejected_lines(rejected)
        t_val, t_enc = t_val + t1 - t0, t_enc + time.perf_counter() - t1
    return t_val, t_enc


def _bulk(msgs):
    bv, clock, lines = BulkValidator(Validator(REGISTRY)), ClockTracker(REGISTRY), BulkLines(Encoder(float_fields(REGISTRY)))
    t_val = t_enc = 0.0
    for i in range(0, len(msgs), BATCH):
        t0 = time.perf_counter()
        batch, rejected = bv.messages(msgs[i:i + BATCH], clock=clock)
        t1 = time.perf_counter()
        lines.lines(batch, rejected)
        t_val, t_enc = t_val + t1 - t0, t_enc + time.perf_counter() - t1
    return t_val, t_enc


def _top(prof: cProfile.Profile, n: int) -> str:
    st = pstats.Stats(prof)
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:n]  # (file, line, name) -> (cc, nc, tottime, cumtime, ...)
    total = sum(v[2] for v in st.stats.values()) or 1
    out = []
    for (file, line, name), (_cc, nc, tt, _ct, _callers) in rows:
        where = name if file == "~" else f"{file.rsplit('/', 2)[-2]}/{file.rsplit('/', 1)[-1]}:{line} {name}"
        out.append(f"{where} ({tt / total:.0%}, {nc:,} calls)")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=40_000)
    p.add_argument("--batched-messages", type=int, default=2_000)
    p.add_argument("--top", type=int, default=5)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    print(f"Command: `python -m benchmarks.ingest_profile {' '.join(argv)}`".replace(" `", " `").rstrip() + "\n")
    print("| scenario | path | validate readings/s | encode readings/s | both | top costs (own time, cProfile) |")
    print("|---|---|---|---|---|---|")
    for label, n, per, fmt in [("1 reading/message, JSON", args.messages, 1, "json"),
                               ("100 readings/message, JSON", args.batched_messages, 100, "json"),
                               ("100 readings/message, line protocol", args.batched_messages, 100, "line_protocol")]:
        msgs, readings = backlog(n, per, fmt)
        now = time.time_ns()
        live = [(t, pl, now) for t, pl in restamp(msgs, fmt)]
        for name, fn in (("per-reading", _per_reading), ("bulk", _bulk)):
            fn(live[:BATCH])  # warm up: caches, imports
            prof = cProfile.Profile()
            prof.enable()
            t_val, t_enc = fn(live)
            prof.disable()
            print(f"| {label} | {name} | {readings / t_val:,.0f} | {readings / t_enc:,.0f} | "
                  f"{readings / (t_val + t_enc):,.0f} | {_top(prof, args.top)} |", flush=True)


if __name__ == "__main__":
    main()
