"""Scenario files: a validated, frozen description of one what-if run.

A scenario is a YAML file (read with ``yaml.safe_load`` only) validated by pydantic. Every error
names the file, the key path and the bad value; unknown keys are errors; file paths inside the
scenario are relative to the scenario file. ``load_scenario(path, overrides=["flood.rain.peak_mm_per_h=80"])``
applies ``--set key.path=value`` overrides (values parsed as YAML scalars/lists) before validation.

Times:
- ``start`` is a local datetime (Asia/Ho_Chi_Minh, UTC+7, no daylight saving); an explicit offset is
  converted to local time.
- durations (``duration``, ``coupling_step``, output intervals) accept seconds (number) or strings such as
  ``"6h"``, ``"10min"``, ``"1h30min"``, ``"90s"``, ``"2d"``.
- event times (``at``, ``until``) accept a duration since start or an absolute local datetime.

Coordinates are EPSG:32649 (UTM 49N) metres unless an item says ``crs: EPSG:4326`` (lon, lat).
"""
from __future__ import annotations

import copy
import datetime as _dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from twin.valuetypes import (  # re-exported: public names of this module
    LOCAL_TZ,
    XY,
    Duration,
    EventTime,
    FilePath,
    LocalDatetime,
    PositiveDuration,
    _Model,
    _to_local,
    parse_duration,
)

__all__ = [
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_duration",
    "apply_overrides",
    "LOCAL_TZ",
    "Intervention",
    # the decision kinds a scenario's interventions are made of (defined in twin.decisions)
    "Breach", "EvacuationOrder", "ExtraUnits", "Levee", "Pump", "ReservoirRelease", "RoadClosure",
    "RoadReopen", "ShelterClose", "ShelterOpen", "Warning_",
]


class ScenarioError(ValueError):
    """A scenario file (or an override) is invalid. The message names file, key path and value."""


# physical ranges (beyond these a value is a typo or a unit error, not a what-if): water levels
# above the datum [m] (from the Dead Sea shore to the highest reservoirs), discharges [m³/s] (the
# Amazon's mean is ~2e5)
LEVEL_MIN_M, LEVEL_MAX_M = -500.0, 6000.0
MAX_DISCHARGE_M3_S = 1e6




# --------------------------------------------------------------------------------------------
# flood forcing
# --------------------------------------------------------------------------------------------
class DesignStorm(_Model):
    """Synthetic design storm: a hyetograph of ``duration`` with a peak at ``peak_fraction``.

    Give ``peak_mm_per_h`` directly, or ``return_period_years`` to take the mean intensity from the
    IDF relation in :func:`twin.build.idf_intensity_mm_per_h` (peak = 2 x mean for a triangle).
    """

    kind: Literal["design_storm"]
    return_period_years: float | None = Field(None, gt=1, le=100_000)
    duration: PositiveDuration = 6 * 3600.0
    peak_mm_per_h: float | None = Field(None, gt=0, le=500)
    shape: Literal["triangular", "chicago", "uniform"] = "triangular"
    peak_fraction: float = Field(0.5, ge=0, le=1)
    start: EventTime = 0.0

    @model_validator(mode="after")
    def _need_intensity(self):
        if self.peak_mm_per_h is None and self.return_period_years is None:
            raise ValueError("give peak_mm_per_h or return_period_years")
        return self


class TyphoonRain(_Model):
    """Typhoon track replay: rain from a best track (JTWC) through ``twin.sensors.typhoon``."""

    kind: Literal["typhoon"]
    storm: str = Field(..., description="storm name (e.g. MOLAVE) or JTWC sid (WP212020)")
    season: int | None = None
    track_file: FilePath | None = None
    time_shift: Duration = 0.0
    rain_scale: float = Field(1.0, gt=0, le=10)
    max_rain_mm_per_h: float | None = Field(None, gt=0, le=500)
    surge: bool = True


