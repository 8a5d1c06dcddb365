"""Grafana's query macros and variable formatting, reproduced so the boards' queries can run without Grafana.

What Grafana does to a panel query before it leaves for the data source:

* InfluxQL (``pkg/tsdb/influxdb/models/query.go``): ``$timeFilter`` becomes
  ``time >= <from>ms and time <= <to>ms``; ``$interval``, ``$__interval_ms`` and
  ``$__interval`` become the panel's interval.  Variables are formatted by the
  InfluxDB plugin's ``interpolateQueryExpr``: inside a regex (``=~ /.../``, the
  only place the boards use them) a value is regex-escaped and several values
  (a multi-value or "All") become ``(a|b)``.
* The JSON plugin (simpod-json-datasource): in builder mode each payload value is
  formatted with Grafana's ``regex`` format (the same escaping and ``(a|b)``);
  a variable query in "Raw JSON" mode is formatted with ``json``
  (``JSON.stringify``: ``"a"``, or ``["a","b"]``).
* The interval: the range divided by the panel's max data points, rounded to a
  "nice" step (``rangeUtil.roundInterval``), never below the panel's min interval
  or, failing that, the data source's ``timeInterval``.

A variable's value here is a string (one selection) or a list of strings (All,
without a custom all-value, which is how the boards define it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

Value = str | list[str]

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")  # @grafana/data escapeRegex

# rangeUtil.roundInterval: (upper bound of the raw interval in ms, the interval chosen)
_ROUND = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
          (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000), (45_000, 30_000),
          (90_000, 60_000), (210_000, 120_000), (450_000, 300_000), (780_000, 600_000), (1_350_000, 900_000),
          (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
          (24_300_000, 21_600_000), (64_800_000, 43_200_000), (129_600_000, 86_400_000),
          (604_800_000, 604_800_000))
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> TimeRange:
        return cls(int(start.timestamp() * 1000), int(end.timestamp() * 1000))

    def rfc3339(self) -> dict[str, str]:
        """The ``range`` Grafana sends to JSON data sources."""
        def iso(ms: int) -> str:
            text = datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
            return text.replace("+00:00", "Z")
        return {"from": iso(self.start_ms), "to": iso(self.end_ms)}

    def influx_filter(self) -> str:
        return f"time >= {self.start_ms}ms and time <= {self.end_ms}ms"


def parse_duration_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r} (e.g. 10s, 1m)")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def interval_ms(rng: TimeRange, max_data_points: int, min_interval: str | None = None) -> int:
    raw = (rng.end_ms - rng.start_ms) / max(1, max_data_points)
    chosen = next((ms for bound, ms in _ROUND if raw <= bound), 31_536_000_000)
    return max(chosen, parse_duration_ms(min_interval)) if min_interval else chosen


def interval_text(ms: int) -> str:
    """gtime.FormatInterval: the largest unit that divides the interval."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def format_regex(value: Value) -> str:
    if isinstance(value, str):
        return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)
    escaped = [format_regex(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def format_json(value: Value) -> str:
    return json.dumps(value, ensure_ascii=False)


def interpolate(text: str, values: Mapping[str, Value], fmt) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` of known variables; leave the rest (macros) alone."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return fmt(values[name]) if name in values else m.group(0)
    return _VAR.sub(sub, text)


def influxql(query: str, values: Mapping[str, Value], rng: TimeRange, interval: int) -> str:
    """A raw InfluxQL target as Grafana's backend sends it to InfluxDB."""
    text = interval_text(interval)
    q = interpolate(query, values, format_regex)
    q = q.replace("$timeFilter", rng.influx_filter()).replace("$interval", text)
    return q.replace("$__interval_ms", str(interval)).replace("$__interval", text)


def api_payload(payload: Mapping[str, str], values: Mapping[str, Value]) -> dict[str, str]:
    """A builder-mode payload of the JSON plugin, each value formatted as a regex."""
    return {k: interpolate(v, values, format_regex) for k, v in payload.items()}


def api_variable_payload(query: str, values: Mapping[str, Value]) -> dict:
    """A "Raw JSON" variable query of the JSON plugin: formatted as JSON, then parsed (as the plugin does)."""
    text = interpolate(query, values, format_json)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"variable query {query!r} is not JSON once interpolated: {text!r} ({exc})") from None
