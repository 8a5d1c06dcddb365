"""Golden-folder tests: each folder under golden/decoders/ is one case.

A case holds ``topic``, ``payload`` (bytes as received) and ``expected.json``
with the points to store and the rejects (reason and a piece of the detail).
Add a case by adding a folder; this file finds them all.
"""

import json
from pathlib import Path

import pytest
from golden import ARRIVED_NS, cases

from device_profiles import load_registry
from ingest.bulk import BulkValidator
from ingest.validate import REASONS, Validator

HERE = Path(__file__).parent
CASES = cases("decoders")


@pytest.fixture(scope="module")
def validator():
    return Validator(load_registry(HERE / "fixtures" / "registry"))


def test_cases_exist():
    assert len(CASES) >= 30


@pytest.fixture(scope="module")
def bulk(validator):
    return BulkValidator(validator)


@pytest.mark.parametrize("path", ["per_reading", "bulk"])  # the bulk path (ingest/bulk.py) must agree exactly
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case, validator, bulk, path):
    topic = (case / "topic").read_text().strip()
    payload = (case / "payload").read_bytes()
    expected = json.loads((case / "expected.json").read_text())
    if path == "bulk":
        batch, rejected = bulk.messages([(topic, payload, ARRIVED_NS)])
        points = batch.points()
    else:
        points, rejected = validator.message(topic, payload, ARRIVED_NS)

    got_points = [{"device": p.device, "ts_ns": p.ts_ns, "fields": p.fields} for p in points]
    assert got_points == expected["points"]
    for p in points:
        assert p.arrived_ns == ARRIVED_NS and p.kind and p.site
        assert all(type(v) in (int, float) for v in p.fields.values())  # bools are stored as 0/1
    assert len(rejected) == len(expected["rejected"])
    for got, want in zip(rejected, expected["rejected"]):
        assert got.reason == want["reason"], got.detail
        assert want["detail_contains"] in got.detail
        assert got.reason in REASONS
        assert got.topic == topic and got.raw == payload[:4096]
