"""HTML to PDF with headless Chromium (Debian's ``chromium``), the browser the status-page test uses too.

Chromium lays out the SVG charts, the Vietnamese text and the page breaks exactly
as the printable HTML shows them, and it is already on the machine; a PDF library
(WeasyPrint, ReportLab) would be a second layout engine to keep in step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 90


class PdfError(RuntimeError):
    """The PDF could not be made; the message says what to install or check."""


def find_chromium() -> str:
    configured = os.environ.get("FANSIPAN_CHROMIUM")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise PdfError(f"FANSIPAN_CHROMIUM={configured} is not an executable file: point it at the chromium "
                           "binary, or unset it to use the one on PATH")
        return configured
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise PdfError("no chromium to print the PDF with: apt-get install -y chromium (Debian), or set "
                       "FANSIPAN_CHROMIUM to the browser's path; --format html gives the same report to print")
    return path


def html_to_pdf(html: str, chromium: str | None = None) -> bytes:
    browser = chromium or find_chromium()
    with tempfile.TemporaryDirectory(prefix="fansipan-report-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(html, encoding="utf-8")
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-pdf-header-footer", f"--user-data-dir={tmp}/profile",
               f"--print-to-pdf={out}", src.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except OSError as exc:  # not executable, wrong architecture...
            raise PdfError(f"chromium ({browser}) could not be started: {exc}") from None
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not finish printing the report within {TIMEOUT_S} s: is the machine "
                           "overloaded? --format html gives the same report") from None
        if not out.is_file() or out.stat().st_size == 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise PdfError(f"chromium ({browser}) exited {proc.returncode} without writing the PDF: "
                           f"{' | '.join(tail) or 'no message'}")
        return out.read_bytes()
