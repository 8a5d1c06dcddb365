"""Panel and variable building blocks shared by the boards.

Units and alarm marks come from the device profiles (device_profiles/kinds/*.yaml),
read when the boards are built: a profile's ``limits`` are the marks its
detector alarms on, so the lines an operator sees on a panel are the same
numbers that raise incidents.  Changing a mark means editing the profile and
re-rendering (``python -m dashboards.build``), never editing a board.
"""

from __future__ import annotations

from functools import lru_cache

from grafana_foundation_sdk.builders import bargauge, common as cb, dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common, dashboard, units

from device_profiles import load_registry

from .queries import InfluxQL, api_ref, api_variable_query, influx_ref

# Profile unit -> Grafana unit id.  Units Grafana lacks get a suffix unit.
_UNITS = {
    "µg/m³": units.MicrogramPerCubicMeter, "°C": units.Celsius, "%": units.Percent, "ms": units.Milliseconds,
    "Mbit/s": units.MegabitsPerSecond, "kbit/s": units.KilobitsPerSecond, "V": units.Volt, "A": units.Ampere,
    "kW": units.KiloWatt, "W": units.Watt, "m": units.Meter, "mm": units.Millimeter, "min": units.Minutes,
    "ports": units.Short, "errors": units.Short, "bool": units.NoUnit,
}

GREEN, ORANGE, RED, GREY = "green", "orange", "red", "text"


@lru_cache(maxsize=1)
def registry():
    return load_registry()


def field_spec(kind: str, field: str):
    """The profile's spec of ``kind.field``; KeyError naming both if the profile has no such field."""
    try:
        return registry().kinds[kind].fields[field]
    except KeyError:
        raise KeyError(f"no field {field!r} in the profile of kind {kind!r}: boards must follow the profiles") from None


def unit_of(kind: str, field: str) -> str:
    u = field_spec(kind, field).unit
    return _UNITS.get(u, f"suffix: {u}")


def marks(kind: str, field: str) -> db.ThresholdsConfig | None:
    """Threshold steps from the profile's limits: green inside the marks, orange past warn, red past crit."""
    lim = field_spec(kind, field).limits
    if lim is None:
        return None
    steps = []
    base = RED if lim.crit_below is not None else ORANGE if lim.warn_below is not None else GREEN
    steps.append(dashboard.Threshold(value=None, color=base))
    if lim.crit_below is not None:
        steps.append(dashboard.Threshold(value=lim.crit_below, color=ORANGE if lim.warn_below is not None else GREEN))
    if lim.warn_below is not None:
        steps.append(dashboard.Threshold(value=lim.warn_below, color=GREEN))
    if lim.warn_above is not None:
        steps.append(dashboard.Threshold(value=lim.warn_above, color=ORANGE))
    if lim.crit_above is not None:
        steps.append(dashboard.Threshold(value=lim.crit_above, color=RED))
    return db.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(steps)


def site_names(types: tuple[str, ...] = ("commune",)) -> dict[str, str]:
    return {s.id: s.name for s in registry().sites.values() if s.type in types}


def where(*conds: str) -> str:
    """A WHERE clause: the conditions and Grafana's time filter (always last, so it is never forgotten)."""
    return "WHERE " + " AND ".join([*conds, "$timeFilter"])


# ---------------------------------------------------------------- panels

def _size(panel, w: int, h: int, description: str | None):
    panel.span(w).height(h)
    if description:
        panel.description(description)
    return panel


def series(title: str, targets: list, unit: str | None = None, thresholds=None, w: int = 12, h: int = 8,
           description: str | None = None, stacked: bool = False, api: bool = False,
           minimum: float | None = None, maximum: float | None = None) -> timeseries.Panel:
    """A time-series panel; alarm marks, when given, are drawn as dashed lines."""
    p = timeseries.Panel().title(title).datasource(api_ref() if api else influx_ref()).targets(targets)
    p.span_nulls(False)  # a gap is a gap (see GAPS): the device did not report, the detector saw the same
    p.legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
             .placement(common.LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull", "max"]))
    if unit:
        p.unit(unit)
    if minimum is not None:
        p.min(minimum)
    if maximum is not None:
        p.max(maximum)
    if thresholds is not None:
        p.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    if stacked:
        p.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(30)
    return _size(p, w, h, description)


# Windows without a reading come back as null (fill(null)), not left out: Grafana draws a line
# straight across missing points, and a state timeline stretches the last state over them, so a
# cut uplink would look like a steady line or a steady "Up".  With the nulls it is a visible gap.
GAPS = "fill(null)"


def field_series(title: str, kind: str, field: str, conds: tuple[str, ...] = (), agg: str = "mean",
                 by: str = "device", **kw) -> timeseries.Panel:
    """One kind's field, one line per device (or site), units and marks from the profile."""
    q = (f'SELECT {agg}("{field}") FROM "{kind}" {where(*conds)} '
         f'GROUP BY time($__interval), "{by}" {GAPS}')
    return series(title, [InfluxQL(q, alias=f"$tag_{by}")], unit=unit_of(kind, field),
                  thresholds=marks(kind, field), **kw)


def bool_mappings(on: str, off: str, on_color: str = GREEN, off_color: str = RED) -> list:
    """0/1 fields (bools are stored as integers) shown as words in both languages."""
    return [dashboard.ValueMap(options={
        "1": dashboard.ValueMappingResult(text=on, color=on_color, index=0),
        "0": dashboard.ValueMappingResult(text=off, color=off_color, index=1)})]


def states(title: str, targets: list, mappings: list, w: int = 12, h: int = 8,
           description: str | None = None) -> statetimeline.Panel:
    p = (statetimeline.Panel().title(title).datasource(influx_ref()).targets(targets).mappings(mappings)
         .show_value(common.VisibilityMode.NEVER).merge_values(True).fill_opacity(80)
         .legend(cb.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM))
         .thresholds(db.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE)
                     .steps([dashboard.Threshold(value=None, color=GREY)])))
    return _size(p, w, h, description)


