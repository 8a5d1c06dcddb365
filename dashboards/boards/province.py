"""Tổng quan tỉnh / Province overview: what is out right now, where, and how available the communes were today."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb, dashboard as db, geomap
from grafana_foundation_sdk.models import common, dashboard, units

from ..panels import (GREEN, GREY, ORANGE, RED, api_variable, gauges, prop, registry, series, site_names, table_panel,
                      stat_panel, steps, where)
from ..queries import ApiQuery, InfluxQL, api_ref
from . import add_row, commune_link, new_board

UID = "fansipan-province"
DISTRICT = '"district" =~ /^$district$/'

# status_code of the API's site_status (docs/grafana-datasource.md): 0 ok, 1 degraded, 2 down, 3 unknown.
STATUS_STEPS = ((None, GREEN), (1, ORANGE), (2, RED), (3, GREY))
STATUS_TEXT = {"0": ("Bình thường / OK", GREEN), "1": ("Suy giảm / Degraded", ORANGE),
               "2": ("Mất kết nối / Down", RED), "3": ("Chưa rõ / Unknown", GREY)}
SEVERITY_TEXT = {"critical": ("Nghiêm trọng / Critical", RED), "warning": ("Cảnh báo / Warning", ORANGE),
                 "info": ("Thông tin / Info", "blue")}


def _mapping(texts: dict[str, tuple[str, str]]) -> list:
    return [dashboard.ValueMap(options={k: dashboard.ValueMappingResult(text=t, color=c, index=i)
                                        for i, (k, (t, c)) in enumerate(texts.items())})]


def _colored_cells() -> dashboard.DynamicConfigValue:
    return prop("custom.cellOptions", {"type": "color-background"})


def incidents_table():
    return (table_panel("Sự cố đang mở / Open incidents", [ApiQuery("incidents_open", {"district": "$district"})],
                      w=24, h=9, description="Sự cố đang mở hoặc đã xác nhận, nặng nhất trước. / Open and "
                      "acknowledged incidents, most severe first, then oldest. A commune whose uplink is cut is ONE "
                      "incident; 'unreachable' counts the devices behind it.")
            .override_by_name("severity", [prop("mappings", _mapping(SEVERITY_TEXT)),
                                           _colored_cells()])
            .override_by_name("commune", [prop("links", [commune_link()])]))


def status_map():
    """Communes as dots on the map, coloured by status_code through the panel's thresholds."""
    markers = (cb.MapLayerOptions().type("markers").name("Xã / Communes").tooltip(True)
               .location(cb.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                         .latitude("lat").longitude("lon"))
               .config({"showLegend": True, "style": {
                   "color": {"field": "status_code", "fixed": "dark-green"},
                   "size": {"fixed": 7, "min": 4, "max": 15},
                   "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                   "text": {"field": "commune", "fixed": "", "mode": "field"},
                   "textConfig": {"fontSize": 9, "offsetY": -10, "textAlign": "center", "textBaseline": "bottom"}}}))
    return (geomap.Panel().title("Bản đồ trạng thái xã / Communes by status (map)").datasource(api_ref())
            .targets([ApiQuery("site_status", {"district": "$district"})])
            .view(geomap.MapViewConfig().id("coords").lat(22.35).lon(104.05).zoom(8))  # type: ignore[arg-type]
            .basemap(cb.MapLayerOptions().type("default").name("Nền / Basemap"))
            .layers([markers]).controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(False))
            .thresholds(steps(*STATUS_STEPS)).mappings(_mapping(STATUS_TEXT))
            .description("Xanh: bình thường, cam: suy giảm, đỏ: mất kết nối, xám: chưa có dữ liệu. / Green ok, "
                         "orange degraded, red down, grey never reported.")
            .span(12).height(13))


def status_grid():
    return (table_panel("Trạng thái từng xã / Status by commune", [ApiQuery("site_status", {"district": "$district"})],
                      w=12, h=13, description="Bấm tên xã để xem chi tiết. / Click a commune for its drill-down board.")
            .override_by_name("status_code", [prop("mappings", _mapping(STATUS_TEXT)),
                                              prop("thresholds", steps(*STATUS_STEPS).build()),
                                              _colored_cells()])
            .override_by_name("commune", [prop("links", [commune_link()])])
            .override_by_regexp("^(lat|lon|district_id|status)$", [
                prop("custom.hidden", True)]))


def communes_down():
    return stat_panel("Xã mất kết nối / Communes down", [ApiQuery("site_status", {"district": "$district",
                                                                                  "status": "down"})],
                      api=True, calc="count", fields="/^site$/", thresholds=steps((None, GREEN), (1, RED)), w=4, h=8,
                      no_value="0",  # no row is no commune down, not missing data
                      description="Xã có sự cố mất đường truyền hoặc mất điện đang mở. / Communes with an open "
                      "uplink-down or power-loss incident, or all devices silent.")


