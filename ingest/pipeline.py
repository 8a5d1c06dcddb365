"""A conveyor of one: batch k+1 is validated while batch k is being written.

The collector's writer thread validates a batch and hands it on; a sender
thread writes it durably, acknowledges it and counts it.  The hand-off holds
one batch, so at most two batches are between the MQTT pending list and the
store, and they are written in the order they were taken: "acknowledge only
after the durable write" holds batch by batch, as without the conveyor.  What
it buys: the store's work (InfluxDB parsing a /write body, SQLite's fsync) and
the network round trip overlap the decoding and validating of the next batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("fansipan.collector")

SLICE_BYTES = 1 << 20  # payload bytes a hand-off: fine-grained overlap, and memory bounded whatever the message size


def slices(msgs: list, max_bytes: int = SLICE_BYTES) -> list[list]:
    """``msgs`` (with ``.payload``) cut in runs of at most ``max_bytes`` of payload (at least one message each)."""
    out, cur, size = [], [], 0
    for m in msgs:
        n = len(m.payload)
        if cur and size + n > max_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(m)
        size += n
    if cur:
        out.append(cur)
    return out


class Conveyor:
    """Runs ``deliver(*item)`` on its own thread for every item ``put``, in order.

    ``give_up``: the exception by which ``deliver`` says it stopped for good
    (stopping while the store is down): the item and everything after it stay
    unacknowledged, and :meth:`put` answers False from then on.
    """

    def __init__(self, deliver: Callable[..., None], give_up: type[BaseException], name: str = "fansipan-sender"):
        self._deliver = deliver
        self._give_up = give_up
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: tuple) -> bool:
        """Hand on one item, waiting while the one before still waits; False if the sender has stopped."""
        while not self.stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def close(self, timeout: float | None = None) -> None:
        """Deliver what was handed on, then end the sender thread."""
        self.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self.stopped.set()
                return
            try:
                self._deliver(*item)
            except self._give_up:
                self.stopped.set()
                return
            except Exception:  # a bug here must not stop acknowledgements silently: say so, loudly, and stop
                log.exception("the collector's sender thread failed; batches stay unacknowledged until a restart")
                self.stopped.set()
                return
