"""The application: create_app(...) with injectable boundaries, and serve() for ``python -m api``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from analytics.incidents import IncidentStore
from device_profiles import Registry, load_registry
from fansipan.config import Settings
from storage.base import Store

from . import errors
from .body_limit import BodyLimit
from .deps import AppState
from .keys import KeyStore
from .live import LiveStatus
from .metrics import ApiMetrics, RequestMetrics
from .routes import availability as _availability
from .routes import devices as _devices
from .routes import grafana as _grafana
from .routes import health as _health
from .routes import incidents as _incidents
from .routes import keys as _keys
from .routes import metrics as _metrics
from .routes import quarantine as _quarantine
from .routes import sites as _sites
from .routes import status as _status
from .routes import telemetry as _telemetry
from .settings import ApiSettings

log = logging.getLogger("fansipan.api")
VERSION = "0.1.0"

DESCRIPTION = """
Telemetry, devices, sites, incidents and the quarantine of the Lào Cai provincial operations center
(IOC), a Grafana data source, Prometheus metrics and a status page.

*Dữ liệu đo, thiết bị, địa bàn, sự cố và dữ liệu bị từ chối của Trung tâm điều hành tỉnh Lào Cai.*

**Auth / Xác thực**: every route except `/health` needs an API key, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>` (never in the URL). Roles: **viewer** reads;
**operator** also acknowledges, assigns, resolves and comments on incidents; **admin** also manages keys.
The first admin key: `fansipan keys create --role admin --name ops`.

**Scopes / Phạm vi**: a viewer or operator key may be scoped to `agency:<id>`, `district:<id>` or
`commune:<id>`: it sees that scope's devices, telemetry and incidents plus the shared data (air quality,
water level...), and anything else answers 404 as if it did not exist; `/metrics` needs a province-wide
key. *Khóa có phạm vi chỉ thấy thiết bị, dữ liệu và sự cố trong phạm vi, cùng dữ liệu dùng chung.*
See docs/shared-data.md.

**Errors / Lỗi**: always `{"error": {"code", "message", "details"}}`; the message names the parameter
at fault and what to do.

**Times / Thời gian**: RFC 3339 with a zone, epoch seconds or milliseconds, or `now-1h`.
"""

ROUTES = (_telemetry, _devices, _sites, _incidents, _quarantine, _grafana, _keys, _metrics, _status, _health,
          _availability)
TAGS = [
    {"name": "telemetry", "description": "Series by device and field, raw or downsampled; latest values / Dữ liệu đo"},
    {"name": "devices", "description": "Devices from the profiles, with live status / Thiết bị và trạng thái"},
    {"name": "sites", "description": "Province, data center, districts, communes / Địa bàn"},
    {"name": "incidents", "description": "What the detector found, and the operators' actions / Sự cố"},
    {"name": "quarantine", "description": "Readings the collector refused, and why / Dữ liệu bị từ chối"},
    {"name": "grafana", "description": "The JSON data source for Grafana (simpod-json-datasource) / Nguồn dữ liệu Grafana"},
    {"name": "keys", "description": "API keys (admin) / Khóa API"},
    {"name": "metrics", "description": "Prometheus metrics of Fansipan itself / Chỉ số giám sát"},
    {"name": "status", "description": "The status page / Trang trạng thái"},
    {"name": "health", "description": "Liveness for load balancers and compose / Tình trạng dịch vụ"},
    {"name": "availability", "description": "Uptime, outages, MTTR/MTBF, the monthly report, planned maintenance / "
                                            "Tỷ lệ sẵn sàng, báo cáo tháng, lịch bảo trì"},
]


def create_app(settings: Settings | None = None, registry: Registry | None = None, store: Store | None = None,
               incidents: IncidentStore | None = None, *, keys: KeyStore | None = None,
               api_settings: ApiSettings | None = None, clock: Callable[[], int] = time.time_ns) -> FastAPI:
    """Build the API. Whatever is not passed is opened from the settings, and closed at shutdown."""
    settings = settings or Settings.from_env(mqtt=False)
    api_settings = api_settings or ApiSettings.from_env()
    registry = registry or load_registry(settings.profiles_dir)
    owned = []
    if store is None:
        from storage.factory import open_store

        store = open_store(settings, registry)
        owned.append(store)
    if incidents is None:
        incidents = IncidentStore(settings.incidents_path)
        owned.append(incidents)
    if keys is None:
        keys = KeyStore(settings.incidents_path)  # the same relational file as the incidents
        owned.append(keys)
    state = AppState(settings=settings, api=api_settings, registry=registry, store=store, incidents=incidents,
                     keys=keys, clock=clock, live=LiveStatus(registry), owned=owned)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for thing in reversed(state.owned):
            try:
                thing.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("closing %r: %s", thing, exc)

    app = FastAPI(title="Fansipan API", version=VERSION, description=DESCRIPTION, openapi_tags=TAGS,
                  lifespan=lifespan, contact={"name": "Lào Cai IOC / Trung tâm điều hành tỉnh Lào Cai"},
                  license_info={"name": "Apache-2.0"})
    app.state.fansipan = state
    app.state.metrics = ApiMetrics(lambda: state)
    errors.install(app)
    for module in ROUTES:
        app.include_router(module.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    return app


def serve(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> None:
    """Run the API with uvicorn on FANSIPAN_API_HOST:FANSIPAN_API_PORT (default 127.0.0.1:8080)."""
    import uvicorn

    settings = settings or Settings.from_env(mqtt=False)
    api_settings = api_settings or ApiSettings.from_env()
    app = create_app(settings, api_settings=api_settings)
    log.info("Fansipan API on http://%s:%d (docs: /docs, status page: /status)", api_settings.host, api_settings.port)
    uvicorn.run(app, host=api_settings.host, port=api_settings.port, log_level="info",
                proxy_headers=False)  # behind a reverse proxy, configure --forwarded-allow-ips there
