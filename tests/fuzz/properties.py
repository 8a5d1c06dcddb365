"""The properties the fuzz tests check, as plain functions (hypothesis calls them from tests/test_fuzz.py).

Each ``check_*`` takes an input, runs the code under test and asserts everything
the documented contract promises about the outcome.  An exception the contract
does not allow is a failure, except the *known bugs* below: while one is open,
the main fuzz tests count its hits (printed at the end of the run) instead of
failing on it, and a dedicated xfail(strict=True) test in tests/test_fuzz.py
holds its exact input, so that the fix flips that test and the entry here is
then deleted.  Set ``FANSIPAN_FUZZ_STRICT=1`` to fail on known bugs too.
"""

from __future__ import annotations

import math
import os
import re
import sys
import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from device_profiles import ProfileError, Registry, load_registry
from ingest.decoders import DecodeError, RawReading, decode_json, decode_line_protocol
from ingest.validate import MAX_PAYLOAD_BYTES, MIN_TS_NS, RAW_KEEP_BYTES, REASONS, Validator
from storage.base import Point, Rejected
from storage.common import float_fields
from storage.line_protocol import QUARANTINE_MEASUREMENT, Encoder, quarantine_tag, quarantine_times, raw_text, stored_text

from .lp_reference import LPParseError, parse_body

PROJECT = Path(__file__).resolve().parents[2]
_STRICT = [os.environ.get("FANSIPAN_FUZZ_STRICT") == "1"]

#: What the fuzz run saw: cases per target, refusals per reason, known-bug hits.
TALLY: Counter = Counter()


# --- known bugs -----------------------------------------------------------------------------------

#: id -> (exception types, file under the project, functions, message pattern, what it is).
#: Matched on the innermost traceback frame inside the project, so that a different crash
#: is never mistaken for one.
KNOWN_BUGS: dict = {}  # BUG-1 .. BUG-7, found by these properties, are fixed; their examples stay as regression tests


def known_bug(exc: BaseException) -> str | None:
    """The id of the open bug this exception is, or None."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _in_project(f.filename)]
    if not frames:
        return None
    inner = frames[-1]
    for bug, (types, fname, funcs, pattern, _) in KNOWN_BUGS.items():
        if (types and isinstance(exc, types) and Path(inner.filename).resolve() == PROJECT / fname
                and inner.name in funcs and re.search(pattern, str(exc))):
            return bug
    return None


def _in_project(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(PROJECT / d) for d in ("ingest", "storage", "device_profiles"))


@contextmanager
def strict():
    """Known bugs fail like any other crash (what the xfail tests of each bug use)."""
    _STRICT.append(True)
    try:
        yield
    finally:
        _STRICT.pop()


class KnownBug(Exception):
    def __init__(self, bug: str):
        super().__init__(bug)
        self.bug = bug


#: Stack frames the code under test may use.  The collector's writer thread calls
#: Validator.message about 10 frames deep under Python's default recursion limit of 1000
#: (and the loader runs at start-up, as shallow); hypothesis raises the limit by 2000
#: while a test runs, which would hide a recursion bug, so each call gets this headroom.
PRODUCTION_HEADROOM = 1000 - 20


def _depth() -> int:
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1
    return n


@contextmanager
def production_stack():
    """Run with the recursion headroom the code has in production (see PRODUCTION_HEADROOM)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + PRODUCTION_HEADROOM)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def guarded(fn, *args):
    """``fn(*args)`` with production stack headroom; an open known bug becomes KnownBug (unless strict)."""
    try:
        with production_stack():
            return fn(*args)
    except (DecodeError, ProfileError):
        raise
    except Exception as exc:
        bug = known_bug(exc)
        if bug is None or _STRICT[-1]:
            raise
        TALLY[f"known bug hit: {bug}"] += 1
        raise KnownBug(bug) from exc


# --- decoders -------------------------------------------------------------------------------------