class GaugeRain(_Model):
    """Rain from a gauge feed CSV (time, rain in mm/h) aligned by local datetime or seconds."""

    kind: Literal["gauge"]
    file: FilePath
    time_column: str = "time"
    value_column: str = "rain_mm_per_h"
    scale: float = Field(1.0, gt=0, le=10)


class FileRain(_Model):
    """Rain hyetograph from a CSV file with columns ``t_s, rain_mm_per_h`` (uniform over the domain)."""

    kind: Literal["file"]
    file: FilePath
    scale: float = Field(1.0, gt=0, le=10)


class SeriesRain(_Model):
    """Rain hyetograph given inline: times (durations since start) and rates in mm/h."""

    kind: Literal["series"]
    times: list[Duration]
    rain_mm_per_h: list[Annotated[float, Field(ge=0, le=500)]]

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.times) != len(self.rain_mm_per_h) or len(self.times) < 1:
            raise ValueError("times and rain_mm_per_h must have the same length >= 1")
        if any(b < a for a, b in zip(self.times, self.times[1:])):
            raise ValueError("times must be non-decreasing")
        return self


class NoRain(_Model):
    kind: Literal["none"]


Rain = Annotated[
    DesignStorm | TyphoonRain | GaugeRain | FileRain | SeriesRain | NoRain, Field(discriminator="kind")
]


class Hydrograph(_Model):
    times: list[Duration]
    discharge_m3_per_s: list[Annotated[float, Field(ge=0, le=MAX_DISCHARGE_M3_S)]]

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.times) != len(self.discharge_m3_per_s) or not self.times:
            raise ValueError("times and discharge_m3_per_s must have the same length >= 1")
        return self


class Inflow(_Model):
    """A river or reservoir inflow: at a named inflow point of the city bundle or at x, y."""

    name: str
    at: str | None = Field(None, description="name of a city inflow point (city.inflows.name)")
    xy: XY | None = None
    crs: str = "EPSG:32649"
    width_m: float = Field(0.0, ge=0, le=10_000, description="line inflow spread over cells within width/2")
    hydrograph: Hydrograph | None = None
    file: FilePath | None = None
    base_m3_per_s: float = Field(0.0, ge=0, le=MAX_DISCHARGE_M3_S)
    scale: float = Field(1.0, ge=0, le=100)

    @model_validator(mode="after")
    def _where(self):
        if (self.at is None) == (self.xy is None):
            raise ValueError("give exactly one of 'at' (inflow name) or 'xy'")
        if self.hydrograph is None and self.file is None and self.base_m3_per_s == 0:
            raise ValueError("give a hydrograph, a file or base_m3_per_s")
        return self


class TideConstituent(_Model):
    name: str
    amplitude_m: float = Field(..., ge=0, le=10)
    period_h: float | None = Field(None, gt=0, le=10_000)
    phase_deg: float = Field(0.0, ge=-360, le=360)


class Surge(_Model):
    peak_m: float = Field(..., ge=0, le=10)
    peak_time: EventTime
    duration: PositiveDuration = 24 * 3600.0


class Sea(_Model):
    """Sea level at the sea cells (tidal stage boundary): mean level + tide constituents + surge."""

    enabled: bool = True
    mean_level_m: float = Field(0.0, ge=-10, le=10, description="mean sea level above the terrain's datum [m]")
    constituents: list[TideConstituent] = Field(default_factory=list)
    surge: Surge | None = None
    sea_cells: Literal["city", "below_zero"] = "city"
    strip_cells: int = Field(3, ge=1, le=1000, description="sea cells kept along the coast as the stage boundary")
    stage_step: PositiveDuration = 600.0


class GateSetting(_Model):
    """A gate opening of an operated reservoir (``operation: manual``, or an override of the rule)."""
    at: Duration = Field(0.0, description="model time the gates of ``spillway`` move to ``opening_m``")
    spillway: str = Field(..., description="gated spillway: '2' or '3' at Phú Ninh")
    opening_m: float = Field(..., ge=0, le=20, description="gate opening [m] (0 = closed; gate height = fully open)")


