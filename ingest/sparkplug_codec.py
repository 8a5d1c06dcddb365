"""Sparkplug B on the wire: topic names, payload decoding and encoding (no session state).

The namespace (Sparkplug 3.0)::

    spBv1.0/<group>/<NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|DCMD>/<edge node>[/<device>]
    spBv1.0/STATE/<host id>

Payloads are protobuf ``Payload`` messages (ingest/sparkplug_b.proto, the Sparkplug 3.0
wire format; ingest/sparkplug_b_pb2.py is generated from it). What a birth,
data or death *means* over time lives in :mod:`ingest.sparkplug`; this module
only turns bytes into metrics and back.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import DecodeError as _PbDecodeError

from .decoders import DecodeError, RawReading, register
from .sparkplug_b_pb2 import Payload

NAMESPACE = "spBv1.0"
NODE_TYPES = ("NBIRTH", "NDATA", "NDEATH", "NCMD")
DEVICE_TYPES = ("DBIRTH", "DDATA", "DDEATH", "DCMD")
REBIRTH_METRIC = "Node Control/Rebirth"

# Datatype numbers of the Sparkplug B specification (Metric.datatype).
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = 1, 2, 3, 4, 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
_SIGNED_BITS = {INT8: 32, INT16: 32, INT32: 32, INT64: 64}  # two's complement in a uint32/uint64 field
_VALUE_FIELD = {
    INT8: "int_value", INT16: "int_value", INT32: "int_value", UINT8: "int_value", UINT16: "int_value",
    UINT32: "int_value", INT64: "long_value", UINT64: "long_value", DATETIME: "long_value",
    FLOAT: "float_value", DOUBLE: "double_value", BOOLEAN: "boolean_value", STRING: "string_value",
    TEXT: "string_value",
}


_SCALARS = frozenset(("int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"))


class Topic(NamedTuple):
    group: str
    type: str  # NBIRTH ... DCMD, or STATE
    node: str  # edge node id (the host id for STATE)
    device: str | None = None


def parse_topic(topic: str) -> Topic:
    """Split a Sparkplug topic; raise ValueError saying what is wrong with it."""
    levels = topic.split("/")
    if levels[0] != NAMESPACE:
        raise ValueError(f"not in the Sparkplug B namespace {NAMESPACE}/")
    if len(levels) == 3 and levels[1] == "STATE":
        return Topic("", "STATE", levels[2])
    if len(levels) < 4 or len(levels) > 5 or not all(levels):
        raise ValueError(f"expected {NAMESPACE}/<group>/<message type>/<edge node>[/<device>], got {len(levels)} levels")
    _, group, mtype, node, *dev = levels
    if mtype in NODE_TYPES and not dev:
        return Topic(group, mtype, node)
    if mtype in DEVICE_TYPES and dev:
        return Topic(group, mtype, node, dev[0])
    if mtype in NODE_TYPES + DEVICE_TYPES:
        where = "has no device level" if mtype in DEVICE_TYPES else "must not have a device level"
        raise ValueError(f"a {mtype} topic {where}")
    raise ValueError(f"message type {mtype[:20]!r} is not one of {', '.join(NODE_TYPES + DEVICE_TYPES)}")


def decode_payload(payload: bytes) -> Payload:
    """The protobuf Payload; raise DecodeError when the bytes are not one."""
    msg = Payload()
    try:
        msg.ParseFromString(payload)
    except (_PbDecodeError, RuntimeWarning) as exc:
        raise DecodeError(f"not a Sparkplug B protobuf payload: {exc}") from None
    return msg


def metric_value(m) -> object:
    """The Python value of a metric: int, float, bool or str; None when ``is_null``.

    Raises DecodeError for a metric without a value or of a type Fansipan does
    not store (DataSet, Template, Bytes, File...).
    """
    which = m.WhichOneof("value")
    dtype = m.datatype  # 0 (Unknown) when absent: then the value field alone says the type
    if which in _SCALARS and (dtype == 0 or _VALUE_FIELD.get(dtype) == which):
        if m.is_null:
            return None
        value = getattr(m, which)
        bits = _SIGNED_BITS.get(dtype)
        if bits and value >= 1 << (bits - 1):
            value -= 1 << bits
        return value
    if m.is_null:
        return None
    if which is None:
        raise DecodeError(f"metric {_label(m)} carries no value and is not marked is_null")
    expected = _VALUE_FIELD.get(dtype)
    if expected is None:
        raise DecodeError(f"metric {_label(m)}: datatype {dtype} (DataSet, Template, Bytes...) is not stored by Fansipan")
    if which not in _SCALARS:
        raise DecodeError(f"metric {_label(m)}: a {which} is not stored by Fansipan")
    raise DecodeError(f"metric {_label(m)}: datatype {dtype} wants {expected}, the payload has {which}")


def _label(m) -> str:
    return repr(m.name[:64]) if m.name else f"alias {m.alias}"


def encode_payload(metrics: list[dict], seq: int | None = None, timestamp_ms: int | None = None) -> bytes:
    """Build a payload (for the simulator, the tests, the benchmark and rebirth commands).

    Each metric is a dict with ``value`` and any of ``name``, ``alias``,
    ``datatype`` (default: from the value), ``timestamp`` (ms),
    ``is_historical``, ``is_null``.
    """
    msg = Payload()
    if timestamp_ms is not None:
        msg.timestamp = timestamp_ms
    if seq is not None:
        msg.seq = seq
    for spec in metrics:
        m = msg.metrics.add()
        if "name" in spec:
            m.name = spec["name"]
        if "alias" in spec:
            m.alias = spec["alias"]
        if "timestamp" in spec:
            m.timestamp = spec["timestamp"]
        if spec.get("is_historical"):
            m.is_historical = True
        value = spec.get("value")
        dtype = spec.get("datatype") or _datatype_of(value)
        m.datatype = dtype
        if spec.get("is_null") or value is None:
            m.is_null = True
            continue
        bits = _SIGNED_BITS.get(dtype)
        if bits and value < 0:
            value += 1 << bits
        setattr(m, _VALUE_FIELD[dtype], value)
    return msg.SerializeToString()


def _datatype_of(value) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    return DOUBLE  # None: a null metric still needs a type


@register("sparkplug_b")
def decode_sparkplug_b(payload: bytes) -> list:
    """A Sparkplug B payload whose metrics carry their names: one reading per timestamp.

    For Sparkplug B on a kind's own topic, outside the Sparkplug namespace, and
    the benchmark's stateless baseline. Times are the metric's timestamp, else
    the payload's, in ms. Aliases cannot be resolved without the births: in the
    ``spBv1.0/`` namespace the :class:`ingest.sparkplug.SparkplugHost` decodes.
    """
    msg = decode_payload(payload)
    if not msg.metrics:
        raise DecodeError("the payload holds no metric")
    out: list = []
    by_ts: dict = {}
    default_ts = msg.timestamp * 1_000_000 if msg.HasField("timestamp") else None
    for m in msg.metrics:
        if not m.name:
            out.append(DecodeError(f"metric alias {m.alias} has no name: aliases are resolved only in the {NAMESPACE}/ namespace"))
            continue
        if not isinstance(m.name, str):  # proto2 does not check UTF-8: upb hands such a string over as bytes
            out.append(DecodeError(f"metric name {m.name[:64]!r} is not UTF-8 text"))
            continue
        try:
            value = metric_value(m)
        except DecodeError as exc:
            out.append(exc)
            continue
        if value is None:
            continue
        ts = m.timestamp * 1_000_000 if m.HasField("timestamp") else default_ts
        reading = by_ts.get(ts)
        if reading is None:
            reading = by_ts[ts] = RawReading(ts, {}, None, "ns")
            out.append(reading)
        reading.fields[m.name] = value
    return out
