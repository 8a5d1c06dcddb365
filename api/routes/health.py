"""GET /health: is the store reachable, is the incidents database reachable. No key needed.

For load balancers and compose health checks: 200 when both answer, 503 (in the
API's error shape) when one does not.  The details stay generic: this route is
public, and a store URL or a file path is not for anonymous callers (the log has them).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter

from ..deps import StateDep
from ..errors import ApiError, responses
from ..models import Check, Health

log = logging.getLogger("fansipan.api")
router = APIRouter(tags=["health"])


def _check(name: str, probe) -> Check:
    try:
        probe()
    except Exception as exc:  # any failure means "not healthy"; the log keeps the reason
        log.warning("health: %s unreachable: %s", name, exc)
        return Check(ok=False, detail="unreachable")
    return Check(ok=True, detail="reachable")


@router.get("/health", response_model=Health, responses=responses(503),
            summary="Health: store and incidents database reachable / Tình trạng dịch vụ",
            description="No API key needed. 200 when the telemetry store and the incidents database both "
                        "answer; 503 (error shape, `details.checks`) when one does not.")
def health(state: StateDep) -> Health:
    checks = {"store": _check("store", state.store.last_seen),
              "incidents_db": _check("incidents_db", state.incidents.last_heartbeat)}
    checks["store"].detail = f"{state.settings.store}: {checks['store'].detail}"
    if not all(c.ok for c in checks.values()):
        bad = ", ".join(n for n, c in checks.items() if not c.ok)
        raise ApiError(503, "unhealthy", f"not healthy: {bad} unreachable; retry later, see the API's log",
                       {"checks": {n: c.model_dump() for n, c in checks.items()}}, {"Retry-After": "5"})
    return Health(status="ok", checks=checks)