class Reservoir(_Model):
    name: str = "Phu Ninh"
    initial_level_m: float = Field(32.0, ge=LEVEL_MIN_M, le=LEVEL_MAX_M, description="water level above MSL at start")
    full_supply_level_m: float = Field(32.0, ge=LEVEL_MIN_M, le=LEVEL_MAX_M)
    spillway_m3_per_s_per_m: float = Field(150.0, ge=0, le=MAX_DISCHARGE_M3_S,
                                           description="spill per metre above full supply")
    outlet: str | None = Field(None, description="city inflow point that receives the release")
    operation: Literal["simple", "rule", "manual"] = Field(
        "simple", description="simple: spill = spillway_m3_per_s_per_m × level above full supply over a 33 km² pool "
        "(the original lumped model); rule: Phú Ninh's design data and operating rule (twin.flood.reservoir_ops: "
        "level–volume, free, gated and fuse spillways, guide curves, flood operation steps); manual: the same "
        "reservoir with the gates set by 'gates'")
    gates: list[GateSetting] = Field(default_factory=list, description="gate settings over time (manual, or "
                                     "overriding the rule for that spillway from their time on)")
    safe_release_m3_per_s: float = Field(800.0, gt=0, le=MAX_DISCHARGE_M3_S,
                                         description="rule: the most the gates release below the design flood level")
    base_inflow_m3_per_s: float = Field(0.0, ge=0, le=MAX_DISCHARGE_M3_S, description="baseflow into the reservoir")
    runoff_coefficient: float = Field(0.7, ge=0, le=1, description="share of the catchment's rain reaching the reservoir")
    # (fv room) the reservoir's water on the flood grid, for dam-break studies
    in_grid: bool = Field(False, description="fill the basin (cells 4-connected to 'xy' below initial_level_m, "
                          "footprint and volume from the city's native terrain: twin.flood.reservoir) with water "
                          "at that level (the lumped level-pool release is then off)")
    xy: XY | None = Field(None, description="a point inside the reservoir: in_grid fills the basin from it; "
                          "otherwise the lake of the city's initial water around it is the level pool's (taken "
                          "off the grid; without xy, the deepest initial water at the full-supply level)")
    crs: str = "EPSG:32649"

    @model_validator(mode="after")
    def _grid_needs_xy(self):
        if self.in_grid and self.xy is None:
            raise ValueError("in_grid: give 'xy', a point inside the reservoir")
        return self


class Boundaries(_Model):
    north: Literal["free", "wall"] = "free"
    south: Literal["free", "wall"] = "free"
    east: Literal["free", "wall"] = "free"
    west: Literal["free", "wall"] = "free"


