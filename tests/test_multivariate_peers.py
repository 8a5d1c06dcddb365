"""KindMultivariate (IsolationForest) and KindPeers (median of the neighbours) on synthetic grid blocks.

Blocks are what DetectionService gives a kind: field -> [n_devices x n_cols] in
profile units, NaN where no reading came, with the column times.  Devices and
profiles are the shipped registry's; no files, no servers, deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.multivariate import KindMultivariate
from analytics.peers import KindPeers
from device_profiles import load_registry

REG = load_registry()
SERVERS = sorted(d.id for d in REG.devices_of("server"))
AQ = sorted(d.id for d in REG.devices_of("air_quality"))
SAPA = [d for d in AQ if REG.devices[d].district == "sa_pa"]
STEP = 10 * 10**9


def times(start_col: int, n: int, step: int = STEP) -> np.ndarray:
    return (start_col + np.arange(n, dtype=np.int64)) * step


def servers(rng, n_cols: int, hot: float = 0.0, hot_dev: int = 0) -> dict[str, np.ndarray]:
    """Twelve servers: CPU temperature follows CPU load (38 °C + 0.3-0.4 °C per % of load).
    ``hot``: °C added to ``hot_dev``'s CPU temperature whatever its load (a failing heatsink)."""
    n = len(SERVERS)
    load = (10 + 4 * (np.arange(n) % 6))[:, None]
    cpu = np.clip(load + 4 * rng.standard_normal((n, n_cols)), 0, 100)
    slope = np.linspace(0.3, 0.4, n)[:, None]
    cols = {
        "cpu_pct": cpu,
        "mem_pct": 55 + np.linspace(-15, 15, n)[:, None] + 0.8 * rng.standard_normal((n, n_cols)),
        "disk_pct": 48 + np.linspace(-20, 20, n)[:, None] + 0.02 * rng.standard_normal((n, n_cols)),
        "inlet_temp_c": 22.4 + np.linspace(-0.8, 0.8, n)[:, None] + 0.12 * rng.standard_normal((n, n_cols)),
        "cpu_temp_c": 38 + slope * cpu + 0.8 * rng.standard_normal((n, n_cols)),
    }
    cols["cpu_temp_c"][hot_dev] += hot
    return cols


def trained(rng, **kw) -> KindMultivariate:
    m = KindMultivariate(REG.kinds["server"], SERVERS, train_cols=360, refit_s=None, **kw)
    m.update(servers(rng, 360), times(0, 360))
    assert m.model is not None and m.fits == 1
    return m


# --- KindMultivariate ------------------------------------------------------------------------------

def test_server_whose_cpu_temp_leaves_its_load_behind_is_flagged():
    rng = np.random.default_rng(1)
    m = trained(rng)
    m.update(servers(rng, 60), times(360, 60))
    assert m.conditions(REG) == []  # the fleet as trained: nothing
    # Server 0 idles at ~10 % load but its CPU runs 22 °C hotter: ~63 °C, under the 85 °C mark.
    m.update(servers(rng, 60, hot=22.0), times(420, 60))
    (c,) = m.conditions(REG)
    assert c.key == f"multivariate:{SERVERS[0]}" and c.kind == "multivariate" and c.severity == "warning"
    assert "Bất thường đa biến" in c.title and SERVERS[0] in c.title
    assert next(iter(c.evidence["deviation_range_units"])) == "cpu_temp_c"  # the field that moved most
    assert c.evidence["values"]["cpu_temp_c"] < 85
    assert c.evidence["score"] >= c.evidence["threshold"]
    assert times(420, 1)[0] <= c.started_ns <= times(480, 1)[0]
    m.update(servers(rng, 120), times(480, 120))  # the heatsink is fixed
    assert m.conditions(REG) == []


def test_training_ignores_rows_outside_limit_marks_and_excluded_rows():
    rng = np.random.default_rng(2)
    m = KindMultivariate(REG.kinds["server"], SERVERS, train_cols=100, refit_s=None)
    cols = servers(rng, 100)
    cols["cpu_temp_c"][3, :50] = 90.0  # over the 85 °C warning mark
    exclude = np.zeros((len(SERVERS), 100), dtype=bool)
    exclude[5, 20:40] = True  # flagged by another detector
    m.update(cols, times(0, 100), exclude=exclude)
    assert m.fits == 1
    assert m._buf_n == len(SERVERS) * 100 - 50 - 20
    k = m.fields.index("cpu_temp_c")
    learned = m._buf[: m._buf_n, k] * m._span[k] + m._lo[k]
    assert learned.max() < 85


def test_scoring_is_one_batch_call_per_update():
    rng = np.random.default_rng(3)
    m = trained(rng)
    calls = []
    score = m.model.score_samples
    m.model.score_samples = lambda x: calls.append(len(x)) or score(x)
    for b in range(5):
        cols = servers(rng, 30)
        cols["cpu_pct"][b, :10] = np.nan  # an incomplete row is skipped, not scored
        m.update(cols, times(360 + 30 * b, 30))
    assert calls == [len(SERVERS) * 30 - 10] * 5


def test_warm_up_scores_the_rest_of_the_fitting_block_and_refits_bounded():
    rng = np.random.default_rng(4)
    m = KindMultivariate(REG.kinds["server"], SERVERS, train_cols=50, refit_s=600, max_train_rows=700)
    m.update(servers(rng, 80), times(0, 80))  # fitted after column 49, columns 50..79 scored
    assert m.fits == 1 and m._seen_cols == 50
    assert (m.decider.score > 0).all()
    for b in range(6):
        m.update(servers(rng, 60), times(80 + 60 * b, 60))
    assert m.fits >= 3  # refitted every 600 s of measurement time
    assert m._buf_n <= 700
    assert m.conditions(REG) == []


