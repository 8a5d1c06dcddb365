"""Reports for the provincial leadership: the monthly availability report, as CSV, HTML or PDF.

``reports.render(monthly, fmt)`` returns the bytes of one format; ``reports.monthly.build``
gathers the content from the incidents database.  ``fansipan report`` and
``GET /api/v1/availability/report`` both go through here.
"""

from __future__ import annotations

FORMATS = ("csv", "html", "pdf")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def render(monthly, fmt: str) -> bytes:
    """``monthly``: a reports.monthly.Monthly; ``fmt``: csv, html or pdf (pdf needs Debian's chromium)."""
    if fmt == "csv":
        from .csv_export import render_csv

        return render_csv(monthly)
    if fmt == "html":
        from .html import render_html

        return render_html(monthly).encode("utf-8")
    if fmt == "pdf":
        from .html import render_html
        from .pdf import html_to_pdf

        return html_to_pdf(render_html(monthly, for_print=True))
    raise ValueError(f"unknown report format {fmt!r}: one of {', '.join(FORMATS)}")
