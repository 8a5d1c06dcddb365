"""Run every query of the boards the way Grafana would, against a real InfluxDB and a real Fansipan API.

The proof that a board works without a Grafana server: template variables are
resolved in order from their own queries (an option must exist), then every
panel target and every annotation is interpolated (dashboards.macros) and sent,
and the answer is checked for the shape the panel needs, not empty.

    python -m dashboards.dryrun --influx http://127.0.0.1:8086 --database fansipan \\
        --api http://127.0.0.1:8080/api/v1/grafana --key "$FANSIPAN_GRAFANA_API_KEY" --hours 6

Panels' relative time overrides (``now/d``) are not applied: every query runs
over the range given, so a dry run over past data still exercises them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx

from . import macros
from .queries import API_TYPE, INFLUX_TYPE

DEFAULT_MAX_DATA_POINTS = 1000  # about a half-width panel's pixels, which is what Grafana asks for
INFLUX_TIME_INTERVAL = "10s"  # jsonData.timeInterval of the provisioned InfluxDB data source
_NUMERIC_PANELS = {"timeseries", "stat", "bargauge", "state-timeline"}


@dataclass
class Outcome:
    """One query of a board: where it comes from, what was sent, what came back, what is wrong with it."""

    where: str
    sent: object
    answer: object = None
    problems: list[str] = field(default_factory=list)


class Runner:
    """``influx``: an httpx client on the InfluxDB base URL; ``api``: one on the Grafana data-source
    base (``.../api/v1/grafana``) carrying the key; ``database``: the InfluxQL database."""

    def __init__(self, influx: httpx.Client, database: str, api: httpx.Client, api_prefix: str = ""):
        self.influx = influx
        self.database = database
        self.api = api
        self.api_prefix = api_prefix.rstrip("/")

    # ------------------------------------------------------------ transport

    def influxql(self, q: str) -> dict:
        resp = self.influx.post("/query", data={"db": self.database, "q": q, "epoch": "ms"})
        resp.raise_for_status()
        result = (resp.json().get("results") or [{}])[0]
        if "error" in result:
            raise RuntimeError(f"InfluxDB refused the query: {result['error']}")
        return result

    def api_post(self, path: str, body: dict):
        resp = self.api.post(self.api_prefix + path, json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"API {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    # ------------------------------------------------------------ variables

    def options(self, var: dict, values: Mapping[str, macros.Value], rng: macros.TimeRange) -> list[str]:
        ds = var["datasource"]["type"]
        if ds == API_TYPE:
            payload = macros.api_variable_payload(var["query"]["query"], values)
            return [o["__value"] for o in self.api_post("/variable", {"payload": payload, "range": rng.rfc3339()})]
        if ds == INFLUX_TYPE:
            result = self.influxql(macros.interpolate(var["query"], values, macros.format_regex))
            return [row[1] for s in result.get("series", []) for row in s["values"]]
        raise ValueError(f"variable {var['name']!r}: unknown data source type {ds!r}")

    def resolve(self, board: dict, rng: macros.TimeRange,
                prefer: Mapping[str, str | list[str]]) -> tuple[dict, list[Outcome]]:
        """Each variable in board order: its options from its query, then the first preferred choice the
        variable offers (``"$__all"``, offered by variables with All, stands for every option, as Grafana
        sends All), or its first option when no preference is given."""
        values: dict[str, macros.Value] = {}
        outcomes = []
        for var in board.get("templating", {}).get("list", []):
            out = Outcome(f"{board['uid']} variable ${var['name']}", var["query"])
            try:
                opts = self.options(var, values, rng)
                out.answer = opts
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                out.problems.append(str(exc))
                opts = []
            wants = prefer.get(var["name"], [])
            wants = [wants] if isinstance(wants, str) else list(wants)
            usable = [w for w in wants if (w == "$__all" and var.get("includeAll")) or w in opts]
            if not opts:
                out.problems.append("no options")
            elif wants and not usable:
                out.problems.append(f"none of {wants} is offered (All: {bool(var.get('includeAll'))}; "
                                    f"options {opts[:20]})")
            choice = usable[0] if usable else (opts[0] if opts else "")
            values[var["name"]] = list(opts) if choice == "$__all" else choice
            outcomes.append(out)
        return values, outcomes

    # ------------------------------------------------------------ panels

    def run_target(self, panel: dict, target: dict, values, rng: macros.TimeRange) -> Outcome:
        where = f"panel {panel['id']} {panel.get('title')!r} target {target.get('refId')}"
        mdp = int(panel.get("maxDataPoints") or DEFAULT_MAX_DATA_POINTS)
        ds = (target.get("datasource") or panel.get("datasource") or {}).get("type")
        out = Outcome(where, target)
        try:
            if ds == INFLUX_TYPE:
                step = macros.interval_ms(rng, mdp, panel.get("interval") or INFLUX_TIME_INTERVAL)
                out.sent = macros.influxql(target["query"], values, rng, step)
                out.answer = self.influxql(out.sent)
                out.problems += influx_problems(panel, target, out.answer)
            elif ds == API_TYPE:
                step = macros.interval_ms(rng, mdp, panel.get("interval"))
                out.sent = {"range": rng.rfc3339(), "intervalMs": step, "maxDataPoints": mdp, "adhocFilters": [],
                            "targets": [dict(target, payload=macros.api_payload(target.get("payload", {}), values))]}
                out.answer = self.api_post("/query", out.sent)
                out.problems += api_problems(panel, target, out.answer)
            else:
                out.problems.append(f"unknown data source type {ds!r}")
        except Exception as exc:  # noqa: BLE001 - reported with the query that failed
            out.problems.append(str(exc))
        return out

    def run_board(self, board: dict, rng: macros.TimeRange,
                  prefer: Mapping[str, str | list[str]]) -> list[Outcome]:
        values, outcomes = self.resolve(board, rng, prefer)
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                outcomes.append(self.run_target(panel, target, values, rng))
        for i, anno in enumerate(board.get("annotations", {}).get("list", [])):
            outcomes.append(self.run_target(annotation_panel(anno, i), anno["target"], values, rng))
        return outcomes


def annotation_panel(anno: dict, index: int = 0) -> dict:
    """An annotation seen as a panel of type "annotations", so that it runs and is checked like one."""
    return {"id": f"annotation {index}", "title": anno["name"], "type": "annotations", "datasource": anno["datasource"]}


# ---------------------------------------------------------------- shape checks

def influx_problems(panel: dict, target: dict, result: dict) -> list[str]:
    series = result.get("series") or []
    if not series:
        return ["no series (empty answer)"]
    problems = []
    alias = target.get("alias") or ""
    tag = alias[len("$tag_"):].split()[0] if alias.startswith("$tag_") else None
    for s in series:
        cols, rows = s.get("columns", []), s.get("values") or []
        if not rows:
            problems.append(f"series {s.get('name')} has no rows")
            continue
        if target.get("resultFormat", "time_series") == "time_series" and cols[:1] != ["time"]:
            problems.append(f"series {s.get('name')}: first column is {cols[:1]}, a time series needs time")
        if tag and tag not in (s.get("tags") or {}):
            problems.append(f"alias {alias!r} names tag {tag!r}, but the series has tags {s.get('tags')}")
        if panel["type"] in _NUMERIC_PANELS and not any(
                isinstance(v, (int, float)) and not isinstance(v, bool) for row in rows for v in row[1:]):
            problems.append(f"series {s.get('name')} {s.get('tags')}: no numeric value for a {panel['type']} panel")
    if panel["type"] == "annotations":
        cols = series[0].get("columns", [])
        for key in ("textColumn", "titleColumn"):
            if target.get(key) and target[key] not in cols:
                problems.append(f"annotation {key} {target[key]!r} not among the columns {cols}")
        problems += [f"annotation tag column {c!r} not among {cols}"
                     for c in filter(None, (target.get("tagsColumn") or "").split(",")) if c not in cols]
    return problems


def api_problems(panel: dict, target: dict, answer) -> list[str]:
    if not isinstance(answer, list) or not answer:
        return [f"empty answer: {answer!r}"[:200]]
    problems = []
    tables = [a for a in answer if a.get("type") == "table"]
    wants_table = panel["type"] in ("table", "geomap", "annotations") or (
        panel["type"] == "stat" and target.get("target") in ("site_status", "device_status", "incidents_open"))
    if wants_table:
        if len(tables) != len(answer):
            return [f"a {panel['type']} panel needs tables, got {[a.get('type', 'timeseries') for a in answer]}"]
        for t in tables:
            names = [c.get("text") for c in t.get("columns", [])]
            if not t.get("rows"):
                problems.append(f"table with columns {names} has no rows")
            if any(len(r) != len(names) for r in t.get("rows", [])):
                problems.append("a row's length differs from the columns'")
            needed = {"geomap": {"lat", "lon", "status_code", "commune"},
                      "annotations": {"time", "timeEnd", "title", "text", "tags"}}.get(panel["type"], set())
            if needed - set(names):
                problems.append(f"columns {sorted(needed - set(names))} missing from {names}")
    else:
        for s in answer:
            if "datapoints" not in s:
                problems.append(f"a {panel['type']} panel needs time series, got {sorted(s)}")
            elif not s["datapoints"] or any(len(p) != 2 for p in s["datapoints"]):
                problems.append(f"series {s.get('target')!r}: no [value, time] points")
    return problems


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    from .build import render_all

    p = argparse.ArgumentParser(prog="python -m dashboards.dryrun", description=__doc__.splitlines()[0])
    p.add_argument("--influx", required=True, help="InfluxDB base URL")
    p.add_argument("--database", required=True, help="InfluxQL database (the bucket, for 2.x)")
    p.add_argument("--influx-token", help="InfluxDB 2.x/3.x token (sent as 'Authorization: Token ...')")
    p.add_argument("--api", required=True, help="the API's Grafana base URL, e.g. http://127.0.0.1:8080/api/v1/grafana")
    p.add_argument("--key", required=True, help="a Fansipan API key (viewer)")
    p.add_argument("--hours", type=float, default=6.0, help="range: the last N hours (default 6)")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="choose a variable's value (VALUE $__all for All); default: the first option")
    args = p.parse_args(argv)
    prefer = dict(s.split("=", 1) for s in args.set)
    end = datetime.now(timezone.utc)
    rng = macros.TimeRange.of(end - timedelta(hours=args.hours), end)
    headers = {"Authorization": f"Token {args.influx_token}"} if args.influx_token else {}
    with httpx.Client(base_url=args.influx, headers=headers, timeout=30) as influx, \
            httpx.Client(base_url=args.api, headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as api:
        runner = Runner(influx, args.database, api)
        bad = 0
        for uid, board in render_all().items():
            for out in runner.run_board(board, rng, prefer):
                bad += bool(out.problems)
                print(f"{'FAIL' if out.problems else 'ok  '} {uid}: {out.where}" +
                      "".join(f"\n       {pr}" for pr in out.problems))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
