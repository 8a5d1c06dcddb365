"""The embedded store's write alone, per message: what the collector's sender thread spends on SQLite.

    python -m benchmarks.store_write [--messages 40000] [--batch 5000]

The simulator's one-reading JSON messages, restamped as live, validated in
batches of the collector's default size (not timed), then written to a fresh
SQLite file the way the collector writes them: ``encode_columns`` (the rows)
and ``write_columns`` (one transaction, fsynced), each timed apart.  Prints
microseconds a message and the rows a message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.ingest import REGISTRY, backlog, restamp
from ingest.bulk import BulkValidator
from ingest.clock import ClockTracker
from ingest.validate import Validator
from storage.sqlite import SQLiteStore


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=5_000)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    msgs, _readings = backlog(args.messages, 1, "json")
    now = time.time_ns()
    arrived = [(t, payload, now) for t, payload in restamp(msgs, "json")]
    bulk, clock = BulkValidator(Validator(REGISTRY)), ClockTracker(REGISTRY)
    batches = [bulk.messages(arrived[i:i + args.batch], clock=clock) for i in range(0, len(arrived), args.batch)]
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "bench.sqlite", REGISTRY)
        t_rows = t_write = 0.0
        rows = 0
        for batch, rejected in batches:
            t0 = time.perf_counter()
            batch.encoded = store.encode_columns(batch, rejected)
            t1 = time.perf_counter()
            store.write_columns(batch, rejected)
            t_rows, t_write = t_rows + t1 - t0, t_write + time.perf_counter() - t1
            rows += sum(map(len, batch.encoded.readings.values()))
        store.close()
    n = len(arrived)
    print(f"Command: `{' '.join(['python -m benchmarks.store_write', *argv])}`")
    print(f"{n:,} one-reading messages in batches of {args.batch:,}: rows {t_rows / n * 1e6:.2f} us a message, "
          f"insert + commit {t_write / n * 1e6:.2f} us a message, {rows / n:.2f} rows a message")


if __name__ == "__main__":
    main()
