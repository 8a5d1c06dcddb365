"""Sparkplug B host session: births, aliases, sequence numbers, deaths and rebirth requests.

Fansipan reads the Sparkplug namespace as a (non-primary) host application.
Per edge node it keeps the birth/death sequence (``bdSeq``), the message
sequence (``seq``, 0..255 wrapping) and the alias tables of the node and of
each of its devices, declared by NBIRTH and DBIRTH. Mapping to Fansipan
(docs/formats.md):

* the edge node id and the Sparkplug device id are Fansipan device ids, of a
  kind whose format is ``sparkplug_b`` and whose ``sparkplug.group`` is the
  topic's group; a Sparkplug device must have the edge node as its ``uplink``
  in the site registry (a node cannot speak for devices elsewhere);
* a metric's name is the field name, unless the profile's ``sparkplug.metrics``
  maps it; Sparkplug's own metrics (``bdSeq``, ``Node Control/...``,
  ``Properties/...``...) are not telemetry and are skipped;
* a birth or data metric becomes a reading at the metric's timestamp (else the
  payload's); metrics of one message with the same time make one point;
  ``is_historical`` metrics are stored with the field ``historical`` = 1,
  as ingest/clock.py marks late readings (backfill);
* a birth stores ``online`` = true, NDEATH/DDEATH store ``online`` = false at
  arrival time (the will's own timestamp is from when the node connected) for
  the node and every device behind it, when the profile declares ``online``
  (the profiles' limit on ``online`` makes a death an incident at once);
* data by an alias no birth declared, data before any birth, or a sequence
  gap -> an NCMD ``Node Control/Rebirth`` = true to that node, at most one per
  node every ``rebirth_every_s``; readings by unknown alias are quarantined as
  ``unknown_alias``; after a gap the readings are kept (their aliases are
  still known) and only the rebirth is asked for.

Not thread-safe: the collector's single writer thread calls :meth:`message`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from device_profiles import Profile
from storage.base import Point, Rejected

from .decoders import DecodeError, RawReading
from .sparkplug_codec import BOOLEAN, NAMESPACE, REBIRTH_METRIC, Topic, decode_payload, encode_payload, metric_value, parse_topic

log = logging.getLogger("fansipan.sparkplug")

RAW_KEEP_BYTES = 4096
# Sparkplug's own metrics: sequence, control and descriptive metrics are not telemetry.
CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/", "Node Info/", "Device Info/")
CONTROL_NAMES = ("bdSeq",)
HISTORICAL = "historical"  # a field Fansipan writes (device_profiles.models.RESERVED_FIELDS)

Send = Callable[[str, bytes], None]


@dataclass
class NodeState:
    born: bool = False
    bdseq: int | None = None
    seq: int | None = None  # last sequence number seen
    # device (None: the node) -> alias -> field name, or None for Sparkplug's own metrics (bdSeq, Node Control/...)
    aliases: dict[str | None, dict[int, str | None]] = field(default_factory=dict)
    devices_born: set[str] = field(default_factory=set)
    last_rebirth_ns: int | None = None


class SparkplugHost:
    """Turns Sparkplug messages into points and rejects, keeping each edge node's session.

    ``check(raw, profile, device_id, arrived_ns)`` is the validator's reading
    check (fields, types, ranges, times) returning a Point or (reason, detail);
    ``send(topic, payload)`` publishes a command (None: rebirths are only logged).
    """

    def __init__(self, registry, check, send: Send | None = None, rebirth_every_s: float = 10.0):
        self.registry = registry
        self.check = check
        self.send = send
        self.rebirth_every_ns = int(rebirth_every_s * 1e9)
        self.groups = {p.sparkplug.group for p in registry.kinds.values() if p.format == "sparkplug_b" and p.sparkplug}
        self.nodes: dict[tuple[str, str], NodeState] = {}
        self.rebirths_requested = 0

    # --- entry point ----------------------------------------------------------------------------

    def message(self, topic: str, payload: bytes, arrived_ns: int) -> tuple[list[Point], list[Rejected]]:
        def reject(reason: str, detail: str, kind: str = "", device: str = "") -> Rejected:
            return Rejected(arrived_ns, topic, reason, detail, bytes(payload[:RAW_KEEP_BYTES]), kind, device[:64])

        try:
            t = parse_topic(topic)
        except ValueError as exc:
            return [], [reject("unknown_topic", f"Sparkplug B topic: {exc}")]
        if t.type in ("STATE", "NCMD", "DCMD"):
            return [], []  # host states and commands (our own rebirth requests too) carry no telemetry
        if t.group not in self.groups:
            return [], [reject("unknown_topic", f"Sparkplug group {t.group[:64]!r} is not declared by any profile's "
                                                f"sparkplug.group (declared: {', '.join(sorted(self.groups)) or 'none'})")]
        who = t.device or t.node
        problem = self._registered(t)
        if problem:
            return [], [reject("unknown_device", problem, "", who)]
        profile = self.registry.kinds[self.registry.devices[who].kind]
        try:
            msg = decode_payload(payload)
        except DecodeError as exc:
            return [], [reject("decode_error", f"sparkplug_b: {exc}", profile.kind, who)]
        state = self.nodes.setdefault((t.group, t.node), NodeState())
        out = _Out(reject, profile.kind, who)
        handler = getattr(self, "_" + t.type.lower())
        handler(t, msg, state, profile, arrived_ns, out)
        return out.points, out.rejected

    def _registered(self, t: Topic) -> str | None:
        """Why the node or device of this topic may not speak here, or None."""
        devices = self.registry.devices
        for role, did in (("edge node", t.node), ("device", t.device)):
            if did is None:
                continue
            d = devices.get(did)
            if d is None:
                return f"Sparkplug {role} {did[:64]!r} is not in the site registry (its id must be a Fansipan device id)"
            p = self.registry.kinds[d.kind]
            if p.format != "sparkplug_b" or p.sparkplug is None or p.sparkplug.group != t.group:
                where = f"group {p.sparkplug.group!r}" if p.sparkplug else f"format {p.format!r}"
                return f"Sparkplug {role} {did!r} is a {d.kind} ({where}), not a Sparkplug device of group {t.group!r}"
        if t.device is not None and devices[t.device].uplink != t.node:
            return (f"device {t.device!r} is not behind edge node {t.node!r} in the site registry "
                    f"(its uplink is {devices[t.device].uplink!r}): an edge node speaks only for its own devices")
        return None

    # --- message types --------------------------------------------------------------------------

    def _nbirth(self, t, msg, state: NodeState, profile, arrived_ns, out) -> None:
        bdseq = _bdseq(msg)
        state.born, state.bdseq, state.seq = True, bdseq, msg.seq if msg.HasField("seq") else 0
        state.aliases = {None: {}}
        state.devices_born = set()
        self._birth(t, msg, state, None, profile, arrived_ns, out)

    def _dbirth(self, t, msg, state: NodeState, profile, arrived_ns, out) -> None:
        if not self._sequenced(t, msg, state, arrived_ns, out, "DBIRTH"):
            return
        state.aliases[t.device] = {}
        state.devices_born.add(t.device)
        self._birth(t, msg, state, t.device, profile, arrived_ns, out)

    def _birth(self, t, msg, state, device, profile, arrived_ns, out) -> None:
        table = state.aliases[device]
        for m in msg.metrics:
            if m.HasField("alias") and m.name and isinstance(m.name, str):  # not UTF-8: refused in _readings
                table[m.alias] = _field_of(m.name, profile)
        self._readings(t, msg, table, profile, arrived_ns, out, online=True)

    def _ndata(self, t, msg, state, profile, arrived_ns, out) -> None:
        if self._sequenced(t, msg, state, arrived_ns, out, "NDATA"):
            self._readings(t, msg, state.aliases.get(None, {}), profile, arrived_ns, out)

    def _ddata(self, t, msg, state, profile, arrived_ns, out) -> None:
        if not self._sequenced(t, msg, state, arrived_ns, out, "DDATA"):
            return
        if t.device not in state.devices_born:
            self._rebirth(t, state, arrived_ns, f"DDATA from device {t.device!r} before its DBIRTH")
            out.reject("unknown_alias", f"DDATA from device {t.device!r} before its DBIRTH: its metric aliases are "
                                        f"unknown; rebirth requested from edge node {t.node!r}")
            return
        self._readings(t, msg, state.aliases.get(t.device, {}), profile, arrived_ns, out)

    def _ddeath(self, t, msg, state, profile, arrived_ns, out) -> None:
        self._sequenced(t, msg, state, arrived_ns, out, "DDEATH", reject_unborn=False)
        state.devices_born.discard(t.device)
        state.aliases.pop(t.device, None)
        self._offline(t.device, arrived_ns, out)

    def _ndeath(self, t, msg, state: NodeState, profile, arrived_ns, out) -> None:
        bdseq = _bdseq(msg)
        if state.bdseq is not None and bdseq is not None and bdseq != state.bdseq:
            # The will of an earlier connection, delivered after the node came back: not about this session.
            log.info("Sparkplug NDEATH from %s/%s with bdSeq %s ignored: the live session was born with bdSeq %s",
                     t.group, t.node, bdseq, state.bdseq)
            return
        for device in sorted(state.devices_born):
            self._offline(device, arrived_ns, out)
        self._offline(t.node, arrived_ns, out)
        self.nodes[(t.group, t.node)] = NodeState(last_rebirth_ns=state.last_rebirth_ns)

    # --- pieces ---------------------------------------------------------------------------------

    def _sequenced(self, t, msg, state: NodeState, arrived_ns, out, what: str, reject_unborn: bool = True) -> bool:
        """Check birth and sequence; False when the message cannot be read (no birth)."""
        if not state.born:
            self._rebirth(t, state, arrived_ns, f"{what} before NBIRTH")
            if reject_unborn:
                out.reject("unknown_alias", f"{what} from edge node {t.node!r} before its NBIRTH (since the collector "
                                            "started): metric aliases unknown; rebirth requested")
            return False
        if msg.HasField("seq"):
            expected = (state.seq + 1) % 256 if state.seq is not None else msg.seq
            if msg.seq != expected:
                self._rebirth(t, state, arrived_ns, f"sequence gap: {what} seq {msg.seq}, expected {expected}")
            state.seq = msg.seq
        return True

    def _readings(self, t, msg, table: dict[int, str], profile: Profile, arrived_ns, out, online: bool = False) -> None:
        device = t.device or t.node
        default_ts = msg.timestamp * 1_000_000 if msg.HasField("timestamp") else None
        grouped: dict[tuple, dict] = {}
        unknown: list[int] = []
        for m in msg.metrics:
            name = m.name
            if name:
                if not isinstance(name, str):  # proto2 does not check UTF-8: upb hands such a string over as bytes
                    out.reject("decode_error", f"sparkplug_b: metric name {name[:64]!r} is not UTF-8 text")
                    continue
                fld = _field_of(name, profile)
            else:
                fld = table.get(m.alias, _UNKNOWN)  # the hot path: data by alias
                if fld is _UNKNOWN:
                    if m.HasField("alias"):
                        unknown.append(m.alias)
                    else:
                        out.reject("decode_error", "sparkplug_b: a metric with neither name nor alias")
                    continue
            if fld is None:
                continue  # Sparkplug's own metric, not telemetry
            try:
                value = metric_value(m)
            except DecodeError as exc:
                out.reject("decode_error", f"sparkplug_b: {exc}")
                continue
            if value is None:
                continue
            ts = m.timestamp * 1_000_000 if m.HasField("timestamp") else default_ts
            historical = bool(m.is_historical)
            fields = grouped.setdefault((ts, historical), {})
            fields[fld] = value
        if unknown:
            shown = ", ".join(str(a) for a in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            self._rebirth(t, self.nodes[(t.group, t.node)], arrived_ns, f"unknown alias {unknown[0]}")
            out.reject("unknown_alias", f"{len(unknown)} metric(s) of {t.type} from {device!r} by alias {shown}, "
                                        f"which no birth of edge node {t.node!r} declared; rebirth requested")
        if online and "online" in profile.fields:
            grouped.setdefault((default_ts, False), {})["online"] = True
        for (ts, historical), fields in grouped.items():
            self._store(RawReading(ts, fields, None, "ns"), profile, device, arrived_ns, out, historical)

    def _offline(self, device: str, arrived_ns: int, out) -> None:
        profile = self.registry.kinds[self.registry.devices[device].kind]
        if "online" in profile.fields:
            self._store(RawReading(arrived_ns, {"online": False}, None, "ns"), profile, device, arrived_ns, out)

    def _store(self, raw: RawReading, profile, device: str, arrived_ns: int, out, historical: bool = False) -> None:
        got = self.check(raw, profile, device, arrived_ns)
        if isinstance(got, Point):
            if historical:
                got.fields[HISTORICAL] = 1  # backfill, as ingest/clock.py marks late readings
            out.points.append(got)
        else:
            out.reject(got[0], got[1], profile.kind, device)

    def _rebirth(self, t: Topic, state: NodeState, arrived_ns: int, why: str) -> None:
        if state.last_rebirth_ns is not None and arrived_ns - state.last_rebirth_ns < self.rebirth_every_ns:
            return
        state.last_rebirth_ns = arrived_ns
        self.rebirths_requested += 1
        cmd_topic = f"{NAMESPACE}/{t.group}/NCMD/{t.node}"
        log.warning("Sparkplug edge node %s/%s: %s; asking it to rebirth (%s)", t.group, t.node, why, cmd_topic)
        if self.send is not None:
            payload = encode_payload([{"name": REBIRTH_METRIC, "value": True, "datatype": BOOLEAN}],
                                     timestamp_ms=arrived_ns // 1_000_000)
            try:
                self.send(cmd_topic, payload)
            except Exception as exc:  # a failed command must not cost the readings
                log.warning("could not publish the rebirth request to %s: %s", cmd_topic, exc)


class _Out:
    __slots__ = ("points", "rejected", "_reject", "kind", "device")

    def __init__(self, reject, kind: str, device: str):
        self.points: list[Point] = []
        self.rejected: list[Rejected] = []
        self._reject, self.kind, self.device = reject, kind, device

    def reject(self, reason: str, detail: str, kind: str | None = None, device: str | None = None) -> None:
        self.rejected.append(self._reject(reason, detail, kind or self.kind, device or self.device))


_UNKNOWN = object()


def _field_of(name: str, profile: Profile) -> str | None:
    """The field a metric name maps to (profile ``sparkplug.metrics``, else the name); None for control metrics."""
    if name in CONTROL_NAMES or name.startswith(CONTROL_PREFIXES):
        return None
    names = profile.sparkplug.metrics if profile.sparkplug else {}
    return names.get(name, name)


def _bdseq(msg) -> int | None:
    for m in msg.metrics:
        if m.name == "bdSeq":
            try:
                v = metric_value(m)
            except DecodeError:
                return None
            return v if isinstance(v, int) and not isinstance(v, bool) else None
    return None


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The host application's STATE message (Sparkplug 3.0: JSON, retained, on spBv1.0/STATE/<host id>)."""
    return b'{"online": %s, "timestamp": %d}' % (b"true" if online else b"false", timestamp_ms)
