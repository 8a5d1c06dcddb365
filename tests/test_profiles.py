"""Tests of the device profiles, the site registry and their loader.

Run from the checkout: ``.venv/bin/python -m pytest tests/test_profiles.py``.
"""

from __future__ import annotations

import copy
from datetime import time
from pathlib import Path

import pytest
import yaml

from device_profiles import IDENT_RE, ProfileError, Registry, load_registry

# ---------------------------------------------------------------------------
# The shipped registry
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_registry()


def _communes(reg: Registry) -> list[str]:
    return [s.id for s in reg.sites.values() if s.type == "commune"]


def _at(reg: Registry, site: str, kind: str | None = None) -> list:
    return [d for d in reg.devices.values() if d.site == site and (kind is None or d.kind == kind)]


def test_shipped_registry_loads(reg):
    assert len(reg.kinds) >= 10
    assert {p.family for p in reg.kinds.values()} == {"smart_city", "commune", "data_center"}
    assert 250 <= len(reg.devices) <= 350
    assert [s.id for s in reg.sites.values() if s.type == "province"] == ["lao_cai"]
    assert reg.sites["dc_laocai"].type == "data_center"
    assert reg.sites["dc_laocai"].parent == "lao_cai"


# Field formats of issue 7 (docs/formats.md): Sparkplug B, SenML, gateway payloads.
OTHER_FORMATS = {"edge_gateway": "sparkplug_b", "pump_station": "sparkplug_b", "dc_power_meter": "sparkplug_b",
                 "weather_station": "senml", "commune_gateway": "gateway"}


def test_shipped_profiles_follow_the_conventions(reg):
    for kind, p in reg.kinds.items():
        assert p.topic == f"laocai/{{site}}/{kind}/{{device}}", kind
        assert p.format == ("line_protocol" if kind in ("server", "core_switch") else OTHER_FORMATS.get(kind, "json")), kind
        r = p.reporting
        assert 0.3 <= r.jitter_s / r.interval_s <= 0.5, kind
        for name, f in p.fields.items():
            if f.type == "bool":
                assert f.unit == "bool", (kind, name)
            lim = f.limits
            if lim is None or f.type == "bool":  # a bool's marks are thresholds between 0 and 1
                continue
            for mark in (lim.warn_above, lim.crit_above, lim.warn_below, lim.crit_below):
                assert mark is None or f.min <= mark <= f.max, (kind, name, mark)


def test_shipped_duty_cycle_windows_are_local_times(reg):
    dc = reg.kinds["ip_loudspeaker"].reporting.duty_cycle
    assert dc is not None and dc.timezone == "Asia/Ho_Chi_Minh"
    # Naive times in order: an unquoted 11:00 in YAML would arrive as 00:11 UTC.
    assert [(w.start, w.end) for w in dc.windows] == [
        (time(5, 30), time(7, 0)), (time(11, 0), time(12, 0)), (time(17, 0), time(18, 30))]
    for kind, p in reg.kinds.items():
        if kind != "ip_loudspeaker":
            assert p.reporting.duty_cycle is None, kind


def test_shipped_districts_and_communes(reg):
    per_district: dict[str, int] = {}
    for s in reg.sites.values():
        if s.type == "district":
            assert s.parent == "lao_cai" and s.district == s.id
        if s.type == "commune":
            assert reg.sites[s.parent].type == "district", s.id
            assert s.district == s.parent
            per_district[s.district] = per_district.get(s.district, 0) + 1
    assert sum(n >= 3 for n in per_district.values()) >= 6
    for s in reg.sites.values():
        assert IDENT_RE.match(s.id) and "-" not in s.id, s.id
        # Everything lies in (or right by) Lào Cai province.
        assert 21.8 <= s.lat <= 22.9 and 103.5 <= s.lon <= 104.7, s.id


def test_every_commune_device_depends_on_its_router(reg):
    for cid in _communes(reg):
        routers, upses = _at(reg, cid, "commune_router"), _at(reg, cid, "commune_ups")
        assert len(routers) == 1 and len(upses) == 1, cid
        router, ups = routers[0].id, upses[0].id
        assert reg.ancestors(router) == [], cid
        assert _at(reg, cid, "ip_loudspeaker"), cid
        for d in _at(reg, cid):
            if d.id == router:
                continue
            assert router in reg.ancestors(d.id), d.id
            assert d.district == reg.sites[cid].district
            if d.id != ups:
                assert d.power == ups, d.id


