"""The monthly report as one CSV table: the province, the data center, every district and commune.

UTF-8 with a byte-order mark, because Excel (what the report's readers open it
with) shows Vietnamese diacritics as mojibake without one.  Headers are
Vietnamese with English alongside; numbers use a dot, unrounded beyond 4 decimals.
"""

from __future__ import annotations

import csv
import io

from .monthly import Monthly, Row

HEADER = ["Cấp / Level", "Mã / Id", "Tên / Name", "Huyện / District", "Khả dụng (%) / Uptime (%)",
          "Thời gian gián đoạn (phút) / Downtime (min)", "Số lần gián đoạn / Outages", "MTTR (phút / min)",
          "MTBF (giờ / h)", "Bảo trì (phút) / Maintenance (min)", "Thời gian theo kế hoạch (phút) / Scheduled (min)",
          "Số đơn vị / Units", "Tháng / Month"]


def _num(x: float | None, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _line(level: str, r: Row, month: str) -> list[str]:
    f = r.figures
    return [level, r.id, r.name, r.district, _num(f.uptime_pct, 4), _num(f.downtime_min, 2), str(f.outages),
            _num(f.mttr_min, 2), _num(f.mtbf_h, 2), _num(f.maintenance_min, 2), _num(f.scheduled_ns / 60e9, 2),
            str(r.units), month]


def render_csv(m: Monthly) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HEADER)
    month = m.period.label
    w.writerow(_line("province", m.province, month))
    for r in m.datacenter:
        w.writerow(_line("data_center", r, month))
    for r in sorted(m.districts, key=lambda r: r.name):
        w.writerow(_line("district", r, month))
    for r in sorted(m.communes, key=lambda r: (r.district, r.name)):
        w.writerow(_line("commune", r, month))
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
