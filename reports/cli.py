"""``fansipan report --month 2026-10 --format csv|html|pdf --out FILE``: the monthly availability report.

Reads the incidents database (FANSIPAN_INCIDENTS_PATH, or --incidents) and the
site registry (FANSIPAN_PROFILES_DIR); writes the file atomically (a half-written
PDF is never left where the previous month's was).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import FORMATS, render


def add_arguments(parser) -> None:
    parser.add_argument("--month", required=True, help="the month, YYYY-MM, in Asia/Ho_Chi_Minh (e.g. 2026-10)")
    parser.add_argument("--format", choices=FORMATS, default="pdf", help="csv, html or pdf (default pdf; pdf needs "
                                                                         "chromium)")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--incidents", help="incidents database (default: FANSIPAN_INCIDENTS_PATH)")


def run(args) -> int:
    from analytics.incidents import IncidentStore
    from analytics.maintenance import MaintenanceStore
    from analytics.periods import PeriodError
    from device_profiles import load_registry
    from fansipan.config import Settings

    from . import monthly
    from .pdf import PdfError

    settings = Settings.from_env(mqtt=False)
    path = args.incidents or settings.incidents_path
    if not Path(path).is_file():
        print(f"fansipan report: no incidents database at {path}: set FANSIPAN_INCIDENTS_PATH or --incidents to the "
              "detector's file", file=sys.stderr)
        return 2
    registry = load_registry(settings.profiles_dir)
    incidents, windows = IncidentStore(path), MaintenanceStore(path)
    try:
        content = monthly.build(registry, incidents, windows, args.month, time.time_ns())
        body = render(content, args.format)
    except (PeriodError, PdfError) as exc:
        print(f"fansipan report: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a month that has not started
        print(f"fansipan report: --month {args.month}: {exc}", file=sys.stderr)
        return 2
    finally:
        incidents.close()
        windows.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(body)
    os.replace(tmp, out)
    p = content.province.figures
    print(f"{out}: {args.format}, {len(body):,} bytes; {content.period.label}: province "
          f"{'n/a' if p.uptime_pct is None else f'{p.uptime_pct:.3f} %'}, {p.outages} outage(s), "
          f"{p.downtime_min:,.0f} commune-minutes down")
    return 0
