"""GET /metrics: Prometheus text format, from the API's own CollectorRegistry (see api.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import Viewer
from ..errors import responses
from ..scope import require_province_wide

router = APIRouter(tags=["metrics"])

_EXAMPLE = """# HELP fansipan_incidents_open open or acknowledged incidents, by severity
# TYPE fansipan_incidents_open gauge
fansipan_incidents_open{severity="critical"} 1.0
fansipan_detector_lag_seconds 3.2
fansipan_quarantined_last_hour{reason="out_of_range"} 12.0
"""


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}, "example": _EXAMPLE}},
                             "description": "Prometheus text exposition format 0.0.4"}, **responses(401, 403)},
            summary="Prometheus metrics / Chỉ số giám sát",
            description="API requests by route and status, readings quarantined in the last hour by reason, open "
                        "incidents by severity, detector lag (seconds since its last cycle), readings stored in the "
                        "last minute by kind, devices by live status. Needs a province-wide viewer key (Prometheus: "
                        "`authorization: {credentials_file: ...}`): the figures cover the whole province, so a "
                        "scoped key gets 403.")
def metrics(_key: Viewer, request: Request) -> Response:
    require_province_wide(_key, "/metrics")
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
