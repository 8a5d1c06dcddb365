"""Bulk decoders: the readings of many messages of one kind, straight into numpy columns.

Each decoder takes the rows of one kind gathered from a batch (a JSON object,
or one line-protocol line, a row) and returns a :class:`Decoded`: values and
presence per profile field, the measurement time in nanoseconds, and ``flag``
for the rows it cannot vouch for.  A flagged row is not refused here: the bulk
validator hands it to the per-reading path (ingest.validate), which decides
exactly as it always has.  So a decoder may flag freely (anything unusual:
a string time, a duplicated key, an escaped name), but must never let through
a row the per-reading path would read differently; tests/test_bulk_property.py
holds it to that.
"""

from __future__ import annotations

import re
from operator import itemgetter, ne
from typing import NamedTuple

import numpy as np

from storage.columns import EXACT_INT

MISSING = object()  # a field the reading does not hold
_NUM = frozenset({float, int})
_BOOL = frozenset({bool})
_EMPTY: dict = {}
_LP_BOOL = {"t": 1.0, "true": 1.0, "f": 0.0, "false": 0.0}
_INT_COL = re.compile(r"(?:-?[0-9]{1,19},)*-?[0-9]{1,19}")  # the timestamps of a column, joined by commas
_INT_I_COL = re.compile(r"(?:-?[0-9]{1,19}[iu],)*-?[0-9]{1,19}[iu]")  # integer values (i/u suffix), joined
_INT = re.compile(r"-?[0-9]{1,19}")
_INT_I = re.compile(r"-?[0-9]{1,19}[iu]")
_I64_MAX = 2**63 - 1
_SCALES = np.array([1_000_000_000, 1_000_000, 1_000, 1], np.int64)


class Decoded(NamedTuple):
    values: np.ndarray  # float64 [n, F]
    present: np.ndarray  # bool [n, F]
    flag: np.ndarray  # bool [n]: leave the row to the per-reading path
    ts_ns: np.ndarray  # int64 [n], meaningful where ts_given and not flag
    ts_given: np.ndarray  # bool [n]: False when the reading carries no time (arrival time is used)
    body: np.ndarray | None = None  # object [n]: the fields' text, when a store reads it as the Encoder's (KindColumns.body)


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


# --- line protocol --------------------------------------------------------------------------------


def _lp_column(raws: list[str], ftype: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, bad) of one field's raw texts, read exactly as ingest.decoders reads them, or flagged."""
    n = len(raws)
    if ftype == "float":  # float() refuses the i/u and t/f spellings, which the per-reading path reads otherwise
        try:
            return np.array(list(map(float, raws)), np.float64), np.zeros(n, bool)
        except ValueError:
            out, bad = np.zeros(n), np.zeros(n, bool)
            for k, r in enumerate(raws):
                try:
                    out[k] = float(r)
                except ValueError:
                    bad[k] = True
            return out, bad
    if ftype == "bool":
        got = list(map(_LP_BOOL.get, map(str.lower, raws)))
        bad = np.fromiter((g is None for g in got), bool, n)
        return np.array([g or 0.0 for g in got], np.float64), bad
    if _INT_I_COL.fullmatch(",".join(raws)):
        return np.array([int(r[:-1]) for r in raws], np.float64), np.zeros(n, bool)
    bad = np.fromiter((_INT_I.fullmatch(r) is None for r in raws), bool, n)
    return np.array([0 if b else int(r[:-1]) for r, b in zip(raws, bad.tolist())], np.float64), bad


def _lp_times(raws: list[str]) -> tuple[np.ndarray, np.ndarray]:
    n = len(raws)
    text = ",".join(raws)
    if _INT_COL.fullmatch(text):
        # numpy reads the digits in C (a tenth of int() a value); it saturates beyond int64 instead of
        # failing, so a value at either end of int64 is read again by int(), which says so.
        ts = np.fromstring(text, np.int64, sep=",")
        if len(ts) == n and not ((ts == _I64_MAX) | (ts == -_I64_MAX - 1)).any():
            return ts, np.zeros(n, bool)
        try:
            return np.array(list(map(int, raws)), np.int64), np.zeros(n, bool)
        except OverflowError:
            pass
    vals = [int(r) if _INT.fullmatch(r) else None for r in raws]
    bad = np.fromiter((v is None or not -_I64_MAX <= v <= _I64_MAX for v in vals), bool, n)
    return np.array([0 if b else v for v, b in zip(vals, bad.tolist())], np.int64), bad


_LAYOUTS: dict[tuple[str, tuple[str, ...]], re.Pattern] = {}


def _layout(kind: str, fields: tuple[str, ...]) -> re.Pattern:
    """One line holding every field in the profile's order: the usual layout, matched for all lines at once.

    Groups: the device tag (or empty), the fields' text, each field's value, the time (or empty).
    """
    pat = _LAYOUTS.get((kind, fields))
    if pat is None:
        # Possessive (*+, ++; Python 3.11): no class here holds the character that ends it, so there is
        # nothing to give back, and the engine need not keep the positions to try it (~10% of the match).
        body = ",".join(re.escape(f) + "=([^, \n]*+)" for f in fields)
        pat = re.compile(f"^{re.escape(kind)}(?:,device=([^ ,=\n]++))? ({body})(?: (-?[0-9]++))?$", re.M)
        _LAYOUTS[(kind, fields)] = pat
    return pat


