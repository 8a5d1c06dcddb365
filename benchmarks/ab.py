"""The collector's validate and encode speed, this checkout against a git revision, interleaved in one run.

    python -m benchmarks.ab REV [--reps 7] [--messages 20000] [--batched-messages 2000]

Before/after figures for a change to the bulk path (ingest/bulk*.py,
storage/bulk_encode.py, the clock, the profiles).  The simulator's messages of
the three ingest scenarios (benchmarks.ingest: one JSON reading a message; 100
JSON readings; 100 line-protocol readings), restamped as live, are written
once to a file; then each version validates them (``BulkValidator.messages``
with a ``ClockTracker``, as the collector does) and encodes them as line
protocol (``BulkLines``), in a process of its own, ``--reps`` times,
alternating versions, so both see the same machine load.  REV is checked out
in a temporary git worktree (removed at the end).  Prints the median
readings/s of each stage and version and their ratio; no MQTT, no store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

# Run in each checkout; only APIs both versions have. argv: messages file, batch size.
CHILD = """
import sys, time, orjson
from device_profiles import load_registry
from ingest.bulk import BulkValidator
from ingest.clock import ClockTracker
from ingest.validate import Validator
from storage.bulk_encode import BulkLines
from storage.common import float_fields
from storage.line_protocol import Encoder
registry = load_registry()
out = {}
for name, msgs in orjson.loads(open(sys.argv[1], "rb").read()).items():
    msgs = [(t, p.encode(), a) for t, p, a in msgs]
    bulk, clock = BulkValidator(Validator(registry)), ClockTracker(registry)
    enc = BulkLines(Encoder(float_fields(registry)))
    n = t_val = t_enc = 0.0
    for i in range(0, len(msgs), int(sys.argv[2])):
        part = msgs[i:i + int(sys.argv[2])]
        t0 = time.perf_counter()
        batch, rejected = bulk.messages(part, clock=clock)
        t1 = time.perf_counter()
        n += len(enc.lines(batch, rejected)) - len(rejected)
        t_enc += time.perf_counter() - t1
        t_val += t1 - t0
    out[name] = [n / t_val, n / t_enc, n / (t_val + t_enc)]
print(orjson.dumps(out).decode())
"""


def _messages(args) -> dict[str, list]:
    from benchmarks.ingest import backlog, restamp

    now = time.time_ns()
    out = {}
    for name, n, per, fmt in (("1 reading/message, JSON", args.messages, 1, "json"),
                              ("100 readings/message, JSON", args.batched_messages, 100, "json"),
                              ("100 readings/message, line protocol", args.batched_messages, 100, "line_protocol")):
        msgs, _ = backlog(n, per, fmt)
        out[name] = [(t, p.decode(), now) for t, p in restamp(msgs, fmt)]
    return out


def _run(tree: Path, data: Path, batch: int) -> dict:
    got = subprocess.run([sys.executable, "-c", CHILD, str(data), str(batch)], cwd=tree, capture_output=True,
                         text=True, check=False)
    if got.returncode:
        raise SystemExit(f"the run in {tree} failed:\n{got.stderr[-2000:]}")
    return json.loads(got.stdout)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rev", help="the git revision to compare with (e.g. HEAD~3, a commit id)")
    p.add_argument("--reps", type=int, default=7, help="runs of each version, alternating")
    p.add_argument("--messages", type=int, default=20_000, help="one-reading messages")
    p.add_argument("--batched-messages", type=int, default=2_000, help="100-reading messages of each format")
    p.add_argument("--batch", type=int, default=5_000, help="messages a batch (the collector's batch_size)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True,
                         check=False).stdout.strip()
    if not rev:
        raise SystemExit(f"{args.rev!r} is not a revision of {ROOT}")
    with tempfile.TemporaryDirectory(prefix="fansipan-ab-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), rev], cwd=ROOT, check=True)
        try:
            data = Path(tmp) / "messages.json"
            data.write_bytes(orjson.dumps(_messages(args)))
            runs: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.reps):
                runs["old"].append(_run(old, data, args.batch))
                runs["new"].append(_run(ROOT, data, args.batch))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    print(f"Command: `python -m benchmarks.ab {' '.join(argv)}` (this checkout against {rev}; {args.reps} runs "
          "each, alternating; medians, readings/s)\n")
    print("| scenario | stage | " + rev + " | this checkout | ratio |")
    print("|---|---|---|---|---|")
    for scenario in runs["new"][0]:
        for k, stage in enumerate(("validate", "encode", "both")):
            o = statistics.median(r[scenario][k] for r in runs["old"])
            n = statistics.median(r[scenario][k] for r in runs["new"])
            print(f"| {scenario} | {stage} | {o:,.0f} | {n:,.0f} | {n / o:.2f} |")


if __name__ == "__main__":
    main()
