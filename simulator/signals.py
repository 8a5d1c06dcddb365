"""Deterministic, vectorized building blocks for simulated telemetry.

Every value the simulator produces is a pure function of ``(seed, device,
field, reading index, time)``: noise comes from a counter-based hash, not from
a stateful random generator.  So the same seed gives the same readings however
the run is cut into steps, at any speed, and a stuck sensor is simply the same
function evaluated at a frozen reading.

Times are epoch seconds (float64 numpy arrays, UTC).  Local time is
Asia/Ho_Chi_Minh (UTC+7, no daylight saving) unless a profile says otherwise.

The environment modelled is the Lào Cai province: warm lowland around Lào Cai
city (~100 m), cold highland Sa Pa (~1500 m, winter nights near 0-5 °C),
monsoon afternoon showers from May to September, rivers answering rain with a
lag of a few hours.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86400.0
YEAR_DAYS = 365.25
MASK64 = (1 << 64) - 1

# Rough elevation (m) of each district's populated valleys; a district not
# listed is taken as mid-hill country.  Keys match as substrings of the id.
DISTRICT_ELEVATION_M = {
    "sa_pa": 1500, "sapa": 1500, "si_ma_cai": 1200, "bac_ha": 1000, "muong_khuong": 900,
    "bat_xat": 300, "van_ban": 200, "bao_yen": 120, "bao_thang": 100, "lao_cai": 100,
}
DEFAULT_ELEVATION_M = 400
LAPSE_C_PER_M = 0.006  # temperature drop with height


def elevation_of(district: str) -> float:
    """Elevation (m) assumed for a district id; '' (the data center, in the city) is lowland."""
    if not district:
        return 100.0
    for key, elev in DISTRICT_ELEVATION_M.items():
        if key in district:
            return float(elev)
    return float(DEFAULT_ELEVATION_M)


def stable_id(text: str) -> int:
    """A stable 32-bit number for a name (hash() is salted per process; this is not)."""
    return zlib.crc32(text.encode("utf-8"))


# ------------------------------------------------------------------ counter-based noise

_C0, _C1, _C2, _C3 = (np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
                                               0xD6E8FEB86659FD93))
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wrapping arithmetic: arrays do not warn on overflow)."""
    x = x + _C0
    x = (x ^ (x >> _S30)) * _C1
    x = (x ^ (x >> _S27)) * _C2
    return x ^ (x >> _S31)


def key(*parts: int) -> int:
    """Combine integers into one 64-bit key (Python ints, so no overflow warnings)."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h = (h ^ (int(p) & MASK64)) * 0x100000001B3 & MASK64
        h ^= h >> 29
    return h


def hash64(keys: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Hash per-reading (key, counter) pairs into uint64 (``keys`` and ``k`` broadcast together)."""
    a = np.atleast_1d(np.asarray(keys, dtype=np.uint64))
    if isinstance(k, int):
        b = np.array([k & MASK64], dtype=np.uint64)
    else:
        b = np.atleast_1d(np.asarray(k, dtype=np.int64)).view(np.uint64)
    return _mix(_mix(a) ^ (b * _C3))


def uniform(keys: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1), one per (key, counter)."""
    return (hash64(keys, k) >> _S11).astype(np.float64) * (1.0 / (1 << 53))


def normal(keys: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Roughly standard-normal noise (sum of three uniforms; bounded to about ±3)."""
    h = hash64(keys, k)
    m = np.uint64(0x1FFFFF)
    s = ((h & m).astype(np.float64) + ((h >> np.uint64(21)) & m) + ((h >> np.uint64(42)) & m)) / float(1 << 21)
    return (s - 1.5) * 2.0


def device_uniform(seed: int, device_keys: np.ndarray, name: str) -> np.ndarray:
    """A fixed uniform [0, 1) per device for a named trait (a sensor's offset, a lamp's rating)."""
    return uniform(device_keys, key(seed, stable_id(name)))


# ------------------------------------------------------------------ calendar

def tz_offset_s(tz: str, when: float) -> float:
    """UTC offset (s) of time zone ``tz`` at epoch ``when`` (Viet Nam has no DST: +25200)."""
    return ZoneInfo(tz).utcoffset(datetime.fromtimestamp(when, ZoneInfo(tz))).total_seconds()


def local_hour(t: np.ndarray, offset_s: float) -> np.ndarray:
    """Local clock hour, float in [0, 24)."""
    return np.mod(t + offset_s, DAY_S) / 3600.0


def local_day(t: np.ndarray, offset_s: float) -> np.ndarray:
    """Local day number since 1970-01-01 (int64)."""
    return np.floor((t + offset_s) / DAY_S).astype(np.int64)


def day_of_year(t: np.ndarray, offset_s: float) -> np.ndarray:
    """Fractional day of the year (0 = 1 January, local), good enough for seasons."""
    days = (t + offset_s) / DAY_S
    return np.mod(days, YEAR_DAYS)  # 1970-01-01 is day 0; off by under a day, which seasons do not notice


def monsoon(doy: np.ndarray) -> np.ndarray:
    """0..1 strength of the rainy season, peaking late July, ~0 in January."""
    return np.clip(0.5 + 0.5 * np.cos(2 * np.pi * (doy - 205) / YEAR_DAYS), 0, 1) ** 1.5


# ------------------------------------------------------------------ weather

