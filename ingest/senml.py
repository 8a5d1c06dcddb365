"""SenML JSON (RFC 8428): records with base name, base time, base unit and base value.

A SenML pack is a JSON array of records. Each record is resolved (RFC 8428
section 4.6): name = ``bn`` + ``n``; time = ``bt`` + ``t`` (seconds; a result
below 2**28 is relative to the arrival time, so ``t: -60`` is a minute ago);
unit = ``u``, else ``bu``; value = ``bv`` + ``v`` (or ``vb``/``vs``/``vd``).
Base fields apply to their record and every later one.

Names map to Fansipan devices and fields (docs/formats.md):

* ``<device>/<field>``, e.g. ``bn: "yty-ws-1/"`` with ``n: "air_temp_c"``;
* ``urn:dev:<scheme>:<device>:<field>``, e.g. ``urn:dev:id:yty-ws-1:air_temp_c``
  (the RFC's ``urn:dev:`` style, with the Fansipan device id as the identifier).

Records of one device at one time make one reading. Units are checked against
the profile by :class:`SenmlHandler` (the decoder knows no profile); SenML's
registered unit names (``Cel``, ``%RH``...) are accepted for the profile's
(``°C``, ``%``...), anything else is refused, never converted.
"""

from __future__ import annotations

import math

import orjson

from device_profiles import Profile
from storage.base import Point, Rejected

from .decoders import DecodeError, RawReading, register

RELATIVE_LIMIT_S = 2**28  # RFC 8428: times below this are relative to "now"
_VALUES = ("v", "vb", "vs", "vd")

#: SenML registered units (RFC 8428 section 12.1) -> the unit names Fansipan's profiles use.
SENML_UNITS = {
    "Cel": "°C", "%RH": "%", "/": "ratio", "m": "m", "mm": "mm", "s": "s", "V": "V", "A": "A", "W": "W",
    "kW": "kW", "Wh": "Wh", "kWh": "kWh", "Hz": "Hz", "Pa": "Pa", "hPa": "hPa", "lx": "lx", "m/s": "m/s",
    "mm/h": "mm/h", "ug/m3": "µg/m³", "ppm": "ppm", "dBm": "dBm", "%EL": "%", "m3/s": "m³/s", "l/s": "l/s",
    "rpm": "rpm", "dB": "dB",
}


class SenmlRecord(tuple):
    """(device, field, ts_ns or None, value, unit or None), resolved."""

    __slots__ = ()


def _resolve_name(name: str) -> tuple[str, str]:
    if name.startswith("urn:dev:"):
        parts = name.split(":")
        if len(parts) < 5 or not parts[-1] or not parts[-2]:
            raise DecodeError(f"name {name[:80]!r}: expected urn:dev:<scheme>:<device>:<field>")
        return parts[-2], parts[-1]
    device, sep, fld = name.rpartition("/")
    if not sep or not device or not fld:
        raise DecodeError(f"name {name[:80]!r}: expected <device>/<field> or urn:dev:<scheme>:<device>:<field>")
    return device, fld


def _number(rec: dict, key: str, default=0):
    v = rec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DecodeError(f"{key!r} must be a finite number, got {str(v)[:40]}")
    return v


