"""Typed models of the device profiles and the site registry.

A profile (one YAML file under ``device_profiles/kinds/``) declares one kind of
device: where it publishes, in what format, which fields it sends with their
type, unit and valid range, and how often it promises to report.  The site
registry (``device_profiles/sites.yaml``) places every device in the province's
topology.  Every model refuses unknown keys, so a typo fails at start instead of
being silently ignored.
"""

from __future__ import annotations

import math
import re
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Identifiers end up in MQTT topics, InfluxDB tags and SQL: keep them to a
# small, safe alphabet instead of escaping them everywhere.
IDENT = r"^[a-z][a-z0-9_-]{0,62}$"
IDENT_RE = re.compile(IDENT)
COMMUNE_OWNER = "ubnd_{commune}"  # a kind owned by the people's committee of whichever commune the device is in
OWNER = r"^([a-z][a-z0-9_-]{0,62}|ubnd_\{commune\})$"

FieldType = Literal["float", "int", "bool"]
# Statistical checks a field can opt into (analytics/statistics.py); limits always apply where marks are set.
DetectorName = Literal["stuck", "anomaly", "seasonal"]
DEFAULT_DETECTORS = ("stuck", "anomaly", "seasonal")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Title(Strict):
    """A label in Vietnamese, with English alongside (operators read Vietnamese)."""

    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Limits(Strict):
    """Alarm marks for a field (a flood mark, the ASHRAE inlet envelope...).

    Readings outside the marks are valid telemetry, unlike readings outside the
    field's valid range, which are refused as impossible.
    """

    warn_above: float | None = None
    crit_above: float | None = None
    warn_below: float | None = None
    crit_below: float | None = None
    hysteresis: float | None = Field(default=None, ge=0, description="how far back past a mark a value must go to clear it (default 2% of the valid range)")
    for_s: float | None = Field(default=None, ge=0, description="how long a mark must be crossed before it counts (default two reporting intervals)")

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        for name in ("warn_above", "crit_above", "warn_below", "crit_below", "hysteresis", "for_s"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v}")  # a NaN mark would never fire
        if self.warn_above is not None and self.crit_above is not None and self.crit_above < self.warn_above:
            raise ValueError("crit_above must not be below warn_above")
        if self.warn_below is not None and self.crit_below is not None and self.crit_below > self.warn_below:
            raise ValueError("crit_below must not be above warn_below")
        return self


class FieldSpec(Strict):
    """One field a device sends: its type, unit and the range a real reading can take."""

    type: FieldType
    unit: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    description: str = ""
    limits: Limits | None = None
    detectors: list[DetectorName] | None = Field(
        default=None, description="statistical checks that watch this field (default: stuck, anomaly, seasonal); "
        "a field that follows a schedule (lamps on at dusk) should leave out 'anomaly'")

    @model_validator(mode="after")
    def _range(self) -> FieldSpec:
        if self.type == "bool":
            if self.min is not None or self.max is not None:
                raise ValueError("a bool field takes no min/max")
        elif self.min is None or self.max is None:
            raise ValueError(f"a {self.type} field needs both min and max (its valid range)")
        elif not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"min and max must be finite numbers, got {self.min} and {self.max}")
        elif self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Window(Strict):
    """A daily window, in local time, when a duty-cycled device is expected to report."""

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v):
        if not isinstance(v, (str, time)):
            raise ValueError('write the time quoted, "HH:MM" (YAML reads 11:00 unquoted as the number 660)')
        return v


class DutyCycle(Strict):
    timezone: str = "Asia/Ho_Chi_Minh"
    windows: list[Window] = Field(min_length=1)


class Reporting(Strict):
    """The reporting contract: silence beyond it means something is wrong."""

    interval_s: float = Field(gt=0, description="expected seconds between reports")
    jitter_s: float = Field(ge=0, description="tolerated lateness of a report")
    future_tolerance_s: float = Field(
        default=120, ge=0, description="how far ahead of arrival a measurement time may be"
    )
    duty_cycle: DutyCycle | None = None
    # Clock and late data (ingest/clock.py, docs/time.md).
    clock_tolerance_s: float = Field(
        default=120, gt=0, description="how far a device clock may be behind arrival time before it counts as off")
    clock_policy: Literal["quarantine", "correct"] = Field(
        default="quarantine", description="readings from a clock beyond tolerance: quarantined (reason clock_skew) "
        "or stored at a time corrected from arrival (field time_corrected=1)")
    replay_horizon_s: float = Field(
        default=7 * 86400, gt=0, description="how old a replayed (buffered) reading may be and still be stored")