class Flood(_Model):
    solver: Literal["inertial", "fv"] = "inertial"
    dtype: Literal["float64", "float32"] = "float64"
    manning: float | None = Field(None, gt=0, le=1, description="scalar n; default the city's land-cover map")
    alpha: float = Field(0.5, gt=0, le=1)
    theta: float = Field(0.8, ge=0, le=1)
    threads: int | None = Field(None, ge=1)
    loss_rate_mm_per_h: float = Field(0.0, ge=0, le=500)
    initial_water: Literal["city", "none"] = "city"
    rain: Rain = Field(default_factory=lambda: NoRain(kind="none"))
    inflows: list[Inflow] = Field(default_factory=list)
    sea: Sea = Field(default_factory=Sea)
    boundaries: Boundaries = Field(default_factory=Boundaries)
    reservoir: Reservoir | None = None
    subgrid_factor: int | None = Field(
        None, ge=1, le=10,
        description="subgrid topography: the city is built at resolution_m / subgrid_factor and the flood is "
                    "solved at resolution_m on tables of that finer terrain (docs/user-guide/flood.md)")
    subgrid_face_weight: float = Field(
        0.3, gt=0, le=1,
        description="with subgrid_factor: faces are read at max(mean of the two cells' levels, face bed + weight x "
                    "(upwind level - face bed)); 1 = the upwind level (docs/design/subgrid-face-level.md, "
                    "subgrid-sheet-downscale.md)")
    local_time_steps: int = Field(
        1, ge=1, le=64,
        description="with subgrid_factor: the most sub-steps a step may take in its deepest cells; the cells take "
                    "levels of sub-steps (m, m/2, m/4 .. while even) by their depth, the shallow ones one step "
                    "(1: every cell the same sub-step); 64 makes the 48-h Tam Kỳ run's flood ~3x faster "
                    "(docs/design/subgrid-local-time-steps.md)")

    @model_validator(mode="after")
    def _subgrid_ok(self):
        if self.local_time_steps > 1 and not (self.subgrid_factor is not None and self.subgrid_factor > 1):
            raise ValueError(f"local_time_steps: {self.local_time_steps} needs subgrid topography (subgrid_factor >= 2); "
                             f"got subgrid_factor {self.subgrid_factor!r}")
        if self.subgrid_factor is not None and self.subgrid_factor > 1:
            if self.solver != "inertial" or self.dtype != "float64":
                raise ValueError(f"subgrid_factor: needs solver 'inertial' and dtype 'float64', got solver "
                                 f"{self.solver!r} and dtype {self.dtype!r}")
            if self.reservoir is not None and self.reservoir.in_grid:
                raise ValueError("subgrid_factor: a reservoir filled in the grid (reservoir.in_grid) is not "
                                 "supported with subgrid topography")
        return self


# --------------------------------------------------------------------------------------------
# other components
# --------------------------------------------------------------------------------------------
class Traffic(_Model):
    """Road traffic (``twin.traffic.TrafficModel``) with everyday background demand."""

    enabled: bool = True
    dt: PositiveDuration = 2.0
    background_trips_per_day: float = Field(20000.0, ge=0, le=1e8, description="Poisson, Tam Kỳ daily profile")
    demand_calibration: FilePath | None = Field(
        None, description="background demand per origin zone and hour calibrated from traffic-camera counts "
                          "(JSON of twin.traffic.calibration.DemandCalibration.save)")
    vehicle_mix: dict[Literal["motorbike", "car", "bus", "truck"], Annotated[float, Field(ge=0)]] | None = Field(
        None, description="class shares of background trips (default the traffic model's Tam Kỳ mix)")
    informed_share: float = Field(0.0, ge=0, le=1, description="share of trips rerouting on current times")
    reroute_interval: PositiveDuration = 300.0
    stall_depth_m: dict[Literal["motorbike", "car", "bus", "truck", "emergency"], Annotated[float, Field(gt=0, le=5)]] | None = None
    depth_sample_spacing_m: float = Field(15.0, gt=0, le=1000)
    largest_component_only: bool = True
    record_link_log: bool = False
    time_to_teleport_s: PositiveDuration | None = Field(
        None, description="SUMO-style gridlock escape: a vehicle blocked this long at a link head jumps to the "
                          "next link of its route with room (None: off, strict FIFO)")
    acceleration: bool = Field(True, description="vehicles lose min(held, v/(2a)) on the link after a stop "
                                                  "(TrafficModel accel_mps2); false: the first-order flying start")
    accel_mps2: dict[Literal["motorbike", "car", "bus", "truck", "emergency"], Annotated[float, Field(gt=0, le=20)]] | None = Field(
        None, description="per-class acceleration overrides [m/s2] (default SUMO's class values, twin.traffic.ACCEL_MPS2)")


class People(_Model):
    enabled: bool = True
    agents_per_household: float = Field(1.0, gt=0, le=100)
    sample_fraction: float = Field(0.05, gt=0, le=1, description="share of households simulated as agents")
    params: dict[str, Any] = Field(default_factory=dict, description="passed to PeopleModel")


class Services(_Model):
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict, description="passed to EmergencyServices")