def _check_raw_readings(items: list, unit: str) -> None:
    assert isinstance(items, list) and items, "a decoder returns a non-empty list or raises DecodeError"
    for it in items:
        assert isinstance(it, (RawReading, DecodeError)), type(it)
        if isinstance(it, DecodeError):
            assert str(it), "a DecodeError says what is wrong"
            continue
        assert isinstance(it.fields, dict)
        assert all(isinstance(k, str) for k in it.fields)
        assert it.device is None or isinstance(it.device, str)
        assert it.ts_unit == unit


def check_json_decoder(payload: bytes) -> None:
    TALLY["json decoder: cases"] += 1
    try:
        items = guarded(decode_json, payload)
    except DecodeError as exc:
        assert str(exc)
        TALLY["json decoder: DecodeError"] += 1
        return
    _check_raw_readings(items, "auto")
    for it in items:
        if isinstance(it, RawReading):
            assert not {"ts", "device"} & set(it.fields), "meta keys are not fields"


def lp_candidate_lines(payload: bytes) -> int:
    """Lines of a payload that are not blank or comments: the most readings it may yield."""
    text = payload.decode("utf-8")
    return sum(1 for line in text.split("\n") if line.strip("\r").strip() and not line.strip("\r").lstrip().startswith("#"))


def check_lp_decoder(payload: bytes) -> None:
    TALLY["line-protocol decoder: cases"] += 1
    try:
        items = guarded(decode_line_protocol, payload)
    except DecodeError as exc:
        assert str(exc)
        TALLY["line-protocol decoder: DecodeError"] += 1
        return
    _check_raw_readings(items, "ns")
    # One item per line: a metacharacter inside a line never makes more readings.
    assert len(items) == lp_candidate_lines(payload)
    for it in items:
        if isinstance(it, RawReading):
            assert isinstance(it.measurement, str) and it.measurement
            assert it.ts is None or type(it.ts) is int
            assert all(type(v) in (int, float, bool, str) for v in it.fields.values())


# --- the whole validator --------------------------------------------------------------------------


def check_points(points: list[Point], registry: Registry, arrived_ns: int) -> None:
    for p in points:
        assert isinstance(p, Point)
        dev = registry.devices.get(p.device)
        assert dev is not None, f"a point for unregistered device {p.device!r}"
        assert (p.kind, p.site, p.district) == (dev.kind, dev.site, dev.district)
        profile = registry.kinds[p.kind]
        assert p.fields, "a point holds at least one field"
        for name, v in p.fields.items():
            spec = profile.fields.get(name)
            assert spec is not None, f"field {name!r} is not declared by {p.kind}"
            assert type(v) is (float if spec.type == "float" else int), (name, v)
            assert math.isfinite(v), (name, v)
            if spec.type == "bool":
                assert v in (0, 1)
            else:
                assert spec.min <= v <= spec.max, (name, v)
        assert type(p.ts_ns) is int and MIN_TS_NS <= p.ts_ns <= arrived_ns + profile.reporting.future_tolerance_s * 1e9
        assert p.arrived_ns == arrived_ns


def check_rejects(rejected: list[Rejected], registry: Registry, topic: str, payload: bytes, arrived_ns: int) -> None:
    for r in rejected:
        assert isinstance(r, Rejected)
        assert r.reason in REASONS, r.reason
        assert isinstance(r.detail, str) and r.detail.strip(), "every refusal says why"
        assert isinstance(r.raw, bytes) and len(r.raw) <= RAW_KEEP_BYTES and r.raw == payload[:RAW_KEEP_BYTES]
        assert r.topic == topic and r.arrived_ns == arrived_ns
        assert r.kind == "" or r.kind in registry.kinds
        assert isinstance(r.device, str) and len(r.device) <= 64
        TALLY[f"quarantined: {r.reason}"] += 1


