"""What Grafana's JSON data-source plugin (simpod-json-datasource) sends and expects back.

Requests accept extra keys: Grafana adds fields from version to version
(``requestId``, ``scopedVars``, ``startTime``...), and refusing them would break
boards on a Grafana upgrade.  The contract is docs/grafana-datasource.md.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import bad_parameter

ALL = frozenset({"", "all", "$__all", "*", ".*"})  # a variable's "All" option: no filter


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Range(_Loose):
    from_: str = Field(alias="from", examples=["2026-11-27T10:00:00Z"])
    to: str = Field(examples=["2026-11-27T12:00:00Z"])


class Target(_Loose):
    target: str | None = Field(default=None, max_length=100, description="the metric: telemetry, incidents_open, ...")
    refId: str | None = None
    payload: dict[str, Any] | str | None = None
    hide: bool = False


class AdhocFilter(_Loose):
    key: str
    operator: str = "="
    value: str


_QUERY_EX = {"range": {"from": "2026-11-27T10:00:00Z", "to": "2026-11-27T12:00:00Z"}, "intervalMs": 60000,
             "maxDataPoints": 1200, "targets": [{"refId": "A", "target": "telemetry", "payload": {
                 "kind": "commune_router", "field": "latency_ms", "site": "y_ty", "agg": "mean"}}]}


class QueryIn(_Loose):
    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_extra={"examples": [_QUERY_EX]})
    range: Range
    intervalMs: float | None = Field(default=None, ge=0)
    maxDataPoints: int | None = Field(default=None, ge=1)
    targets: list[Target] = Field(default_factory=list, max_length=50)
    adhocFilters: list[AdhocFilter] = Field(default_factory=list, max_length=20)


class MetricsIn(_Loose):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{}, {"metric": "telemetry"}]})
    metric: str | None = None
    payload: dict[str, Any] | str | None = None


class PayloadOptionsIn(_Loose):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"metric": "telemetry", "payload": {"kind": "water_level"}, "name": "field"}]})
    metric: str = ""
    payload: dict[str, Any] | str | None = None
    name: str


class VariableIn(_Loose):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"payload": {"target": "communes", "district": "bat_xat"}}]})
    payload: dict[str, Any] | str
    range: Range | None = None


class TagValuesIn(_Loose):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"key": "district"}]})
    key: str


class AnnotationsIn(_Loose):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"range": {"from": "2026-11-27T00:00:00Z", "to": "2026-11-27T12:00:00Z"},
         "annotation": {"name": "Sự cố / Incidents", "query": "{\"district\": \"bat_xat\"}"}}]})
    range: Range
    annotation: dict[str, Any] = Field(default_factory=dict)


class TimeSeries(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"target": "yty-router latency_ms", "datapoints": [[42.1, 1795687200000], [44.0, 1795687260000]]}]})
    target: str
    datapoints: list[tuple[float | None, int]] = Field(description="[value, epoch ms], oldest first")


class Column(BaseModel):
    text: str
    type: Literal["time", "string", "number"]


class Table(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"type": "table", "columns": [{"text": "site", "type": "string"}, {"text": "status", "type": "string"}],
         "rows": [["y_ty", "down"]]}]})
    type: Literal["table"] = "table"
    columns: list[Column]
    rows: list[list[Any]]


class Option(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"label": "latency_ms (ms)", "value": "latency_ms"}]})
    label: str
    value: str


class PayloadConfig(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label": "Loại thiết bị / Kind", "name": "kind", "type": "select", "placeholder": "", "reloadMetric": True}]})
    label: str
    name: str
    type: Literal["select", "multi-select", "input", "textarea"] = "select"
    placeholder: str = ""
    reloadMetric: bool = False
    options: list[Option] | None = None


class MetricConfig(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"label": "Đo đạc / Telemetry", "value": "telemetry", "payloads": [
            {"label": "Loại thiết bị / Kind", "name": "kind", "type": "select", "reloadMetric": True},
            {"label": "Trường / Field", "name": "field", "type": "select"}]}]})
    label: str
    value: str
    payloads: list[PayloadConfig]


class VariableValue(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"__text": "Xã Y Tý", "__value": "y_ty"}]})
    text: str = Field(alias="__text", serialization_alias="__text")
    value: str = Field(alias="__value", serialization_alias="__value")


class TagKey(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "string", "text": "district"}]})
    type: Literal["string"] = "string"
    text: str


class TagValue(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "bat_xat"}]})
    text: str


def payload_dict(raw: dict[str, Any] | str | None, where: str = "payload") -> dict[str, Any]:
    """The payload as a dict: Grafana sends an object, or the raw JSON text typed into the editor."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad_parameter(where, f"{raw[:100]!r} is not a JSON object: write it like "
                                   '{"kind": "commune_router", "field": "latency_ms"}') from None
    if not isinstance(value, dict):
        raise bad_parameter(where, "expected a JSON object such as {\"district\": \"bat_xat\"}")
    return value


def values(payload: dict[str, Any], key: str) -> list[str] | None:
    """A payload key as a list of values, or None for "no filter" (absent, empty or All).

    Multi-value variables arrive as JSON lists, or formatted by Grafana as ``(a|b)`` (regex) or ``{a,b}`` (glob).
    """
    raw = payload.get(key)
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise bad_parameter(f"payload.{key}", "expected a string or a list of strings")
        text = str(item).strip()
        if len(text) >= 2 and (text[0], text[-1]) in (("(", ")"), ("{", "}")):
            out += [p.strip() for p in text[1:-1].replace(",", "|").split("|")]
        else:
            out.append(text)
    if not out or any(v.lower() in ALL for v in out):
        return None  # "All" (or nothing) anywhere in the selection means everything
    return out


def one(payload: dict[str, Any], key: str, default: str | None = None) -> str | None:
    got = values(payload, key)
    if got is None:
        return default
    if len(got) > 1:
        raise bad_parameter(f"payload.{key}", f"takes one value, got {len(got)}: {', '.join(got[:5])}")
    return got[0]