def weather(seed: int, region_keys: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Slow, smooth weather anomaly in about [-1, 1] per region (fronts over a few days)."""
    out = np.zeros_like(t)
    for i, period_d in enumerate((0.9, 2.7, 7.3)):
        phase = uniform(region_keys, key(seed, 7001, i)) * 2 * np.pi
        out += np.sin(2 * np.pi * t / (period_d * DAY_S) + phase) / (i + 1.5)
    return out / 1.25


def outdoor_temp(seed: int, region_keys: np.ndarray, elev_m: np.ndarray, t: np.ndarray, offset_s: float,
                 rain: np.ndarray | None = None) -> np.ndarray:
    """Outdoor air temperature (°C): season, height, day/night, weather, rain cooling.

    Lào Cai city: ~16 °C in January, ~29 °C in July; Sa Pa about 8.4 °C colder,
    so its winter nights fall to a few degrees above zero.
    """
    doy = day_of_year(t, offset_s)
    h = local_hour(t, offset_s)
    season = 22.5 - 6.3 * np.cos(2 * np.pi * (doy - 15) / YEAR_DAYS)
    height = -(elev_m - 100.0) * LAPSE_C_PER_M
    amp = 4.5 - 1.0 * monsoon(doy)  # clear dry-season days swing more
    daily = -amp * np.cos(2 * np.pi * (h - 14.5) / 24.0)
    temp = season + height + daily + 2.5 * weather(seed, region_keys, t)
    if rain is not None:
        temp = temp - 3.0 * np.tanh(rain / 10.0)
    return temp


def outdoor_humidity(seed: int, region_keys: np.ndarray, elev_m: np.ndarray, t: np.ndarray, offset_s: float,
                     rain: np.ndarray | None = None) -> np.ndarray:
    """Relative humidity (%): humid nights, drier afternoons, wetter in the monsoon and on Sa Pa's fog."""
    doy = day_of_year(t, offset_s)
    h = local_hour(t, offset_s)
    rh = 76 + 10 * monsoon(doy) + 10 * np.cos(2 * np.pi * (h - 5.0) / 24.0) + (elev_m > 1000) * 5.0
    rh = rh - 6 * weather(seed, region_keys + np.uint64(1), t)
    if rain is not None:
        rh = rh + 20 * np.tanh(rain / 5.0)
    return np.clip(rh, 25, 100)


def _showers(seed: int, region_keys: np.ndarray, day: np.ndarray):
    """Per (region, local day): (has shower, start hour, duration h, peak mm/h)."""
    doy = np.mod(day.astype(np.float64), YEAR_DAYS)
    m = monsoon(doy)
    u = uniform(region_keys, day * 4 + key(seed, 31) % 1000003)
    v = uniform(region_keys, day * 4 + 1 + key(seed, 37) % 1000003)
    w = uniform(region_keys, day * 4 + 2 + key(seed, 41) % 1000003)
    x = uniform(region_keys, day * 4 + 3 + key(seed, 43) % 1000003)
    has = u < 0.08 + 0.6 * m  # ~2 days in 3 in July, ~1 in 12 in the dry season
    start = 13.0 + 5.0 * v  # heavy monsoon showers come in the afternoon
    dur = 0.5 + 2.0 * w
    peak = (1 - m) * (0.5 + 2.5 * x) + m * (8.0 + 32.0 * x * x)  # mm/h: drizzle vs downpour
    return has, start, dur, peak


def rain_rate(seed: int, region_keys: np.ndarray, t: np.ndarray, offset_s: float) -> np.ndarray:
    """Rain intensity (mm/h) at each time, 0 outside showers."""
    day = local_day(t, offset_s)
    h = local_hour(t, offset_s)
    has, start, dur, peak = _showers(seed, region_keys, day)
    x = (h - start) / dur
    inside = has & (x >= 0) & (x < 1)
    return np.where(inside, peak * np.sin(np.pi * np.clip(x, 0, 1)), 0.0)


def river_response(seed: int, region_keys: np.ndarray, t: np.ndarray, offset_s: float,
                   peak_lag_h: float = 4.0) -> np.ndarray:
    """Unit-free river rise from the showers of the last three days, lagged by ~``peak_lag_h`` hours.

    Returns 0..1 (saturating): about 0.3 after an ordinary monsoon shower,
    approaching 1 after several heavy days.
    """
    day = local_day(t, offset_s)
    h = local_hour(t, offset_s)
    total = np.zeros_like(t)
    for back in range(4):
        has, start, dur, peak = _showers(seed, region_keys, day - back)
        volume = np.where(has, peak * dur * 2 / np.pi, 0.0)  # mm fallen in the shower
        tau = (h + 24.0 * back - start - dur / 2) / peak_lag_h  # in units of the lag
        kernel = np.where(tau > 0, tau * np.exp(1 - np.maximum(tau, 0)), 0.0)
        total += volume * kernel
    return 1 - np.exp(-total / 70.0)


def sun_hours(doy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local sunrise and sunset hours at ~22.4° N (sunset ~17:35 in December, ~18:50 in June)."""
    s = np.sin(2 * np.pi * (doy - 80) / YEAR_DAYS)
    return 6.05 - 0.62 * s, 18.1 + 0.62 * s


def in_windows(t: np.ndarray, offset_s: float, windows: list[tuple[float, float]]) -> np.ndarray:
    """True where the local time of day falls in one of ``windows`` ((start_h, end_h); may wrap midnight)."""
    h = local_hour(t, offset_s)
    out = np.zeros(t.shape, dtype=bool)
    for a, b in windows:
        out |= ((h >= a) & (h < b)) if a <= b else ((h >= a) | (h < b))
    return out
