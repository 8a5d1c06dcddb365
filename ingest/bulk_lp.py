"""Line protocol in bulk: the readings of many messages of one kind, straight into numpy columns.

Three readers, fastest first; each hands what it cannot vouch for to the next
or flags it for the per-reading path (ingest.decoders + ingest.validate), as
ingest.bulk_decode explains:

* :func:`lp_texts`: whole messages whose every line has one layout, checked by
  one regular expression over all of them (no object a line), the numbers
  read by numpy from the bytes (:func:`_plain_numbers`).  The layout is the
  first line's: its field order, whether lines name the device, whether they
  carry a time.  Only the spellings a store reads as the Encoder's numbers
  match, so the fields' text goes on as sent.
* :func:`lp_rows` with lines in the profile's field order: one ``findall``.
* :func:`lp_rows` otherwise: line by line.
"""

from __future__ import annotations

import re
from operator import itemgetter, ne

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .bulk_decode import Decoded, _new

_LP_BOOL = {"t": 1.0, "true": 1.0, "f": 0.0, "false": 0.0}
_INT_COL = re.compile(r"(?:-?[0-9]{1,19},)*-?[0-9]{1,19}")  # the timestamps of a column, joined by commas
_INT_I_COL = re.compile(r"(?:-?[0-9]{1,19}[iu],)*-?[0-9]{1,19}[iu]")  # integer values (i/u suffix), joined
_INT = re.compile(r"-?[0-9]{1,19}")
_INT_I = re.compile(r"-?[0-9]{1,19}[iu]")
_I64_MAX = 2**63 - 1


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


def _lp_times(raws: list[str], digits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ns, bad) of the times' texts; ``digits``: each is known to be ``-?[0-9]{1,19}`` (lp_texts' pattern)."""
    n = len(raws)
    text = ",".join(raws)
    if digits or _INT_COL.fullmatch(text):
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


# --- whole messages in one layout -----------------------------------------------------------------

_PLAIN_FLOAT = r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?"  # the spellings _as_written takes, and nothing else
_PLAIN_INT = r"(?:0|-?[1-9][0-9]*+)i"
_DEVICE = r"[!#-+\--<>-\[\]-~]++"  # printable ASCII except space, comma, "=", '"' and backslash (no escapes)
_TIME = r"(?:0|-?[1-9][0-9]{0,18})"  # as the Encoder writes it (%d), so a message's text can go on whole
_DIGITS_EXACT = 15  # up to 15 digits, m / 10**k is one correctly rounded division: float()'s double
_BLOCK = 1 << 14  # values parsed at once
_POW10F = 10.0 ** np.arange(23)
_STRICT: dict[tuple, re.Pattern] = {}  # by layout; field orders are many only where devices shuffle them
_STRICT_MAX = 256


def _plain_numbers(b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The doubles ``float()`` reads from ``b[start:end]``, each ``-?(0|[1-9][0-9]*)(.[0-9]+)?``.

    numpy over the bytes, no object a value, a block of values at a time (so that it stays in the CPU's
    cache).  Up to 15 digits, the digits as one integer (below 2**53, exact as a
    double) divided by 10**(digits after the dot) (at most 15, exact as a double): one IEEE division,
    correctly rounded, so the double nearest the decimal, which is what ``float()`` gives.  Longer
    values (shortest reprs often have 16 or 17 digits) are read by numpy's C parser, which is Python's
    (PyOS_string_to_double).
    """
    out = np.empty(len(start))
    b = np.concatenate((np.zeros(_DIGITS_EXACT + 1, np.uint8), b))  # a full window before the first value too
    start, end = start + _DIGITS_EXACT + 1, end + _DIGITS_EXACT + 1
    for a in range(0, len(start), _BLOCK):
        s, e = start[a:a + _BLOCK], end[a:a + _BLOCK]
        neg = b[s] == _MINUS
        lens = e - s - neg
        long = lens > _DIGITS_EXACT  # (a dot and 15 digits would do; numpy's parser is exact too)
        w = int(lens[~long].max()) if not long.all() else 1
        ch = as_strided(b, shape=(len(b) - w + 1, w), strides=(1, 1))[e - w]  # [m, w]: the w bytes up to each end
        valid = np.arange(w) >= (w - lens)[:, None]
        dot = (ch == _DOT) & valid
        digits = (ch - _ZERO) * (valid & ~dot)  # the dot's column holds a 0
        whole = np.zeros(len(s))  # all the digits, as if there were no dot: exact, below 10**15
        frac = np.zeros(len(s), np.intp)  # digits after the dot
        for j in range(w):  # a column at a time: w is small, and a matrix product would wake BLAS threads
            whole = whole * 10 + digits[:, j]
            frac += dot[:, j] * (w - 1 - j)
        p = _POW10F[frac]
        after = whole - np.floor(whole / p) * p  # whole % p, exactly (whole < 2**53)
        v = np.where(frac > 0, (whole - after) / 10 + after, whole) / p  # the dot's 0 taken out
        v = np.where(neg, -v, v)
        if long.any():
            k = np.flatnonzero(long)
            v[k] = _read_floats(b, s[k], e[k])
        out[a:a + _BLOCK] = v
    return out


