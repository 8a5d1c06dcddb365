"""Line protocol for a :class:`~storage.columns.ColumnBatch`, column by column.

Produces the lines :class:`storage.line_protocol.Encoder` writes for the
same points (tests/test_line_protocol.py runs its cases through both): float
fields as Python's ``repr`` (shortest exact form), int fields and bools with
the ``i`` suffix, ``arrived_ms`` last, tags from one precomputed prefix a
device.  Texts are made a column at a time (a float column by one orjson call:
its floats are Python's repr where both write plain decimals,
:func:`_float_texts`, else ``repr``; ints and times by another), and each
line is one ``"".join`` of them; no Point, no dict a reading.
Line-protocol readings whose text already gives a store the same numbers as
the Encoder's (``KindColumns.body``: ``9.70`` for ``9.7``, ``100`` for
``100.0``; decided by ingest.bulk_lp) are spliced in as sent, between the
device's tags and ``arrived_ms``; with their time's text too (``ts_text``),
each line is one ``"".join`` of texts already made.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np
import orjson

from .base import Rejected, StoreError
from .columns import ColumnBatch, KindColumns
from .line_protocol import Encoder


def _check_finite(kc: KindColumns) -> None:
    floats = [j for j, t in enumerate(kc.types) if t == "float"]
    if floats:
        v = kc.values[:, floats]
        bad = kc.present[:, floats] & ~np.isfinite(v)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{kc.kind} field {kc.fields[floats[j]]!r} is {v[i, j]!r}: not a finite number")


def _float_texts(col: np.ndarray, present: np.ndarray) -> list[str] | None:
    """``repr`` of each value, written by orjson in one call (its shortest-digits floats are Python's), or None.

    The two spell a float alike for 0 and 1e-4 <= |x| < 1e16; outside that Python writes ``1e-05`` and
    orjson ``1e-5``, so a column with such a value is left to ``%r``.
    """
    with np.errstate(invalid="ignore"):
        a = np.abs(col)
        plain = ((a >= 1e-4) & (a < 1e16)) | (a == 0)
    if not (plain | ~present).all():
        return None
    return _texts(col)


def _texts(a: np.ndarray) -> list[str]:
    """Each value of ``a`` as orjson writes it, in one call (a float64's repr digits, an int64's ``%d``)."""
    return orjson.dumps(np.ascontiguousarray(a), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")


def _tails(kc: KindColumns) -> list[str]:
    """``,arrived_ms=<ms>i `` a row, written once a run of rows that arrived together (a message's readings)."""
    ms = kc.arrived_ns // 1_000_000
    starts = np.flatnonzero(np.concatenate(([True], ms[1:] != ms[:-1])))
    tails = np.array([",arrived_ms=%di " % a for a in ms[starts].tolist()], dtype=object)
    return np.repeat(tails, np.diff(np.append(starts, len(ms)))).tolist()


def kind_lines(kc: KindColumns, prefixes: list[str], encoder: Encoder) -> list[str]:
    """One line a row of ``kc``; ``prefixes[d]`` is device ``d``'s ``measurement,tags`` (see Encoder.tag_prefix).

    Every piece of text is made a column at a time (orjson writes a float column as repr would, an int
    column as %d would; the keys once a kind), and each line is one ``"".join`` of its pieces, in C.
    """
    n = len(kc)
    if n == 0:
        return []
    _check_finite(kc)
    keys = [encoder.field_key(f) for f in kc.fields]
    pre = list(map(prefixes.__getitem__, kc.device_idx.tolist()))
    tail = _tails(kc)
    ts = kc.ts_text.tolist() if kc.ts_text is not None else _texts(kc.ts_ns)
    if kc.body is not None and keys == list(kc.fields):  # the device's own text: the same numbers
        return list(map("".join, zip(pre, repeat(" "), kc.body.tolist(), tail, ts)))
    texts = []
    for j, t in enumerate(kc.types):
        if t != "float":
            texts.append(_texts(kc.values[:, j].astype(np.int64)))
        else:
            got = _float_texts(kc.values[:, j], kc.present[:, j])
            texts.append(got if got is not None else list(map(repr, kc.values[:, j].tolist())))
    suffix = ["" if t == "float" else "i" for t in kc.types]  # after each value
    patterns = np.unique(kc.present, axis=0) if not kc.present.all() else np.ones((1, len(keys)), bool)
    out: list[str] = [""] * n
    for pattern in patterns.tolist():
        js = [j for j, p in enumerate(pattern) if p]
        if js:
            seps = [" " + keys[js[0]] + "="] + [f"{suffix[a]},{keys[b]}=" for a, b in zip(js, js[1:])]
            cols = [pre]
            for sep, j in zip(seps, js):
                cols += [repeat(sep), texts[j]]
            cols += [repeat(suffix[js[-1]]), tail, ts]
        else:  # no field but arrived_ms
            cols = [pre, repeat(" "), [t[1:] for t in tail], ts]
        if len(patterns) == 1:
            return list(map("".join, zip(*cols)))
        rows = np.flatnonzero((kc.present == pattern).all(axis=1)).tolist()
        picked = [c if isinstance(c, repeat) else [c[i] for i in rows] for c in cols]
        for i, line in zip(rows, map("".join, zip(*picked))):
            out[i] = line
    return out


class BulkLines:
    """Encodes ColumnBatches for one store; keeps the device prefixes of each DeviceTable it has seen."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder
        self._table = None
        self._prefixes: list[str] = []

    def _prefixes_of(self, batch: ColumnBatch) -> list[str]:
        t = batch.table
        if t is not self._table:  # the collector keeps one table; ad hoc batches bring their own
            self._table, self._prefixes = t, []
        while len(self._prefixes) < len(t):  # tables only grow
            i = len(self._prefixes)
            self._prefixes.append(self.encoder.tag_prefix(t.kinds[i], t.ids[i], t.sites[i], t.districts[i]))
        return self._prefixes

    def lines(self, batch: ColumnBatch, rejected=()) -> list[str]:
        """Raises ValueError for anything the per-point Encoder would refuse."""
        prefixes = self._prefixes_of(batch)
        out: list[str] = []
        for kc in batch.kinds:
            out.extend(kind_lines(kc, prefixes, self.encoder))
        out.extend(self.encoder.point_lines(batch.extra))
        out.extend(self.encoder.rejected_lines(rejected))
        return out


class WritesColumns:
    """For a store that writes line protocol through ``self._send(lines)``: the bulk write.

    Needs ``self._encoder`` (an Encoder) and ``self.where``; durable on return, as ``write``.
    """

    _bulk: BulkLines | None = None

    def encode_columns(self, batch: ColumnBatch, rejected: list[Rejected] = ()) -> list[str]:
        """The batch and ``rejected`` as lines; StoreError (not retryable) for what cannot be written."""
        if self._bulk is None:
            self._bulk = BulkLines(self._encoder)
        try:
            return self._bulk.lines(batch, rejected)
        except ValueError as exc:
            raise StoreError(f"{self.where}: batch refused before sending: {exc}", retryable=False) from exc

    def write_columns(self, batch: ColumnBatch, rejected: list[Rejected] = ()) -> None:
        """Durable on return; uses ``batch.encoded`` when the caller encoded it ahead with these rejects."""
        lines = batch.encoded if batch.encoded is not None else self.encode_columns(batch, rejected)
        self._send(lines)
