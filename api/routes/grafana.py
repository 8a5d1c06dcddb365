"""The Grafana JSON data source (simpod-json-datasource), under /api/v1/grafana.

The contract, metric by metric, is docs/grafana-datasource.md.  A viewer key is
enough: Grafana sends it as a custom header configured on the data source.  A scoped key
(api.scope) gets only the districts, communes, devices, series and incidents of its scope.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response

from ..deps import NowDep, RegistryDep, StateDep, Viewer, ViewerScope
from ..errors import responses
from ..grafana import catalog
from ..grafana import query as gq
from ..grafana.models import (
    AnnotationsIn,
    MetricConfig,
    MetricsIn,
    Option,
    PayloadOptionsIn,
    QueryIn,
    Table,
    TagKey,
    TagValue,
    TagValuesIn,
    TimeSeries,
    VariableIn,
    VariableValue,
    payload_dict,
)

router = APIRouter(prefix="/api/v1/grafana", tags=["grafana"], responses=responses(400, 401, 403, 422))
_DOC = " See docs/grafana-datasource.md."
AnyBody = Annotated[dict[str, Any] | None, Body(examples=[{}], description="ignored: Grafana sends {} or its options")]


@router.get("", summary="Test connection / Kiểm tra kết nối", description="200 for Grafana's 'Save & test'.",
            responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
@router.get("/", include_in_schema=False)
def test_connection(key: Viewer) -> dict[str, str]:
    return {"status": "ok"}


@router.post("/metrics", response_model=list[MetricConfig], summary="Metrics for Builder mode / Danh sách chỉ số",
             description="Every metric with its payload fields." + _DOC)
def metrics(key: Viewer, body: MetricsIn | None = None) -> list[MetricConfig]:
    return catalog.metric_configs()


@router.post("/metric-payload-options", response_model=list[Option],
             summary="Options of one payload field / Lựa chọn cho tham số",
             description="Kinds, fields of a kind, devices, communes, districts, aggregates, severities, statuses "
                         "or reasons, as [{label, value}]." + _DOC)
def metric_payload_options(key: Viewer, view: ViewerScope, registry: RegistryDep, body: PayloadOptionsIn) -> list[Option]:
    return catalog.payload_options(registry, body.metric, payload_dict(body.payload), body.name, view)


@router.post("/query", response_model=list[TimeSeries | Table], responses=responses(413, 501, 503),
             summary="Panel data and annotations / Dữ liệu cho bảng điều khiển",
             description="Time series as [{target, datapoints: [[value, epoch_ms]]}], tables as {type: table, "
                         "columns, rows}; metrics: " + ", ".join(gq.METRICS) + ". A scoped key gets only the series, "
                         "devices, sites and incidents of its scope and the shared data." + _DOC)
def query(key: Viewer, view: ViewerScope, state: StateDep, now: NowDep, body: QueryIn) -> JSONResponse:
    # Returned as a ready JSONResponse: re-validating tens of thousands of datapoints against the
    # response model would cost more than the query itself (the model still documents the shape).
    # orjson renders 20 series of 1,440 points about 6x faster than the json module (BENCHMARKS.md).
    return Response(orjson.dumps(gq.run(state, now, body, view), option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


@router.post("/variable", response_model=list[VariableValue], response_model_by_alias=True,
             summary="Template variables / Biến mẫu",
             description="payload.target: districts, communes (filter: district), devices (filters: site, district, "
                         "kind), kinds, fields (needs kind). Answers [{__text, __value}]." + _DOC)
def variable(key: Viewer, view: ViewerScope, registry: RegistryDep, body: VariableIn) -> list[VariableValue]:
    return catalog.variable(registry, payload_dict(body.payload), view)


@router.post("/tag-keys", response_model=list[TagKey], summary="Ad hoc filter keys / Khóa lọc",
             description="district, site, kind, severity." + _DOC)
def tag_keys(key: Viewer, body: AnyBody = None) -> list[TagKey]:
    return catalog.tag_keys()


@router.post("/tag-values", response_model=list[TagValue], summary="Ad hoc filter values / Giá trị lọc",
             description="The ids a key can take." + _DOC)
def tag_values(key: Viewer, view: ViewerScope, registry: RegistryDep, body: TagValuesIn) -> list[TagValue]:
    return catalog.tag_values(registry, body.key, view)


@router.post("/search", response_model=list[str],
             responses={200: {"content": {"application/json": {"example": ["telemetry", "incidents_open"]}}}},
             summary="Metric names (SimpleJSON) / Tên chỉ số",
             description="For the older SimpleJSON plugin: the metric names." + _DOC)
def search(key: Viewer, body: AnyBody = None) -> list[str]:
    return list(catalog.METRIC_NAMES)


@router.post("/annotations", summary="Incidents as annotations (SimpleJSON) / Sự cố dạng chú thích",
             responses={200: {"content": {"application/json": {"example": [
                 {"annotation": {"name": "Sự cố"}, "time": 1795686600000, "timeEnd": 1795690200000,
                  "isRegion": True, "title": "Mất kết nối / Uplink down at Xã Y Tý", "text": "...",
                  "tags": ["uplink_down", "critical", "bat_xat", "y_ty", "open"]}]}}}},
             description="For the older SimpleJSON plugin; the simPod plugin asks /query with target "
                         "incidents_annotations instead. Filters as JSON in annotation.query." + _DOC)
def annotations(key: Viewer, view: ViewerScope, state: StateDep, now: NowDep, body: AnnotationsIn) -> JSONResponse:
    return JSONResponse(gq.simplejson_annotations(state, now, body, view))
