"""Payload encodings beyond json and line protocol, for the simulator (docs/formats.md).

Each codec encodes one reading as a complete payload, and joins payloads of one
device into one message, exactly as the collector decodes them:

* ``senml``: a SenML pack, ``bn`` = ``<device>/``, ``bt`` = the time, one record
  per field with the profile's unit (bools as ``vb``, strings as ``vs``);
* ``gateway``: the gateway's own readings as ``{"readings": [{"device": ..., "ts": ..., ...}]}``;
* ``sparkplug_b``: a Sparkplug B payload with named metrics (one timestamp per
  reading), on the kind's own topic. Several readings of a device join by
  concatenation, which protobuf reads as one payload with all the metrics.
  The Sparkplug namespace with births, aliases and sequence numbers is
  simulated by :mod:`simulator.sparkplug`.
"""

from __future__ import annotations

import orjson

from ingest.sparkplug_codec import encode_payload


class Codec:
    def __init__(self, profile):
        self.profile = profile
        self.fields = profile.fields

    def encode(self, ids: list[str], ts: list[float], cols: list[list]) -> list[bytes]:
        names = list(self.fields)
        return [self.one(d, t, dict(zip(names, row))) for d, t, *row in zip(ids, ts, *cols)]


class SenmlCodec(Codec):
    def one(self, device: str, ts: float, fields: dict) -> bytes:
        recs = []
        for n, v in fields.items():
            spec = self.fields.get(n)
            rec = {"n": n}
            if spec is not None:
                rec["u"] = spec.unit
            rec["vb" if isinstance(v, bool) else "vs" if isinstance(v, str) else "v"] = v
            recs.append(rec)
        recs[0] = {"bn": f"{device}/", "bt": round(ts, 3), **recs[0]}
        return orjson.dumps(recs)

    def join(self, frags: list[bytes]) -> bytes:
        return frags[0] if len(frags) == 1 else b"[" + b",".join(f[1:-1] for f in frags) + b"]"


_GW_HEAD = b'{"readings":['


class GatewayCodec(Codec):
    def one(self, device: str, ts: float, fields: dict) -> bytes:
        return _GW_HEAD + orjson.dumps({"device": device, "ts": round(ts, 3), **fields}) + b"]}"

    def join(self, frags: list[bytes]) -> bytes:
        return _GW_HEAD + b",".join(f[len(_GW_HEAD):-2] for f in frags) + b"]}"


class SparkplugCodec(Codec):
    def one(self, device: str, ts: float, fields: dict) -> bytes:
        ms = int(round(ts * 1000))
        return encode_payload([{"name": n, "value": v, "timestamp": ms} for n, v in fields.items()])

    def join(self, frags: list[bytes]) -> bytes:
        return b"".join(frags)


CODECS = {"senml": SenmlCodec, "gateway": GatewayCodec, "sparkplug_b": SparkplugCodec}


def codec_for(profile) -> Codec | None:
    """The codec of the profile's format, or None for json and line_protocol (simulator/kinds.py)."""
    cls = CODECS.get(profile.format)
    return cls(profile) if cls else None


def parse_readings(payload: bytes) -> list[dict] | None:
    """Readings of a payload this module encoded, as dicts with ``ts`` (epoch s) and the fields
    typed as sent; None if the payload is none of these formats (for tests reading simulator output)."""
    if payload.startswith(b'[{"bn"'):
        rows: list[dict] = []
        for rec in orjson.loads(payload):
            if "bn" in rec:
                rows.append({"ts": float(rec["bt"])})
            rows[-1][rec["n"]] = next(rec[k] for k in ("v", "vb", "vs") if k in rec)
        return rows
    if payload.startswith(b'{"readings"'):
        return [{k: v for k, v in r.items() if k != "device"} for r in orjson.loads(payload)["readings"]]
    if payload[:1] == b"\x12":  # protobuf field 2 (metrics): a Sparkplug B payload
        from ingest.sparkplug_codec import decode_payload, metric_value

        by_ts: dict[int, dict] = {}
        for m in decode_payload(payload).metrics:
            by_ts.setdefault(m.timestamp, {"ts": m.timestamp / 1000})[m.name] = metric_value(m)
        return list(by_ts.values())
    return None
