"""Notifications through real local servers: an SMTP server (aiosmtpd), a webhook receiver that checks
the signature itself, and a fake Telegram Bot API, all on 127.0.0.1, started by the tests.

Incidents come from the real IncidentStore (reconcile, acknowledge), on a simulated clock, so grouping
windows, reminders, backoff and rate limits are exercised without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from servers import free_port

from analytics.incidents import Condition, IncidentStore
from device_profiles import load_registry
from notify.rules import parse_rules, secrets
from notify.service import Notifier

REGISTRY = load_registry()
SECRET, TOKEN = "s3cret-webhook-key", "123456:TEST-token"
T0 = int(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc).timestamp() * 1e9)  # Monday 09:00 in Hà Nội
S = 10**9
ENV = {"HOOK_SECRET": SECRET, "BOT_TOKEN": TOKEN, "SMTP_PASSWORD": "unused"}


class _Receiver(BaseHTTPRequestHandler):
    """Webhook receiver and fake Bot API in one: records what came, answers from a script."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        status = srv.script.pop(0) if srv.script and not self.path.startswith("/bot") else 200
        if self.path.startswith("/bot"):
            ok = self.path == f"/bot{TOKEN}/sendMessage"
            status = status if ok else 401
            doc = {"ok": True, "result": {"message_id": len(srv.got) + 1}} if status == 200 else \
                {"ok": False, "error_code": status, "description": "Unauthorized" if status == 401 else "Too Many Requests",
                 "parameters": {"retry_after": 7} if status == 429 else {}}
            if status == 200:
                srv.got.append(json.loads(body))
            out = json.dumps(doc).encode()
        else:
            ts, sig = self.headers["X-Fansipan-Timestamp"], self.headers["X-Fansipan-Signature"]
            want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if status == 200 and (sig != want or abs(time.time() - int(ts)) > 300):
                status = 401  # a receiver that checks, independently of notify.signing
            if status == 200:
                srv.got.append((dict(self.headers), json.loads(body)))
            srv.attempts += 1
            out = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def http():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    srv.got, srv.script, srv.attempts = [], [], 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def smtp():
    box = _Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    box.port = ctl.port
    yield box
    ctl.stop()


def _rules(http_port, smtp_port, **over):
    doc = {
        "group_window_s": 30,
        "retry": {"max_attempts": 4, "first_s": 10, "max_s": 60},
        "channels": {
            "hook": {"type": "webhook", "url": f"http://127.0.0.1:{http_port}/hooks/ioc", "secret_env": "HOOK_SECRET"},
            "tg": {"type": "telegram", "chat_id": -1001234, "token_env": "BOT_TOKEN", "api_url": f"http://127.0.0.1:{http_port}"},
            "mail": {"type": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                     "sender": "IOC Lào Cai <canhbao@ioc.test>", "to": ["truc-ca@ioc.test"]},
        },
        "rules": [{"name": "all-critical", "severity": "critical", "channels": ["hook", "tg", "mail"], "remind_every_min": 10}],
    }
    doc.update(over)
    return parse_rules(doc)


def _notifier(tmp_path, rules, now):
    return Notifier(rules, str(tmp_path / "incidents.sqlite"), secrets(rules, ENV), registry=REGISTRY, clock=lambda: now[0])


def _cond(key, severity="critical", site="y_ty", device="yty-router", members=(), kind="uplink_down", title=None):
    return Condition(key=key, kind=kind, severity=severity, title=title or f"Mất kết nối / Uplink down at Y Tý ({key})",
                     cause="the commune router and everything behind it went silent together", site=site,
                     district="bat_xat", device=device, started_ns=T0 - 120 * S, members=members)


def test_an_uplink_cut_is_one_message_on_each_channel(tmp_path, http, smtp):
    now = [T0]
    notifier = _notifier(tmp_path, _rules(http.server_address[1], smtp.port), now)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    members = tuple((f"yty-dev-{i:02d}", "unreachable (inferred)") for i in range(40))
    store.reconcile([_cond("silence:yty-router", members=members)], T0)
    assert notifier.step(T0 + 5 * S) == 0  # inside the grouping window
    assert notifier.step(T0 + 31 * S) == 3
    assert notifier.step(T0 + 40 * S) == 0  # nothing twice

    (headers, body), = [g for g in http.got if isinstance(g, tuple)]
    (tg,) = [g for g in http.got if isinstance(g, dict)]
    (mail,) = smtp.messages
    assert body["changes"][0]["event"] == "opened" and body["changes"][0]["incident"]["members"] == 40
    assert headers["X-Fansipan-Delivery"] == body["delivery"]
    assert tg["chat_id"] == "-1001234"
    for text in (body["text"], tg["text"], mail.get_content()):
        assert "[NGHIÊM TRỌNG / CRITICAL] Sự cố mới / New incident" in text
        assert "Devices affected: 41" in text and "Xã Y Tý (Huyện Bát Xát)" in text
        assert "2026-11-23 08:58" in text  # started, in Vietnam time
    assert mail["Subject"].startswith("🔴 [NGHIÊM TRỌNG / CRITICAL]") and mail["To"] == "truc-ca@ioc.test"


