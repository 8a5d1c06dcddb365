"""The two kinds of panel query the boards send, as grafana-foundation-sdk data queries.

The SDK generates query types only for the data sources whose schemas Grafana
publishes; InfluxDB and the simpod JSON plugin have none, so they are defined
here the way the SDK defines its own (a ``cogvariants.Dataquery`` with
``to_json``/``from_json``) and registered with the SDK's runtime, so that
``Dashboard.from_json`` decodes them instead of keeping an untyped bag.

``from_json`` is strict on purpose: a key the board builder never writes means
the JSON was edited by hand (or Grafana's format moved), and the round-trip test
should say so rather than silently drop it.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

# Fixed uids: provisioning (dashboards/provisioning/datasources/fansipan.yaml) creates the
# data sources under these, so the boards can name them without a lookup by name.
INFLUX_UID = "fansipan-influxdb"
API_UID = "fansipan-api"
INFLUX_TYPE = "influxdb"
API_TYPE = "simpod-json-datasource"


def influx_ref() -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=INFLUX_TYPE, uid=INFLUX_UID)


def api_ref() -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=API_TYPE, uid=API_UID)


def _check_keys(data: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{what}: unexpected keys {sorted(unknown)} (allowed: {sorted(allowed)})")


class InfluxQL(cogvariants.Dataquery, cogbuilder.Builder["InfluxQL"]):
    """A raw InfluxQL target: Grafana substitutes $timeFilter, $__interval and the variables.

    ``result_format``: ``time_series`` (one frame per series; ``alias`` names it, e.g.
    ``$tag_device``) or ``table``.  Grafana's query builder mode is never used: raw
    queries are what the tests can run verbatim against a real InfluxDB.
    """

    _KEYS = {"refId", "datasource", "query", "rawQuery", "resultFormat", "alias"}

    def __init__(self, query: str, ref_id: str = "A", result_format: str = "time_series", alias: str | None = None):
        if result_format not in ("time_series", "table"):
            raise ValueError(f"InfluxQL result_format must be time_series or table, got {result_format!r}")
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias

    def build(self) -> InfluxQL:
        return self

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref_id, "datasource": influx_ref(), "query": self.query,
                                  "rawQuery": True, "resultFormat": self.result_format}
        if self.alias is not None:
            out["alias"] = self.alias
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InfluxQL:
        _check_keys(data, cls._KEYS, "InfluxQL target")
        if data.get("rawQuery") is not True:
            raise ValueError(f"InfluxQL target {data.get('refId')!r}: only raw queries are used (rawQuery: true)")
        return cls(data["query"], data.get("refId", "A"), data.get("resultFormat", "time_series"), data.get("alias"))


class ApiQuery(cogvariants.Dataquery, cogbuilder.Builder["ApiQuery"]):
    """A target of the JSON plugin: a metric of docs/grafana-datasource.md and its payload.

    Builder mode (payload as an object): the plugin then formats each variable
    in a payload value as a regex, ``(a|b)`` for several values, which the API
    reads as a list.  The code-mode alternative (payload as a JSON string)
    breaks on multi-values, because the plugin pastes them as JSON arrays
    inside the quotes.
    """

    _KEYS = {"refId", "datasource", "target", "payload", "editorMode"}

    def __init__(self, target: str, payload: dict[str, str] | None = None, ref_id: str = "A"):
        for k, v in (payload or {}).items():
            if not isinstance(v, str):  # the plugin calls toString() on each value
                raise ValueError(f"API target {target!r}: payload value of {k!r} must be a string, got {v!r}")
        self.target = target
        self.payload = dict(payload or {})
        self.ref_id = ref_id

    def build(self) -> ApiQuery:
        return self

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": api_ref(), "editorMode": "builder",
                "target": self.target, "payload": self.payload}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiQuery:
        _check_keys(data, cls._KEYS, "API target")
        if data.get("editorMode") != "builder" or not isinstance(data.get("payload"), dict):
            raise ValueError(f"API target {data.get('refId')!r}: expected builder mode with an object payload")
        return cls(data["target"], data["payload"], data.get("refId", "A"))


def register_variants() -> None:
    """Let ``Dashboard.from_json`` decode our targets (idempotent: the runtime is a registry by name)."""
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(INFLUX_TYPE, InfluxQL.from_json))
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(API_TYPE, ApiQuery.from_json))


# ---------------------------------------------------------------- annotations

class InfluxAnnotationTarget:
    """What Grafana's InfluxDB plugin keeps in an annotation's ``target`` since 10.x.

    The SDK's AnnotationTarget models only the built-in Grafana source (limit,
    matchAny, tags, type); Grafana's own schema says "this should just be a
    normal query target".  The plugin's migration (prepareAnnotation) reads
    exactly these keys, so they are written in full.
    """

    def __init__(self, query: str, text_column: str, tags_column: str, title_column: str = ""):
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def build(self) -> InfluxAnnotationTarget:
        return self

    def to_json(self) -> dict[str, object]:
        return {"refId": "Anno", "query": self.query, "rawQuery": True, "resultFormat": "table",
                "fromAnnotations": True, "queryType": "tags", "textColumn": self.text_column,
                "tagsColumn": self.tags_column, "titleColumn": self.title_column, "timeEndColumn": "",
                "limit": 0, "matchAny": False, "tags": [], "type": "tags"}


class ApiAnnotationTarget:
    """An annotation of the JSON plugin: a /query target whose table Grafana turns into events."""

    def __init__(self, payload: dict[str, str]):
        self.query = ApiQuery("incidents_annotations", payload, ref_id="Anno")

    def build(self) -> ApiAnnotationTarget:
        return self

    def to_json(self) -> dict[str, object]:
        out = self.query.to_json()
        del out["datasource"]  # the annotation names its data source once, beside the target
        return out


def influx_annotation(name: str, query: str, color: str, enable: bool = True) -> cogbuilder.Builder:
    return _Annotation(dashboard.AnnotationQuery(
        name=name, datasource=influx_ref(), enable=enable, icon_color=color,
        target=InfluxAnnotationTarget(query, text_column="title", tags_column="kind,severity,site",
                                      title_column="title")))  # type: ignore[arg-type]


def api_annotation(name: str, payload: dict[str, str], color: str, enable: bool = True) -> cogbuilder.Builder:
    return _Annotation(dashboard.AnnotationQuery(
        name=name, datasource=api_ref(), enable=enable, icon_color=color,
        target=ApiAnnotationTarget(payload)))  # type: ignore[arg-type]


class _Annotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    def __init__(self, query: dashboard.AnnotationQuery):
        self._query = query

    def build(self) -> dashboard.AnnotationQuery:
        return self._query


# ---------------------------------------------------------------- variables

def api_variable_query(target: str, **filters: str) -> dict[str, object]:
    """The query of a template variable served by the API's ``/variable``.

    The plugin replaces variables in the whole text with Grafana's ``json``
    format (``JSON.stringify`` of the value: ``"bat_xat"``, or ``["a","b"]`` for
    All), so a filter is written *unquoted*: ``{"district": $district}``.
    Quoting it (``"$district"``) would yield ``""bat_xat""``: not JSON.
    """
    parts = [f'"target": {json.dumps(target)}'] + [f"{json.dumps(k)}: {v}" for k, v in filters.items()]
    return {"query": "{" + ", ".join(parts) + "}", "format": "json"}
