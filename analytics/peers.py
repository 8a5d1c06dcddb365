"""Peer conditions: a sensor that disagrees with its neighbours of the same kind.

Some kinds have several devices measuring the same thing: air-quality stations
of one district see the same air, the servers of one room breathe the same
inlet air, rain gauges of one district see the same showers.  A device whose
reading sits far from its peers' is more likely broken (drifted, fouled,
miscalibrated) than right.

Per grid column and per field (:data:`PEER_FIELDS`), each device's value is
compared with the median of its *peers* (the other devices of the kind that
reported in that column), in robust units: the peers' MAD (x 1.4826, so a
normal sigma) floored at ``floor`` of the field's valid range, so that peers
reading identical values (no rain anywhere: MAD 0) do not make every small
difference huge.  Peers are

* the devices of the same district, if the district has at least
  ``min_peers`` devices reporting (the device itself included, so with the
  default 3 a device needs 2 others); otherwise
* every device of the kind, if the field's scope is ``"kind"``; a field whose
  values depend on the place (temperature falls ~6 °C a km of height, showers
  are local) has scope ``"district"`` and no verdict without district peers.

Too few peers means no verdict: the score is 0, which also ends a run.  The
score ``|z|`` goes to a :class:`~analytics.statistics.Decider` (``|z| >= z`` for
``min_cols`` observed columns in a row).  Nothing is learned, so nothing can be
learned wrong; per-series state is the decider's plus the last evidence.
Vectorized over devices and columns: the peers' values are gathered into a
[n_devices x n_peers x n_cols] array (padded with NaN) and reduced with a
sort-based NaN median.
"""

from __future__ import annotations

import numpy as np

from device_profiles import Profile

from .incidents import Condition
from .statistics import Decider

# field -> scope: "district" (district peers only) or "kind" (district peers, else all of the kind).
# Only fields whose peers really measure the same quantity: not river levels (each river has its own),
# not loads or traffic.
PEER_FIELDS: dict[str, dict[str, str]] = {
    "air_quality": {"pm25": "kind", "pm10": "kind", "temperature": "district", "humidity": "district"},
    "water_level": {"rain_mm": "district", "rain_intensity_mm_h": "district"},
    "server": {"inlet_temp_c": "kind"},  # one room: all district ''
    "rack_pdu": {"voltage_v": "kind"},  # racks fed from the same UPS bus
    "street_light": {"voltage_v": "district"},  # cabinets on the same distribution grid
}
MAD_SIGMA = 1.4826
MAX_CELLS = 4_000_000  # bound on the gathered peer array (float64 cells) per chunk of columns