def _read_floats(b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``b[start:end]`` (numbers) joined by spaces into one text and read by numpy in C."""
    lens = end - start + 1  # and a space
    off = np.cumsum(lens) - lens
    text = np.full(int(lens.sum()), ord(" "), np.uint8)
    at = np.arange(len(text)) - np.repeat(off, lens)
    keep = at < np.repeat(lens - 1, lens)
    text[keep] = b[(np.repeat(start, lens) + at)[keep]]
    got = np.fromstring(text.tobytes(), np.float64, sep=" ")
    if len(got) != len(start):  # cannot be, after the layout's pattern; say so rather than misplace values
        raise ValueError(f"read {len(got)} numbers from {len(start)} long values")
    return got


def _strict(kind: str, keys: tuple[str, ...], types: tuple[str, ...], named: bool, timed: bool) -> re.Pattern:
    """Every line of a text in one layout: ``kind[,device=ID] k=v,... [time]``, plain numbers only."""
    key = (kind, keys, types, named, timed)
    pat = _STRICT.get(key)
    if pat is None:
        if len(_STRICT) >= _STRICT_MAX:  # a kind whose devices write fields in ever new orders: start again
            _STRICT.clear()
        body = ",".join(re.escape(k) + "=" + (_PLAIN_FLOAT if t == "float" else _PLAIN_INT)
                        for k, t in zip(keys, types))
        line = re.escape(kind) + (",device=" + _DEVICE if named else "") + " " + body + (" " + _TIME if timed else "")
        pat = _STRICT[key] = re.compile(f"(?:{line}\\n)*+{line}")
    return pat


def lp_texts(texts: list[str], device_ids: list[str], kind: str, fields: tuple[str, ...],
             ftypes: tuple[str, ...]) -> tuple[Decoded, np.ndarray] | None:
    """The readings of whole messages (``texts``: one a message, no trailing newline; ``device_ids``: the
    topic's device of each) and the number of readings of each; None unless every line has the first
    line's layout with plain numbers (then lp_rows reads them).  Rows: message by message, line by line.
    """
    if "bool" in ftypes:
        return None
    parts = texts[0].partition("\n")[0].split(" ")
    if not 2 <= len(parts) <= 3:
        return None
    named, timed = parts[0] != kind, len(parts) == 3
    keys = tuple(kv.partition("=")[0] for kv in parts[1].split(","))
    if sorted(keys) != sorted(fields):  # every field once, in any order
        return None
    col = [fields.index(k) for k in keys]
    types = tuple(ftypes[j] for j in col)
    text = "\n".join(texts)
    if not _strict(kind, keys, types, named, timed).fullmatch(text):
        return None
    counts = np.array([t.count("\n") + 1 for t in texts], np.int64)
    n, nf = int(counts.sum()), len(fields)
    values, present, flag, ts, given = _new(n, nf)
    present[:] = True
    if named:  # each line's device tag names its topic's device (only heads start a line: no space before)
        first = 0
        for t, dev, c in zip(texts, device_ids, counts.tolist()):
            head = f"{kind},device={dev} "
            if not (t.startswith(head) and t.count("\n" + head) == c - 1):
                flag[first:first + c] = [not line.startswith(head) for line in t.split("\n")]
            first += c
    split = text.replace("\n", " ").split(" ")
    bodies = split[1::2 + timed]
    b = np.frombuffer(("," + ",".join(bodies) + ",").encode(), np.uint8)  # ,k=v,k=v,...,
    commas = np.flatnonzero(b == _COMMA)  # nf + 1 a line (values hold none): before each key, after the last value
    ends = commas[1:].reshape(n, nf) - np.array([t == "int" for t in types])  # the "i" is not a digit
    starts = commas[:-1].reshape(n, nf) + np.array([len(k) + 2 for k in keys])  # past ",key="
    values[:, col] = _plain_numbers(b, starts.ravel(), ends.ravel()).reshape(n, nf)
    ts_text = None
    if timed:
        times = split[2::3]
        ts[:], bad = _lp_times(times, digits=True)
        flag |= bad
        given[:] = True
        ts_text = np.array(times, dtype=object)
    return Decoded(values, present, flag, ts, given, np.array(bodies, dtype=object), ts_text), counts
