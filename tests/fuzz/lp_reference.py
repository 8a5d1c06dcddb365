"""A small, strict reference parser of InfluxDB line protocol, for the fuzz tests.

It follows what InfluxDB 1.x (the ``influxd`` the tests start) actually does, checked
against a running server, not the decoder in ``ingest.decoders`` (which reads device
input more loosely):

* measurement: ends at an unescaped comma or space; ``\\,``, ``\\=`` and ``\\ `` are escapes;
* tag keys, tag values and field keys: end at an unescaped comma, equals sign or space;
  ``\\,``, ``\\=`` and ``\\ `` are escapes;
* in all of those a backslash before any other character is a literal backslash
  (InfluxDB 1.x stores ``a\\\\b`` as two backslashes), and it does not consume the
  next character;
* string field values are double-quoted; ``\\"`` and ``\\\\`` are escapes, any other
  backslash is literal;
* other field values run to the next comma or space; the timestamp is an integer.

InfluxDB reads hostile *measurement names and field keys* more quirkily than this
(leading blanks are skipped, ``\\"`` in a field key becomes ``"``, a line starting
with ``#`` is a comment); the fuzz tests only give the encoder registry kinds and
field names there, which the registry limits to a safe alphabet, and check
``#`` separately.  Tag values and string fields follow these rules exactly.

Anything else raises :class:`LPParseError`, so a test that parses an encoder's
output line by line sees every extra, missing or mangled point.
"""

from __future__ import annotations

from typing import NamedTuple


class LPParseError(ValueError):
    pass


class LPLine(NamedTuple):
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, object], ...]  # value: float, int (from NNNi), or str (from a quoted string)
    ts: int


def _scan(s: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    out = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in escapable:
            out.append(s[i + 1])
            i += 2
            continue
        if c in stops:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def _quoted(s: str, i: int) -> tuple[str, int]:
    assert s[i] == '"'
    i += 1
    out = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in '"\\':
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise LPParseError(f"unterminated string value in {s!r}")


def _expect(s: str, i: int, c: str, what: str) -> int:
    if i >= len(s) or s[i] != c:
        raise LPParseError(f"expected {c!r} {what} at {i} in {s!r}")
    return i + 1


def _number(raw: str, line: str):
    if not raw:
        raise LPParseError(f"empty field value in {line!r}")
    if raw[-1] == "i":
        body = raw[:-1]
        if not body.lstrip("-").isascii() or not body.lstrip("-").isdigit() or body.count("-") > (1 if body.startswith("-") else 0):
            raise LPParseError(f"bad integer {raw!r} in {line!r}")
        return int(body)
    if raw in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return raw[0] in "tT"
    try:
        v = float(raw)
    except ValueError:
        raise LPParseError(f"bad field value {raw!r} in {line!r}") from None
    if not raw.isascii() or v != v or v in (float("inf"), float("-inf")):
        raise LPParseError(f"field value {raw!r} is not a finite number InfluxDB reads")
    return v


def parse_line(line: str) -> LPLine:
    if "\n" in line or "\r" in line:
        raise LPParseError(f"raw newline in {line!r}")
    if not line or line.startswith("#"):
        raise LPParseError(f"empty or comment line {line!r}: InfluxDB would skip it")
    measurement, i = _scan(line, 0, ", ", ",= ")
    if not measurement:
        raise LPParseError(f"empty measurement in {line!r}")
    tags = []
    while i < len(line) and line[i] == ",":
        key, i = _scan(line, i + 1, ",= ", ",= ")
        i = _expect(line, i, "=", "after a tag key")
        value, i = _scan(line, i, ",= ", ",= ")
        if not key or not value:
            raise LPParseError(f"empty tag key or value in {line!r}")
        tags.append((key, value))
    i = _expect(line, i, " ", "before the fields")
    fields = []
    while True:
        key, i = _scan(line, i, ",= ", ",= ")
        if not key:
            raise LPParseError(f"empty field key in {line!r}")
        i = _expect(line, i, "=", "after a field key")
        if i < len(line) and line[i] == '"':
            value, i = _quoted(line, i)
        else:
            raw, i = _scan(line, i, ", ", "")
            value = _number(raw, line)
        fields.append((key, value))
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    i = _expect(line, i, " ", "before the timestamp")
    ts = line[i:]
    body = ts[1:] if ts.startswith("-") else ts
    if not body or not body.isascii() or not body.isdigit():
        raise LPParseError(f"bad timestamp {ts!r} in {line!r}")
    return LPLine(measurement, tuple(tags), tuple(fields), int(ts))


def parse_body(body: str) -> list[LPLine]:
    """Every line of a write body; an empty body has no line."""
    if "\r" in body:
        raise LPParseError("carriage return in the body")
    return [parse_line(line) for line in body.split("\n")] if body else []
