"""Query parameters that need more than a type: times, windows, registry names.

Times are accepted as RFC 3339 with a zone (``2026-11-27T10:00:00Z``, ``+07:00``),
epoch seconds or milliseconds (told apart by size), or relative to now
(``now``, ``now-1h``, ``now-90m``).  A time without a zone is refused rather
than guessed: Lào Cai is UTC+7, and a 7-hour mistake is the worst kind.  Every
refusal names the parameter and what would be accepted.

Names (device, kind, site, district, field) are checked against the registry
here, before anything reaches a store: the store checks again, but the API
can say "unknown kind 'camra'; known: ..." with the parameter's name.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from device_profiles import Registry

from .errors import ApiError, bad_parameter, not_found

NS = 1_000_000_000
MIN_NS = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()) * NS  # the collector refuses older times
MAX_NS = int(datetime(2200, 1, 1, tzinfo=timezone.utc).timestamp()) * NS  # well inside int64 nanoseconds
_REL = re.compile(r"^now(?:\s*-\s*(\d+)\s*([smhdw]))?$")
_DUR = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
TIME_HELP = "use RFC 3339 with a zone (2026-11-27T10:00:00Z), epoch seconds or milliseconds, or now / now-1h"


def parse_time(name: str, raw: str | None, now_ns: int, default_ns: int) -> int:
    """Epoch nanoseconds from a query parameter (see the module docstring); ``default_ns`` if absent."""
    if raw is None or raw.strip() == "":
        return default_ns
    text = raw.strip()
    m = _REL.match(text.lower())
    if m:
        ns = now_ns - (int(m.group(1)) * _UNIT_S[m.group(2)] * NS if m.group(1) else 0)
    elif re.fullmatch(r"-?\d+(\.\d+)?", text):
        value = float(text)
        # seconds up to year 5138; larger numbers are milliseconds (a ms epoch passed 1e11 in 1973)
        ns = int(value * NS) if abs(value) < 1e11 else int(value * 1_000_000)
    else:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise bad_parameter(name, f"{raw!r} is not a time: {TIME_HELP}") from None
        if dt.tzinfo is None:
            raise bad_parameter(name, f"{raw!r} has no time zone: add Z (UTC) or an offset such as +07:00")
        ns = int(dt.timestamp()) * NS + dt.microsecond * 1000
    if not MIN_NS <= ns <= MAX_NS:
        raise bad_parameter(name, f"{raw!r} is outside 2000-01-01 .. 2200-01-01: {TIME_HELP}")
    return ns


def parse_range(start: str | None, end: str | None, now_ns: int, default_span_s: int = 3600,
                names: tuple[str, str] = ("start", "end")) -> tuple[int, int]:
    """[start, end) in epoch ns; end defaults to now, start to ``default_span_s`` before end."""
    end_ns = parse_time(names[1], end, now_ns, now_ns)
    start_ns = parse_time(names[0], start, now_ns, end_ns - default_span_s * NS)
    if start_ns >= end_ns:
        raise bad_parameter(names[0], f"{names[0]} ({iso(start_ns)}) must be before {names[1]} ({iso(end_ns)})")
    return start_ns, end_ns


def parse_window(raw: str | None) -> int | None:
    """Seconds, from ``60``, ``60s``, ``5m``, ``1h``, ``1d``; None if absent."""
    if raw is None or raw.strip() == "":
        return None
    m = _DUR.match(raw.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise bad_parameter("window", f"{raw!r} is not a window: give a positive duration such as 60, 60s, 5m, "
                                      "1h or 1d (no window: raw readings)")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds > 366 * 86_400:
        raise bad_parameter("window", f"{raw!r} is longer than a year: use at most 366d")
    return seconds


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, timezone.utc).isoformat().replace("+00:00", "Z")


def to_dt(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns // NS, timezone.utc).replace(microsecond=(ns % NS) // 1000)


def _unknown(name: str, value: str, known) -> ApiError:
    known = sorted(known)
    shown = ", ".join(known[:30]) + (f" ... ({len(known)} in all)" if len(known) > 30 else "")
    return bad_parameter(name, f"unknown {name} {value!r}; known: {shown}", value=value)


def check_kind(registry: Registry, kind: str | None, name: str = "kind") -> str | None:
    if kind is not None and kind not in registry.kinds:
        raise _unknown(name, kind, registry.kinds)
    return kind


def check_site(registry: Registry, site: str | None, name: str = "site") -> str | None:
    if site is not None and site not in registry.sites:
        raise _unknown(name, site, registry.sites)
    return site


def check_district(registry: Registry, district: str | None, name: str = "district") -> str | None:
    if district is None:
        return None
    site = registry.sites.get(district)
    if site is None or site.type != "district":
        raise _unknown(name, district, [s.id for s in registry.sites.values() if s.type == "district"])
    return district


def check_choice(name: str, value: str | None, choices) -> str | None:
    if value is not None and value not in choices:
        raise bad_parameter(name, f"{value!r} is not one of: {', '.join(choices)}", value=value)
    return value


def device_or_404(registry: Registry, device: str):
    dev = registry.devices.get(device)
    if dev is None:
        raise not_found("device", device, "see GET /api/v1/devices for the registry's devices")
    return dev


def min_window_for(span_ns: int, max_points: int) -> int:
    """The smallest whole-second window that keeps a span within ``max_points``."""
    return max(1, math.ceil(span_ns / NS / max_points))