class Sensors(_Model):
    """Observations assimilated each coupling step (``twin.sensors.assimilation.Assimilator``)."""

    enabled: bool = False
    store: FilePath | None = Field(None, description="DuckDB file with the observations")
    assimilation: dict[str, Any] = Field(default_factory=dict, description="rain / tide / inflow / nudging config")


# --------------------------------------------------------------------------------------------
# interventions: the decisions (twin/decisions.py) scheduled at their ``at``
# --------------------------------------------------------------------------------------------
from twin.decisions import (  # noqa: E402  (decisions build on the value types above)
    Breach,
    Decision,
    EvacuationOrder,
    ExtraUnits,
    Levee,
    Pump,
    ReservoirRelease,
    RoadClosure,
    RoadReopen,
    ShelterClose,
    ShelterOpen,
    Warning_,
)

Intervention = Decision


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
class Outputs(_Model):
    fields: list[Literal["depth", "speed", "hazard"]] = Field(default_factory=lambda: ["depth", "speed", "hazard"])
    fields_every: PositiveDuration = 600.0
    fields_dtype: Literal["float32", "float64"] = "float32"
    tables_every: PositiveDuration = 600.0
    kpis_every: PositiveDuration = 600.0
    checkpoint_every: PositiveDuration | None = None
    chunk_records: int = Field(12, ge=1, description="records buffered before a write")
    png: bool = True
    wall_time_limit: PositiveDuration | None = None


# --------------------------------------------------------------------------------------------
# the scenario
# --------------------------------------------------------------------------------------------
_TIME_KEYS = {"at", "until", "peak_time", "start"}


