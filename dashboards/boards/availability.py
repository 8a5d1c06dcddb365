"""Khả dụng hạ tầng / Availability: uptime by district, commune and the data center, the longest outages.

Figures come from the API (analytics/availability.py: incidents and silence history,
planned maintenance left out, an outage behind a cut uplink charged to the uplink),
over the board's time range; days are the province's (Asia/Ho_Chi_Minh).  One
InfluxDB panel shows the outage incidents as the detector opened them, next to the
figures they produce.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import units

from ..panels import GREEN, ORANGE, RED, api_variable, prop, registry, series, stat_panel, steps, table_panel, where
from ..queries import ApiQuery, InfluxQL
from . import add_row, commune_link, new_board

UID = "fansipan-availability"
UPTIME = steps((None, RED), (98, ORANGE), (99, GREEN))
OPENED = '"event" = \'opened\''
OUTAGE_KINDS = '"kind" =~ /^(silence|uplink_down|power_loss|dependants_silent)$/'


def summary_panels() -> list:
    return [
        stat_panel("Khả dụng toàn tỉnh / Province availability",
                   [ApiQuery("availability_total", {"site": "lao_cai"})], unit=units.Percent, thresholds=UPTIME,
                   api=True, w=6, h=5, description="Tổng theo xã (mỗi xã như nhau), trừ bảo trì theo kế hoạch. / "
                   "Summed over the communes (each weighs the same), planned maintenance excluded."),
        stat_panel("Khả dụng trung tâm dữ liệu / Data center availability",
                   [ApiQuery("availability_total", {"site": "dc_laocai"})], unit=units.Percent, thresholds=UPTIME,
                   api=True, w=6, h=5),
        stat_panel("Khả dụng huyện đã chọn / Selected districts",
                   [ApiQuery("availability_total", {"site": "$district"})], unit=units.Percent, thresholds=UPTIME,
                   api=True, w=12, h=5,
                   description="Mỗi huyện một ô, cả khoảng thời gian đã chọn. / One box per district, over the "
                   "whole time range."),
    ]


def by_district() -> timeseries.Panel:
    p = series("Khả dụng theo ngày, từng huyện / Daily availability by district",
               [ApiQuery("availability_daily", {"site": "$district"})], unit=units.Percent, thresholds=UPTIME,
               api=True, w=12, h=9, maximum=100,
               description="Mỗi điểm là một ngày (giờ Việt Nam). / One point per local day.")
    return p.interval("1d")


def outage_incidents() -> timeseries.Panel:
    q = (f'SELECT count("id") FROM "fansipan_incident" {where(OUTAGE_KINDS, OPENED)} '
         'GROUP BY time($__interval), "kind" fill(0)')
    return series("Sự cố gián đoạn mới / Outage incidents opened", [InfluxQL(q, alias="$tag_kind")],
                  unit=units.Short, w=12, h=9, stacked=True,
                  description="Mất tín hiệu, mất kết nối, mất điện, theo thời điểm phát hiện. / Silence, uplink and "
                  "power incidents, when the detector opened them.")


def communes() -> object:
    p = table_panel("Khả dụng theo xã / Availability by commune",
                    [ApiQuery("availability_sites", {"district": "$district"})], w=12, h=12,
                    description="Thấp nhất trước. / Worst first.")
    return (p.override_by_name("uptime_pct", [prop("unit", units.Percent), prop("decimals", 3)])
            .override_by_name("site", [prop("links", [commune_link()])]))


def outages() -> object:
    return table_panel("Gián đoạn dài nhất và nguyên nhân / Longest outages and causes",
                       [ApiQuery("availability_outages", {"district": "$district"})], w=12, h=12,
                       description="Thời gian gián đoạn trong khoảng đã chọn, sau khi trừ bảo trì. / Downtime inside "
                       "the range, after planned maintenance.")


def build() -> db.Dashboard:
    registry()  # fail early, naming the file, if the profiles do not load
    board = new_board(UID, "Khả dụng hạ tầng / Availability",
                      "Tỷ lệ sẵn sàng của xã, huyện và trung tâm dữ liệu; bảo trì theo kế hoạch không tính; sự cố "
                      "đường truyền tính cho đường truyền. / Uptime of communes, districts and the data center; "
                      "planned maintenance excluded; an outage behind a cut uplink counts against the uplink.",
                      incident_filter=OUTAGE_KINDS, api_filter={"district": "$district"})
    board.time("now-30d", "now")
    board.with_variable(api_variable("district", "Huyện / District", "districts", include_all=True))
    add_row(board, "Tổng quan / Summary", *summary_panels())
    add_row(board, "Theo thời gian / Over time", by_district(), outage_incidents())
    add_row(board, "Xã và sự cố / Communes and outages", communes(), outages())
    return board
