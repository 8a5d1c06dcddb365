"""The embedded store's file: a table a kind (storage/sqlite_schema.py), and a file of the old layout upgraded."""

from __future__ import annotations

import sqlite3

import pytest
from storage_backends import T0, H, S, pt, registry  # noqa: F401 (fixtures)

from storage import SQLiteStore, StoreError
from storage.base import Point
from storage.sqlite_schema import SCHEMA_VERSION, V1_LEFTOVER

V1_SCHEMA = """
CREATE TABLE readings (device TEXT NOT NULL, field TEXT NOT NULL, ts_ns INTEGER NOT NULL, value NOT NULL,
                       arrived_ms INTEGER NOT NULL, PRIMARY KEY (device, field, ts_ns)) WITHOUT ROWID;
CREATE TABLE last_seen (device TEXT NOT NULL PRIMARY KEY, ts_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE quarantine (arrived_ns INTEGER NOT NULL, reason TEXT NOT NULL, kind TEXT NOT NULL,
                         topic TEXT NOT NULL, device TEXT NOT NULL, detail TEXT NOT NULL, raw TEXT NOT NULL,
                         PRIMARY KEY (arrived_ns, reason, kind)) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def tables(path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {n: [r[1] for r in db.execute(f'PRAGMA table_info("{n}")')] for n in names}


def test_a_table_a_kind_a_row_a_reading(tmp_path, registry):
    path = tmp_path / "s.sqlite"
    s = SQLiteStore(path, registry)
    assert tables(path)["readings_weather"] == ["device", "ts_ns", "arrived_ms", "temperature", "rain_count",
                                                "pump_on"]
    t = T0 + H
    s.write([pt(registry, "w-rt", t, temperature=21.5, rain_count=3, pump_on=True),
             pt(registry, "w-rt", t + S, rain_count=4)])
    s.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT device, ts_ns, temperature, typeof(temperature), rain_count, typeof(rain_count), "
                          "pump_on FROM readings_weather ORDER BY ts_ns").fetchall()
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert rows == [("w-rt", t, 21.5, "real", 3, "integer", 1), ("w-rt", t + S, None, "null", 4, "integer", None)]
    assert version == SCHEMA_VERSION


def test_a_version_1_file_is_upgraded_and_nothing_is_lost(tmp_path, registry, caplog):
    path = tmp_path / "old.sqlite"
    t = T0 + 2 * H
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?)", [
            ("w-rt", "temperature", t, 21.5, 10), ("w-rt", "rain_count", t, 3, 12), ("w-rt", "pump_on", t, 1, 11),
            ("w-rt", "temperature", t + S, 22.0, 20),
            ("w-rt", "wind_ms", t, 7.5, 12),  # a field the registry dropped: kept, in a column of its own
            ("u-seen", "load", t, 40.0, 10),
            ("gone-1", "temperature", t, 1.0, 10), ("gone-1", "x", t, 2, 10)])  # a device no longer registered
        db.execute("INSERT INTO last_seen VALUES ('w-rt', ?)", (t + S,))
    s = SQLiteStore(path, registry)
    assert s.query("w-rt", "temperature", t, t + 2 * S) == [(t, 21.5), (t + S, 22.0)]
    assert s.query("w-rt", "rain_count", t, t + 2 * S) == [(t, 3)]
    assert s.query("u-seen", "load", t, t + S) == [(t, 40.0)]
    f = s.frame("weather", t, t + 2 * S)
    assert f.arrived_ms.tolist() == [12, 20] and f.values["pump_on"].tolist()[0] == 1.0
    assert s.last_seen() == {"w-rt": t + S}
    s.write([pt(registry, "w-rt", t + 2 * S, temperature=23.0)])
    s.close()
    got = tables(path)
    assert "readings" not in got and "wind_ms" in got["readings_weather"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute(f"SELECT device, field FROM {V1_LEFTOVER} ORDER BY field").fetchall() == [
            ("gone-1", "temperature"), ("gone-1", "x")]
    assert any("2 field rows of devices not in the registry" in r.getMessage() for r in caplog.records)
    SQLiteStore(path, registry).close()  # opening it again changes nothing
    assert tables(path) == got


def test_a_file_of_an_unknown_version_is_refused(tmp_path, registry):
    path = tmp_path / "new.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 9")
    with pytest.raises(StoreError, match="schema version 9, this Fansipan knows versions 1 and 2") as exc:
        SQLiteStore(path, registry)
    assert not exc.value.retryable


def test_opening_a_complete_file_does_not_wait_for_the_writer(tmp_path, registry):
    """The API opens the file the collector is writing: no write lock is needed when every table is there."""
    path = tmp_path / "busy.sqlite"
    writer = SQLiteStore(path, registry)
    conn = writer._conn()
    conn.execute("BEGIN IMMEDIATE")
    reader = SQLiteStore(path, registry, busy_timeout_s=0.1)
    assert reader.query("w-rt", "temperature", T0, T0 + S) == []
    conn.execute("ROLLBACK")
    reader.close()
    writer.close()


def test_a_kind_or_field_first_seen_in_a_write_gets_its_table_and_column(tmp_path, registry):
    s = SQLiteStore(tmp_path / "grow.sqlite", registry)
    d = registry.devices["w-rt"]
    s.write([Point("weather", "w-rt", d.site, d.district, T0, {"temperature": 1.0, "gust_ms": 12.5}, T0),
             Point("lidar", "l-1", d.site, d.district, T0, {"range_m": 3}, T0)])
    s.close()
    got = tables(tmp_path / "grow.sqlite")
    assert got["readings_weather"][-1] == "gust_ms" and got["readings_lidar"][3:] == ["range_m"]
    s = SQLiteStore(tmp_path / "grow.sqlite", registry)
    assert s.query("w-rt", "temperature", T0, T0 + 1) == [(T0, 1.0)]
    s.close()