# The fields' text goes to the store as sent (KindColumns.body) only where every reader takes the same type and
# double from it as from the Encoder's: floats as a plain decimal, -?(0|[1-9][0-9]*)(.[0-9]+)? (correctly rounded
# by Go's ParseFloat in InfluxDB as by Python's float), ints as "%di".  Checked a column at a time on text that
# float() or the "i" column pattern has already read (a row either did not read is flagged and not kept), so only
# the spellings those take and a store might not are left to refuse: exponents, inf/nan, "+", "_", a dot at either
# end, leading zeros, "u" and "-0i".
_NOT_PLAIN = str.maketrans("", "", "0123456789.,-")


_COMMA, _MINUS, _DOT, _ZERO = (ord(c) for c in ",-.0")


def _odd_spelling(text: str) -> bool:
    """A value (of the comma-joined ``text``) with a dot at either end, or a leading zero (``007``, ``-05``).

    numpy over the bytes, a few operations a value (the hot path); text that is not ASCII is odd.  (It
    counted substrings before, which missed nothing but called ``0,0,0`` odd: ``str.count`` does not
    count overlapping ``,0,``.)
    """
    try:
        b = np.frombuffer(text.encode("ascii") + b"\0\0", np.uint8)  # two NULs: b[start + 1] always exists
    except UnicodeEncodeError:
        return True
    commas = np.flatnonzero(b == _COMMA)
    start = np.concatenate(([0], commas + 1))
    start += b[start] == _MINUS  # the digits of a negative value start after its sign
    first, second = b[start], b[start + 1]
    if ((first == _DOT) | ((first == _ZERO) & (second >= _ZERO) & (second <= _ZERO + 9))).any():
        return True
    ends = np.concatenate((commas - 1, [len(b) - 3]))
    return bool((b[ends[ends >= 0]] == _DOT).any())


def _as_written(raw_cols: list[tuple[str, ...]], ftypes: tuple[str, ...]) -> bool:
    """Whether every value's text reads as what the Encoder writes (bools are written as ints: never as sent)."""
    for raws, t in zip(raw_cols, ftypes):
        if t == "bool":
            return False
        text = ",".join(raws)
        if t == "float" and text.translate(_NOT_PLAIN):
            return False
        if t == "int" and ("u" in text or "-0i" in text):
            return False
        if _odd_spelling(text):
            return False
    return True


def _lp_same_layout(lines, device_ids, kind, fields, ftypes) -> Decoded | None:
    found = _layout(kind, fields).findall("\n".join(lines))
    n, nf = len(lines), len(fields)
    if len(found) != n:  # some line has another layout: the line-by-line reader below
        return None
    values, present, flag, ts, given = _new(n, nf)
    present[:] = True
    cols = [list(map(itemgetter(k), found)) for k in range(nf + 3)]  # not zip(*found): ten times slower here
    named = cols[0]
    if any(named):
        flag |= np.fromiter(map(bool, named), bool, n) & np.fromiter(map(ne, named, device_ids), bool, n)
    raw_cols = cols[2:nf + 2]
    for j, t in enumerate(ftypes):
        values[:, j], bad = _lp_column(raw_cols[j], t)
        flag |= bad
    times = cols[nf + 2]
    given[:] = np.fromiter(map(bool, times), bool, n)
    if given.all():
        ts[:], bad = _lp_times(times)
    else:
        r = np.flatnonzero(given)
        ts[r], bad = _lp_times([times[i] for i in r.tolist()])
        bad = np.isin(np.arange(n), r[bad])
    body = np.array(cols[1], dtype=object) if _as_written(raw_cols, ftypes) else None
    return Decoded(values, present, flag | bad, ts, given, body)


def lp_rows(lines: list[str], device_ids: list[str], kind: str, fields: tuple[str, ...],
            ftypes: tuple[str, ...]) -> Decoded:
    """``lines``: one line-protocol line a reading, without escapes or quotes (the caller checks)."""
    same = _lp_same_layout(lines, device_ids, kind, fields, ftypes)
    if same is not None:
        return same
    n, nf = len(lines), len(fields)
    values, present, flag, ts, given = _new(n, nf)
    cols: dict[str, tuple[list[int], list[str]]] = {f: ([], []) for f in fields}
    t_rows, t_raws = [], []
    bare_head = kind
    flagged = []
    for i, (line, dev) in enumerate(zip(lines, device_ids)):
        parts = line.split(" ")
        if len(parts) == 3:
            head, body, t = parts
            if not t:
                flagged.append(i)
                continue
            t_rows.append(i)
            t_raws.append(t)
        elif len(parts) == 2:
            head, body = parts
        else:
            flagged.append(i)
            continue
        if not body or (head != bare_head and head != f"{kind},device={dev}"):
            flagged.append(i)
            continue
        for kv in body.split(","):
            k, _eq, raw = kv.partition("=")
            c = cols.get(k)
            if c is None:
                flagged.append(i)
                break
            c[0].append(i)
            c[1].append(raw)
    flag[flagged] = True
    for j, (f, t) in enumerate(zip(fields, ftypes)):
        rows, raws = cols[f]
        if not rows:
            continue
        r = np.array(rows, np.intp)
        v, bad = _lp_column(raws, t)
        values[r, j], present[r, j] = v, True
        flag[r[bad]] = True
        dup = np.flatnonzero(np.diff(r) == 0)  # a key twice in one line: the per-reading path keeps the last
        flag[r[dup + 1]] = True
    if t_rows:
        r = np.array(t_rows, np.intp)
        v, bad = _lp_times(t_raws)
        ts[r], given[r] = v, True
        flag[r[bad]] = True
    return Decoded(values, present, flag, ts, given)
