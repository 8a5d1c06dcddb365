"""Cảm biến đô thị thông minh / Smart-city sensors: air quality, rivers and rain, street lights, cameras."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import units

from ..panels import (GREY, api_variable, bool_states, field_series, gauges, marks, series, unit_of, where)
from ..queries import ApiQuery, InfluxQL
from . import add_row, new_board

UID = "fansipan-sensors"
PLACE = ('"district" =~ /^$district$/', '"site" =~ /^$commune$/')


def latest(title: str, kind: str, field: str, **kw):
    """The last reading of each device of a kind, as bars against the profile's marks."""
    q = f'SELECT last("{field}") FROM "{kind}" {where(*PLACE)} GROUP BY "device"'
    return gauges(title, [InfluxQL(q, alias="$tag_device")], unit=unit_of(kind, field),
                  thresholds=marks(kind, field), **kw)


def air_panels() -> list:
    return [
        field_series("Bụi mịn PM2.5 / PM2.5", "air_quality", "pm25", PLACE, w=9,
                     description="Vạch 50 µg/m³: ngưỡng trung bình 24 giờ QCVN 05:2023. / 50 µg/m³ mark: the "
                     "QCVN 05:2023 24-hour limit."),
        field_series("Bụi PM10 / PM10", "air_quality", "pm10", PLACE, w=9),
        latest("PM2.5 hiện tại / PM2.5 now", "air_quality", "pm25", w=6, h=8, minimum=0),
    ]


def water_panels() -> list:
    rain = ApiQuery("telemetry", {"kind": "water_level", "field": "rain_mm", "site": "$commune", "agg": "max"})
    return [
        field_series("Mực nước sông / River water level", "water_level", "level_m", PLACE, w=9, h=9,
                     description="Vạch cảnh báo chung cho loại trạm; mốc báo động riêng từng trạm (BĐ1-BĐ3) theo cao "
                     "độ 0 của trạm. / Generic flood marks of the kind; each station's own alarm levels (BĐ1-BĐ3) are "
                     "relative to its gauge zero."),
        field_series("Cường độ mưa / Rain intensity", "water_level", "rain_intensity_mm_h", PLACE, agg="max", w=9, h=9,
                     description="50 mm/h: mưa rất to, nguy cơ lũ quét, sạt lở. / 50 mm/h: violent rain, flash-flood "
                     "and landslide risk."),
        latest("Mực nước hiện tại / Water level now", "water_level", "level_m", w=6, h=9),
        series("Lượng mưa / Rainfall per report (API)", [rain], unit=units.Millimeter, api=True, w=24, h=7,
               description="Lượng mưa lớn nhất trong một lần báo cáo, theo khoảng. / Largest rain per report, per "
               "window, from the Fansipan API."),
    ]


def light_panels() -> list:
    return [
        bool_states("Đèn đường / Street lights on", "street_light", "lamp_on", PLACE, on="Bật / On", off="Tắt / Off",
                    agg="max", off_color=GREY, w=8),
        field_series("Công suất chiếu sáng / Lighting power", "street_light", "power_w", PLACE, w=8, stacked=True),
        field_series("Điện áp tủ chiếu sáng / Cabinet voltage", "street_light", "voltage_v", PLACE, w=8),
    ]


def camera_panels() -> list:
    return [
        bool_states("Camera trực tuyến / Cameras online", "camera", "online", PLACE, on="Trực tuyến / Online",
                    off="Mất hình / No video", w=12),
        field_series("Dung lượng ghi hình / Recording storage used", "camera", "storage_used_pct", PLACE, agg="max",
                     w=12, minimum=0, maximum=100),
    ]


def build() -> db.Dashboard:
    board = new_board(UID, "Cảm biến đô thị thông minh / Smart-city sensors",
                      "Chất lượng không khí, mực nước và mưa, chiếu sáng công cộng, camera. / Air quality, water "
                      "levels and rain, street lights, cameras.", incident_filter='"site" =~ /^$commune$/',
                      api_filter={"site": "$commune"})
    board.with_variable(api_variable("district", "Huyện / District", "districts", include_all=True))
    board.with_variable(api_variable("commune", "Xã / Commune", "communes", include_all=True, district="$district"))
    add_row(board, "Không khí / Air quality", *air_panels())
    add_row(board, "Mực nước và mưa / Water levels and rain", *water_panels())
    add_row(board, "Chiếu sáng công cộng / Street lights", *light_panels())
    add_row(board, "Camera giám sát / Cameras", *camera_panels())
    return board
