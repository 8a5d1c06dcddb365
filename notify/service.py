"""The notifier: turn incident events into messages, by rules, grouped, rate-limited, retried.

One pass (:meth:`Notifier.step`):

1. new rows of ``incident_events`` (opened, reopened, escalated, resolved) become
   deliveries, one per matching channel; a resolution goes to the channels that
   heard about the incident;
2. incidents still open and unacknowledged get a reminder every
   ``remind_every_min`` of the rule that sent them;
3. per channel, once the oldest waiting delivery is ``group_window_s`` old and the
   channel's rate limit allows, everything waiting goes out as ONE message (a
   digest when there are several); a failure is retried with exponential backoff.

The detector is untouched: this runs as its own process (``fansipan notify``),
reading the incidents database the detector writes.  A channel that is down
delays only its own messages.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from analytics.incidents import SEVERITIES, IncidentStore

from .channels import DeliveryError, make_sender
from .messages import Change, Formatter
from .rules import Rule, RulesFile
from .state import DeliveryState

log = logging.getLogger("fansipan.notify")
ALERTING = ("opened", "reopened", "escalated")


def agency_of(incident, registry) -> str | None:
    """The owning agency of the incident's device, where the registry records one (``owner``); else None.

    The hook for agency rules: the registry's ``owner`` field (departments and scoped keys) decides.
    """
    devices = getattr(registry, "devices", None) or {}
    dev = devices.get(incident.device)
    return getattr(dev, "owner", None) if dev is not None else None


class Notifier:
    def __init__(self, rules: RulesFile, incidents_path: str, secrets: dict[str, str], registry=None,
                 clock: Callable[[], int] = time.time_ns, senders: dict | None = None):
        self.rules = rules
        self.registry = registry
        self.clock = clock
        self.incidents = IncidentStore(incidents_path)  # creates the incident tables if the detector has not yet
        self.state = DeliveryState(incidents_path)
        self.format = Formatter(rules.timezone, registry, rules.base_url)
        self.senders = senders or {n: make_sender(n, c, secrets.get(n, "")) for n, c in rules.channels.items()}
        self._held: set[str] = set()  # channels whose rate-limit hold was logged
        if self.state.cursor() is None:  # first start: what happened before is not news
            last = self.state.last_event_id()
            self.state.enqueue([], last)
            log.info("notify: first start; incident events up to #%d are history and are not sent", last)
        if any(r.agencies for r in rules.rules) and not any(
                getattr(d, "owner", None) for d in (getattr(registry, "devices", None) or {}).values()):
            log.warning("notify: rules filter by agency but no device in the registry has an owner: those rules "
                        "match nothing until the registry records owning agencies")

    def close(self) -> None:
        self.state.close()
        self.incidents.close()

    # --- matching -------------------------------------------------------------------------------

    def _matches(self, rule: Rule, inc, event: str, now_ns: int) -> bool:
        if event not in rule.events or inc.severity not in SEVERITIES:
            return False
        if SEVERITIES.index(inc.severity) < SEVERITIES.index(rule.severity):
            return False
        for allowed, value in ((rule.kinds, inc.kind), (rule.sites, inc.site), (rule.districts, inc.district)):
            if allowed is not None and value not in allowed:
                return False
        if rule.agencies is not None and agency_of(inc, self.registry) not in rule.agencies:
            return False
        if rule.hours != "always" and self.rules.in_working_hours(now_ns) != (rule.hours == "working"):
            return False
        return True

    def _collect(self, now_ns: int) -> int:
        cursor = self.state.cursor() or 0
        events = self.state.events_after(cursor)
        if not events:
            return 0
        rows = []
        for event_id, incident_id, ts_ns, event in events:
            inc = self.incidents.get(incident_id)
            if inc is None:
                continue
            if event in ALERTING:
                by_channel: dict[str, list[Rule]] = {}
                for rule in self.rules.rules:
                    if self._matches(rule, inc, event, now_ns):
                        for ch in rule.channels:
                            by_channel.setdefault(ch, []).append(rule)
                for ch, rules in by_channel.items():
                    reminds = [r.remind_every_min * 60 for r in rules if r.remind_every_min]
                    rows.append((f"event:{event_id}:{ch}", incident_id, ch, event, ts_ns,
                                 ",".join(r.name for r in rules), min(reminds) if reminds else None, now_ns))
            elif event == "resolved":
                for ch in self.state.notified_channels(incident_id):
                    rows.append((f"event:{event_id}:{ch}", incident_id, ch, event, ts_ns, "", None, now_ns))
        return self.state.enqueue(rows, events[-1][0])

    def _reminders(self, now_ns: int) -> int:
        rows = [(f"remind:{inc_id}:{ch}:{now_ns}", inc_id, ch, "reminder", now_ns, "reminder", remind_s, now_ns)
                for inc_id, ch, remind_s in self.state.reminders_due(now_ns) if ch in self.senders]
        return self.state.enqueue(rows, None) if rows else 0

    # --- sending --------------------------------------------------------------------------------

    def _payload(self, channel: str, changes: list[Change], message_id: str) -> dict:
        def incident(inc) -> dict:
            return {"id": inc.id, "key": inc.key, "kind": inc.kind, "severity": inc.severity, "status": inc.status,
                    "title": inc.title, "cause": inc.cause, "site": inc.site, "site_name": self.format.place(inc),
                    "district": inc.district, "device": inc.device, "started_ns": inc.started_ns,
                    "resolved_ns": inc.resolved_ns, "members": len(inc.members),
                    "agency": agency_of(inc, self.registry)}
        return {"source": "fansipan", "delivery": message_id, "channel": channel,
                "changes": [{"event": c.event, "event_ts_ns": c.event_ts_ns, "incident": incident(c.incident)}
                            for c in changes]}

    def _send_channel(self, name: str, now_ns: int) -> int:
        ready = self.state.ready(name, now_ns)
        if not ready:
            return 0
        group_ns = int(self.rules.group_window_s * 1e9)
        if min(min(d.created_ns, d.event_ts_ns) for d in ready) + group_ns > now_ns:
            return 0  # still gathering: an uplink cut's follow-ups join the first message
        limit = self.rules.channels[name].rate_limit
        if self.state.sent_since(name, now_ns - int(limit.per_s * 1e9)) >= limit.max:
            if name not in self._held:
                log.warning("notify: channel %s reached its rate limit (%d messages per %g s); %d change(s) wait and "
                            "go out together when it allows", name, limit.max, limit.per_s, len(ready))
                self._held.add(name)
            return 0
        self._held.discard(name)
        changes, ids = [], []
        for d in ready:
            inc = self.incidents.get(d.incident_id)
            if inc is not None:
                changes.append(Change(d.event, inc, d.event_ts_ns))
                ids.append(d.id)
        message_id = hashlib.sha256(f"{name}:{','.join(map(str, ids))}".encode()).hexdigest()[:32]
        attempts = max(d.attempts for d in ready) + 1
        try:
            self.senders[name].send(self.format.digest(changes, now_ns), self._payload(name, changes, message_id),
                                    message_id)
        except DeliveryError as exc:
            give_up = not exc.retryable or attempts >= self.rules.retry.max_attempts
            delay = max(self.rules.retry.delay_s(attempts), exc.retry_after_s or 0)
            self.state.mark_failed_attempt(ids, str(exc), now_ns + int(delay * 1e9), give_up)
            if give_up:
                log.error("notify: GAVE UP on %d change(s) for channel %s after %d attempt(s): %s", len(ids), name,
                          attempts, exc)
            else:
                log.warning("notify: channel %s failed (attempt %d of %d), retrying in %.0f s: %s", name, attempts,
                            self.rules.retry.max_attempts, delay, exc)
            return 0
        self.state.mark_sent(ids, name, message_id, now_ns)
        log.info("notify: sent %d change(s) to %s in one message", len(ids), name)
        return 1

    def step(self, now_ns: int | None = None) -> int:
        """One pass; returns how many messages went out. Never raises for a channel's failure."""
        now = self.clock() if now_ns is None else now_ns
        self._collect(now)
        self._reminders(now)
        sent = 0
        for name in self.rules.channels:
            try:
                sent += self._send_channel(name, now)
            except Exception:  # a bug in one channel must not stop the others
                log.exception("notify: channel %s failed unexpectedly; trying again next pass", name)
        return sent

    def run(self, every_s: float, stop) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("notify: pass failed (incidents database busy or unreadable?); retrying next pass")
            stop.wait(every_s)
