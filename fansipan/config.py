"""Settings, from environment variables (``FANSIPAN_*``), checked at start.

Every service reads the same variables; see README.md and .env.example.  A bad
value stops the start with a message naming the variable and what it expects.
Outside development (``FANSIPAN_ENV=production``) unsafe defaults refuse to
start: anonymous MQTT, an InfluxDB without credentials, plain defaults for
secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from device_profiles import DEFAULT_DIR


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe; the message names the variable."""


ENVS = ("development", "production")
STORES = ("sqlite", "influx1", "influx2", "victoria")


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_username: str = ""
    mqtt_password: str = field(default="", repr=False)
    mqtt_protocol: str = "5"  # "5" or "3.1.1"
    mqtt_share_group: str = ""
    mqtt_client_id: str = "fansipan-collector"
    mqtt_ca_file: str = ""  # mqtts://: PEM file of the CA that signed the broker's certificate (empty: system CAs)
    mqtt_client_cert: str = ""  # mqtts://: PEM client certificate, for a listener with require_certificate true
    mqtt_client_key: str = ""  # its private key (empty: the key is in the certificate file)
    store: str = "sqlite"
    sqlite_path: str = "var/fansipan.sqlite"
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "fansipan"
    influx_username: str = ""
    influx_password: str = field(default="", repr=False)
    influx_token: str = field(default="", repr=False)
    influx_org: str = ""
    influx_bucket: str = "fansipan"
    victoria_url: str = "http://127.0.0.1:8428"  # single node; a cluster's vminsert: http://vminsert:8480/insert/0/influx
    victoria_read_url: str = ""  # empty: victoria_url; a cluster's vmselect: http://vmselect:8481/select/0/prometheus
    batch_size: int = 5000
    spool_path: str = "var/spool.sqlite"  # empty: no spool (the broker holds what the store cannot take)
    spool_max_mb: int = 1024
    batch_ms: int = 200
    profiles_dir: str = str(DEFAULT_DIR)
    incidents_path: str = "var/incidents.sqlite"
    detect_every_s: int = 5
    detect_shard: str = "0/1"  # I/N: this detector is shard I of N (analytics/shard.py); 0/1 = not sharded

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, mqtt: bool = True, **overrides) -> Settings:
        """``mqtt=False`` for services that never talk to the broker (detector, API): its safety checks are skipped."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            var = "FANSIPAN_" + f.name.upper()
            if var in environ:
                raw = environ[var]
                if f.type == "int":
                    try:
                        values[f.name] = int(raw)
                    except ValueError:
                        raise ConfigError(f"{var}={raw!r}: expected a whole number") from None
                else:
                    values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**values)
        s.check(mqtt=mqtt)
        return s

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        u = urlsplit(self.mqtt_url)
        return u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def mqtt_tls(self) -> bool:
        return urlsplit(self.mqtt_url).scheme == "mqtts"

    def check(self, mqtt: bool = True) -> None:
        def bad(var: str, why: str) -> ConfigError:
            return ConfigError(f"FANSIPAN_{var}: {why}")

        if self.env not in ENVS:
            raise bad("ENV", f"{self.env!r} is not one of {', '.join(ENVS)}")
        if self.store not in STORES:
            raise bad("STORE", f"{self.store!r} is not one of {', '.join(STORES)}")
        u = urlsplit(self.mqtt_url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise bad("MQTT_URL", f"{self.mqtt_url!r} is not mqtt://host:port or mqtts://host:port")
        for var, path in (("MQTT_CA_FILE", self.mqtt_ca_file), ("MQTT_CLIENT_CERT", self.mqtt_client_cert),
                          ("MQTT_CLIENT_KEY", self.mqtt_client_key)):
            if path and u.scheme != "mqtts":
                raise bad(var, f"is set, but FANSIPAN_MQTT_URL {self.mqtt_url!r} is not mqtts://: TLS would not be used")
            if path and not Path(path).is_file():
                raise bad(var, f"{path!r}: no such file")
        if self.mqtt_client_key and not self.mqtt_client_cert:
            raise bad("MQTT_CLIENT_KEY", "set without FANSIPAN_MQTT_CLIENT_CERT")
        if self.mqtt_protocol not in ("5", "3.1.1"):
            raise bad("MQTT_PROTOCOL", f"{self.mqtt_protocol!r}: expected 5 or 3.1.1")
        if self.mqtt_share_group and not self.mqtt_share_group.replace("-", "").replace("_", "").isalnum():
            raise bad("MQTT_SHARE_GROUP", f"{self.mqtt_share_group!r}: use letters, digits, - and _ only")
        if not 1 <= self.batch_size <= 65_000:
            # paho and MQTT packet ids cap unacknowledged QoS 1 messages at 65,535.
            raise bad("BATCH_SIZE", f"{self.batch_size}: expected 1..65000")
        if self.spool_path and not 1 <= self.spool_max_mb <= 1_000_000:
            raise bad("SPOOL_MAX_MB", f"{self.spool_max_mb}: expected 1..1000000 megabytes")
        if not 1 <= self.detect_every_s <= 3600:
            raise bad("DETECT_EVERY_S", f"{self.detect_every_s}: expected 1..3600 seconds")
        from analytics.shard import Shard

        try:
            Shard.parse(self.detect_shard)
        except ValueError as exc:
            raise ConfigError(f"FANSIPAN_DETECT_SHARD (or fansipan detect --shard): {exc}") from None
        if not 1 <= self.batch_ms <= 60_000:
            raise bad("BATCH_MS", f"{self.batch_ms}: expected 1..60000 milliseconds")
        for var, url in (("VICTORIA_URL", self.victoria_url), ("VICTORIA_READ_URL", self.victoria_read_url)):
            if self.store == "victoria" and (url or var == "VICTORIA_URL") and urlsplit(url).scheme not in ("http", "https"):
                raise bad(var, f"{url!r} is not http(s)://host:port[/path]")
        if self.store in ("influx1", "influx2") and urlsplit(self.influx_url).scheme not in ("http", "https"):
            raise bad("INFLUX_URL", f"{self.influx_url!r} is not http(s)://host:port")
        if self.store == "influx2" and self.env == "development" and not self.influx_token:
            raise bad("INFLUX_TOKEN", "InfluxDB 2.x/3.x needs an API token")
        if self.env == "production":
            self._check_production(bad, mqtt)

    def _check_production(self, bad, mqtt: bool) -> None:
        if mqtt and (not self.mqtt_username or not self.mqtt_password):
            raise bad("MQTT_PASSWORD", "production refuses anonymous MQTT: set FANSIPAN_MQTT_USERNAME and FANSIPAN_MQTT_PASSWORD")
        if self.store == "sqlite":
            raise bad("STORE", "production stores telemetry in InfluxDB or VictoriaMetrics, not SQLite: "
                      "set FANSIPAN_STORE=influx1, influx2 or victoria")
        if self.store == "influx2" and (not self.influx_token or "CHANGE_ME" in self.influx_token):
            raise bad("INFLUX_TOKEN", "production needs a real InfluxDB token (not empty, not the CHANGE_ME placeholder)")
        if self.store == "influx1" and not self.influx_password:
            raise bad("INFLUX_PASSWORD", "production refuses an InfluxDB 1.x without authentication")
        if mqtt and "CHANGE_ME" in self.mqtt_password:
            raise bad("MQTT_PASSWORD", "still the CHANGE_ME placeholder")

    def profiles_path(self) -> Path:
        return Path(self.profiles_dir)