def test_loudspeaker_ancestors_include_router_and_ups(reg):
    assert reg.ancestors("yty-spk-1") == ["yty-router", "yty-ups"]
    spk = reg.devices_of("ip_loudspeaker")
    assert spk
    for d in spk:
        anc = reg.ancestors(d.id)
        kinds = {reg.devices[a].kind for a in anc}
        assert kinds == {"commune_router", "commune_ups"}, d.id
        assert {reg.devices[a].site for a in anc} == {d.site}


def test_data_center_topology(reg):
    dc = _at(reg, "dc_laocai")
    count = {k: len([d for d in dc if d.kind == k]) for k in ("core_switch", "dc_ups", "crac", "rack_pdu", "server")}
    assert count == {"core_switch": 2, "dc_ups": 2, "crac": 2, "rack_pdu": 6, "server": 12}
    for d in dc:
        assert d.district == ""
        if d.kind == "server":
            assert reg.devices[d.uplink].kind == "core_switch"
            assert reg.devices[d.power].kind == "rack_pdu"
            assert {reg.devices[a].kind for a in reg.ancestors(d.id)} == {"core_switch", "rack_pdu", "dc_ups"}
        if d.kind == "rack_pdu":
            assert reg.devices[d.power].kind == "dc_ups"
    assert {len(reg.children(pdu.id)) for pdu in reg.devices_of("rack_pdu")} == {2}


def test_smart_city_sensors_placed(reg):
    def districts(kind):
        return {d.district for d in reg.devices_of(kind)}

    assert {"bat_xat", "bao_thang", "bao_yen", "van_ban"} <= districts("water_level")
    assert {"sa_pa", "lao_cai_city"} <= districts("air_quality")
    assert {"sa_pa", "lao_cai_city"} <= districts("street_light")
    assert {"sa_pa", "lao_cai_city"} <= districts("camera")
    for d in reg.devices.values():
        assert IDENT_RE.match(d.id), d.id


# ---------------------------------------------------------------------------
# Malformed inputs: every problem names the file, the key path and the reason
# ---------------------------------------------------------------------------

PROFILE = {
    "kind": "x",
    "family": "smart_city",
    "title": {"vi": "Cảm biến X", "en": "Sensor X"},
    "topic": "laocai/{site}/x/{device}",
    "format": "json",
    "reporting": {"interval_s": 60, "jitter_s": 20},
    "fields": {
        "pm25": {"type": "float", "unit": "µg/m³", "min": 0, "max": 1000},
        "on": {"type": "bool", "unit": "bool"},
    },
}

SITES = {
    "sites": [
        {"id": "p", "type": "province", "name": "Tỉnh P"},
        {"id": "c", "type": "commune", "name": "Xã C", "parent": "p",
         "devices": [{"id": "x-1", "kind": "x"}, {"id": "x-2", "kind": "x", "uplink": "x-1"}]},
    ]
}


def _write(directory: Path, profile: dict | None = None, sites: dict | None = None) -> Path:
    (directory / "kinds").mkdir(exist_ok=True)
    if profile is not None:
        (directory / "kinds" / "x.yaml").write_text(yaml.safe_dump(profile, allow_unicode=True), encoding="utf-8")
    if sites is not None:
        (directory / "sites.yaml").write_text(yaml.safe_dump(sites, allow_unicode=True), encoding="utf-8")
    return directory


def _problems(directory: Path) -> str:
    with pytest.raises(ProfileError) as exc:
        load_registry(directory)
    return "\n".join(exc.value.problems)


def test_minimal_fixture_is_valid(tmp_path):
    reg = load_registry(_write(tmp_path, PROFILE, SITES))
    assert set(reg.devices) == {"x-1", "x-2"}
    assert reg.ancestors("x-2") == ["x-1"]
    assert reg.sites["c"].district is None  # a commune straight under the province


def _profile(edit):
    def mutate(d: Path):
        p = copy.deepcopy(PROFILE)
        edit(p)
        _write(d, profile=p)
    return mutate


def _sites(edit):
    def mutate(d: Path):
        s = copy.deepcopy(SITES)
        edit(s)
        _write(d, sites=s)
    return mutate


def _text(name: str, text: str):
    def mutate(d: Path):
        (d / name).write_text(text, encoding="utf-8")
    return mutate


def _rename_field_key(p):
    p["fields"]["pm25"]["unti"] = p["fields"]["pm25"].pop("unit")


def _add_device(s, **dev):
    s["sites"][1]["devices"].append(dev)


def _cycle(s):
    s["sites"][1]["devices"] += [{"id": "a", "kind": "x", "uplink": "b"}, {"id": "b", "kind": "x", "uplink": "a"}]


