"""Golden folders of one message each (golden/<format>/<case>/): ``topic``, ``payload`` (bytes as received) and
``expected.json`` (the points to store, the rejects: reason and a piece of the detail)."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.validate import REASONS, Validator

ARRIVED_NS = 1764230400_000_000_000  # 2025-11-27T08:00:00Z
GOLDEN = Path(__file__).parent / "golden"


def cases(fmt: str) -> list[Path]:
    return sorted(p for p in (GOLDEN / fmt).iterdir() if p.is_dir())


def run_case(case: Path, validator: Validator) -> None:
    """One golden folder through ``validator``, as tests/test_decoders_golden.py runs its own."""
    topic = (case / "topic").read_text().strip()
    payload = (case / "payload").read_bytes()
    expected = json.loads((case / "expected.json").read_text())
    points, rejected = validator.message(topic, payload, ARRIVED_NS)
    assert [{"device": p.device, "ts_ns": p.ts_ns, "fields": p.fields} for p in points] == expected["points"]
    assert [r.reason for r in rejected] == [w["reason"] for w in expected["rejected"]], [r.detail for r in rejected]
    for got, want in zip(rejected, expected["rejected"]):
        assert want["detail_contains"] in got.detail, got.detail
        assert got.reason in REASONS and got.topic == topic and got.raw == payload[:4096]
