"""Acknowledging a written batch: every PUBACK of the batch in one socket write.

paho-mqtt's ``Client.ack(mid, qos)`` queues one 4-byte PUBACK a message, wakes
its network thread through a socket pair (a system call) and sends it with a
system call of its own: ~15 us a message, on the same GIL as everything else,
a fifth of what a bare paho subscriber spends a message (BENCHMARKS.md).  The
collector acknowledges a whole batch at once, after its durable write, so the
PUBACKs of the batch are concatenated and queued as one outgoing packet: one
wake-up and one write for thousands of acknowledgements, the same bytes on the
wire in the same order.

This uses paho's packet queue (``Client._packet_queue``, unchanged from paho
1.x to 2.2), which is not public API: if a paho release drops it,
:func:`batched` says so at start-up and the collector falls back to
``Client.ack`` one message at a time (correct, only slower);
tests/test_collector_batches.py fails on such a release so it does not go
unnoticed.
"""

from __future__ import annotations

import inspect
import logging
import struct
from collections.abc import Iterable

import paho.mqtt.client as mqtt

log = logging.getLogger("fansipan.collector")

_PUBACK = struct.Struct("!BBH")  # fixed header (PUBACK, remaining length 2) and the packet id: reason 0, no properties


def batched(client: mqtt.Client) -> bool:
    """Whether this paho has the packet queue :func:`acknowledge` writes to (checked once, at start-up)."""
    queue = getattr(client, "_packet_queue", None)
    try:
        ok = callable(queue) and list(inspect.signature(queue).parameters)[:4] == ["command", "packet", "mid", "qos"]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        log.warning("paho-mqtt %s has no Client._packet_queue(command, packet, mid, qos): acknowledging one message "
                    "at a time (slower; see ingest/acks.py)", getattr(mqtt, "__version__", "?"))
    return ok


def acknowledge(client: mqtt.Client, qos1: Iterable[int], qos2: Iterable[int] = (), fast: bool = True) -> None:
    """PUBACK every id of ``qos1`` (one write when ``fast``), PUBCOMP every id of ``qos2`` (paho's own way)."""
    if fast:
        packet = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in qos1])
        if packet:
            client._packet_queue(mqtt.PUBACK, packet, 0, 0)
    else:
        for mid in qos1:
            client.ack(mid, 1)
    for mid in qos2:
        client.ack(mid, 2)
