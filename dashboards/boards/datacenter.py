"""Trung tâm dữ liệu / Data center: power (racks, UPS A/B), cooling (CRAC), servers and the core network."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import units

from ..panels import (GAPS, GREEN, ORANGE, bool_states, field_series, influx_variable, marks, series, stat_panel, steps,
                      unit_of, where)
from ..queries import InfluxQL
from . import add_row, new_board

UID = "fansipan-datacenter"
DC = '"site" = \'dc_laocai\''
SERVER = '"device" =~ /^$server$/'


def power_panels() -> list:
    # Sum of the racks' window means: summing raw readings would count a rack twice in a
    # window where it happened to report twice.
    inner = f'SELECT mean("power_kw") AS "kw" FROM "rack_pdu" {where()} GROUP BY time($__interval), "device"'
    total = f'SELECT sum("kw") FROM ({inner}) {where()} GROUP BY time($__interval) fill(none)'
    return [
        stat_panel("Tổng công suất IT / Total IT power", [InfluxQL(total, alias="IT")], unit=units.KiloWatt,
                   thresholds=steps((None, "blue")), w=4, h=8),
        field_series("Công suất từng tủ rack / Rack power", "rack_pdu", "power_kw", (), w=10, stacked=True),
        field_series("Dòng điện tủ rack / Rack current (worst phase)", "rack_pdu", "current_a", (), w=10,
                     description="Vạch 25,6 A: 80 % của aptomat 32 A (tải liên tục). / 25.6 A mark: 80 % of the 32 A "
                     "feed (continuous load rule)."),
        field_series("Tải UPS / UPS load (A, B)", "dc_ups", "load_pct", (), w=8,
                     description="Nguồn 2N: mỗi UPS phải dưới 50 % để gánh toàn bộ tải khi UPS kia hỏng. / 2N feeds: "
                     "each UPS must stay under half its rating to carry everything if the other fails."),
        field_series("Pin UPS / UPS battery charge", "dc_ups", "battery_charge_pct", (), w=8, minimum=0, maximum=100),
        bool_states("Nguồn cấp UPS / UPS power source", "dc_ups", "on_battery", (), on="Chạy pin / On battery",
                    off="Điện lưới / Mains", agg="max", on_color=ORANGE, off_color=GREEN, w=8),
    ]


def cooling_panels() -> list:
    """Supply and return air on one panel, with the ASHRAE A1 marks of the supply air.

    The marks are the supply (inlet) envelope; return air runs hotter by design,
    so the description says which line the marks are for.
    """
    targets = [InfluxQL(f'SELECT mean("{f}") FROM "crac" {where()} GROUP BY time($__interval), "device" {GAPS}',
                        ref_id=r, alias=f"$tag_device {label}")
               for f, r, label in (("supply_temp_c", "A", "cấp / supply"), ("return_temp_c", "B", "hồi / return"))]
    return [
        series("Nhiệt độ gió cấp và hồi / CRAC supply and return air", targets, unit=unit_of("crac", "supply_temp_c"),
               thresholds=marks("crac", "supply_temp_c"), w=12, h=9,
               description="Vạch: khoảng ASHRAE A1 cho gió cấp (khuyến nghị 18-27 °C, cho phép 15-32 °C). / "
               "Lines: ASHRAE A1 envelope for the supply air (recommended 18-27 °C, allowable 15-32 °C)."),
        field_series("Độ ẩm / Supply air humidity", "crac", "humidity_pct", (), w=6, h=9),
        field_series("Quạt CRAC / CRAC fan speed", "crac", "fan_speed_pct", (), w=6, h=9, minimum=0, maximum=100),
    ]


def server_panels() -> list:
    return [
        field_series("CPU máy chủ / Server CPU", "server", "cpu_pct", (SERVER,), w=12, minimum=0, maximum=100),
        field_series("Nhiệt độ gió vào máy chủ / Server inlet temperature", "server", "inlet_temp_c", (SERVER,), w=12,
                     description="Vạch 27/32 °C: mốc trên khuyến nghị/cho phép ASHRAE A1. / 27/32 °C: ASHRAE A1 "
                     "recommended/allowable upper marks."),
    ]


def network_panels() -> list:
    errors = [InfluxQL(f'SELECT sum("{f}") FROM "core_switch" {where()} GROUP BY time($__interval), "device" '
                       f'{GAPS}', ref_id=r, alias=f"$tag_device {f}")
              for f, r in (("rx_errors", "A"), ("tx_errors", "B"))]
    return [
        field_series("Cổng mất liên kết / Ports down", "core_switch", "ports_down", (), agg="max", w=12),
        series("Lỗi truyền / Interface errors", errors, unit=units.Short, thresholds=marks("core_switch", "rx_errors"),
               w=12, description="Tổng lỗi trong mỗi khoảng. / Errors summed over each window."),
    ]


def build() -> db.Dashboard:
    board = new_board(UID, "Trung tâm dữ liệu / Data center",
                      "Trung tâm dữ liệu tỉnh: điện, làm mát, máy chủ, mạng lõi. / The provincial data center: "
                      "power, cooling, servers, core network.", incident_filter=DC, api_filter={"site": "dc_laocai"})
    servers = 'SHOW TAG VALUES FROM "server" WITH KEY = "device"'
    board.with_variable(influx_variable("server", "Máy chủ / Server", servers, include_all=True, multi=True))
    add_row(board, "Điện / Power", *power_panels())
    add_row(board, "Làm mát / Cooling", *cooling_panels())
    add_row(board, "Máy chủ / Servers", *server_panels())
    add_row(board, "Mạng lõi / Core network", *network_panels())
    return board
