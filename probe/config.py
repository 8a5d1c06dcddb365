"""The probe's own config file: which targets to check, as which registered device.

A probe publishes like any field device, so every check names a device of kind
``service_probe`` in the site registry; the device's site puts the measurement
on the map (a probe at Y Tý measures what Y Tý experiences).  Everything wrong
in the file is reported at once, naming the file and the key.

Example (deploy/probe.example.yaml holds a longer one)::

    interval_s: 60
    timeout_s: 5
    checks:
      - device: dc-probe-dvc
        http: {url: "https://dichvucong.laocai.gov.vn/"}
        dns: {name: dichvucong.laocai.gov.vn}
        tcp: {host: dichvucong.laocai.gov.vn, port: 443}
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fansipan import yaml_file

KIND = "service_probe"


class ProbeConfigError(ValueError):
    """The probe's config file is unreadable or wrong; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpCheck(_Strict):
    url: str
    method: str = "GET"
    expect_status: list[int] | None = Field(
        default=None, description="statuses that count as up (default: any status below 400)")
    verify_tls: bool = True
    follow_redirects: bool = False
    max_body_kb: int = Field(default=1024, gt=0, description="read at most this much of the body")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{v!r} is not an http:// or https:// URL with a host")
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v.upper() not in ("GET", "HEAD"):
            raise ValueError(f"method {v!r}: a probe only reads, use GET or HEAD")
        return v.upper()

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(not 100 <= s <= 599 for s in v)):
            raise ValueError(f"expect_status must list HTTP statuses between 100 and 599, got {v}")
        return v

    def is_up(self, status: int) -> bool:
        return status in self.expect_status if self.expect_status else 100 <= status < 400


class DnsCheck(_Strict):
    name: str = Field(min_length=1, max_length=253)


class TcpCheck(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class Check(_Strict):
    device: str = Field(description="a registered device of kind service_probe")
    http: HttpCheck | None = None
    dns: DnsCheck | None = None
    tcp: TcpCheck | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=120)

    @model_validator(mode="after")
    def _something(self) -> Check:
        if self.http is None and self.dns is None and self.tcp is None:
            raise ValueError(f"check of {self.device!r} asks for nothing: give it http, dns and/or tcp")
        return self


class ProbeConfig(_Strict):
    interval_s: float | None = Field(default=None, gt=0, description="default: the profile's reporting interval")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    concurrency: int = Field(default=20, ge=1, le=500)
    use_env_proxy: bool = Field(default=False, description="honour HTTP(S)_PROXY; off: measure the direct path")
    checks: list[Check] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ProbeConfig:
        seen = set()
        for c in self.checks:
            if c.device in seen:
                raise ValueError(f"device {c.device!r} has two checks: one device, one target (merge them)")
            seen.add(c.device)
        return self


def parse_config(data, registry, origin: str = "<probe config>") -> ProbeConfig:
    """Validate ``data`` (the parsed YAML) and cross-check its devices against ``registry``."""
    try:
        cfg = ProbeConfig.model_validate(data)
    except ValidationError as exc:
        raise yaml_file.refuse(yaml_file.problems(exc, origin), "probe config", ProbeConfigError) from None
    problems = []
    for i, c in enumerate(cfg.checks):
        dev = registry.devices.get(c.device)
        if dev is None:
            problems.append(f"{origin}: checks.{i}.device: {c.device!r} is not in the site registry "
                            f"(add it to sites.yaml as kind {KIND})")
        elif dev.kind != KIND:
            problems.append(f"{origin}: checks.{i}.device: {c.device!r} is a {dev.kind}, not a {KIND}")
    if KIND not in registry.kinds:
        problems.append(f"{origin}: the registry has no {KIND!r} profile (device_profiles/kinds/{KIND}.yaml)")
    if problems:
        raise yaml_file.refuse(problems, "probe config", ProbeConfigError)
    return cfg


def load_config(path: str | Path, registry) -> ProbeConfig:
    data = yaml_file.read(path, "probe config", ProbeConfigError)
    return parse_config(data, registry, str(path))
