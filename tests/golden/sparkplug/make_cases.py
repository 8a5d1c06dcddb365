"""Writes the Sparkplug B golden cases: payload bytes as an edge node sends them, and what Fansipan must make of them.

The expected results below are written by hand, from the Sparkplug 3.0 specification and
docs/formats.md, not taken from the code under test. Run from the repository root after changing a
case: ``.venv/bin/python tests/golden/sparkplug/make_cases.py``; tests/test_sparkplug_golden.py reads them.
Times: messages arrive at 2025-11-27T08:00:00Z + ``at_s``; the payloads carry 1764230400000 ms.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from ingest.sparkplug_codec import encode_payload  # noqa: E402

MS = 1764230400000
T0 = MS * 1_000_000
G, N, P1, P2 = "laocai", "cocleu-edge-gw-1", "cocleu-pump-1", "cocleu-pump-2"
NBIRTH = (f"spBv1.0/{G}/NBIRTH/{N}", [{"name": "bdSeq", "value": 7}, {"name": "Node Control/Rebirth", "value": False},
                                      {"name": "Gateway/CPU Temperature", "alias": 1, "value": 45.0}], 0)
DBIRTH1 = (f"spBv1.0/{G}/DBIRTH/{N}/{P1}", [{"name": "Pump/Flow", "alias": 10, "value": 120.0},
                                            {"name": "Pump/Running", "alias": 11, "value": True}], 1)
NODE_BORN = {"device": N, "ts_ns": T0, "fields": {"cpu_temp_c": 45.0, "online": 1}}
P1_BORN = {"device": P1, "ts_ns": T0, "fields": {"flow_m3h": 120.0, "pump_running": 1, "online": 1}}
REBIRTH = f"spBv1.0/{G}/NCMD/{N}"

CASES = {
    "births_then_data_by_alias": dict(
        messages=[NBIRTH, DBIRTH1, (f"spBv1.0/{G}/DDATA/{N}/{P1}", [{"alias": 10, "value": 118.5, "timestamp": MS + 15000}], 2)],
        points=[NODE_BORN, P1_BORN, {"device": P1, "ts_ns": T0 + 15 * 10**9, "fields": {"flow_m3h": 118.5}}],
        rejected=[], commands=[]),
    "unknown_alias_rebirth": dict(
        messages=[NBIRTH, DBIRTH1, (f"spBv1.0/{G}/DDATA/{N}/{P1}", [{"alias": 10, "value": 118.5}, {"alias": 77, "value": 1.0}], 2)],
        points=[NODE_BORN, P1_BORN, {"device": P1, "ts_ns": T0, "fields": {"flow_m3h": 118.5}}],
        rejected=[{"reason": "unknown_alias", "detail_contains": "by alias 77, which no birth of edge node 'cocleu-edge-gw-1' declared"}],
        commands=[REBIRTH]),
    "data_before_birth": dict(
        messages=[(f"spBv1.0/{G}/DDATA/{N}/{P1}", [{"alias": 10, "value": 118.5}], 5)],
        points=[], rejected=[{"reason": "unknown_alias", "detail_contains": "before its NBIRTH"}], commands=[REBIRTH]),
    "ndeath_offline": dict(
        messages=[NBIRTH, DBIRTH1, (f"spBv1.0/{G}/NDEATH/{N}", [{"name": "bdSeq", "value": 7}], None)],
        points=[NODE_BORN, P1_BORN, {"device": P1, "ts_ns": T0 + 2 * 10**9, "fields": {"online": 0}},
                {"device": N, "ts_ns": T0 + 2 * 10**9, "fields": {"online": 0}}],
        rejected=[], commands=[]),
    "ndeath_stale_bdseq_ignored": dict(
        messages=[NBIRTH, (f"spBv1.0/{G}/NDEATH/{N}", [{"name": "bdSeq", "value": 6}], None)],
        points=[NODE_BORN], rejected=[], commands=[]),
    "is_historical_backfill": dict(
        messages=[NBIRTH, DBIRTH1, (f"spBv1.0/{G}/DDATA/{N}/{P1}", [
            {"alias": 10, "value": 100.0, "timestamp": MS - 600000, "is_historical": True},
            {"alias": 10, "value": 101.0, "timestamp": MS - 300000, "is_historical": True}], 2)],
        points=[NODE_BORN, P1_BORN, {"device": P1, "ts_ns": T0 - 600 * 10**9, "fields": {"flow_m3h": 100.0, "historical": 1}},
                {"device": P1, "ts_ns": T0 - 300 * 10**9, "fields": {"flow_m3h": 101.0, "historical": 1}}],
        rejected=[], commands=[]),
    "device_of_another_node": dict(
        messages=[(f"spBv1.0/{G}/DBIRTH/dc-edge-gw-1/{P2}", [{"name": "Pump/Flow", "alias": 1, "value": 1.0}], 1)],
        points=[], rejected=[{"reason": "unknown_device", "detail_contains": "not behind edge node 'dc-edge-gw-1'"}], commands=[]),
    "garbage_payload": dict(
        messages=[(f"spBv1.0/{G}/NBIRTH/{N}", b"\x0a\xff\xff\xff garbage", None)],
        points=[], rejected=[{"reason": "decode_error", "detail_contains": "not a Sparkplug B protobuf payload"}], commands=[]),
    "out_of_range_metric": dict(
        messages=[NBIRTH, DBIRTH1, (f"spBv1.0/{G}/DDATA/{N}/{P1}", [{"alias": 10, "value": 99999.0}], 2)],
        points=[NODE_BORN, P1_BORN], rejected=[{"reason": "out_of_range", "detail_contains": "field 'flow_m3h': 99999.0"}],
        commands=[]),
}


def main() -> None:
    for name, case in CASES.items():
        d = HERE / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        listing = []
        for i, (topic, metrics, seq) in enumerate(case["messages"], 1):
            payload = metrics if isinstance(metrics, bytes) else encode_payload(metrics, seq=seq, timestamp_ms=MS)
            (d / f"{i:02d}.bin").write_bytes(payload)
            listing.append({"topic": topic, "payload": f"{i:02d}.bin", "at_s": i - 1})
        (d / "messages.json").write_text(json.dumps(listing, indent=1) + "\n")
        expected = {k: case[k] for k in ("points", "rejected", "commands")}
        (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