class Scenario(_Model):
    """A validated, frozen scenario. Build it with :func:`load_scenario`."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    city: str = Field(..., description="city bundle name (twin/data/<name>) or path to a bundle folder")
    resolution_m: float = Field(30.0, gt=0, le=1000)
    start: LocalDatetime
    duration: PositiveDuration
    coupling_step: PositiveDuration = 60.0
    seed: int = Field(0, ge=0)
    flood: Flood = Field(default_factory=Flood)
    traffic: Traffic | None = None
    people: People | None = None
    services: Services | None = None
    sensors: Sensors | None = None
    interventions: list[Intervention] = Field(default_factory=list)
    outputs: Outputs = Field(default_factory=Outputs)

    @model_validator(mode="before")
    @classmethod
    def _absolute_times(cls, data: Any) -> Any:
        """Event times given as datetimes become seconds since ``start``."""
        if not isinstance(data, dict) or "start" not in data:
            return data
        try:
            start = _to_local(data["start"])
        except ValueError:
            return data  # the field validator reports it

        def conv(obj: Any, top: bool = False) -> Any:
            if isinstance(obj, dict):
                out = {}
                for k, v in obj.items():
                    if not top and k in _TIME_KEYS and isinstance(v, (_dt.datetime, _dt.date)) or (
                        not top and k in _TIME_KEYS and isinstance(v, str) and re.match(r"^\d{4}-\d\d-\d\d", v)
                    ):
                        out[k] = (_to_local(v) - start).total_seconds()
                    else:
                        out[k] = conv(v)
                return out
            if isinstance(obj, list):
                return [conv(v) for v in obj]
            return obj

        return conv(data, top=True)

    @model_validator(mode="after")
    def _consistent(self):
        n = self.duration / self.coupling_step
        if abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ValueError(
                f"duration ({self.duration:g} s) must be a whole number of coupling steps ({self.coupling_step:g} s)"
            )
        # output intervals and the traffic step fit the coupling step (else the schedules, the traffic
        # model and the coupled clock would refuse them at build, naming no key)
        multiples = [(f"outputs.{k}", getattr(self.outputs, k), self.coupling_step, "coupling_step")
                     for k in ("fields_every", "tables_every", "kpis_every", "checkpoint_every")]
        if self.traffic is not None and self.traffic.enabled:
            multiples += [("coupling_step", self.coupling_step, self.traffic.dt, "traffic.dt"),
                          ("traffic.reroute_interval", self.traffic.reroute_interval, self.traffic.dt, "traffic.dt")]
        for key, v, step, step_key in multiples:
            if v is not None and (v / step < 1 - 1e-9 or abs(v / step - round(v / step)) > 1e-9 * max(1.0, v / step)):
                raise ValueError(f"{key} ({v:g} s) must be a whole multiple of {step_key} ({step:g} s)")
        # interventions after the end are allowed (a shortened run); they are never applied
        res = self.flood.reservoir if self.flood is not None else None
        if res is not None and res.in_grid and any(iv.type == "reservoir_release" for iv in self.interventions):
            raise ValueError(f"interventions: a reservoir_release with flood.reservoir.in_grid ({res.name}): the "
                             "reservoir's water is on the grid and a release would add water at the outlet "
                             "without lowering the lake; model the outflow on the grid (a breach) or use the "
                             "level pool (in_grid: false)")
        return self

    # -- helpers ---------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return int(round(self.duration / self.coupling_step))

    @property
    def start_utc(self) -> _dt.datetime:
        return self.start.astimezone(_dt.UTC)

    def datetime_at(self, t_s: float) -> _dt.datetime:
        return self.start + _dt.timedelta(seconds=float(t_s))

    def to_dict(self) -> dict:
        """JSON-safe dict of the resolved scenario (absolute paths, seconds, ISO datetimes)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def with_overrides(self, overrides: list[str] | dict, source: str = "<overrides>") -> Scenario:
        data = apply_overrides(self.to_dict(), overrides, source=source)
        return _validate(data, source=source, base_dir=None)

    def input_files(self) -> list[Path]:
        """Every file the scenario names (for the manifest's checksums)."""
        out: list[Path] = []

        def walk(obj):
            if isinstance(obj, BaseModel):
                for name in type(obj).model_fields:
                    walk(getattr(obj, name))
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v)
            elif isinstance(obj, Path):
                out.append(obj)

        walk(self)
        return out


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _fmt_loc(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(str(p))
        elif p in ("function-after[_resolve_path(), lax-or-strict[lax=union[json-or-python[json=function-after[Path, str],python=is-instance[Path]],function-after[Path, str]],strict=json-or-python[json=function-after[Path, str],python=is-instance[Path]]]]",):
            continue
        elif "[" in str(p) or str(p).startswith("function-"):
            continue  # pydantic's internal validator names
        else:
            parts.append(str(p))
    return ".".join(parts) or "<top>"


def _lookup(data: Any, loc: tuple) -> Any:
    cur = data
    for p in loc:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int) and p < len(cur):
            cur = cur[p]
        else:
            return None
    return cur


def _format_errors(exc: ValidationError, source: str, data: Any) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        key = _fmt_loc(loc)
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            lines.append(f"{source}: {key}: unknown key (value {err.get('input')!r})")
            continue
        if err.get("type") == "missing":
            lines.append(f"{source}: {key}: required key is missing")
            continue
        value = err.get("input", _lookup(data, loc))
        if key == "<top>" and isinstance(value, dict):
            lines.append(f"{source}: {msg.replace('Value error, ', '')}")
            continue
        if isinstance(value, dict) and len(repr(value)) > 120:
            value = "{" + ", ".join(list(map(str, value))[:8]) + ", ...}"
        msg = msg.replace("Value error, ", "")
        lines.append(f"{source}: {key}: {msg} (value {value!r})")
    return "invalid scenario:\n  " + "\n  ".join(lines)