def check_message(validator: Validator, topic: str, payload: bytes, arrived_ns: int) -> None:
    TALLY["validator: cases"] += 1
    out = guarded(validator.message, topic, payload, arrived_ns)
    assert isinstance(out, tuple) and len(out) == 2
    points, rejected = out
    registry = validator.registry
    assert points or rejected, "a message is stored or quarantined, never dropped silently"
    check_points(points, registry, arrived_ns)
    check_rejects(rejected, registry, topic, payload, arrived_ns)
    if len(payload) > MAX_PAYLOAD_BYTES:
        assert not points and [r.reason for r in rejected] == ["too_large"]
    TALLY["validator: points"] += len(points)
    # What the store would write: one line per point and per refusal, nothing else.
    check_encoding(Encoder(float_fields(registry)), points, rejected, registry=registry)


# --- the line-protocol encoder --------------------------------------------------------------------

_SAFE_TAG = re.compile(r"[A-Za-z0-9_.:-]+")


def encodable_tag(s: str) -> bool:
    """What the Encoder documents it can write as a tag value (the rest it refuses with ValueError)."""
    return bool(s) and "\n" not in s and "\r" not in s and not s.endswith("\\")


def check_encoding(encoder: Encoder, points: list[Point], rejected: list[Rejected], registry: Registry | None = None) -> None:
    TALLY["encoder: cases"] += 1
    writable = all(encodable_tag(t) for p in points for t in (p.device, p.site) + ((p.district,) if p.district else ()))
    try:
        body = encoder.encode(points, rejected)
    except ValueError as exc:
        assert not writable, f"the encoder refused writable points: {exc}"
        TALLY["encoder: refused (newline or trailing backslash in a tag)"] += 1
        # The quarantine alone must always be writable: recording a refusal never fails.
        body = encoder.encode([], rejected)
        points = []
    else:
        assert writable, "the encoder wrote a tag it documents as unwritable"
    body.encode("utf-8")  # what the store sends: valid UTF-8
    try:
        lines = parse_body(body)
    except LPParseError as exc:
        raise AssertionError(f"the encoder wrote something InfluxDB would not read as intended: {exc}") from None
    assert len(lines) == len(points) + len(rejected), "one line per point and per refusal, never more"
    for p, line in zip(points, lines[: len(points)]):
        assert line.measurement == p.kind
        want = {"device": p.device, "site": p.site} | ({"district": p.district} if p.district else {})
        assert dict(line.tags) == want and len(line.tags) == len(want), (line.tags, want)
        fields = dict(line.fields)
        assert len(fields) == len(line.fields) == len(p.fields) + 1
        assert fields.pop("arrived_ms") == p.arrived_ns // 1_000_000
        for name, v in p.fields.items():
            got = fields[name]
            assert type(got) in (int, float) and got == (int(v) if type(v) is bool else v), (name, v, got)
        assert line.ts == p.ts_ns
        if registry is not None:
            assert line.measurement in registry.kinds
            dev = registry.devices[p.device]
            assert set(want.values()) <= {dev.id, dev.site, dev.district}
    times = quarantine_times(rejected)
    for r, t, line in zip(rejected, times, lines[len(points) :]):
        assert line.measurement == QUARANTINE_MEASUREMENT
        tags = dict(line.tags)
        assert tags == {"kind": quarantine_tag(r.kind), "reason": quarantine_tag(r.reason)}
        assert all(_SAFE_TAG.fullmatch(v) for v in tags.values())
        if registry is not None:
            assert tags["reason"] in REASONS and tags["kind"] in set(registry.kinds) | {"unknown"}
        assert dict(line.fields) == {
            "detail": stored_text(r.detail), "device": stored_text(r.device),
            "raw": stored_text(raw_text(r.raw)), "topic": stored_text(r.topic),
        }
        assert line.ts == t


# --- cardinality ----------------------------------------------------------------------------------


def series_of(body: str) -> set[tuple]:
    return {(line.measurement, line.tags) for line in parse_body(body)}


