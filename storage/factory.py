"""Open the store the settings name (FANSIPAN_STORE)."""

from __future__ import annotations

from pathlib import Path

from device_profiles import Registry
from fansipan.config import Settings

from .base import Store


def open_store(settings: Settings, registry: Registry) -> Store:
    if settings.store == "sqlite":
        from .sqlite import SQLiteStore

        Path(settings.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(settings.sqlite_path, registry)
    if settings.store == "influx1":
        from .influx_v1 import InfluxV1Store

        return InfluxV1Store(settings.influx_url, settings.influx_database, registry,
                             username=settings.influx_username or None, password=settings.influx_password or None)
    if settings.store == "victoria":
        from .victoria import VictoriaMetricsStore

        return VictoriaMetricsStore(settings.victoria_url, registry, read_url=settings.victoria_read_url or None,
                                    batch_size=settings.batch_size)
    from .influx_v2 import InfluxV2Store

    return InfluxV2Store(settings.influx_url, settings.influx_token, settings.influx_org, settings.influx_bucket, registry)
