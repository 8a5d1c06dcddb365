"""The quarantine: readings the collector refused, with the raw payload and the reason."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ingest.validate import REASONS

from .. import scope
from ..deps import NowDep, StoreDep, Viewer, ViewerScope
from ..errors import responses
from ..models import Quarantined, QuarantineList
from ..params import TIME_HELP, parse_range, to_dt

router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"], responses=responses(400, 401, 403, 422, 501,
                                                                                              503))
SCAN = 10_000  # refusals read from the store when filtering by reason (the newest first)
Reason = Literal[REASONS]  # type: ignore[valid-type]  # the collector's closed set of reasons


@router.get("", response_model=QuarantineList, summary="Refused readings / Dữ liệu bị từ chối",
            description="What the collector refused and why, newest first: an unknown device or field, a value "
                        "out of the profile's range, a bad timestamp, an undecodable payload... With `reason`, the "
                        f"newest {SCAN} refusals of the range are scanned. 501 when the store keeps no text "
                        "(VictoriaMetrics). A scoped key sees only refusals naming a device it can see (its scope's and "
                        f"shared ones), found among the newest {SCAN}; refusals naming no known device (undecodable "
                        "payloads, unknown topics) are for province-wide keys.")
def quarantine(key: Viewer, view: ViewerScope, store: StoreDep, now: NowDep,
               since: Annotated[str | None, Query(description=f"default now-1h; {TIME_HELP}",
                                                  examples=["now-1h"])] = None,
               until: Annotated[str | None, Query(description=f"default now; {TIME_HELP}")] = None,
               reason: Annotated[Reason | None, Query(description="only this reason")] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> QuarantineList:
    start_ns, end_ns = parse_range(since, until, now, names=("since", "until"))
    rows = store.quarantined(start_ns, end_ns, SCAN if reason or not view.all else limit)
    chosen = [r for r in rows if (reason is None or r.reason == reason) and scope.rejected_visible(view, r)][:limit]
    items = [Quarantined(arrived=to_dt(r.arrived_ns), reason=r.reason, topic=r.topic, kind=r.kind, device=r.device,
                         detail=r.detail, raw=r.raw.decode("utf-8", "backslashreplace")) for r in chosen]
    return QuarantineList(since=to_dt(start_ns), until=to_dt(end_ns), count=len(items), scanned=len(rows),
                          items=items)