def check_cardinality(validator: Validator, msgs: list[tuple[str, bytes]], arrived_ns: int) -> dict:
    """Run the messages; assert every tag the store would write is bounded by the registry."""
    registry = validator.registry
    encoder = Encoder(float_fields(registry))
    allowed_tags = set(registry.devices) | set(registry.sites) | {d.district for d in registry.devices.values() if d.district}
    kinds_or_unknown = set(registry.kinds) | {"unknown"}
    seen = {"series": set(), "tag_values": set(), "quarantine": set(), "field_keys": set(), "points": 0, "rejected": 0}
    for topic, payload in msgs:
        TALLY["cardinality: messages"] += 1
        try:
            points, rejected = guarded(validator.message, topic, payload, arrived_ns)
        except KnownBug:
            continue
        for p in points:
            dev = registry.devices.get(p.device)
            assert dev is not None and dev.kind == p.kind, f"a point for unregistered device {p.device!r}"
        lines = parse_body(encoder.encode(points, rejected))
        assert len(lines) == len(points) + len(rejected)
        for line in lines:
            tags = dict(line.tags)
            if line.measurement == QUARANTINE_MEASUREMENT:
                assert set(tags) == {"kind", "reason"}
                assert tags["reason"] in REASONS and tags["kind"] in kinds_or_unknown, tags
                seen["quarantine"].add(line.tags)
                assert {k for k, _ in line.fields} == {"detail", "device", "raw", "topic"}
            else:
                assert line.measurement in registry.kinds
                assert set(tags) <= {"device", "site", "district"} and set(tags.values()) <= allowed_tags, tags
                seen["series"].add((line.measurement, line.tags))
                seen["tag_values"] |= set(tags.values())
                keys = {k for k, _ in line.fields}
                assert keys <= set(registry.kinds[line.measurement].fields) | {"arrived_ms"}
                seen["field_keys"] |= keys
        seen["points"] += len(points)
        seen["rejected"] += len(rejected)
    assert len(seen["series"]) <= len(registry.devices)
    assert len(seen["quarantine"]) <= len(REASONS) * len(kinds_or_unknown)
    return seen


# --- profile loader -------------------------------------------------------------------------------


def check_loader(directory: Path) -> None:
    TALLY["loader: cases"] += 1
    files = [directory / "kinds", *sorted((directory / "kinds").glob("*.yaml")), directory / "sites.yaml"]
    try:
        reg = guarded(load_registry, directory)
    except ProfileError as exc:
        TALLY["loader: ProfileError"] += 1
        assert isinstance(exc.problems, list) and exc.problems, "a ProfileError lists at least one problem"
        for problem in exc.problems:
            assert isinstance(problem, str)
            prefix = next((f"{f}:" for f in files if problem.startswith(f"{f}:")), None)
            assert prefix is not None, f"the problem does not start with a registry file: {problem!r}"
            rest = problem[len(prefix) :]
            assert rest.strip(" :"), f"the problem names no key path or reason: {problem!r}"
        return
    TALLY["loader: Registry"] += 1
    check_registry(reg)


def check_registry(reg: Registry) -> None:
    """What a loaded registry promises the rest of Fansipan."""
    assert isinstance(reg, Registry)
    for kind, profile in reg.kinds.items():
        assert profile.kind == kind
        for name, spec in profile.fields.items():
            if spec.type != "bool":
                if not (spec.min < spec.max):
                    if (math.isnan(spec.min) or math.isnan(spec.max)) and not _STRICT[-1]:
                        TALLY["known bug hit: BUG-6"] += 1
                        raise KnownBug("BUG-6")
                    raise AssertionError(f"{kind}.{name}: min {spec.min} is not below max {spec.max}")
    for did, d in reg.devices.items():
        assert d.id == did and d.kind in reg.kinds and d.site in reg.sites
        assert d.uplink in (None, *reg.devices) and d.power in (None, *reg.devices)
        assert did not in reg.ancestors(did), f"{did} depends on itself"
    for sid, s in reg.sites.items():
        assert s.parent is None or s.parent in reg.sites