def test_multivariate_survives_nan_columns_and_silent_devices():
    rng = np.random.default_rng(5)
    m = trained(rng)
    cols = servers(rng, 40)
    for f in cols:
        cols[f][:, 10:20] = np.nan  # nobody reported
        cols[f][7] = np.nan  # one server silent throughout
    m.update(cols, times(360, 40))
    empty = {f: np.full((len(SERVERS), 5), np.nan) for f in cols}
    m.update(empty, times(400, 5))
    assert m.conditions(REG) == []
    silent = KindMultivariate(REG.kinds["server"], SERVERS, train_cols=10)
    silent.update(empty, times(0, 5))
    assert silent.model is None and silent.conditions(REG) == []


# --- KindPeers -------------------------------------------------------------------------------------

def air(rng, n_cols: int) -> dict[str, np.ndarray]:
    """Seven stations: Sa Pa (1500 m) ~8 °C colder than the city, each district's stations alike."""
    n = len(AQ)
    highland = np.array([REG.devices[d].district == "sa_pa" for d in AQ])[:, None]
    temp = np.where(highland, 17.0, 25.0) + 0.3 * rng.standard_normal((n, 1)) + 0.15 * rng.standard_normal((n, n_cols))
    pm25 = np.where(highland, 20.0, 35.0) * (0.8 + 0.4 * rng.random((n, 1))) + 2 * rng.standard_normal((n, n_cols))
    return {"pm25": pm25, "pm10": 1.6 * pm25 + 3 * rng.standard_normal((n, n_cols)), "temperature": temp,
            "humidity": 80 + rng.standard_normal((n, n_cols))}


def peers() -> KindPeers:
    return KindPeers(REG.kinds["air_quality"], AQ, REG)


def test_station_reading_15_degrees_off_its_district_is_flagged_alone():
    rng = np.random.default_rng(6)
    p = peers()
    cols = air(rng, 30)
    bad = AQ.index(SAPA[0])
    cols["temperature"][bad] += 15.0
    p.update(cols, times(0, 30, 60 * 10**9))
    (c,) = p.conditions(REG)
    assert c.key == f"peer:{SAPA[0]}" and c.kind == "peer" and c.device == SAPA[0]
    ev = c.evidence["fields"]
    assert list(ev) == ["temperature"]
    assert ev["temperature"]["scope"] == "district"
    assert sorted(ev["temperature"]["peers"]) == sorted(set(SAPA) - {SAPA[0]})
    assert abs(ev["temperature"]["value"] - ev["temperature"]["peer_median"] - 15) < 1.5
    assert c.severity == "warning"  # z ~ 18: far past 2 x the threshold


def test_a_short_glitch_is_not_a_finding():
    rng = np.random.default_rng(7)
    p = peers()
    cols = air(rng, 30)
    cols["temperature"][0, 10:13] += 15.0  # three columns, fewer than min_cols
    p.update(cols, times(0, 30, 60 * 10**9))
    assert p.conditions(REG) == []


def test_too_few_peers_gives_no_verdict_unless_the_field_may_compare_kind_wide():
    rng = np.random.default_rng(8)
    p = peers()
    cols = air(rng, 30)
    bad, gone = AQ.index(SAPA[0]), AQ.index(SAPA[1])
    for f in cols:
        cols[f][gone] = np.nan  # Sa Pa is down to two stations reporting
    cols["temperature"][bad] += 15.0  # temperature: district peers only -> no verdict
    p.update(cols, times(0, 30, 60 * 10**9))
    assert p.conditions(REG) == []
    cols["pm25"][bad] += 300.0  # pm25 may fall back to every station of the kind
    p.update(cols, times(30, 30, 60 * 10**9))
    (c,) = p.conditions(REG)
    assert list(c.evidence["fields"]) == ["pm25"] and c.evidence["fields"]["pm25"]["scope"] == "kind"
    assert len(c.evidence["fields"]["pm25"]["peers"]) == len(AQ) - 2
    few = KindPeers(REG.kinds["crac"], sorted(d.id for d in REG.devices_of("crac")), REG, fields=["supply_temp_c"])
    few.update({"supply_temp_c": np.array([[20.0] * 10, [35.0] * 10])}, times(0, 10))
    assert few.conditions(REG) == []


def test_peers_survive_nan_columns_and_silent_devices():
    rng = np.random.default_rng(9)
    p = peers()
    cols = air(rng, 40)
    for f in cols:
        cols[f][:, 5:15] = np.nan
        cols[f][2] = np.nan
    p.update(cols, times(0, 40, 60 * 10**9))
    p.update({f: np.full((len(AQ), 3), np.nan) for f in cols}, times(40, 3, 60 * 10**9))
    assert p.conditions(REG) == []
    none = KindPeers(REG.kinds["camera"], sorted(d.id for d in REG.devices_of("camera")), REG)
    assert none.fields == []
    none.update({}, times(0, 3))
    assert none.conditions(REG) == []


@pytest.mark.parametrize("kind", ["server", "rack_pdu", "street_light", "water_level"])
def test_default_peer_fields_exist_in_the_profiles(kind):
    p = KindPeers(REG.kinds[kind], sorted(d.id for d in REG.devices_of(kind)), REG)
    assert p.fields and all(f in REG.kinds[kind].fields for f in p.fields)
