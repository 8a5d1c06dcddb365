"""Load and cross-check the profiles and the site registry.

Everything wrong is collected and reported at once, each problem naming the
file, the key path and the reason, so an engineer fixes a broken registry in
one pass instead of one error per restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from .models import COMMUNE_OWNER, AgenciesFile, Profile, SitesFile

DEFAULT_DIR = Path(__file__).resolve().parent


class ProfileError(Exception):
    """The profiles or the site registry are invalid; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the device profiles:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    type: str
    name: str
    parent: str | None
    district: str | None  # the district the site lies in (itself for a district)
    lat: float | None
    lon: float | None


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str
    site: str
    district: str  # "" for sites outside any district (the data center)
    uplink: str | None
    power: str | None
    lat: float | None
    lon: float | None
    owner: str | None = None  # the owning agency's id (agencies.yaml, or ubnd_<commune>); None: no agency
    shared: bool = False  # shared with every agency (the province's connected shared data)


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    type: str  # department, enterprise, people_committee, other
    name_vi: str
    name_en: str
    commune: str | None = None  # for a commune's people's committee: the commune's site id


@dataclass(frozen=True)
class Registry:
    """Every device kind, site and device, cross-checked."""

    kinds: dict[str, Profile]
    sites: dict[str, Site]
    devices: dict[str, Device]
    source: Path = field(default=DEFAULT_DIR)
    agencies: dict[str, Agency] = field(default_factory=dict)

    def devices_of(self, kind: str) -> list[Device]:
        return [d for d in self.devices.values() if d.kind == kind]

    def children(self, device_id: str) -> list[Device]:
        """Devices that depend on ``device_id`` directly, as uplink or as power feed."""
        return [d for d in self.devices.values() if device_id in (d.uplink, d.power)]

    def ancestors(self, device_id: str) -> list[str]:
        """Every device ``device_id`` depends on, nearest first (uplinks and power feeds)."""
        seen: list[str] = []
        todo = [device_id]
        while todo:
            d = self.devices[todo.pop(0)]
            for parent in (d.uplink, d.power):
                if parent and parent not in seen:
                    seen.append(parent)
                    todo.append(parent)
        return seen


def _loc(err_loc: tuple) -> str:
    return ".".join(str(p) for p in err_loc) or "(top level)"


_UNREADABLE = object()


def _read_yaml(path: Path, problems: list[str]):
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return _UNREADABLE
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}:" if mark else ""
        problems.append(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}): save the file as UTF-8")
    except RecursionError:
        problems.append(f"{path}: nested too deep to be a profile")
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # PyYAML's constructors let these out for tagged scalars (!!timestamp x, !!bool x, 2001-02-30).
        problems.append(f"{path}: a value YAML cannot build: {type(exc).__name__}: {str(exc)[:200]}")
    return _UNREADABLE


def _validate(model, data, path: Path, problems: list[str]):
    if data is _UNREADABLE:
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: (top level): expected a mapping, got {type(data).__name__}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            reason = "unknown key (a typo, or an option that does not exist)" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{path}: {_loc(e['loc'])}: {reason}")
    return None


def load_profiles(directory: Path, problems: list[str]) -> dict[str, Profile]:
    kinds: dict[str, Profile] = {}
    files = sorted((directory / "kinds").glob("*.yaml"))
    if not files:
        problems.append(f"{directory / 'kinds'}: no *.yaml profile found")
    for path in files:
        profile = _validate(Profile, _read_yaml(path, problems), path, problems)
        if profile is None:
            continue
        if profile.kind != path.stem:
            problems.append(f"{path}: kind: {profile.kind!r} must match the file name {path.stem!r}")
        elif profile.kind in kinds:
            problems.append(f"{path}: kind: {profile.kind!r} is declared twice")
        else:
            kinds[profile.kind] = profile
    subs: dict[str, str] = {}
    for p in kinds.values():
        other = subs.setdefault(p.subscription, p.kind)
        if other != p.kind:
            problems.append(f"{directory / 'kinds' / (p.kind + '.yaml')}: topic: same subscription as kind {other!r}")
    return kinds


def load_agencies(directory: Path, sites: dict, problems: list[str]) -> dict[str, Agency]:
    """``agencies.yaml`` (optional) plus one people's committee, ``ubnd_<commune id>``, per commune site."""
    agencies: dict[str, Agency] = {}
    path = directory / "agencies.yaml"
    if path.exists():
        parsed = _validate(AgenciesFile, _read_yaml(path, problems), path, problems)
        for i, a in enumerate(parsed.agencies if parsed else []):
            if a.id in agencies:
                problems.append(f"{path}: agencies.{i}.id: agency {a.id!r} is declared twice")
            elif a.id.startswith("ubnd_"):
                problems.append(f"{path}: agencies.{i}.id: {a.id!r}: ids ubnd_<commune> are made for every commune "
                                "of sites.yaml; do not declare them")
            agencies[a.id] = Agency(a.id, a.type, a.name.vi, a.name.en)
    for s in sites.values():
        if s.type == "commune":
            agencies[f"ubnd_{s.id}"] = Agency(f"ubnd_{s.id}", "people_committee", f"UBND {s.name}",
                                              f"People's Committee of {s.name}", s.id)
    return agencies