class SparkplugSpec(Strict):
    """How a kind's devices appear in the Sparkplug B namespace (docs/formats.md).

    The Sparkplug edge node id and device id are Fansipan device ids; metric
    names are field names unless ``metrics`` maps them.
    """

    group: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Sparkplug group id the devices publish under")
    metrics: dict[str, str] = Field(
        default_factory=dict, description="Sparkplug metric name -> field name, for names that are not the field's")


class Profile(Strict):
    """One kind of device."""

    kind: str = Field(pattern=IDENT)
    family: Literal["smart_city", "commune", "data_center"]
    title: Title
    topic: str = Field(description="topic pattern with {site} and {device} placeholders")
    format: str = Field(pattern=IDENT, description="name of the payload decoder")
    reporting: Reporting
    fields: dict[str, FieldSpec] = Field(min_length=1)
    sparkplug: SparkplugSpec | None = Field(default=None, description="format sparkplug_b: group and metric names")
    owner: str | None = Field(default=None, pattern=OWNER, description="the agency that owns devices of this kind "
                              "(agencies.yaml), or 'ubnd_{commune}': the people's committee of the device's commune")
    shared: bool = Field(default=False, description="data of this kind is shared with every agency (the province's "
                                                    "connected shared data)")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        levels = v.split("/")
        if levels.count("{device}") != 1:
            raise ValueError("the topic pattern must hold {device} exactly once, as a whole level")
        for level in levels:
            if level in ("{device}", "{site}"):
                continue
            if not level or any(c in level for c in "+#{}"):
                raise ValueError(f"topic level {level!r} must be a plain name or {{site}}/{{device}}")
        return v

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in v:
            if not IDENT_RE.match(name) or "-" in name:
                raise ValueError(f"field name {name!r} must be snake_case (a-z, 0-9, _)")
            if name in RESERVED_FIELDS:
                raise ValueError(f"field name {name!r} is reserved by Fansipan")
        return v

    @model_validator(mode="after")
    def _sparkplug_spec(self) -> Profile:
        if self.sparkplug is not None:
            if self.format != "sparkplug_b":
                raise ValueError(f"'sparkplug' applies only to format sparkplug_b, not {self.format!r}")
            unknown = sorted(set(self.sparkplug.metrics.values()) - set(self.fields))
            if unknown:
                raise ValueError(f"sparkplug.metrics maps to {unknown[0]!r}, which is not one of this profile's fields")
        return self

    @property
    def subscription(self) -> str:
        """The MQTT subscription that covers every device of this kind."""
        return "/".join("+" if lvl in ("{site}", "{device}") else lvl for lvl in self.topic.split("/"))


# Names Fansipan itself writes next to the device's fields.
RESERVED_FIELDS = frozenset({"time", "arrived_ms", "device", "kind", "site", "district",
                             "historical", "time_corrected"})  # the last two: ingest/clock.py


SiteType = Literal["province", "data_center", "district", "commune"]


class DeviceEntry(Strict):
    """A device as placed in the site registry."""

    id: str = Field(pattern=IDENT)
    kind: str = Field(pattern=IDENT)
    uplink: str | None = Field(default=None, description="device id of the link this device reaches the network through")
    power: str | None = Field(default=None, description="device id of the power feed (UPS, PDU) it depends on")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    owner: str | None = Field(default=None, pattern=IDENT, description="owning agency, instead of the site's or kind's")
    shared: bool | None = Field(default=None, description="shared with every agency, instead of the site's or kind's")


class SiteEntry(Strict):
    id: str = Field(pattern=IDENT)
    type: SiteType
    name: str = Field(min_length=1)
    parent: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    uplink: str | None = Field(default=None, description="default uplink of the site's devices")
    power: str | None = Field(default=None, description="default power feed of the site's devices")
    owner: str | None = Field(default=None, pattern=IDENT, description="owning agency of the site's devices, "
                              "instead of their kinds' (a device's own owner: still wins)")
    shared: bool | None = Field(default=None, description="the site's devices are shared with every agency")
    devices: list[DeviceEntry] = Field(default_factory=list)


class SitesFile(Strict):
    sites: list[SiteEntry] = Field(min_length=1)


AgencyType = Literal["department", "enterprise", "people_committee", "other"]


class AgencyEntry(Strict):
    """An agency that owns devices (device_profiles/agencies.yaml); API keys can be scoped to one."""

    id: str = Field(pattern=IDENT)
    type: AgencyType
    name: Title


class AgenciesFile(Strict):
    agencies: list[AgencyEntry] = Field(min_length=1)