def _validate(data: Any, source: str, base_dir: Path | None, check_paths: bool = True) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data, context={"base_dir": base_dir, "check_paths": check_paths})
    except ValidationError as exc:
        raise ScenarioError(_format_errors(exc, source, data)) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ScenarioError(f"--set {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ScenarioError(f"--set {item!r}: bad key path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {item!r}: cannot read value {raw!r}: {exc}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | dict | None, source: str = "<overrides>") -> dict:
    """Return a copy of ``data`` with ``key.path=value`` overrides applied (lists indexed by number)."""
    data = copy.deepcopy(data)
    if not overrides:
        return data
    items = overrides.items() if isinstance(overrides, dict) else None
    parsed = (
        [(k.split("."), v) for k, v in items] if items is not None else [_parse_override(o) for o in overrides]
    )
    for path, value in parsed:
        cur: Any = data
        for i, part in enumerate(path[:-1]):
            if isinstance(cur, list):
                try:
                    cur = cur[int(part)]
                except (ValueError, IndexError):
                    raise ScenarioError(
                        f"{source}: --set {'.'.join(path)}: no list item {part!r} at {'.'.join(path[:i]) or '<top>'}"
                    ) from None
            elif isinstance(cur, dict):
                if cur.get(part) is None:
                    cur[part] = {}
                cur = cur[part]
            else:
                raise ScenarioError(
                    f"{source}: --set {'.'.join(path)}: {'.'.join(path[:i])} is a value ({cur!r}), not a section"
                )
        last = path[-1]
        if not isinstance(cur, list | dict):
            raise ScenarioError(
                f"{source}: --set {'.'.join(path)}: {'.'.join(path[:-1])} is a value ({cur!r}), not a section")
        if isinstance(cur, list):
            try:
                cur[int(last)] = value
            except (ValueError, IndexError):
                raise ScenarioError(f"{source}: --set {'.'.join(path)}: no list item {last!r}") from None
        else:
            cur[last] = value
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario file not found") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a folder, not a scenario YAML file") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not a scenario YAML file (not UTF-8 text: byte {exc.start})") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ScenarioError(f"{path}: the file is empty")
    return data


def _deep_merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _resolve_relative_paths(data: Any, base: Path) -> Any:
    """Paths in an extended (base) file stay relative to *that* file."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ("file", "store", "track_file", "demand_calibration") and isinstance(v, str) and not Path(v).is_absolute():
                out[k] = str((base / v).resolve())
            else:
                out[k] = _resolve_relative_paths(v, base)
        return out
    if isinstance(data, list):
        return [_resolve_relative_paths(v, base) for v in data]
    return data


def read_scenario_data(path: Path, _seen: tuple = ()) -> dict:
    """The raw mapping of a scenario file, with ``extends: other.yaml`` merged in (the child's keys
    win; mappings merge key by key, lists and values replace)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ScenarioError(f"{path}: extends: cycle through {' -> '.join(map(str, _seen))}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    ext = data.pop("extends", None)
    if ext is None:
        return data
    if not isinstance(ext, str):
        raise ScenarioError(f"{path}: extends: expected a file name, got {ext!r}")
    base_path = (path.resolve().parent / ext).resolve()
    if not base_path.exists():
        raise ScenarioError(f"{path}: extends: file not found: {base_path}")
    base = read_scenario_data(base_path, _seen + (path.resolve(),))
    base = _resolve_relative_paths(base, base_path.parent)
    return _deep_merge(base, data)


def load_scenario(path: str | Path, overrides: list[str] | dict | None = None, check_paths: bool = True) -> Scenario:
    """Read, override and validate a scenario file. Raises :class:`ScenarioError` (a ``ValueError``).

    A file may start from another with ``extends: base.yaml`` (a what-if that changes a few keys).
    """
    path = Path(path)
    data = read_scenario_data(path)
    data = apply_overrides(data, overrides, source=str(path))
    base = path.resolve().parent
    # a city given as a relative path (not a bundle name) is resolved against the file
    city = data.get("city")
    if isinstance(city, str) and ("/" in city or city.startswith(".")):
        data["city"] = str((base / city).resolve())
    return _validate(data, source=str(path), base_dir=base, check_paths=check_paths)


# alias named in DESIGN.md
load = load_scenario
