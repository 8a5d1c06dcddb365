"""Bulk decoders: the readings of many messages of one kind, straight into numpy columns; JSON here.

Each decoder takes the rows of one kind gathered from a batch (a JSON object
a row here; line protocol: ingest.bulk_lp) and returns a :class:`Decoded`: values and
presence per profile field, the measurement time in nanoseconds, and ``flag``
for the rows it cannot vouch for.  A flagged row is not refused here: the bulk
validator hands it to the per-reading path (ingest.validate), which decides
exactly as it always has.  So a decoder may flag freely (anything unusual:
a string time, a duplicated key, an escaped name), but must never let through
a row the per-reading path would read differently; tests/test_bulk_property.py
holds it to that.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

import numpy as np

from storage.columns import EXACT_INT

MISSING = object()  # a field the reading does not hold
_NUM = frozenset({float, int})
_BOOL = frozenset({bool})
_EMPTY: dict = {}
_I64_MAX = 2**63 - 1
_SCALES = np.array([1_000_000_000, 1_000_000, 1_000, 1], np.int64)


class Decoded(NamedTuple):
    values: np.ndarray  # float64 [n, F]
    present: np.ndarray  # bool [n, F]
    flag: np.ndarray  # bool [n]: leave the row to the per-reading path
    ts_ns: np.ndarray  # int64 [n], meaningful where ts_given and not flag
    ts_given: np.ndarray  # bool [n]: False when the reading carries no time (arrival time is used)
    body: np.ndarray | None = None  # object [n]: the fields' text, when a store reads it as the Encoder's (KindColumns.body)
    ts_text: np.ndarray | None = None  # object [n]: with body, the times' text where it is the Encoder's (KindColumns)


def _new(n: int, nf: int):
    return np.zeros((n, nf)), np.zeros((n, nf), bool), np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, bool)


# --- JSON -----------------------------------------------------------------------------------------


def _json_column(col: list, ftype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(values, present, bad) of one field; bad: present with a type the bulk path does not take."""
    n = len(col)
    allowed = _BOOL if ftype == "bool" else _NUM
    if set(map(type, col)) <= allowed:
        try:
            return np.array(col, np.float64), np.ones(n, bool), None
        except OverflowError:  # an integer beyond float64: let the per-reading path say so
            pass
    present = np.fromiter((x is not MISSING for x in col), bool, n)
    good = [type(x) in allowed and (type(x) is not int or -EXACT_INT <= x <= EXACT_INT) for x in col]
    values = np.array([x if g else 0.0 for x, g in zip(col, good)], np.float64)
    return values, present, present & ~np.array(good, bool)


def _auto_float(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds/ms/us/ns (told by magnitude) as ns, as ingest.validate.to_ns rounds them; and bad rows."""
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(f)
        scale = np.select([a < 1e11, a < 1e14, a < 1e17], [1e9, 1e6, 1e3], 1.0)
        ns = np.round(f * scale)
        ok = np.isfinite(ns) & (np.abs(ns) < 2.0**63)
    return np.where(ok, ns, 0).astype(np.int64), ~ok


def _auto_int(i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(i)  # int64 min stays negative: caught below
    idx = np.select([a < 10**11, a < 10**14, a < 10**17], [0, 1, 2], 3)
    scale = _SCALES[idx]
    ok = (a >= 0) & (a <= _I64_MAX // scale)
    return np.where(ok, i, 0) * scale, ~ok


def _json_times(col: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts_ns, given, bad) from the ``ts`` values (None: no time given)."""
    n = len(col)
    types = set(map(type, col))
    if types == {type(None)}:
        return np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool)
    if types == {float}:
        ns, bad = _auto_float(np.array(col, np.float64))
        return ns, np.ones(n, bool), bad
    if types == {int}:
        try:
            ns, bad = _auto_int(np.array(col, np.int64))
            return ns, np.ones(n, bool), bad
        except OverflowError:
            pass
    # Mixed: floats and int64-sized ints here; anything else (RFC 3339 strings, bools) to the per-reading path.
    is_f = np.fromiter((type(x) is float for x in col), bool, n)
    is_i = np.fromiter((type(x) is int and -_I64_MAX <= x <= _I64_MAX for x in col), bool, n)
    given = np.fromiter((x is not None for x in col), bool, n)
    fns, fbad = _auto_float(np.array([x if f else 0.0 for x, f in zip(col, is_f)], np.float64))
    ins, ibad = _auto_int(np.array([x if i else 0 for x, i in zip(col, is_i)], np.int64))
    ns = np.where(is_f, fns, ins)
    bad = given & ~(is_f | is_i) | (is_f & fbad) | (is_i & ibad)
    return ns, given, bad


def json_rows(objs: list, device_ids: list[str], fields: tuple[str, ...], ftypes: tuple[str, ...],
              known: frozenset[str]) -> Decoded:
    """``objs``: one decoded JSON value a reading (objects, or anything a list held)."""
    n, nf = len(objs), len(fields)
    values, present, flag, _ts, _given = _new(n, nf)
    cols = None
    if set(map(type, objs)) == {dict}:
        try:  # the common case, in C: every object holds every field and "ts", and nothing else
            if set(map(len, objs)) == {nf + 1}:
                cols = [list(map(itemgetter(f), objs)) for f in (*fields, "ts")]
        except KeyError:
            pass
    else:
        flag |= np.fromiter((type(o) is not dict for o in objs), bool, n)
        objs = [o if type(o) is dict else _EMPTY for o in objs]
    if cols is None:
        keys_ok = [o.keys() <= known for o in objs]
        if not all(keys_ok):
            flag |= ~np.array(keys_ok, bool)
        named = [o.get("device") for o in objs]
        if any(d is not None for d in named):
            flag |= np.fromiter((d is not None and d != want for d, want in zip(named, device_ids)), bool, n)
        cols = [[o.get(f, MISSING) for o in objs] for f in fields] + [[o.get("ts") for o in objs]]
    for j, t in enumerate(ftypes):
        v, p, bad = _json_column(cols[j], t)
        values[:, j], present[:, j] = v, p
        if bad is not None:
            flag |= bad
    ts, given, bad = _json_times(cols[nf])
    return Decoded(values, present, flag | bad, ts, given)