def test_forty_incidents_at_once_are_one_digest(tmp_path, http, smtp):
    now = [T0]
    rules = _rules(http.server_address[1], smtp.port)
    notifier = _notifier(tmp_path, rules, now)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    store.reconcile([_cond(f"silence:dev-{i}", kind="silence", device=f"dev-{i}") for i in range(40)], T0)
    assert notifier.step(T0 + 31 * S) == 3
    (headers, body), = [g for g in http.got if isinstance(g, tuple)]
    assert len(body["changes"]) == 40
    assert "40 thay đổi sự cố / incident changes (40 mới / new" in body["text"] and "and 20 more" in body["text"]
    assert len(smtp.messages) == 1


def test_reminders_escalation_and_resolution(tmp_path, http, smtp):
    now = [T0]
    rules = _rules(http.server_address[1], smtp.port, rules=[
        {"name": "warnings", "severity": "warning", "channels": ["hook"], "remind_every_min": 10}])
    notifier = _notifier(tmp_path, rules, now)
    store = IncidentStore(tmp_path / "incidents.sqlite", clear_hold_s=60)
    hot = _cond("limit:dc:server:inlet", severity="warning", site="dc_laocai", device="dc-srv-03", kind="limit",
                title="Vượt ngưỡng / Server inlet_temp_c warning")
    store.reconcile([hot], T0)
    notifier.step(T0 + 31 * S)
    notifier.step(T0 + 9 * 60 * S)
    notifier.step(T0 + (10 * 60 + 31) * S + 31 * S)  # ten minutes after the first message: a reminder is due...
    notifier.step(T0 + (10 * 60 + 31) * S + 62 * S)  # ...and goes out after the grouping window
    events = [b["changes"][0]["event"] for _h, b in http.got]
    assert events == ["opened", "reminder"], events
    assert "Reminder: not acknowledged" in http.got[-1][1]["text"] and "Open for: 13 phút / 13 min" in http.got[-1][1]["text"]

    inc_id = http.got[0][1]["changes"][0]["incident"]["id"]
    store.acknowledge(inc_id, "tuan", T0 + 12 * 60 * S)
    notifier.step(T0 + 40 * 60 * S)  # acknowledged: no more reminders
    assert len(http.got) == 2

    store.reconcile([Condition(**{**hot.__dict__, "severity": "critical"})], T0 + 41 * 60 * S)
    notifier.step(T0 + 42 * 60 * S)
    store.reconcile([], T0 + 43 * 60 * S)
    store.reconcile([], T0 + 45 * 60 * S)  # clear for longer than clear_hold_s: resolved
    notifier.step(T0 + 46 * 60 * S)
    events = [b["changes"][0]["event"] for _h, b in http.got]
    assert events == ["opened", "reminder", "escalated", "resolved"], events
    assert "Tăng mức nghiêm trọng / Escalated" in http.got[2][1]["text"]
    assert "Đã khắc phục / Resolved" in http.got[3][1]["text"] and "Lasted: 43 phút / 43 min" in http.got[3][1]["text"]


def test_rate_limit_holds_the_rest_for_one_digest(tmp_path, http, smtp):
    now = [T0]
    rules = _rules(http.server_address[1], smtp.port, group_window_s=0, channels={
        "hook": {"type": "webhook", "url": f"http://127.0.0.1:{http.server_address[1]}/h", "secret_env": "HOOK_SECRET",
                 "rate_limit": {"max": 2, "per_s": 600}}},
        rules=[{"name": "all", "severity": "warning", "channels": ["hook"]}])
    notifier = _notifier(tmp_path, rules, now)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    for i in range(5):
        store.reconcile([_cond(f"k{j}", device=f"d{j}") for j in range(i + 1)], T0 + i * 60 * S)
        notifier.step(T0 + i * 60 * S + S)
    assert [len(b["changes"]) for _h, b in http.got] == [1, 1]
    notifier.step(T0 + 601 * S)  # the first message left the window
    assert [len(b["changes"]) for _h, b in http.got] == [1, 1, 3]


