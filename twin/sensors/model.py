"""The sensor data model, shaped like OGC SensorThings (STA 1.1).

* a **station** is an STA *Thing* with one *Location* (x/y in EPSG:32649 metres, lon/lat kept too);
* a **datastream** belongs to a station and measures one observed property in one unit with one
  sensor (STA *Datastream* + *ObservedProperty* + *Sensor*, flattened);
* an **observation** is (datastream_id, phenomenon_time [UTC], result [canonical unit], quality flag).

Every observed property has a canonical SI-ish unit (what the store holds) and the QC limits used
by :mod:`twin.sensors.qc`. Results are converted to the canonical unit on the way in
(:func:`convert`), never in the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------
# observed properties: canonical unit and quality-control limits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedProperty:
    """An STA ObservedProperty with the QC limits the store applies to it.

    ``valid_range`` is the physically possible range (outside: flag ``range``);
    ``max_rate_per_h`` the largest credible rate of change (flag ``rate_of_change``);
    ``spike`` the QARTOD spike threshold in the canonical unit (flag ``spike``);
    ``flat_s`` how long an unchanged non-zero value may last (flag ``flat_line``);
    ``typical_max`` the largest value expected in normal service, used with the unit-mistake test
    (a value ~100x or ~1000x off the stream's own level that the factor brings back in range).
    """

    name: str
    unit: str
    valid_range: tuple[float, float]
    max_rate_per_h: float
    spike: float
    flat_s: float
    typical_max: float
    zero_flat_ok: bool = False  # a run of zeros is normal (no rain, no traffic at night)
    description: str = ""


PROPERTIES: dict[str, ObservedProperty] = {
    p.name: p
    for p in [
        ObservedProperty("rain_rate", "mm/h", (0.0, 300.0), 3600.0, 120.0, 3 * 3600, 200.0, True,
                         "rainfall intensity at a tipping-bucket or weighing gauge"),
        ObservedProperty("river_stage", "m", (-5.0, 30.0), 3.0, 0.75, 12 * 3600, 20.0, False,
                         "river water level above the gauge datum"),
        ObservedProperty("water_level", "m", (-5.0, 30.0), 3.0, 0.75, 12 * 3600, 20.0, False,
                         "water surface elevation above the model datum (in-domain gauge)"),
        ObservedProperty("tide_level", "m", (-4.0, 6.0), 2.5, 0.5, 6 * 3600, 4.0, False,
                         "sea level above the model datum at a tide gauge"),
        ObservedProperty("road_water_depth", "m", (0.0, 3.0), 2.0, 0.5, 24 * 3600, 2.0, True,
                         "water depth on a road surface (ultrasonic street sensor)"),
        ObservedProperty("traffic_count", "veh", (0.0, 20000.0), 1.0e6, 5000.0, 2 * 3600, 5000.0,
                         True, "vehicles counted per reporting interval"),
        ObservedProperty("discharge", "m3/s", (0.0, 50000.0), 1.0e4, 2000.0, 24 * 3600, 10000.0,
                         True, "river discharge"),
        ObservedProperty("wind_speed", "m/s", (0.0, 90.0), 200.0, 25.0, 6 * 3600, 70.0, True,
                         "10 m wind speed"),
        ObservedProperty("air_pressure", "hPa", (850.0, 1090.0), 30.0, 10.0, 24 * 3600, 1080.0,
                         False, "mean sea-level pressure"),
    ]
}

# aliases users write in CSV headers / configs
PROPERTY_ALIASES = {
    "rain": "rain_rate", "rainfall": "rain_rate", "precipitation": "rain_rate", "rain_mm_per_h": "rain_rate",
    "stage": "river_stage", "river_level": "river_stage", "level": "water_level", "wl": "water_level",
    "tide": "tide_level", "sea_level": "tide_level", "depth": "road_water_depth",
    "road_depth": "road_water_depth", "flow": "discharge", "count": "traffic_count",
    "traffic": "traffic_count", "wind": "wind_speed", "pressure": "air_pressure",
}


def get_property(name: str) -> ObservedProperty:
    key = str(name).strip().lower()
    key = PROPERTY_ALIASES.get(key, key)
    try:
        return PROPERTIES[key]
    except KeyError:
        raise ValueError(
            f"unknown observed property {name!r}; known: {sorted(PROPERTIES)} (aliases {sorted(PROPERTY_ALIASES)})"
        ) from None


# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------

# unit -> (canonical unit, factor): canonical = value * factor. Rain *depth per interval* (mm, in)
# is not a rate: it converts to mm/h with the reporting interval (see convert()).
_UNITS: dict[str, tuple[str, float]] = {
    "m": ("m", 1.0), "cm": ("m", 0.01), "mm": ("m", 0.001), "ft": ("m", 0.3048),
    "mm/h": ("mm/h", 1.0), "mm/hr": ("mm/h", 1.0), "mm h-1": ("mm/h", 1.0), "mm/min": ("mm/h", 60.0),
    "in/h": ("mm/h", 25.4), "m/s_rain": ("mm/h", 3.6e6), "mm/s": ("mm/h", 3600.0),
    "m3/s": ("m3/s", 1.0), "m^3/s": ("m3/s", 1.0), "l/s": ("m3/s", 0.001),
    "veh": ("veh", 1.0), "count": ("veh", 1.0), "1": ("veh", 1.0),
    "m/s": ("m/s", 1.0), "km/h": ("m/s", 1 / 3.6), "kt": ("m/s", 0.514444), "knot": ("m/s", 0.514444),
    "hpa": ("hPa", 1.0), "mbar": ("hPa", 1.0), "pa": ("hPa", 0.01), "kpa": ("hPa", 10.0),
}
_UNIT_ALIASES = {"metre": "m", "meter": "m", "meters": "m", "metres": "m", "centimetre": "cm",
                 "centimeter": "cm", "millimetre": "mm", "millimeter": "mm", "mm/hour": "mm/h",
                 "mmh": "mm/h", "mm per hour": "mm/h", "cumecs": "m3/s", "hpa ": "hpa"}


def normalise_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    u = str(unit).strip()
    if u == "":
        return None
    low = u.lower()
    low = _UNIT_ALIASES.get(low, low)
    if low in _UNITS:
        return low
    raise ValueError(f"unknown unit {unit!r}; known: {sorted(_UNITS)}")


def convert(values, unit: str | None, prop: ObservedProperty | str, interval_s=None):
    """Convert ``values`` given in ``unit`` to ``prop``'s canonical unit.

    For ``rain_rate`` a depth unit (``mm``, ``cm``, ``in``) is read as the depth fallen in the
    reporting interval and divided by ``interval_s`` (seconds, scalar or array): mm per 10 min -> mm/h.
    ``unit=None`` means "already canonical". Raises ``ValueError`` naming the unit when it does not
    fit the property (e.g. ``m3/s`` for a rain gauge).
    """
    import numpy as np

    if isinstance(prop, str):
        prop = get_property(prop)
    v = np.asarray(values, dtype=np.float64)
    u = normalise_unit(unit)
    if u is None:
        return v
    if prop.unit == "mm/h" and u in ("mm", "cm", "m", "in"):
        if interval_s is None:
            raise ValueError(
                f"rain depth unit {unit!r} needs the reporting interval to become mm/h (give interval_s)"
            )
        depth_mm = v * {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}[u]
        interval = np.asarray(interval_s, dtype=np.float64)
        if np.any(~(interval > 0)):
            raise ValueError(f"rain depth unit {unit!r}: reporting interval must be > 0 s, got {interval_s!r}")
        return depth_mm * 3600.0 / interval
    canon, factor = _UNITS[u]
    if canon != prop.unit:
        raise ValueError(
            f"unit {unit!r} does not fit observed property {prop.name!r} (canonical unit {prop.unit!r})"
        )
    return v * factor


# --------------------------------------------------------------------------------------------
# quality flags: a bit mask in the store plus a readable text
# --------------------------------------------------------------------------------------------

FLAG_BITS: dict[str, int] = {
    "range": 1,            # outside the property's physically possible range
    "spike": 2,            # QARTOD spike: isolated departure from both neighbours
    "rate_of_change": 4,   # |dx/dt| above the property's credible maximum
    "flat_line": 8,        # unchanged (non-zero) value for longer than flat_s
    "gap": 16,             # first value after a gap > gap factor x the stream's usual interval
    "duplicate": 32,       # a second, different value arrived for the same (datastream, time)
    "out_of_order": 64,    # arrived after a later observation of the same datastream
    "clock_skew": 128,     # phenomenon time ahead of the receive time (sensor clock fast)
    "unit_mistake": 256,   # ~100x/1000x off the stream's level: probably cm/mm sent as m
    "unregistered": 512,   # datastream unknown to the configuration when it arrived
}
# flags that make a value unusable for assimilation (the others are informative)
BAD_MASK = FLAG_BITS["range"] | FLAG_BITS["spike"] | FLAG_BITS["unit_mistake"] | FLAG_BITS["flat_line"] \
    | FLAG_BITS["clock_skew"] | FLAG_BITS["rate_of_change"]
# flags set when an observation is received (kept when QC is re-run)
INGEST_MASK = FLAG_BITS["duplicate"] | FLAG_BITS["out_of_order"] | FLAG_BITS["clock_skew"] \
    | FLAG_BITS["unregistered"]


def flag_text(mask: int) -> str:
    """``0 -> 'good'``; otherwise the flag names joined by ``','`` in bit order."""
    mask = int(mask)
    if mask == 0:
        return "good"
    return ",".join(name for name, bit in FLAG_BITS.items() if mask & bit)


def flag_mask(text: str) -> int:
    if text in ("good", "", None):
        return 0
    out = 0
    for name in str(text).split(","):
        name = name.strip()
        if name in ("unchecked",):
            continue
        if name not in FLAG_BITS:
            raise ValueError(f"unknown quality flag {name!r}; known: {sorted(FLAG_BITS)}")
        out |= FLAG_BITS[name]
    return out


# --------------------------------------------------------------------------------------------
# stations and datastreams
# --------------------------------------------------------------------------------------------


@dataclass
class Station:
    """STA Thing + Location. ``x, y`` in EPSG:32649 metres (computed from lon/lat if absent)."""

    station_id: str
    name: str = ""
    x: float | None = None
    y: float | None = None
    lon: float | None = None
    lat: float | None = None
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.station_id = str(self.station_id)
        if (self.x is None or self.y is None) and self.lon is not None and self.lat is not None:
            from pyproj import Transformer

            tr = Transformer.from_crs("EPSG:4326", "EPSG:32649", always_xy=True)
            self.x, self.y = (float(v) for v in tr.transform(self.lon, self.lat))


@dataclass
class Datastream:
    """STA Datastream (+ ObservedProperty + Sensor). ``unit`` is the unit the *source* sends in;
    the store keeps results in the property's canonical unit."""

    datastream_id: str
    station_id: str | None
    observed_property: str
    unit: str | None = None
    sensor: str = ""
    name: str = ""
    interval_s: float | None = None   # nominal reporting interval (rain depth -> rate, gap test)
    registered: bool = True
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.datastream_id = str(self.datastream_id)
        self.observed_property = get_property(self.observed_property).name
        if self.unit is not None:
            normalise_unit(self.unit)

    @property
    def prop(self) -> ObservedProperty:
        return PROPERTIES[self.observed_property]