def _power_cycle(s):
    s["sites"][1]["devices"][0]["power"] = "x-2"   # x-2 already has uplink x-1


CASES = {
    "unknown key (typo unti)": (
        _profile(_rename_field_key),
        ["kinds/x.yaml: fields.pm25.unti: unknown key", "kinds/x.yaml: fields.pm25.unit: Field required"]),
    "unknown top-level key": (
        _profile(lambda p: p.update(intervall_s=5)),
        ["kinds/x.yaml: intervall_s: unknown key"]),
    "wrong type (min: abc)": (
        _profile(lambda p: p["fields"]["pm25"].update(min="abc")),
        ["kinds/x.yaml: fields.pm25.min: Input should be a valid number"]),
    "field min >= max": (
        _profile(lambda p: p["fields"]["pm25"].update(min=5, max=5)),
        ["kinds/x.yaml: fields.pm25: ", "min (5.0) must be below max (5.0)"]),
    "number field without a range": (
        _profile(lambda p: p["fields"]["pm25"].pop("max")),
        ["kinds/x.yaml: fields.pm25: ", "a float field needs both min and max"]),
    "bool field with a range": (
        _profile(lambda p: p["fields"]["on"].update(min=0, max=1)),
        ["kinds/x.yaml: fields.on: ", "a bool field takes no min/max"]),
    "unknown field type": (
        _profile(lambda p: p["fields"]["pm25"].update(type="double")),
        ["kinds/x.yaml: fields.pm25.type: Input should be 'float', 'int' or 'bool'"]),
    "limits out of order": (
        _profile(lambda p: p["fields"]["pm25"].update(limits={"warn_above": 50, "crit_above": 10})),
        ["kinds/x.yaml: fields.pm25.limits: ", "crit_above must not be below warn_above"]),
    "missing required key": (
        _profile(lambda p: p.pop("reporting")),
        ["kinds/x.yaml: reporting: Field required"]),
    "missing nested key": (
        _profile(lambda p: p["title"].pop("vi")),
        ["kinds/x.yaml: title.vi: Field required"]),
    "bad family": (
        _profile(lambda p: p.update(family="smartcity")),
        ["kinds/x.yaml: family: Input should be 'smart_city', 'commune' or 'data_center'"]),
    "negative interval": (
        _profile(lambda p: p["reporting"].update(interval_s=0)),
        ["kinds/x.yaml: reporting.interval_s: Input should be greater than 0"]),
    "topic without {device}": (
        _profile(lambda p: p.update(topic="laocai/{site}/x")),
        ["kinds/x.yaml: topic: ", "{device} exactly once"]),
    "topic with a wildcard": (
        _profile(lambda p: p.update(topic="laocai/+/x/{device}")),
        ["kinds/x.yaml: topic: ", "topic level '+' must be a plain name"]),
    "reserved field name": (
        _profile(lambda p: p["fields"].update(site={"type": "int", "unit": "n", "min": 0, "max": 9})),
        ["kinds/x.yaml: fields: ", "field name 'site' is reserved"]),
    "field name not snake_case": (
        _profile(lambda p: p["fields"].update({"PM10": {"type": "int", "unit": "n", "min": 0, "max": 9}})),
        ["kinds/x.yaml: fields: ", "field name 'PM10' must be snake_case"]),
    "kind not matching the file name": (
        _profile(lambda p: p.update(kind="z")),
        ["kinds/x.yaml: kind: 'z' must match the file name 'x'"]),
    "profile not YAML": (
        _text("kinds/x.yaml", "kind: x\nfields: [pm25\ntitle: {vi: a}\n"),
        ["kinds/x.yaml: line ", "not valid YAML"]),
    "profile top level a list": (
        _text("kinds/x.yaml", "- kind: x\n"),
        ["kinds/x.yaml: (top level): expected a mapping, got list"]),
    "duplicate device id": (
        _sites(lambda s: _add_device(s, id="x-1", kind="x")),
        ["sites.yaml: sites.1.devices.2.id: device 'x-1' is declared twice"]),
    "device of unknown kind": (
        _sites(lambda s: _add_device(s, id="x-3", kind="nope")),
        ["sites.yaml: sites.1.devices.2.kind: no profile for kind 'nope' (known: x)"]),
    "bad device id": (
        _sites(lambda s: _add_device(s, id="X 3", kind="x")),
        ["sites.yaml: sites.1.devices.2.id: String should match pattern"]),
    "unknown key in a device": (
        _sites(lambda s: _add_device(s, id="x-3", kind="x", uplnk="x-1")),
        ["sites.yaml: sites.1.devices.2.uplnk: unknown key"]),
    "duplicate site id": (
        _sites(lambda s: s["sites"].append({"id": "c", "type": "commune", "name": "Xã C2", "parent": "p"})),
        ["sites.yaml: sites.2.id: site 'c' is declared twice"]),
    "parent site that does not exist": (
        _sites(lambda s: s["sites"][1].update(parent="nowhere")),
        ["sites.yaml: sites.1.parent: site 'nowhere' does not exist"]),
    "site without a parent": (
        _sites(lambda s: s["sites"][1].pop("parent")),
        ["sites.yaml: sites.1.parent: a commune needs a parent site"]),
    "bad site type": (
        _sites(lambda s: s["sites"][1].update(type="village")),
        ["sites.yaml: sites.1.type: Input should be 'province', 'data_center', 'district' or 'commune'"]),
    "uplink device that does not exist": (
        _sites(lambda s: s["sites"][1]["devices"][1].update(uplink="ghost")),
        ["sites.yaml: sites.1.devices.1.uplink: device 'ghost' does not exist"]),
    "site default power that does not exist": (
        _sites(lambda s: s["sites"][1].update(power="ghost-ups")),
        ["sites.yaml: sites.1.power: device 'ghost-ups' does not exist"]),
    "dependency cycle": (
        _sites(_cycle),
        ["sites.yaml: device 'a': depends on itself", "sites.yaml: device 'b': depends on itself"]),
    "uplink/power cycle": (
        _sites(_power_cycle),
        ["sites.yaml: device 'x-1': depends on itself", "sites.yaml: device 'x-2': depends on itself"]),
    "sites not YAML": (
        _text("sites.yaml", "sites:\n  - {id: p, type: province\n"),
        ["sites.yaml: line ", "not valid YAML"]),
    "sites top level a list": (
        _text("sites.yaml", "- {id: p, type: province, name: P}\n"),
        ["sites.yaml: (top level): expected a mapping, got list"]),
    "sites file empty": (
        _text("sites.yaml", ""),
        ["sites.yaml: (top level): expected a mapping, got NoneType"]),
    "no site at all": (
        _text("sites.yaml", "sites: []\n"),
        ["sites.yaml: sites: List should have at least 1 item"]),
}