def _owner(where: str, s, d, profile, agencies: dict[str, Agency], problems: list[str]) -> tuple[str | None, bool]:
    """The device's owner and shared flag: the device's own, else its site's, else its kind's."""
    shared = next((v for v in (d.shared, s.shared, profile.shared if profile else False) if v is not None), False)
    if d.owner is not None:
        owner, origin = d.owner, f"{where}.owner"
    elif s.owner is not None:
        owner, origin = s.owner, f"{where.rsplit('.devices.', 1)[0]}.owner"
    else:
        owner, origin = (profile.owner if profile else None), f"kind {d.kind!r}: owner"
    if owner == COMMUNE_OWNER:
        if s.type != "commune":
            problems.append(f"{where}.owner: kind {d.kind!r} belongs to a commune's people's committee "
                            f"({COMMUNE_OWNER}) but site {s.id!r} is a {s.type}: give the device an owner")
            return None, shared
        owner = f"ubnd_{s.id}"
    if owner is not None and owner not in agencies:
        problems.append(f"{origin}: agency {owner!r} does not exist (declare it in agencies.yaml; "
                        f"known: {', '.join(sorted(a for a in agencies if not a.startswith('ubnd_')))}, ubnd_<commune>)")
        return None, shared
    return owner, shared


def _district_of(site_id: str, raw: dict, seen: tuple[str, ...] = ()) -> str | None:
    s = raw[site_id]
    if s.type == "district":
        return s.id
    if s.parent is None or s.parent in seen or s.parent not in raw:
        return None
    return _district_of(s.parent, raw, seen + (site_id,))


def load_registry(directory: Path | str = DEFAULT_DIR) -> Registry:
    """Load ``kinds/*.yaml`` and ``sites.yaml`` from ``directory``; raise ProfileError listing every problem."""
    directory = Path(directory)
    problems: list[str] = []
    kinds = load_profiles(directory, problems)
    path = directory / "sites.yaml"
    sites_file = _validate(SitesFile, _read_yaml(path, problems), path, problems)
    if sites_file is None:
        raise ProfileError(problems)

    raw_sites = {}
    for i, s in enumerate(sites_file.sites):
        if s.id in raw_sites:
            problems.append(f"{path}: sites.{i}.id: site {s.id!r} is declared twice")
        raw_sites[s.id] = s
    raw_devices = {}
    for i, s in enumerate(sites_file.sites):
        where = f"{path}: sites.{i}"
        if s.parent is not None and s.parent not in raw_sites:
            problems.append(f"{where}.parent: site {s.parent!r} does not exist")
        if s.type == "province" and s.parent is not None:
            problems.append(f"{where}.parent: a province has no parent")
        if s.type != "province" and s.parent is None:
            problems.append(f"{where}.parent: a {s.type} needs a parent site")
        for j, d in enumerate(s.devices):
            if d.id in raw_devices:
                problems.append(f"{where}.devices.{j}.id: device {d.id!r} is declared twice")
            if d.kind not in kinds:
                problems.append(f"{where}.devices.{j}.kind: no profile for kind {d.kind!r} (known: {', '.join(sorted(kinds))})")
            raw_devices[d.id] = (i, j, s, d)

    # A cycle in the site tree would make "which district" unanswerable.
    for sid in raw_sites:
        chain, cur = [sid], raw_sites[sid].parent
        while cur is not None and cur in raw_sites:
            if cur in chain:
                problems.append(f"{path}: site {sid!r}: parent chain loops ({' -> '.join(chain + [cur])})")
                break
            chain.append(cur)
            cur = raw_sites[cur].parent

    sites = {
        sid: Site(s.id, s.type, s.name, s.parent, _district_of(sid, raw_sites), s.lat, s.lon)
        for sid, s in raw_sites.items()
    }
    agencies = load_agencies(directory, raw_sites, problems)
    devices: dict[str, Device] = {}
    for did, (i, j, s, d) in raw_devices.items():
        where = f"{path}: sites.{i}.devices.{j}"
        deps = {}
        for key in ("uplink", "power"):
            explicit = getattr(d, key)
            # An explicit `uplink: null` removes the site default; leaving the key out takes it.
            dep = explicit if key in d.model_fields_set else getattr(s, key)
            if dep == did:
                dep = None  # the site's own router/UPS does not depend on itself
            if dep is not None and dep not in raw_devices:
                origin = f"{where}.{key}" if explicit is not None else f"{path}: sites.{i}.{key}"
                problems.append(f"{origin}: device {dep!r} does not exist")
                dep = None
            deps[key] = dep
        owner, shared = _owner(where, s, d, kinds.get(d.kind), agencies, problems)
        devices[did] = Device(did, d.kind, s.id, sites[s.id].district or "", deps["uplink"], deps["power"],
                              d.lat if d.lat is not None else s.lat, d.lon if d.lon is not None else s.lon,
                              owner, shared)

    for did in devices:  # dependency cycles: a device cannot (indirectly) depend on itself
        stack, seen = [did], set()
        while stack:
            cur = devices[stack.pop()]
            for dep in (cur.uplink, cur.power):
                if dep == did:
                    problems.append(f"{path}: device {did!r}: depends on itself through its uplink/power chain")
                    stack = []
                    break
                if dep and dep not in seen:
                    seen.add(dep)
                    stack.append(dep)

    if problems:
        raise ProfileError(problems)
    return Registry(kinds=kinds, sites=sites, devices=devices, source=directory, agencies=agencies)
