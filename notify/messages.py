"""Bilingual (Vietnamese / English) notification text, one incident change or a digest of several.

Operators read Vietnamese; partner engineers and vendors often read English:
every line carries both.  Times are shown in the rules' time zone (Vietnam).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

SEVERITY = {"info": ("THÔNG TIN", "INFO", "ℹ️"), "warning": ("CẢNH BÁO", "WARNING", "🟠"),
            "critical": ("NGHIÊM TRỌNG", "CRITICAL", "🔴")}
EVENT = {
    "opened": ("Sự cố mới", "New incident"),
    "reopened": ("Sự cố tái diễn", "Incident back"),
    "escalated": ("Tăng mức nghiêm trọng", "Escalated"),
    "resolved": ("Đã khắc phục", "Resolved"),
    "reminder": ("Nhắc lại: chưa ai xác nhận", "Reminder: not acknowledged"),
}
DIGEST_LINES = 20  # a digest lists this many changes, then counts the rest


@dataclass(frozen=True)
class Change:
    """One thing to tell: an event of an incident (the incident as it is now)."""

    event: str  # opened | reopened | escalated | resolved | reminder
    incident: object  # analytics.incidents.Incident
    event_ts_ns: int


@dataclass(frozen=True)
class Message:
    subject: str
    text: str


class Formatter:
    def __init__(self, timezone: str = "Asia/Ho_Chi_Minh", registry=None, base_url: str | None = None):
        self.tz = ZoneInfo(timezone)
        self.registry = registry
        self.base_url = base_url

    def when(self, ts_ns: int) -> str:
        return datetime.fromtimestamp(ts_ns / 1e9, self.tz).strftime("%Y-%m-%d %H:%M")

    def place(self, inc) -> str:
        sites = getattr(self.registry, "sites", {}) if self.registry is not None else {}
        site = sites.get(inc.site)
        if site is None:
            return inc.site
        district = sites.get(site.district) if site.district else None
        return f"{site.name} ({district.name})" if district is not None and district.id != site.id else site.name

    @staticmethod
    def duration(ns: int) -> str:
        minutes = max(0, int(ns // 60_000_000_000))
        h, m = divmod(minutes, 60)
        return f"{h} giờ {m} phút / {h} h {m} min" if h else f"{m} phút / {m} min"

    def headline(self, ch: Change) -> str:
        inc = ch.incident
        vi_sev, en_sev, mark = SEVERITY.get(inc.severity, (inc.severity, inc.severity, ""))
        vi_ev, en_ev = EVENT.get(ch.event, (ch.event, ch.event))
        if ch.event == "resolved":
            mark = "✅"
        return f"{mark} [{vi_sev} / {en_sev}] {vi_ev} / {en_ev} #{inc.id}: {inc.title}".strip()

    def single(self, ch: Change, now_ns: int) -> Message:
        inc = ch.incident
        lines = [self.headline(ch), "",
                 f"Địa điểm / Site: {self.place(inc)}",
                 f"Bắt đầu / Since: {self.when(inc.started_ns)} (giờ Việt Nam / Vietnam time)"]
        if ch.event == "resolved" and inc.resolved_ns:
            lines.append(f"Kéo dài / Lasted: {self.duration(inc.resolved_ns - inc.started_ns)}")
        elif ch.event == "reminder":
            lines.append(f"Đã mở / Open for: {self.duration(now_ns - inc.started_ns)}")
        if inc.device:
            lines.append(f"Thiết bị / Device: {inc.device}")
        if inc.members:
            lines.append(f"Thiết bị bị ảnh hưởng / Devices affected: {len(inc.members) + 1} "
                         f"({inc.device} + {len(inc.members)} {inc.members[0][1]})")
        lines.append(f"Nguyên nhân / Cause: {inc.cause}")
        if self.base_url:
            lines.append(f"{self.base_url}/incidents/{inc.id}")
        return Message(subject=self.headline(ch)[:200], text="\n".join(lines))

    def digest(self, changes: list[Change], now_ns: int) -> Message:
        if len(changes) == 1:
            return self.single(changes[0], now_ns)
        worst = max(changes, key=lambda c: ("info", "warning", "critical").index(c.incident.severity)
                    if c.incident.severity in ("info", "warning", "critical") else 0)
        vi_sev, en_sev, mark = SEVERITY.get(worst.incident.severity, ("", "", ""))
        opened = sum(1 for c in changes if c.event in ("opened", "reopened"))
        resolved = sum(1 for c in changes if c.event == "resolved")
        subject = (f"{mark} [{vi_sev} / {en_sev}] {len(changes)} thay đổi sự cố / incident changes "
                   f"({opened} mới / new, {resolved} đã khắc phục / resolved)").strip()
        lines = [subject, ""]
        for c in changes[:DIGEST_LINES]:
            lines.append(f"• {self.headline(c)} — {self.place(c.incident)}")
        if len(changes) > DIGEST_LINES:
            more = len(changes) - DIGEST_LINES
            lines.append(f"… và {more} thay đổi khác / and {more} more")
        if self.base_url:
            lines.append(f"{self.base_url}/incidents?status=active")
        return Message(subject=subject[:200], text="\n".join(lines))
