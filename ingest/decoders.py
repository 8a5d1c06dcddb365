"""Payload decoders, registered by the format name a profile gives.

A decoder turns one MQTT payload into readings; it knows nothing of profiles.
It returns a list whose items are either a :class:`RawReading` or a
:class:`DecodeError` for the part of the payload that could not be read, so one
bad line of a multi-line payload does not cost the good ones.  It raises
:class:`DecodeError` when nothing in the payload can be read at all.

Checking readings against the profile (fields, types, ranges, times) is the
validator's job, not the decoder's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import orjson


_INT = re.compile(r"-?[0-9]{1,19}")  # what an int64 can hold; str.isdigit() also accepts '²'


class DecodeError(ValueError):
    """The payload, or one reading in it, is not in the declared format."""


class RawReading(NamedTuple):
    ts: object  # None (use arrival time), int/float epoch, or an RFC 3339 string
    fields: dict  # field name -> value as decoded (not yet checked)
    device: str | None  # device id named inside the payload, if any
    ts_unit: str = "auto"  # "auto": seconds/ms/us/ns told by magnitude; "ns": always nanoseconds
    measurement: str | None = None  # line protocol: must be the device's kind
    extra_tags: tuple[str, ...] = ()  # line protocol: tag keys other than device (refused by the validator)


Decoder = Callable[[bytes], list]

DECODERS: dict[str, Decoder] = {}


def register(name: str):
    def deco(fn: Decoder) -> Decoder:
        DECODERS[name] = fn
        return fn

    return deco


def get_decoder(name: str) -> Decoder:
    try:
        return DECODERS[name]
    except KeyError:
        raise KeyError(f"unknown payload format {name!r} (known: {', '.join(sorted(DECODERS))})") from None


# --- JSON ---------------------------------------------------------------------------------------

_JSON_META = ("ts", "device")


def _json_reading(obj) -> RawReading | DecodeError:
    if not isinstance(obj, dict):
        return DecodeError(f"expected a JSON object for a reading, got {type(obj).__name__}")
    device = obj.get("device")
    if device is not None and not isinstance(device, str):
        return DecodeError("'device' must be a string")
    fields = {k: v for k, v in obj.items() if k not in _JSON_META}
    return RawReading(obj.get("ts"), fields, device)


@register("json")
def decode_json(payload: bytes) -> list:
    """``{"ts": ..., "field": value, ...}`` or a list of such objects.

    >>> decode_json(b'{"ts": 1700000000, "pm25": 12.5}')
    [RawReading(ts=1700000000, fields={'pm25': 12.5}, device=None)]
    """
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if isinstance(doc, list):
        if not doc:
            raise DecodeError("empty JSON list: no reading in the payload")
        return [_json_reading(item) for item in doc]
    if isinstance(doc, dict):
        return [_json_reading(doc)]
    raise DecodeError(f"expected a JSON object or a list of objects, got {type(doc).__name__}")


# --- InfluxDB line protocol ---------------------------------------------------------------------


def _split_unescaped(s: str, sep: str, limit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash and not inside double quotes."""
    if "\\" not in s and '"' not in s:  # the common case: nothing escaped, nothing quoted
        return s.split(sep, limit)
    out, cur, i, quoted = [], [], 0, False
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == sep and not quoted and (limit < 0 or len(out) < limit):
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if quoted:
        raise DecodeError("unterminated string value (a double quote is not closed)")
    out.append("".join(cur))
    return out


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return s.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ").replace('\\"', '"').replace("\\\\", "\\")


def _lp_value(raw: str):
    if not raw:
        raise DecodeError("empty field value")
    if raw[0] == '"':
        return _unescape(raw[1:-1])  # a string: kept so the validator can say "wrong type"
    if raw[-1] in "iu" and _INT.fullmatch(raw[:-1]):
        return int(raw[:-1])
    low = raw.lower()
    if low in ("t", "true"):
        return True
    if low in ("f", "false"):
        return False
    try:
        value = float(raw)
    except ValueError:
        raise DecodeError(f"field value {raw!r} is not a number, bool or string") from None
    return value


def _lp_line(line: str) -> RawReading:
    parts = _split_unescaped(line, " ")
    parts = [p for p in parts if p]
    if len(parts) not in (2, 3):
        raise DecodeError(f"expected 'measurement[,tags] fields [timestamp]', got {len(parts)} space-separated parts")
    head = _split_unescaped(parts[0], ",")
    tags = {}
    for t in head[1:]:
        kv = _split_unescaped(t, "=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise DecodeError(f"tag {t!r} is not key=value")
        tags[_unescape(kv[0])] = _unescape(kv[1])
    fields = {}
    for f in _split_unescaped(parts[1], ","):
        kv = _split_unescaped(f, "=", limit=1)
        if len(kv) != 2 or not kv[0]:
            raise DecodeError(f"field {f!r} is not key=value")
        fields[_unescape(kv[0])] = _lp_value(kv[1])
    ts = None
    if len(parts) == 3:
        if not _INT.fullmatch(parts[2]):
            raise DecodeError(f"timestamp {parts[2][:40]!r} is not an integer of nanoseconds (at most 19 digits)")
        ts = int(parts[2])
    measurement = _unescape(head[0])
    if not measurement:
        raise DecodeError("empty measurement name")
    # Tags become series identity; we take ours from the registry and refuse
    # anything else rather than silently dropping what the sender meant.
    extra = tuple(sorted(set(tags) - {"device"}))
    return RawReading(ts, fields, tags.get("device"), "ns", measurement, extra)


@register("line_protocol")
def decode_line_protocol(payload: bytes) -> list:
    """InfluxDB line protocol, one reading per line, timestamps in nanoseconds.

    The measurement and any tag keys besides ``device`` come back apart from
    the fields, so the validator can check them against the profile.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    out: list = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(_lp_line(line))
        except DecodeError as exc:
            out.append(DecodeError(f"line {n}: {exc}"))
    if not out:
        raise DecodeError("no line-protocol line in the payload")
    return out


# Formats in modules of their own register on import (docs/formats.md).
from . import gateway, senml, sparkplug_codec  # noqa: E402,F401
