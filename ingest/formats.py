"""Formats a stateless decoder cannot finish: wiring them into the validator.

* ``sparkplug_b`` in the ``spBv1.0/`` namespace keeps per-edge-node state
  (births, aliases, sequence): :class:`ingest.sparkplug.SparkplugHost`, reached
  by topic prefix before topic routing;
* ``senml`` checks units against the profile: :class:`ingest.senml.SenmlHandler`;
* ``gateway`` speaks for many devices, each with its own profile:
  :class:`ingest.gateway.GatewayHandler`.

Each handler reuses the validator's own reading check (fields, types, ranges,
times), so a reading is judged the same whatever format brought it.
See docs/formats.md.
"""

from __future__ import annotations

import time

from .gateway import GatewayHandler
from .senml import SenmlHandler
from .sparkplug import SparkplugHost, state_payload
from .sparkplug_codec import NAMESPACE

SPARKPLUG_PREFIX = NAMESPACE + "/"


def special_formats(validator) -> tuple[SparkplugHost | None, dict]:
    """(the Sparkplug host, or None when no profile uses it; format name -> handler for routed topics)."""
    registry = validator.registry
    check = validator._check  # noqa: SLF001 - the one reading check, shared on purpose
    formats = {p.format for p in registry.kinds.values()}
    host = None
    if any(p.format == "sparkplug_b" and p.sparkplug is not None for p in registry.kinds.values()):
        host = SparkplugHost(registry, check)
    handlers = {}
    if "senml" in formats:
        handlers["senml"] = SenmlHandler(check)
    if "gateway" in formats:
        handlers["gateway"] = GatewayHandler(registry, check)
    return host, handlers


def sparkplug_groups(registry) -> list[str]:
    """The Sparkplug groups the profiles declare (the collector subscribes to spBv1.0/<group>/#)."""
    return sorted({p.sparkplug.group for p in registry.kinds.values() if p.format == "sparkplug_b" and p.sparkplug})


class SparkplugLink:
    """The collector's side of Sparkplug B: subscriptions, rebirth requests and the host's STATE.

    * subscribes to ``spBv1.0/<group>/#`` for every group the profiles declare,
      never through a shared subscription: one edge node's births and data must
      reach the same host, or its aliases and sequence look broken (several
      collectors each read the whole namespace; writes are idempotent);
    * publishes the host's rebirth requests (NCMD, QoS 0, as Sparkplug commands go);
    * announces ``spBv1.0/STATE/<host id>`` online (retained, QoS 1) on connect,
      with the offline message as the MQTT will (Sparkplug 3.0 host application).
    """

    def __init__(self, client, validator, host_id: str):
        self.client = client
        self.host = validator.sparkplug
        self.groups = sparkplug_groups(validator.registry) if self.host is not None else []
        self.state_topic = f"{NAMESPACE}/STATE/{host_id}"
        self._birth_ms = 0
        if self.host is not None:
            self.host.send = self._send
            self._birth_ms = int(time.time() * 1000)
            client.will_set(self.state_topic, state_payload(False, self._birth_ms), qos=1, retain=True)

    @property
    def subscriptions(self) -> list[str]:
        return [f"{NAMESPACE}/{g}/#" for g in self.groups]

    def online(self) -> None:
        if self.host is not None:
            self.client.publish(self.state_topic, state_payload(True, self._birth_ms), qos=1, retain=True)

    def _send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=0)