class KindPeers:
    """Peer comparison for one device kind.

    ``update(cols, times_ns)``: ``cols`` maps field -> float64 [n_devices x n_cols]
    (profile units, NaN = no reading), ``times_ns`` int64 [n_cols].
    ``fields``: list (scope "kind" for all) or dict field -> scope; default
    :data:`PEER_FIELDS` for the kind (no fields: the kind is ignored).
    """

    def __init__(self, profile: Profile, devices: list[str], registry, min_peers: int = 3,
                 fields: list[str] | dict[str, str] | None = None, z: float = 6.0, min_cols: int = 5,
                 floor: float = 0.01, warn_z: float = 12.0):
        self.profile = profile
        self.devices = list(devices)
        if fields is None:
            fields = PEER_FIELDS.get(profile.kind, {})
        if not isinstance(fields, dict):
            fields = {f: "kind" for f in fields}
        self.scope = {f: s for f, s in fields.items() if f in profile.fields and profile.fields[f].type != "bool"}
        self.fields = list(self.scope)
        self.min_peers, self.floor, self.warn_z = min_peers, floor, warn_z
        n, nf = len(self.devices), len(self.fields)
        self._lo = np.array([profile.fields[f].min for f in self.fields], dtype=np.float64)
        self._span = np.array([profile.fields[f].max - profile.fields[f].min for f in self.fields], dtype=np.float64)
        district = [registry.devices[d].district for d in self.devices]
        same = np.array([[a == b for b in district] for a in district], dtype=bool) & ~np.eye(n, dtype=bool)
        every = ~np.eye(n, dtype=bool)
        self._member = {"district": same, "kind": every}
        self._idx = {k: _peer_index(m) for k, m in self._member.items()}  # [n x max_peers], n = padding
        self.decider = Decider(n * nf, z, min_cols)
        # Evidence of the last verdict per series (device-major: row = device * n_fields + field).
        self._value = np.full(n * nf, np.nan)
        self._median = np.full(n * nf, np.nan)
        self._scale = np.full(n * nf, np.nan)
        self._z = np.zeros(n * nf)
        self._scope = np.zeros(n * nf, dtype=np.int8)  # 0 no verdict, 1 district, 2 kind
        self._peers = np.zeros((n * nf, n), dtype=bool)  # which devices were the peers

    def update(self, cols: dict[str, np.ndarray], times_ns: np.ndarray) -> None:
        n, nf = len(self.devices), len(self.fields)
        if not nf or not n or len(times_ns) == 0:
            return
        times_ns = np.asarray(times_ns, dtype=np.int64)
        T = len(times_ns)
        scores = np.zeros((n, nf, T))
        have = np.zeros((n, nf, T), dtype=bool)
        for k, f in enumerate(self.fields):
            v = (np.asarray(cols[f], dtype=np.float64) - self._lo[k]) / self._span[k]  # range units
            have[:, k] = ~np.isnan(v)
            verdict = np.zeros((n, T), dtype=np.int8)
            med = np.full((n, T), np.nan)
            scale = np.full((n, T), np.nan)
            for scope, code in (("district", 1), ("kind", 2)):
                if scope == "kind" and self.scope[f] != "kind":
                    continue
                m, s, cnt = self._peer_stats(v, self._idx[scope])
                use = have[:, k] & (verdict == 0) & (cnt >= self.min_peers - 1)
                verdict = np.where(use, code, verdict)
                med, scale = np.where(use, m, med), np.where(use, s, scale)
            z = np.where(verdict > 0, (v - med) / scale, 0.0)
            scores[:, k] = np.abs(z)
            self._remember(k, v, med, scale, z, verdict, have[:, k])
        self.decider.update(scores.reshape(n * nf, T), have.reshape(n * nf, T), times_ns)

    def _peer_stats(self, v: np.ndarray, idx: np.ndarray):
        """Median, robust scale (range units) and count of the peers' values: each [n x T]."""
        n, T = v.shape
        padded = np.vstack([v, np.full((1, T), np.nan)])
        med, scale, cnt = np.full((n, T), np.nan), np.full((n, T), np.nan), np.zeros((n, T), dtype=np.int64)
        step = max(1, MAX_CELLS // max(1, idx.size))
        for a in range(0, T, step):  # chunks of columns bound the [n x peers x cols] array
            g = padded[idx, a:a + step]
            c = (~np.isnan(g)).sum(axis=1)
            m = _nanmedian(g, c)
            mad = _nanmedian(np.abs(g - m[:, None, :]), c)
            med[:, a:a + step], cnt[:, a:a + step] = m, c
            scale[:, a:a + step] = np.maximum(MAD_SIGMA * mad, self.floor)
        return med, scale, cnt

    def _remember(self, k, v, med, scale, z, verdict, have) -> None:
        """Keep the evidence of each device's last column with a reading (its verdict, if any)."""
        n, T = v.shape
        any_have = have.any(axis=1)
        if not any_have.any():
            return
        j = T - 1 - np.argmax(have[:, ::-1], axis=1)
        i = np.arange(n)
        rows = i * len(self.fields) + k
        sel = rows[any_have]
        code = verdict[i, j]
        for name, val in (("_value", v[i, j]), ("_median", med[i, j]), ("_scale", scale[i, j]), ("_z", z[i, j]),
                          ("_scope", code)):
            getattr(self, name)[sel] = val[any_have]
        member = np.where((code == 1)[:, None], self._member["district"], self._member["kind"]) & (code > 0)[:, None]
        self._peers[sel] = (member & have[:, j].T)[any_have]

    def conditions(self, registry) -> list[Condition]:
        nf = len(self.fields)
        if not nf or not self.devices:
            return []
        out = []
        per_device = self.decider.active().reshape(len(self.devices), nf)
        for i in np.flatnonzero(per_device.any(axis=1)):
            dev = registry.devices[self.devices[i]]
            rows = [i * nf + k for k in np.flatnonzero(per_device[i])]
            ev = {}
            for r in rows:
                k = r - i * nf
                f, spec = self.fields[k], self.profile.fields[self.fields[k]]
                unit = lambda x: float(self._lo[k] + x * self._span[k])  # noqa: E731 (range units -> profile units)
                ev[f] = {"value": unit(self._value[r]), "peer_median": unit(self._median[r]),
                         "peer_scale": float(self._scale[r] * self._span[k]), "z": float(self._z[r]),
                         "unit": spec.unit, "scope": ("district", "kind")[max(0, self._scope[r] - 1)],
                         "peers": [self.devices[p] for p in np.flatnonzero(self._peers[r])]}
            worst = max(abs(e["z"]) for e in ev.values())
            out.append(Condition(
                key=f"peer:{dev.id}", kind="peer", severity="warning" if worst >= self.warn_z else "info",
                title=f"Lệch so với thiết bị lân cận / Disagrees with its peers: {dev.id} ({', '.join(ev)})",
                cause="; ".join(f"{f} = {e['value']:g} {e['unit']} while its {len(e['peers'])} peers "
                                f"({e['scope']}) read {e['peer_median']:g} (z = {e['z']:+.1f})" for f, e in ev.items()),
                site=dev.site, district=dev.district, device=dev.id, started_ns=int(self.decider.since[rows].min()),
                evidence={"fields": ev, "detector": "peer median / MAD"}))
        return out


def _peer_index(member: np.ndarray) -> np.ndarray:
    """[n x max_peers] row indexes of each device's peers, padded with n (a NaN row)."""
    n = len(member)
    width = max(1, int(member.sum(axis=1).max(initial=0)))
    idx = np.full((n, width), n, dtype=np.intp)
    for i in range(n):
        p = np.flatnonzero(member[i])
        idx[i, : len(p)] = p
    return idx


def _nanmedian(g: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median over axis 1 of [n x m x T] ignoring NaN (``count`` = non-NaN per [n x T]); NaN if none.
    np.sort puts NaN last, so the k values present are the first k."""
    s = np.sort(g, axis=1)
    lo = np.maximum((count - 1) // 2, 0)[:, None, :]
    hi = np.maximum(count // 2, 0)[:, None, :]
    hi = np.minimum(hi, s.shape[1] - 1)
    m = 0.5 * (np.take_along_axis(s, lo, axis=1) + np.take_along_axis(s, hi, axis=1))[:, 0, :]
    return np.where(count > 0, m, np.nan)
