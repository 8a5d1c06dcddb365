"""Fansipan's storage: one contract (storage.base), several stores.

* :class:`SQLiteStore` - embedded, one machine, no server (standard library only);
* :class:`InfluxV1Store` - InfluxDB 1.x over its HTTP API;
* :class:`InfluxV2Store` - InfluxDB 2.x/3.x through ``influxdb-client``, read with InfluxQL
  (or with an injected reader such as :class:`VictoriaMetricsReader`);
* :class:`VictoriaMetricsStore` - VictoriaMetrics single node or cluster (line protocol in, export API out).

The server-backed stores are imported on first use, so that ``import storage``
stays cheap for the embedded case.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .base import AGGREGATES, Point, QueryError, Rejected, Store, StoreError, Value

if TYPE_CHECKING:  # pragma: no cover
    from .influx_v1 import InfluxQLReader, InfluxV1Store
    from .influx_v2 import InfluxV2Store
    from .sqlite import SQLiteStore
    from .victoria import VictoriaMetricsReader, VictoriaMetricsStore

_LAZY = {
    "SQLiteStore": ".sqlite",
    "InfluxV1Store": ".influx_v1",
    "InfluxQLReader": ".influx_v1",
    "InfluxV2Store": ".influx_v2",
    "VictoriaMetricsReader": ".victoria",
    "VictoriaMetricsStore": ".victoria",
}

__all__ = [
    "AGGREGATES", "Point", "QueryError", "Rejected", "Store", "StoreError", "Value",
    "SQLiteStore", "InfluxV1Store", "InfluxQLReader", "InfluxV2Store", "VictoriaMetricsReader",
    "VictoriaMetricsStore",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