def bool_states(title: str, kind: str, field: str, conds: tuple[str, ...], on: str, off: str,
                agg: str = "min", on_color: str = GREEN, off_color: str = RED, **kw) -> statetimeline.Panel:
    """A bool per device over time.  ``agg`` decides a mixed window: min = any 0 shows 0 (a cut)."""
    q = (f'SELECT {agg}("{field}") FROM "{kind}" {where(*conds)} '
         f'GROUP BY time($__interval), "device" {GAPS}')
    return states(title, [InfluxQL(q, alias="$tag_device")], bool_mappings(on, off, on_color, off_color), **kw)


def stat_panel(title: str, targets: list, unit: str | None = None, thresholds=None, w: int = 6, h: int = 5,
               description: str | None = None, api: bool = False, calc: str = "lastNotNull",
               time_from: str | None = None, fields: str | None = None, no_value: str | None = None) -> stat.Panel:
    """A big number.  ``fields`` (a regex) picks the field to reduce; default: every numeric field."""
    reduce = cb.ReduceDataOptions().calcs([calc]).values(False)
    if fields:
        reduce.fields(fields)
    p = (stat.Panel().title(title).datasource(api_ref() if api else influx_ref()).targets(targets)
         .reduce_options(reduce)
         .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE))
    if unit:
        p.unit(unit)
    if thresholds is not None:
        p.thresholds(thresholds)
    if time_from:
        p.time_from(time_from)
    if no_value is not None:
        p.no_value(no_value)
    return _size(p, w, h, description)


def gauges(title: str, targets: list, unit: str | None = None, thresholds=None, w: int = 12, h: int = 8,
           description: str | None = None, minimum: float | None = None, maximum: float | None = None,
           time_from: str | None = None, names: dict[str, str] | None = None) -> bargauge.Panel:
    """A bar per series (last value); ``names`` renames series (ids -> Vietnamese names)."""
    p = (bargauge.Panel().title(title).datasource(influx_ref()).targets(targets)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .orientation(common.VizOrientation.HORIZONTAL).display_mode(common.BarGaugeDisplayMode.LCD)
         .show_unfilled(True))
    if unit:
        p.unit(unit)
    if thresholds is not None:
        p.thresholds(thresholds)
    if minimum is not None:
        p.min(minimum)
    if maximum is not None:
        p.max(maximum)
    if time_from:
        p.time_from(time_from)
    for ident, name in sorted((names or {}).items()):
        p.override_by_name(ident, [prop("displayName", name)])
    return _size(p, w, h, description)


def table_panel(title: str, targets: list, w: int = 12, h: int = 8, description: str | None = None,
                api: bool = True) -> table.Panel:
    p = (table.Panel().title(title).datasource(api_ref() if api else influx_ref()).targets(targets)
         .show_header(True).filterable(True))
    return _size(p, w, h, description)


def prop(id_val: str, value: object) -> dashboard.DynamicConfigValue:
    """One property of a field override (``displayName``, ``mappings``, ``custom.hidden``...)."""
    return dashboard.DynamicConfigValue(id_val=id_val, value=value)


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(
        [dashboard.Threshold(value=v, color=c) for v, c in pairs])


# ---------------------------------------------------------------- variables

def api_variable(name: str, label: str, target: str, include_all: bool = False, **filters: str) -> db.QueryVariable:
    """A variable listed by the API: Vietnamese names shown, registry ids as values.

    With "All" there is deliberately no custom all-value: Grafana then sends the
    list of every option, which stays valid JSON in a chained variable's query
    and becomes ``(a|b)`` in an InfluxQL regex (a custom ``.*`` would be pasted
    raw into the JSON and break it).
    """
    v = (db.QueryVariable(name).label(label).datasource(api_ref()).query(api_variable_query(target, **filters))
         .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
         .sort(dashboard.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC).include_all(include_all).multi(False))
    if include_all:
        v.current(dashboard.VariableOption(text="All", value="$__all", selected=True))
    return v


def influx_variable(name: str, label: str, query: str, include_all: bool = False,
                    multi: bool = False) -> db.QueryVariable:
    v = (db.QueryVariable(name).label(label).datasource(influx_ref()).query(query)
         .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dashboard.VariableSort.NATURAL_ASC)
         .include_all(include_all).multi(multi))
    if include_all:
        v.current(dashboard.VariableOption(text="All", value="$__all", selected=True))
    return v