def decode_records(payload: bytes, arrived_ns: int | None) -> list:
    """Resolved records (SenmlRecord) or DecodeError items; raise DecodeError if nothing is readable."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, list) or not doc:
        raise DecodeError("a SenML pack is a non-empty JSON array of records")
    for n, rec in enumerate(doc, 1):
        must = [k for k in rec if k.endswith("_")] if isinstance(rec, dict) else []
        if must:  # RFC 8428 4.4: a pack with a must-understand field we do not understand is not used at all
            raise DecodeError(f"record {n}: field {must[0][:40]!r} must be understood (RFC 8428 '_' suffix) and "
                              "Fansipan does not: the whole pack is refused")
    base = {"bn": "", "bt": 0, "bu": None, "bv": 0}
    out: list = []
    for n, rec in enumerate(doc, 1):
        try:
            out.append(_record(rec, base, arrived_ns))
        except DecodeError as exc:
            out.append(DecodeError(f"record {n}: {exc}"))
    return out


def _record(rec, base: dict, arrived_ns: int | None) -> SenmlRecord:
    if not isinstance(rec, dict):
        raise DecodeError(f"expected a JSON object, got {type(rec).__name__}")
    if "bver" in rec and (not isinstance(rec["bver"], int) or rec["bver"] > 10):
        raise DecodeError(f"SenML version {str(rec['bver'])[:20]} is newer than RFC 8428 (10)")
    # Base fields change the base for this record and every later one, even if the record is refused.
    if "bn" in rec:
        if not isinstance(rec["bn"], str):
            raise DecodeError("'bn' must be a string")
        base["bn"] = rec["bn"]
    if "bt" in rec:
        base["bt"] = _number(rec, "bt")
    if "bu" in rec:
        if not isinstance(rec["bu"], str):
            raise DecodeError("'bu' must be a string")
        base["bu"] = rec["bu"]
    if "bv" in rec:
        base["bv"] = _number(rec, "bv")
    name = rec.get("n", "")
    if not isinstance(name, str):
        raise DecodeError("'n' must be a string")
    device, fld = _resolve_name(base["bn"] + name)
    given = [k for k in _VALUES if k in rec]
    if len(given) != 1:
        if "s" in rec and not given:
            raise DecodeError(f"{device}/{fld}: a sum ('s') without a value is not stored by Fansipan")
        raise DecodeError(f"{device}/{fld}: expected exactly one of v, vb, vs, vd, got {', '.join(given) or 'none'}")
    key = given[0]
    if key == "v":
        value = _number(rec, "v") + base["bv"]
    else:
        value = rec[key]  # vb, vs, vd: the profile's type check refuses what is not a bool there
    unit = rec.get("u", base["bu"])
    if unit is not None and not isinstance(unit, str):
        raise DecodeError(f"{device}/{fld}: 'u' must be a string")
    t = base["bt"] + _number(rec, "t")
    if not abs(t) < 1e10:  # past the year 2286 (or inf): no clock means that, and it would not fit in int64 ns
        raise DecodeError(f"{device}/{fld}: time {t:g} s is out of range")
    if abs(t) < RELATIVE_LIMIT_S:  # relative to now: 0 (no time given) is the arrival time
        if arrived_ns is None:
            if t:
                raise DecodeError(f"{device}/{fld}: a relative time ({t:g} s) needs the arrival time")
            ts_ns = None
        else:
            ts_ns = arrived_ns + int(round(t * 1e9))
    else:
        ts_ns = int(round(t * 1e9))
    return SenmlRecord((device, fld, ts_ns, value, unit))


def unit_problem(unit: str | None, fld: str, profile: Profile) -> str | None:
    """Why ``unit`` is not the profile's unit of ``fld``, or None (no unit given is accepted)."""
    spec = profile.fields.get(fld)
    if unit is None or spec is None:
        return None
    if unit == spec.unit or SENML_UNITS.get(unit) == spec.unit:
        return None
    return (f"field {fld!r}: unit {unit[:20]!r} is not the profile's {spec.unit!r} "
            f"(profile {profile.kind!r}); Fansipan does not convert units: send {spec.unit!r}")


def group(records: list) -> list:
    """Records of one device at one time as one RawReading; DecodeError items pass through."""
    out: list = []
    by_key: dict[tuple, int] = {}
    for r in records:
        if isinstance(r, DecodeError):
            out.append(r)
            continue
        device, fld, ts_ns, value, _unit = r
        i = by_key.get((device, ts_ns))
        if i is None:
            by_key[(device, ts_ns)] = len(out)
            out.append(RawReading(ts_ns, {fld: value}, device, "ns"))
        elif fld in out[i].fields:
            out.append(DecodeError(f"{device}/{fld} appears twice for the same time"))
        else:
            out[i].fields[fld] = value
    return out


@register("senml")
def decode_senml(payload: bytes) -> list:
    """SenML JSON as readings, without the unit check; relative times only as "now" (0).

    The validator reads SenML through :class:`SenmlHandler`, which has the
    arrival time and the profile; this entry serves the registry's contract.
    """
    return group(decode_records(payload, None))


class SenmlHandler:
    """A SenML pack on one device's topic: every record must name that device."""

    def __init__(self, check):
        self.check = check

    def __call__(self, topic, payload, arrived_ns, profile: Profile, device_id: str, reject) -> tuple[list[Point], list[Rejected]]:
        try:
            records = decode_records(payload, arrived_ns)
        except DecodeError as exc:
            return [], [reject("decode_error", f"senml: {exc}", profile.kind, device_id)]
        points, rejected = [], []
        kept = []
        for n, r in enumerate(records, 1):
            if isinstance(r, DecodeError):
                kept.append(r)
                continue
            device, fld, _ts, _v, unit = r
            if device != device_id:
                rejected.append(reject("unknown_device", f"record {n}: names device {device[:64]!r} but the topic names "
                                       f"{device_id!r}", profile.kind, device_id))
                continue
            bad_unit = unit_problem(unit, fld, profile)
            if bad_unit:
                rejected.append(reject("wrong_unit", f"record {n}: {bad_unit}", profile.kind, device_id))
                continue
            kept.append(r)
        for item in group(kept):
            if isinstance(item, DecodeError):
                rejected.append(reject("decode_error", f"senml: {item}", profile.kind, device_id))
                continue
            got = self.check(item._replace(device=None), profile, device_id, arrived_ns)
            if isinstance(got, Point):
                points.append(got)
            else:
                rejected.append(reject(got[0], got[1], profile.kind, device_id))
        return points, rejected
