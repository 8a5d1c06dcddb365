"""The boards, one module each, and what they share: frame, links, incident annotations, rows.

Every board is a function returning an SDK ``Dashboard`` builder; BOARDS lists
them in menu order.  Board titles, row titles and panel titles are Vietnamese
first with English alongside ("Tổng quan tỉnh / Province overview"): the IOC's
operators read Vietnamese, the vendors' engineers who support them often don't.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard

from ..queries import api_annotation, influx_annotation

TAG = "fansipan"
# Local time, not the browser's: "today" (availability) must be the province's day
# even on a laptop set to another zone.
TIMEZONE = "Asia/Ho_Chi_Minh"

INCIDENTS_OPENED = ("SELECT \"title\", \"kind\", \"severity\", \"site\", \"device\", \"id\" "
                    "FROM \"fansipan_incident\" WHERE \"event\" = 'opened'")


def new_board(uid: str, title: str, description: str, incident_filter: str = "",
              api_filter: dict[str, str] | None = None) -> db.Dashboard:
    """A board with the common frame.

    Incidents come as two annotation layers: the detector's "opened" events from
    InfluxDB (on by default: they sit next to the telemetry and need nothing
    else up), and the API's incidents as regions from start to resolution (off by
    default, so the two layers do not draw every incident twice; an operator
    switches layers at the top of the board).
    """
    cond = f" AND {incident_filter}" if incident_filter else ""
    return (
        db.Dashboard(title).uid(uid).description(description).tags([TAG, "lào cai"])
        .timezone(TIMEZONE).week_start("monday").time("now-6h", "now").refresh("1m")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        # Provisioned from code: edits made in the UI would be lost on the next
        # render, so the board says so by being read-only.
        .readonly()
        .link(db.DashboardLink("Các bảng Fansipan / Fansipan boards").type(dashboard.DashboardLinkType.DASHBOARDS)
              .tags([TAG]).as_dropdown(True).include_vars(True).keep_time(True))
        .annotation(influx_annotation("Sự cố mới / Incidents opened (InfluxDB)",
                                      f"{INCIDENTS_OPENED}{cond} AND $timeFilter", color="red"))
        .annotation(api_annotation("Sự cố theo thời gian / Incidents as regions (API)", api_filter or {},
                                   color="orange", enable=False))
    )


def add_row(board: db.Dashboard, title: str, *panels) -> db.Dashboard:
    """An expanded row and the panels under it.

    The panels are added at the top level after the row, not nested in it:
    Grafana reads a row's nested ``panels`` only when the row is collapsed, so
    panels nested in an expanded row would silently not show.
    """
    board.with_row(db.Row(title))
    for p in panels:
        board.with_panel(p)
    return board


def commune_link(title: str = "Xem xã / Open the commune board") -> dict[str, object]:
    """A data link from a row with a ``site`` column to that commune's drill-down board."""
    return {"title": title, "url": "/d/fansipan-commune/?var-district=$__all&var-commune=${__data.fields.site}"
            "&${__url_time_range}"}
