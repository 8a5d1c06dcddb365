"""Sparkplug B golden cases: each folder under golden/sparkplug/ is a sequence of messages.

A case holds ``messages.json`` (topic, payload file, arrival offset in s), the
payload bytes as an edge node sends them, and ``expected.json``: the points, the
rejects (reason and a piece of the detail) and the commands Fansipan publishes
(rebirth requests). golden/sparkplug/make_cases.py writes them.
"""

import json
from pathlib import Path

import pytest

from device_profiles import load_registry
from ingest.sparkplug_codec import decode_payload
from ingest.validate import REASONS, Validator

HERE = Path(__file__).parent
CASES = sorted(p for p in (HERE / "golden" / "sparkplug").iterdir() if p.is_dir())
ARRIVED_NS = 1764230400_000_000_000  # 2025-11-27T08:00:00Z
REGISTRY = load_registry()


def test_cases_exist():
    assert len(CASES) >= 8


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case):
    validator = Validator(REGISTRY)
    sent = []
    validator.sparkplug.send = lambda topic, payload: sent.append((topic, payload))
    expected = json.loads((case / "expected.json").read_text())
    points, rejected = [], []
    for m in json.loads((case / "messages.json").read_text()):
        payload = (case / m["payload"]).read_bytes()
        p, r = validator.message(m["topic"], payload, ARRIVED_NS + int(m["at_s"] * 1e9))
        points += p
        for got in r:
            assert got.topic == m["topic"] and got.raw == payload[:4096] and got.reason in REASONS
        rejected += r
    assert [{"device": p.device, "ts_ns": p.ts_ns, "fields": p.fields} for p in points] == expected["points"]
    assert [r.reason for r in rejected] == [w["reason"] for w in expected["rejected"]], [r.detail for r in rejected]
    for got, want in zip(rejected, expected["rejected"]):
        assert want["detail_contains"] in got.detail
    assert [t for t, _ in sent] == expected["commands"]
    for _t, cmd in sent:
        assert [(x.name, x.boolean_value) for x in decode_payload(cmd).metrics] == [("Node Control/Rebirth", True)]
