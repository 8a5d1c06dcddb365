"""The rules file: channels (where messages go) and rules (which incident changes go where, and when).

Secrets never sit in this file: a channel names the environment variable that
holds its password, token or signing secret (``password_env``, ``token_env``,
``secret_env``), and a missing variable stops the start naming it.  Everything
wrong in the file is reported at once, naming the file and the key.
See deploy/notify.example.yaml and docs/notifications.md.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fansipan import yaml_file

SEVERITIES = ("info", "warning", "critical")
EVENTS = ("opened", "reopened", "escalated", "resolved")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# Keys that would put a secret in the file; each has a *_env twin.
_SECRET_KEYS = re.compile(r"^(password|passwd|token|bot_token|secret|api_key)$")
_SECRET_TWIN = {"email": "password_env", "telegram": "token_env", "webhook": "secret_env"}


class RulesError(ValueError):
    """The rules file is unreadable or wrong, or a secret it names is not in the environment."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Strict):
    max: int = Field(ge=1, description="at most this many messages ...")
    per_s: float = Field(gt=0, description="... in any window of this many seconds; the rest wait and go out as one digest")


class _Channel(_Strict):
    rate_limit: RateLimit = RateLimit(max=20, per_s=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


def _http_url(v: str) -> str:
    u = urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"{v!r} is not an http:// or https:// URL with a host")
    return v.rstrip("/")


class EmailChannel(_Channel):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    sender: str = Field(min_length=3, description="From: address, e.g. 'IOC Lào Cai <canhbao@laocai.gov.vn>'")
    to: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        if bool(self.username) != bool(self.password_env):
            raise ValueError("give both username and password_env (the variable holding the password), or neither")
        return self


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: str
    secret_env: str = Field(pattern=ENV_NAME, description="variable holding the HMAC-SHA256 signing secret")

    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class TelegramChannel(_Channel):
    type: Literal["telegram"]
    chat_id: str = Field(min_length=1, description="the group or user id (a string: group ids are negative numbers)")
    token_env: str = Field(pattern=ENV_NAME, description="variable holding the bot token")
    api_url: str = "https://api.telegram.org"

    _url = field_validator("api_url")(classmethod(lambda cls, v: _http_url(v)))

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat(cls, v):
        return str(v) if isinstance(v, int) else v


Channel = Annotated[EmailChannel | WebhookChannel | TelegramChannel, Field(discriminator="type")]


class WorkingHours(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri"]
    start: time = time(7, 30)
    end: time = time(17, 0)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v):
        if not isinstance(v, (str, time)):
            raise ValueError('write the time quoted, "HH:MM" (YAML reads 07:30 unquoted as a number)')
        return v

    @model_validator(mode="after")
    def _order(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self


class Rule(_Strict):
    name: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"] = Field(default="warning", description="the lowest severity that matches")
    kinds: list[str] | None = None
    sites: list[str] | None = None
    districts: list[str] | None = None
    agencies: list[str] | None = Field(default=None, description="owning agency of the incident's device (registry owner)")
    events: list[Literal["opened", "reopened", "escalated", "resolved"]] = list(EVENTS)
    hours: Literal["always", "working", "outside"] = "always"
    channels: list[str] = Field(min_length=1)
    remind_every_min: float | None = Field(default=None, gt=0, description="repeat while open and unacknowledged")


class RetryPolicy(_Strict):
    max_attempts: int = Field(default=8, ge=1)
    first_s: float = Field(default=10.0, gt=0)
    max_s: float = Field(default=900.0, gt=0)

    def delay_s(self, attempts: int) -> float:
        return min(self.max_s, self.first_s * 2 ** max(0, attempts - 1))


class RulesFile(_Strict):
    timezone: str = "Asia/Ho_Chi_Minh"
    working_hours: WorkingHours = WorkingHours()
    group_window_s: float = Field(default=30.0, ge=0, description="changes this close together go out as one message")
    retry: RetryPolicy = RetryPolicy()
    base_url: str | None = Field(default=None, description="the API's public address, for a link to the incident")
    channels: dict[str, Channel] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (e.g. Asia/Ho_Chi_Minh)") from None
        return v

    @model_validator(mode="after")
    def _refs(self) -> RulesFile:
        for r in self.rules:
            unknown = [c for c in r.channels if c not in self.channels]
            if unknown:
                raise ValueError(f"rule {r.name!r} names unknown channel(s) {unknown}; declared: {sorted(self.channels)}")
        return self

    def in_working_hours(self, now_ns: int) -> bool:
        local = datetime.fromtimestamp(now_ns / 1e9, ZoneInfo(self.timezone))
        wh = self.working_hours
        return DAYS[local.weekday()] in wh.days and wh.start <= local.time() < wh.end


def _secret_problems(data, origin: str) -> list[str]:
    out = []
    for name, ch in ((data or {}).get("channels") or {}).items() if isinstance(data, dict) else ():
        for key in ch if isinstance(ch, dict) else ():
            if _SECRET_KEYS.match(str(key)):
                out.append(f"{origin}: channels.{name}.{key}: secrets do not go in the rules file; put it in an "
                           f"environment variable and name that variable with {_SECRET_TWIN.get(ch.get('type'), 'secret_env')}")
    return out


def parse_rules(data, origin: str = "<rules>") -> RulesFile:
    problems = _secret_problems(data, origin)
    if not problems:
        try:
            return RulesFile.model_validate(data)
        except ValidationError as exc:
            problems = yaml_file.problems(exc, origin)
    raise yaml_file.refuse(problems, "notification rules", RulesError)


def load_rules(path: str | Path) -> RulesFile:
    data = yaml_file.read(path, "notification rules", RulesError)
    return parse_rules(data, str(path))


def secrets(rules: RulesFile, environ=None) -> dict[str, str]:
    """Channel name -> its secret from the environment; RulesError naming every variable that is missing."""
    environ = os.environ if environ is None else environ
    out, missing = {}, []
    for name, ch in rules.channels.items():
        var = getattr(ch, "password_env", None) or getattr(ch, "token_env", None) or getattr(ch, "secret_env", None)
        if var is None:
            continue
        value = environ.get(var, "")
        if not value:
            missing.append(f"{var} (channel {name!r}, {ch.type})")
        out[name] = value
    if missing:
        raise RulesError("secret(s) missing from the environment: " + ", ".join(missing)
                         + "; set them before starting fansipan notify")
    return out
