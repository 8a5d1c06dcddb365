"""Chi tiết xã / Commune drill-down: the uplink, the loudspeakers, the UPS and the sensors of one commune."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard, units

from ..panels import (GAPS, GREEN, GREY, ORANGE, RED, api_variable, bool_states, field_series, influx_variable, prop,
                      registry, series, table_panel, where)
from ..queries import ApiQuery, InfluxQL
from . import add_row, new_board

UID = "fansipan-commune"
COMMUNE = '"site" =~ /^$commune$/'
DEVICE = '"device" =~ /^$device$/'


def _kinds_regex() -> str:
    """Every device kind's measurement, from the profiles: the device panels must not match the incident
    or quarantine measurements (``fansipan_incident`` carries ``device`` as a field)."""
    return "/^(" + "|".join(sorted(registry().kinds)) + ")$/"


def uplink_panels() -> list:
    rx_tx = [ApiQuery("telemetry", {"kind": "commune_router", "field": f, "site": "$commune"}, ref_id=r)
             for f, r in (("rx_mbps", "A"), ("tx_mbps", "B"))]
    return [
        field_series("Độ trễ đường truyền / Uplink latency", "commune_router", "latency_ms", (COMMUNE,), w=8,
                     description="Thời gian khứ hồi tới trung tâm dữ liệu; vạch: mốc cảnh báo của hồ sơ thiết bị. / "
                     "Round trip to the data center; lines: the profile's warn and crit marks."),
        field_series("Mất gói / Packet loss", "commune_router", "packet_loss_pct", (COMMUNE,), w=8),
        bool_states("Trạng thái đường truyền / Link state", "commune_router", "link_up", (COMMUNE,),
                    on="Lên / Up", off="Mất / Down", w=8,
                    description="Khoảng trống: bộ định tuyến không báo cáo (thường là mất đường truyền). / "
                    "Gaps: the router did not report (usually the link itself is cut)."),
        series("Lưu lượng / Throughput (rx, tx)", rx_tx, unit=units.MegabitsPerSecond, api=True, w=12,
               description="Từ API Fansipan. / From the Fansipan API (telemetry metric)."),
        table_panel("Thiết bị tại xã / Devices at the commune", [ApiQuery("device_status", {"site": "$commune"})],
                  w=12, h=8).override_by_name("status_code", [
                      prop("custom.cellOptions", {"type": "color-background"}),
                      prop("mappings", [dashboard.ValueMap(options={
                          "0": dashboard.ValueMappingResult(text="Bình thường / OK", color=GREEN, index=0),
                          "1": dashboard.ValueMappingResult(text="Im lặng / Silent", color=ORANGE, index=1),
                          "2": dashboard.ValueMappingResult(text="Không tới được / Unreachable", color=RED, index=2),
                          "3": dashboard.ValueMappingResult(text="Chưa rõ / Unknown", color=GREY, index=3)})])]),
    ]


def loudspeaker_panels() -> list:
    note = ("Loa chỉ báo cáo trong khung giờ phát (05:30-07:00, 11:00-12:00, 17:00-18:30): ngoài giờ để trống là "
            "bình thường. / Clusters report only in the broadcast windows: blank outside them is normal.")
    return [
        bool_states("Loa trực tuyến / Loudspeakers online", "ip_loudspeaker", "online", (COMMUNE,),
                    on="Trực tuyến / Online", off="Mất / Offline", w=12, description=note),
        bool_states("Loa đang phát / Loudspeakers broadcasting", "ip_loudspeaker", "broadcasting", (COMMUNE,),
                    on="Đang phát / Broadcasting", off="Im lặng / Silent", agg="max", off_color=GREY, w=12,
                    description=note),
    ]


def ups_panels() -> list:
    return [
        field_series("Pin UPS / UPS battery charge", "commune_ups", "battery_charge_pct", (COMMUNE,), w=8,
                     minimum=0, maximum=100),
        field_series("Tải UPS / UPS load", "commune_ups", "load_pct", (COMMUNE,), w=8),
        bool_states("Nguồn cấp / Power source", "commune_ups", "on_battery", (COMMUNE,),
                    on="Chạy pin / On battery", off="Điện lưới / Mains", agg="max", on_color=ORANGE,
                    off_color=GREEN, w=8,
                    description="Chạy pin quá lâu thì UPS cạn và cả xã tắt. / On battery for long, the UPS "
                    "drains and the whole commune goes dark."),
    ]


def sensor_panels() -> list:
    return [
        field_series("Mực nước / Water level", "water_level", "level_m", (COMMUNE,), w=6),
        field_series("Bụi mịn PM2.5 / PM2.5", "air_quality", "pm25", (COMMUNE,), w=6),
        bool_states("Đèn đường / Street lights", "street_light", "lamp_on", (COMMUNE,), on="Bật / On",
                    off="Tắt / Off", agg="max", off_color=GREY, w=6),
        bool_states("Camera trực tuyến / Cameras online", "camera", "online", (COMMUNE,),
                    on="Trực tuyến / Online", off="Mất hình / No video", w=6),
    ]


def device_panels() -> list:
    latest = InfluxQL(f'SELECT last(*) FROM {_kinds_regex()} {where(DEVICE)}', result_format="table")
    over_time = InfluxQL(f'SELECT mean(*) FROM {_kinds_regex()} {where(DEVICE)} GROUP BY time($__interval) {GAPS}',
                         alias="$col")
    # arrived_ms is when the collector received the reading (epoch ms): worth a column in the
    # table, as a date, but on a value axis it would flatten every real field to zero.
    received = [prop("unit", "dateTimeAsLocal"), prop("displayName", "Nhận lúc / Received at")]
    hide_series = [prop("custom.hideFrom", {"legend": True, "tooltip": True, "viz": True})]
    return [
        table_panel("Giá trị mới nhất / Latest values ($device)", [latest], w=24, h=5, api=False)
        .override_by_name("last_arrived_ms", received),
        series("Diễn biến / Over time ($device)", [over_time], w=24, h=9).override_by_regexp("arrived_ms", hide_series),
    ]


def build() -> db.Dashboard:
    board = new_board(UID, "Chi tiết xã / Commune drill-down",
                      "Một xã: đường truyền, loa truyền thanh, bộ lưu điện, cảm biến. / One commune: uplink, IP "
                      "loudspeakers, UPS, sensors.", incident_filter=COMMUNE, api_filter={"site": "$commune"})
    board.with_variable(api_variable("district", "Huyện / District", "districts", include_all=True))
    board.with_variable(api_variable("commune", "Xã / Commune", "communes", district="$district"))
    board.with_variable(influx_variable(
        "device", "Thiết bị / Device", f'SHOW TAG VALUES WITH KEY = "device" WHERE {COMMUNE}'))
    add_row(board, "Đường truyền / Uplink", *uplink_panels())
    add_row(board, "Loa truyền thanh / IP loudspeakers", *loudspeaker_panels())
    add_row(board, "Nguồn điện / Power (UPS)", *ups_panels())
    add_row(board, "Cảm biến / Sensors", *sensor_panels())
    add_row(board, "Thiết bị / Device: $device", *device_panels())
    return board
