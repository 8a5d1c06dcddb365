"""The rules file refuses what is wrong (naming the key), keeps secrets out, and signatures resist replay."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from notify.rules import RulesError, load_rules, parse_rules, secrets
from notify.signing import sign, verify

HOOK = {"type": "webhook", "url": "https://partner.example/hook", "secret_env": "HOOK_SECRET"}


def _doc(**over):
    doc = {"channels": {"hook": dict(HOOK)}, "rules": [{"name": "all", "channels": ["hook"]}]}
    doc.update(over)
    return doc


@pytest.mark.parametrize("doc, message", [
    (_doc(channels={"hook": {**HOOK, "secret": "abc"}}), "channels.hook.secret: secrets do not go in the rules file"),
    (_doc(channels={"mail": {"type": "email", "host": "smtp", "sender": "a@b", "to": ["c@d"], "password": "x"}},
          rules=[{"name": "m", "channels": ["mail"]}]),
     ("channels.mail.password: secrets do not go in the rules file; put it in an environment variable and name that "
      "variable with password_env")),
    (_doc(rules=[{"name": "all", "channels": ["pager"]}]), "rule 'all' names unknown channel(s) ['pager']"),
    (_doc(rules=[{"name": "all", "channels": ["hook"], "severity": "urgent"}]), "rules.0.severity"),
    (_doc(rules=[{"name": "all", "channels": ["hook"], "events": ["updated"]}]), "rules.0.events.0"),
    (_doc(channels={"hook": {**HOOK, "url": "ftp://x"}}), "is not an http:// or https:// URL"),
    (_doc(channels={"hook": {**HOOK, "type": "sms"}}), "channels.hook"),
    (_doc(channels={"hook": {**HOOK, "secret_env": "lower-case"}}), "channels.hook.webhook.secret_env"),
    (_doc(working_hours={"start": 730}), "write the time quoted"),
    (_doc(working_hours={"start": "18:00", "end": "07:30"}), "must be before end"),
    (_doc(timezone="Asia/Hanoi_City"), "unknown time zone"),
    (_doc(channels={"mail": {"type": "email", "host": "smtp", "sender": "a@b", "to": ["c@d"], "username": "u"}},
          rules=[{"name": "m", "channels": ["mail"]}]), "give both username and password_env"),
    (_doc(rules=[]), "rules: List should have at least 1 item"),
])
def test_bad_rules_name_what_is_wrong(doc, message):
    with pytest.raises(RulesError) as err:
        parse_rules(doc, "notify.yaml")
    assert message in str(err.value) and "notify.yaml" in str(err.value)


def test_missing_secrets_are_named_at_start():
    rules = parse_rules(_doc(channels={"hook": dict(HOOK), "tg": {"type": "telegram", "chat_id": 1, "token_env": "BOT_TOKEN"}},
                             rules=[{"name": "all", "channels": ["hook", "tg"]}]))
    with pytest.raises(RulesError) as err:
        secrets(rules, {"HOOK_SECRET": "x"})
    assert "BOT_TOKEN (channel 'tg', telegram)" in str(err.value) and "HOOK_SECRET" not in str(err.value)
    assert secrets(rules, {"HOOK_SECRET": "x", "BOT_TOKEN": "y"}) == {"hook": "x", "tg": "y"}


def test_the_shipped_example_loads():
    rules = load_rules(Path(__file__).resolve().parents[1] / "deploy/notify.example.yaml")
    assert {c.type for c in rules.channels.values()} == {"email", "webhook", "telegram"}


def test_working_hours_are_vietnam_time():
    rules = parse_rules(_doc())
    at = lambda *a: int(datetime(*a, tzinfo=timezone.utc).timestamp() * 1e9)  # noqa: E731
    assert rules.in_working_hours(at(2026, 11, 23, 1, 0))  # Monday 08:00 ICT
    assert not rules.in_working_hours(at(2026, 11, 23, 10, 0))  # Monday 17:00 ICT: closed
    assert not rules.in_working_hours(at(2026, 11, 22, 3, 0))  # Sunday 10:00 ICT


def test_signature_verification_refuses_tampering_and_replay():
    body, now = b'{"changes":[]}', int(time.time())
    sig = sign("k", now, body)
    verify("k", str(now), body, sig)
    with pytest.raises(ValueError, match="does not match"):
        verify("k", str(now), body + b" ", sig)
    with pytest.raises(ValueError, match="does not match"):
        verify("other", str(now), body, sig)
    old = now - 3600
    with pytest.raises(ValueError, match="replay"):
        verify("k", str(old), body, sign("k", old, body))
    with pytest.raises(ValueError, match="not Unix seconds"):
        verify("k", "yesterday", body, sig)


def test_cli_refuses_to_start_without_its_secrets(tmp_path, monkeypatch, capsys):
    from fansipan.cli import main

    for var in ("FANSIPAN_SMTP_PASSWORD", "FANSIPAN_TELEGRAM_TOKEN", "FANSIPAN_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FANSIPAN_INCIDENTS_PATH", str(tmp_path / "i.sqlite"))
    example = Path(__file__).resolve().parents[1] / "deploy/notify.example.yaml"
    assert main(["notify", "--rules", str(example)]) == 2
    err = capsys.readouterr().err
    assert "FANSIPAN_TELEGRAM_TOKEN" in err and "FANSIPAN_SMTP_PASSWORD" in err and "FANSIPAN_WEBHOOK_SECRET" in err
