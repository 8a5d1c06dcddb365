"""Gateway payloads: one message carrying readings for many devices.

A commune gateway (LoRaWAN, Zigbee, RS-485 concentrator) publishes on its own
topic, for the sensors it connects. Accepted shapes (docs/formats.md)::

    {"gateway": "yty-gw-1", "ts": 1764230400,
     "readings": [{"device": "yty-ws-1", "ts": 1764230390, "air_temp_c": 18.5}, ...]}

    {"gateway": "yty-gw-1", "ts": 1764230400,
     "devices": {"yty-ws-1": {"air_temp_c": 18.5}, "yty-wl-2": [{"ts": ..., "level_m": 1.2}, ...]}}

``gateway`` is optional; when present it must be the topic's device. A
reading without ``ts`` takes the message's ``ts``, else the arrival time. A
reading for the gateway itself is checked against the gateway's profile.
Every other device must be in the registry *behind* the gateway (the gateway
is on its uplink chain) and each reading is checked against that device's own
profile: a gateway cannot speak for devices elsewhere, and one bad device
never costs the others.
"""

from __future__ import annotations

import orjson

from device_profiles import Profile
from storage.base import Point, Rejected

from .decoders import DecodeError, RawReading, register

_META = ("device", "ts")


def _reading(obj, device, default_ts) -> RawReading | DecodeError:
    if not isinstance(obj, dict):
        return DecodeError(f"expected a JSON object for a reading, got {type(obj).__name__}")
    if device is None:
        device = obj.get("device")
        if not isinstance(device, str) or not device:
            return DecodeError("a reading in 'readings' needs a 'device' (a string)")
    elif "device" in obj and obj["device"] != device:
        return DecodeError(f"reading under 'devices.{device[:64]}' names device {str(obj['device'])[:64]!r}")
    fields = {k: v for k, v in obj.items() if k not in _META}
    return RawReading(obj.get("ts", default_ts), fields, device)


def parse_gateway(payload: bytes) -> tuple[str | None, list]:
    """(the ``gateway`` id the message gives or None, readings each naming its device or DecodeError)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"expected a JSON object with 'readings' or 'devices', got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"gateway", "ts", "readings", "devices"})
    if unknown:
        raise DecodeError(f"unknown key {unknown[0][:40]!r} (a gateway message holds gateway, ts, readings, devices)")
    gw = doc.get("gateway")
    if gw is not None and not isinstance(gw, str):
        raise DecodeError("'gateway' must be a string")
    ts = doc.get("ts")
    out: list = []
    readings = doc.get("readings", [])
    devices = doc.get("devices", {})
    if not isinstance(readings, list):
        raise DecodeError("'readings' must be a list of objects")
    if not isinstance(devices, dict):
        raise DecodeError("'devices' must be an object: device id -> reading or list of readings")
    out.extend(_reading(r, None, ts) for r in readings)
    for dev, rs in devices.items():
        for r in rs if isinstance(rs, list) else [rs]:
            out.append(_reading(r, dev, ts))
    if not out:
        raise DecodeError("no reading in the gateway message ('readings' and 'devices' are empty or missing)")
    return gw, out


@register("gateway")
def decode_gateway(payload: bytes) -> list:
    """Readings, each naming its device (the registry's contract; the validator uses GatewayHandler)."""
    return parse_gateway(payload)[1]


def behind(registry, device_id: str, gateway_id: str) -> bool:
    """True if ``gateway_id`` is on the uplink chain of ``device_id``."""
    seen = set()
    cur = registry.devices[device_id].uplink
    while cur is not None and cur not in seen:
        if cur == gateway_id:
            return True
        seen.add(cur)
        cur = registry.devices[cur].uplink
    return False


class GatewayHandler:
    """Validates each device's readings in a gateway message against that device's own profile."""

    def __init__(self, registry, check):
        self.registry = registry
        self.check = check

    def __call__(self, topic, payload, arrived_ns, profile: Profile, gateway_id: str, reject) -> tuple[list[Point], list[Rejected]]:
        try:
            gw, items = parse_gateway(payload)
        except DecodeError as exc:
            return [], [reject("decode_error", f"gateway: {exc}", profile.kind, gateway_id)]
        if gw is not None and gw != gateway_id:
            return [], [reject("unknown_device", f"message says gateway {gw[:64]!r} but the topic names {gateway_id!r}",
                               profile.kind, gateway_id)]
        points, rejected = [], []
        total = len(items)
        for n, item in enumerate(items, 1):
            where = f"reading {n} of {total}"
            if isinstance(item, DecodeError):
                rejected.append(reject("decode_error", f"{where}: gateway: {item}", profile.kind, gateway_id))
                continue
            device_id = item.device
            dev = self.registry.devices.get(device_id)
            if dev is None:
                rejected.append(reject("unknown_device", f"{where}: device {device_id[:64]!r} is not in the site registry",
                                       profile.kind, device_id))
                continue
            if device_id != gateway_id and not behind(self.registry, device_id, gateway_id):
                rejected.append(reject("unknown_device", f"{where}: device {device_id!r} is not behind gateway {gateway_id!r} "
                                       f"(its uplink is {dev.uplink!r}): a gateway speaks only for devices it connects",
                                       dev.kind, device_id))
                continue
            dev_profile = self.registry.kinds[dev.kind]
            got = self.check(item._replace(device=None), dev_profile, device_id, arrived_ns)
            if isinstance(got, Point):
                points.append(got)
            else:
                rejected.append(reject(got[0], f"{where}: {got[1]}", dev.kind, device_id))
        return points, rejected