def opened_today():
    q = ('SELECT count("id") FROM "fansipan_incident" ' + where("\"event\" = 'opened'") + ' GROUP BY "severity"')
    return stat_panel("Sự cố mới hôm nay / Incidents opened today", [InfluxQL(q, alias="$tag_severity")],
                      thresholds=steps((None, "blue")), time_from="now/d", w=4, h=8, calc="sum", no_value="0",
                      description="Toàn tỉnh, từ 0 giờ (giờ Việt Nam). / Province-wide, since local midnight.")


def incidents_by_severity():
    p = series("Sự cố đang mở theo mức độ / Open incidents by severity",
               [ApiQuery("incidents_timeline", {"district": "$district"})], w=8, h=8, api=True, stacked=True,
               unit=units.Short)
    for sev, (text, color) in SEVERITY_TEXT.items():
        p.override_by_name(sev, [prop("displayName", text),
                                 prop("color", {"mode": "fixed", "fixedColor": color})])
    return p.draw_style(common.GraphDrawStyle.BARS)


def refused_readings():
    return series("Bản tin bị từ chối / Refused readings", [ApiQuery("quarantine_rate", {})], w=8, h=8, api=True,
                  unit=units.Short, stacked=True,
                  description="Bản tin bộ thu nhận từ chối, theo lý do. / Readings the collector refused, per reason "
                  "(decode_error, out_of_range, unknown_device, bad_timestamp...).")


def availability_today():
    """Share of one-minute windows in which the router reported its link up.

    A silent router counts as down: a cut uplink also cuts the router's own
    reports, so mean(link_up) over the reports alone would show 100 % for a
    commune that was dark all day.  fill(0) turns the missing windows into 0.
    """
    inner = (f'SELECT max("link_up") AS "up" FROM "commune_router" {where(DISTRICT)} '
             'GROUP BY time($__interval), "site" fill(0)')
    q = f'SELECT mean("up") FROM ({inner}) {where()} GROUP BY "site"'
    return (gauges("Khả dụng đường truyền hôm nay / Uplink availability today", [InfluxQL(q, alias="$tag_site")],
                   unit=units.PercentUnit, minimum=0, maximum=1, time_from="now/d", names=site_names(),
                   thresholds=steps((None, RED), (0.95, ORANGE), (0.99, GREEN)), w=12, h=20,
                   description="Tỉ lệ số phút bộ định tuyến báo 'lên' từ 0 giờ; không báo cáo tính là mất. Xã im "
                   "lặng cả ngày không có thanh nào: xem bản đồ trạng thái. / Share of minutes since local midnight "
                   "in which the commune router reported its link up; a silent router counts as down. A commune "
                   "silent all day has no bar at all (InfluxDB has no series for it): see the status map.")
            .interval("1m"))  # the router reports every 30 s: a window shorter than a minute could miss a report


def availability_by_district():
    inner = (f'SELECT max("link_up") AS "up" FROM "commune_router" {where(DISTRICT)} '
             'GROUP BY time($__interval), "site", "district" fill(0)')
    q = f'SELECT mean("up") FROM ({inner}) {where()} GROUP BY time($__interval), "district" fill(none)'
    p = series("Khả dụng theo huyện / Uplink availability by district", [InfluxQL(q, alias="$tag_district")],
               unit=units.PercentUnit, minimum=0, maximum=1, w=12, h=10,
               thresholds=steps((None, RED), (0.95, ORANGE), (0.99, GREEN)))
    for ident, name in sorted(site_names(("district",)).items()):
        p.override_by_name(ident, [prop("displayName", name)])
    return p.interval("1m")


def build() -> db.Dashboard:
    registry()  # fail early, naming the file, if the profiles do not load
    board = new_board(UID, "Tổng quan tỉnh / Province overview",
                      "Toàn cảnh tỉnh Lào Cai: sự cố đang mở, xã theo trạng thái, khả dụng hôm nay. / "
                      "Lào Cai at a glance: open incidents, communes by status, availability today.",
                      api_filter={"district": "$district"})
    board.with_variable(api_variable("district", "Huyện / District", "districts", include_all=True))
    add_row(board, "Hiện tại / Right now", incidents_table(), status_map(), status_grid())
    add_row(board, "Diễn biến / Trend", communes_down(), opened_today(), incidents_by_severity(), refused_readings())
    add_row(board, "Khả dụng / Availability", availability_today(), availability_by_district())
    return board