def test_failures_back_off_do_not_block_other_channels_and_survive_a_restart(tmp_path, http, smtp):
    now = [T0]
    dead_smtp = free_port()  # nothing listens: the mail channel fails, the others deliver
    rules = _rules(http.server_address[1], dead_smtp)
    notifier = _notifier(tmp_path, rules, now)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    http.script = [500, 503]  # the webhook fails twice, then accepts
    store.reconcile([_cond("silence:yty-router")], T0)
    t = T0 + 31 * S
    notifier.step(t)
    hook_attempts = http.attempts
    notifier.step(t + 5 * S)  # before the 10 s backoff: no new attempt
    assert http.attempts == hook_attempts
    for k in range(1, 6):
        notifier.step(t + k * 40 * S)
    state = {(ch, ev): (st, n) for _i, _inc, ch, ev, st, n, _err in notifier.state.deliveries()}
    assert state[("hook", "opened")] == ("sent", 2) and state[("tg", "opened")] == ("sent", 0)
    assert http.attempts == 3
    assert state[("mail", "opened")] == ("failed", 4)  # gave up after max_attempts
    errors = [err for *_x, err in notifier.state.deliveries() if err]
    assert any("127.0.0.1:%d" % dead_smtp in e and "channel mail" in e for e in errors)
    sent_before = len(http.got)
    notifier.close()

    restarted = _notifier(tmp_path, rules, now)  # a restart resends nothing
    assert restarted.step(t + 300 * S) == 0 and len(http.got) == sent_before
    restarted.close()


def test_a_wrong_bot_token_fails_at_once_and_never_shows_the_token(tmp_path, http, smtp, caplog):
    rules = _rules(http.server_address[1], smtp.port)
    notifier = Notifier(rules, str(tmp_path / "incidents.sqlite"), secrets(rules, {**ENV, "BOT_TOKEN": "999:WRONG"}),
                        registry=REGISTRY)
    IncidentStore(tmp_path / "incidents.sqlite").reconcile([_cond("silence:yty-router")], T0)
    notifier.step(T0 + 31 * S)
    (row,) = [r for r in notifier.state.deliveries() if r[2] == "tg"]
    assert row[4] == "failed" and row[5] == 1 and "HTTP 401" in row[6] and "bot token" in row[6]
    assert "999:WRONG" not in row[6] and "999:WRONG" not in caplog.text


def test_rules_filter_by_severity_place_and_working_hours(tmp_path, http, smtp):
    now = [T0]
    rules = _rules(http.server_address[1], smtp.port, group_window_s=0, rules=[
        {"name": "sapa-office", "severity": "warning", "districts": ["sa_pa"], "hours": "working", "channels": ["hook"]},
        {"name": "night-critical", "severity": "critical", "hours": "outside", "channels": ["tg"]}])
    notifier = _notifier(tmp_path, rules, now)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    sapa = dict(site="sa_pa_ward", device="sapa-aq-1")
    store.reconcile([Condition(**{**_cond("a", severity="warning").__dict__, **sapa, "district": "sa_pa"}),
                     _cond("b", severity="warning")], T0)  # 09:00 on a Monday
    notifier.step(T0 + S)
    evening = T0 + 12 * 3600 * S  # 21:00
    store.reconcile([_cond("c"), Condition(**{**_cond("d", severity="warning").__dict__, **sapa, "district": "sa_pa"})],
                    evening)
    notifier.step(evening + S)
    hooks = [(b["changes"][0]["incident"]["key"], b["changes"][0]["event"]) for g in http.got if isinstance(g, tuple)
             for _h, b in [g]]
    tgs = [g["text"] for g in http.got if isinstance(g, dict)]
    # Sa Pa's warning at 09:00 went out, and so did its resolution (to the channel that heard about it) in the
    # evening; Sa Pa's evening warning did not (office hours only), Y Tý's warnings matched no rule.
    assert hooks == [("a", "opened"), ("a", "resolved")]
    assert len(tgs) == 1 and "(c)" in tgs[0]


def test_agency_rules_use_the_registry_owner(tmp_path, http, smtp):
    from types import SimpleNamespace

    registry = SimpleNamespace(devices={"dc-srv-03": SimpleNamespace(owner="so_ttt"), "yty-router": SimpleNamespace(owner=None)},
                               sites={})
    rules = _rules(http.server_address[1], smtp.port, group_window_s=0,
                   rules=[{"name": "ict", "severity": "warning", "agencies": ["so_ttt"], "channels": ["hook"]}])
    notifier = Notifier(rules, str(tmp_path / "incidents.sqlite"), secrets(rules, ENV), registry=registry)
    IncidentStore(tmp_path / "incidents.sqlite").reconcile(
        [_cond("x", device="dc-srv-03", site="dc_laocai"), _cond("y")], T0)
    notifier.step(T0 + S)
    (_h, body), = http.got
    assert body["changes"][0]["incident"]["agency"] == "so_ttt" and body["changes"][0]["incident"]["key"] == "x"