@pytest.mark.parametrize("mutate, expected", CASES.values(), ids=CASES.keys())
def test_malformed_input_is_reported(tmp_path, mutate, expected):
    _write(tmp_path, PROFILE, SITES)
    mutate(tmp_path)
    problems = _problems(tmp_path)
    for text in expected:
        assert text in problems, f"{text!r} not in:\n{problems}"


def test_every_problem_is_reported_at_once(tmp_path):
    p = copy.deepcopy(PROFILE)
    _rename_field_key(p)
    p["topic"] = "laocai/{site}/x"
    s = copy.deepcopy(SITES)
    _add_device(s, id="x-1", kind="x")
    s["sites"][1]["parent"] = "nowhere"
    _write(tmp_path, p, s)
    problems = _problems(tmp_path)
    for text in ("kinds/x.yaml: fields.pm25.unti: unknown key", "kinds/x.yaml: topic: ",
                 "sites.1.devices.2.id: device 'x-1' is declared twice",
                 "sites.1.parent: site 'nowhere' does not exist"):
        assert text in problems


def test_missing_profiles_directory(tmp_path):
    _write(tmp_path, sites=SITES)
    assert "kinds: no *.yaml profile found" in _problems(tmp_path)


def test_missing_sites_file(tmp_path):
    _write(tmp_path, profile=PROFILE)
    assert "sites.yaml: cannot read: No such file or directory" in _problems(tmp_path)


def test_same_subscription_twice(tmp_path):
    _write(tmp_path, PROFILE, SITES)
    other = dict(copy.deepcopy(PROFILE), kind="y")
    (tmp_path / "kinds" / "y.yaml").write_text(yaml.safe_dump(other, allow_unicode=True), encoding="utf-8")
    assert "kinds/y.yaml: topic: same subscription as kind 'x'" in _problems(tmp_path)


def test_unquoted_window_time_is_refused(tmp_path):
    _write(tmp_path, PROFILE, SITES)
    text = yaml.safe_dump(PROFILE, allow_unicode=True)
    text = text.replace("reporting:\n", "reporting:\n  duty_cycle:\n    windows:\n    - {start: 11:00, end: 12:00}\n")
    (tmp_path / "kinds" / "x.yaml").write_text(text, encoding="utf-8")
    assert "kinds/x.yaml: reporting.duty_cycle.windows.0.start: " in _problems(tmp_path)
