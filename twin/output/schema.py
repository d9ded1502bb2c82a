"""The run folder's schema, as code: every file a run writes, its columns or variables, dtypes and units.

Writers (``twin.output.writers``) and recorders (``twin.output.recorders``) check what they write
against it; readers (the dashboard, review, compare) read through it. A file that does not match is
refused with a message naming the file, the column (or key, or variable), and the expected and the
actual type: it never flows on to a figure or a KPI.

- :data:`TABLES`: the Parquet tables (``links.parquet`` ...), each a :class:`Table` of :class:`Column`.
- :data:`JSON_FILES`: ``manifest.json`` and ``kpis.json``, their top-level keys (:class:`JsonKey`).
- :data:`FIELDS_NC`: the variables of ``fields.nc`` with their CF attributes (:class:`NcVariable`).
- :data:`RASTERS`: the GeoTIFFs (``max_depth.tif``; ``compare_<run>.tif`` written by ``twin compare``).
- :data:`OTHER_FILES`: the rest (scenario, PNG map, checkpoints), described in words.

Helpers: :func:`validate_frame`, :func:`validate_json`, :func:`validate_netcdf`, :func:`read_table`,
:func:`empty_frame`, :func:`nc_attrs`, :func:`raster_for` and :func:`schema_markdown` (the Markdown
reference written to ``docs/reference/run-folder.md``).

Logical dtypes of a table column: ``int64``, ``float64``, ``bool``, ``string`` (pandas ``str`` or
``object`` holding text; a categorical column of text is accepted too, as pyarrow dictionary-encodes
such columns) and ``list<int64>`` (a list of integers per row). Integer columns have no missing
values: ``-1`` stands for "none" where the description says so; floats use NaN for "not (yet)".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SCHEMA_VERSION", "RunSchemaError", "Column", "Table", "JsonKey", "JsonFile", "NcVariable", "Raster",
    "TABLES", "JSON_FILES", "FIELDS_NC", "RASTERS", "OTHER_FILES", "DECISION_SOURCES", "DECISION_OUTCOMES",
    "validate_frame", "validate_json", "validate_netcdf", "read_table", "empty_frame", "nc_attrs",
    "raster_for", "schema_markdown",
]

#: bumped whenever a file's columns, dtypes or meaning change; written to manifest.json
SCHEMA_VERSION = 1

DTYPES = ("int64", "float64", "bool", "string", "list<int64>")
DECISION_SOURCES = ("scenario", "api", "dashboard", "exercise", "replay")
DECISION_OUTCOMES = ("applied", "rejected")


class RunSchemaError(ValueError):
    """A run-folder file does not match :mod:`twin.output.schema`; the message names file and column."""


# =============================================================================================
# declarations
# =============================================================================================
@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    units: str          # UDUNITS-style ("m", "s", "m s-1"); "1" for a ratio; "" where units do not apply
    description: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name!r}: unknown dtype {self.dtype!r} (one of {', '.join(DTYPES)})")


@dataclass(frozen=True)
class Table:
    name: str                       # file name, e.g. "links.parquet"
    description: str
    columns: tuple[Column, ...]
    #: a completed run (manifest status "completed") always has this file; others may lack it
    #: (runs written before the table existed): read_table then gives a typed empty frame
    required: bool = True

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}: no column {name!r} in the schema")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(name: str, dtype: str, units: str, description: str) -> Column:
    return Column(name, dtype, units, description)


T_S = "model time since the scenario start"
XY = "EPSG:32649 (UTM 49N)"

_TABLES = (
    Table("links.parquet", "Road links, one row per link per table record (every `outputs.tables_every`).", (
        _c("t_s", "float64", "s", f"{T_S} of the record"),
        _c("link_id", "int64", "", "link index in the road network (0 … n_links-1)"),
        _c("depth_m", "float64", "m", "water depth a vehicle meets on the link (deepest sample along it)"),
        _c("speed_factor", "float64", "1", "flooded free speed / speed limit (Pregnolato et al. 2017)"),
        _c("closed", "bool", "", "closed to cars (by water or by a decision)"),
        _c("closed_by_water", "bool", "", "closed by water alone (not by a road-closure decision)"),
        _c("flow_veh_per_s", "float64", "veh s-1", "vehicles leaving the link per second over the last step"),
        _c("density_veh_per_m", "float64", "veh m-1", "vehicles on the link per metre of link, all lanes"),
        _c("speed_mps", "float64", "m s-1", "speed of the triangular diagram at the mean PCU density (free speed when empty)"),
        _c("queue_veh", "float64", "veh", "vehicles that reached the end of the link and wait to leave"),
    )),
    Table("people.parquet", "Households and tourist parties, one row per agent per table record.", (
        _c("t_s", "float64", "s", f"{T_S} of the record"),
        _c("agent_id", "int64", "", "agent index (household or tourist party)"),
        _c("kind", "string", "", "`household` or `tourist`"),
        _c("state", "string", "", "home, upper_floor, walking, driving, sheltered, evacuated, trapped, …"),
        _c("x", "float64", "m", f"easting, {XY}"),
        _c("y", "float64", "m", f"northing, {XY}"),
        _c("persons", "float64", "1", "persons present, scaled by 1/sample_fraction (members in hospital excluded)"),
        _c("members", "int64", "1", "simulated persons present"),
        _c("warned", "bool", "", "the agent has received a warning"),
        _c("warned_s", "float64", "s", f"{T_S} of the first warning (NaN: not warned)"),
        _c("action", "string", "", "protective action chosen: none, upper_floor, shelter, relatives"),
        _c("shelter", "int64", "", "shelter index the agent heads to or is in (-1: none)"),
        _c("hazard_rating", "float64", "1", "FD2321 hazard rating HR = d (v + 0.5) + DF the agent meets now"),
        _c("max_hazard_rating", "float64", "1", "largest hazard rating the agent has met so far"),
        _c("depth_m", "float64", "m", "water depth at the agent's cell"),
        _c("hazard_class", "string", "", "FD2321 class of hazard_rating: none, low, moderate, significant, extreme"),
    )),
    Table("units.parquet", "Emergency units, one row per unit per table record.", (
        _c("t_s", "float64", "s", f"{T_S} of the record"),
        _c("unit_id", "int64", "", "unit index"),
        _c("unit_kind", "string", "", "ambulance, boat, …"),
        _c("x", "float64", "m", f"easting of the unit at the record time (along its route while it moves), {XY}"),
        _c("y", "float64", "m", f"northing of the unit at the record time (along its route while it moves), {XY}"),
        _c("phase", "string", "", "idle, to_scene, on_scene, to_hospital, …"),
        _c("incident_id", "int64", "", "incident the unit works on (-1: none)"),
        _c("available", "bool", "", "the unit can take a new call"),
    ), required=False),
    Table("trips.parquet", "Vehicle trips (written at the end of the run), one row per trip.", (
        _c("trip_id", "int64", "", "trip index"),
        _c("origin", "int64", "", "origin road node id"),
        _c("destination", "int64", "", "destination road node id"),
        _c("vehicle_class", "string", "", "motorbike, car, bus, truck, emergency"),
        _c("depart_s", "float64", "s", f"{T_S} of departure"),
        _c("arrive_s", "float64", "s", f"{T_S} of arrival (NaN: not arrived)"),
        _c("travel_time_s", "float64", "s", "arrive_s - depart_s (NaN: not arrived)"),
        _c("state", "string", "", "scheduled, waiting, on_link, arrived, stalled, stranded"),
        _c("current_link", "int64", "", "link the vehicle is on at the end (-1: none)"),
        _c("route", "list<int64>", "", "link ids of the route"),
        _c("n_links", "int64", "1", "links on the route"),
        _c("free_flow_time_s", "float64", "s", "free-flow shortest travel time origin → destination"),
    )),
    Table("incidents.parquet", "Emergency calls and their handling (written at the end), one row per incident.", (
        _c("incident_id", "int64", "", "incident index"),
        _c("kind", "string", "", "`rescue` or `medical`"),
        _c("priority", "int64", "1", "1 (highest) …"),
        _c("call_s", "float64", "s", f"{T_S} of the call"),
        _c("x", "float64", "m", f"easting, {XY}"),
        _c("y", "float64", "m", f"northing, {XY}"),
        _c("agent_id", "int64", "", "calling agent (-1: none)"),
        _c("persons", "int64", "1", "persons concerned"),
        _c("depth_m", "float64", "m", "water depth at the incident when called"),
        _c("unit_id", "int64", "", "unit sent (-1: none)"),
        _c("unit_kind", "string", "", "kind of the unit sent (missing: none)"),
        _c("dispatch_s", "float64", "s", f"{T_S} of dispatch (NaN: never)"),
        _c("arrive_scene_s", "float64", "s", f"{T_S} the unit reached the scene (NaN: never)"),
        _c("depart_scene_s", "float64", "s", f"{T_S} the unit left the scene (NaN: never)"),
        _c("at_hospital_s", "float64", "s", f"{T_S} the patient reached a hospital (NaN: never)"),
        _c("hospital", "int64", "", "hospital index (-1: none)"),
        _c("shelter", "int64", "", "shelter the rescued were taken to (-1: none)"),
        _c("clear_s", "float64", "s", f"{T_S} the incident was closed (NaN: still open)"),
        _c("outcome", "string", "", "waiting, dispatched, hospital, rescued_to_shelter, cancelled_…, …"),
        _c("response_time_s", "float64", "s", "arrive_scene_s - call_s (NaN: not reached)"),
        _c("route_length_m", "float64", "m", "length of the unit's route to the scene"),
        _c("travel_time_s", "float64", "s", "the unit's travel time to the scene"),
    )),
    Table("shelters.parquet", "The people model's shelters in its order (written at the end): the `shelter` "
          "columns of people.parquet and incidents.parquet are indices into this list, not place ids.", (
        _c("shelter", "int64", "", "shelter index (0 … n-1), as in people.parquet"),
        _c("place_id", "string", "", "the city's place (places table) it is; empty: opened by a decision at a point"),
        _c("name", "string", "", "name of the place or of the shelter opened"),
        _c("kind", "string", "", "place kind: shelter, school, public_building, …"),
        _c("x", "float64", "m", f"easting, {XY}"),
        _c("y", "float64", "m", f"northing, {XY}"),
        _c("capacity", "float64", "1", "persons it admits at the end of the run (scaled like people.parquet "
           "persons; a closed shelter's is what it held when closed)"),
    ), required=False),
    Table("unit_actions.parquet", "Every move and call of every unit (written at the end), one row per action.", (
        _c("t_s", "float64", "s", f"{T_S} of the action"),
        _c("unit_id", "int64", "", "unit index (-1: none, e.g. a call not yet served)"),
        _c("unit_kind", "string", "", "ambulance, boat, … (missing: none)"),
        _c("incident_id", "int64", "", "incident index (-1: none)"),
        _c("action", "string", "", "call, dispatched, on_scene, drop_off, at_station, patient_transfer, …"),
        _c("x", "float64", "m", f"easting, {XY}"),
        _c("y", "float64", "m", f"northing, {XY}"),
        _c("detail", "string", "", "free text"),
    ), required=False),
    Table("decisions.parquet", "Every decision the run received, applied or refused, in order "
          "(`twin replay` re-runs a run from its scenario, seed and this log).", (
        _c("decision_id", "int64", "", "sequence number of the decision in the run"),
        _c("t_s", "float64", "s", f"{T_S} at which the decision acted (the start of the coupling step holding `at_s`)"),
        _c("at_s", "float64", "s", f"{T_S} the decision was asked for"),
        _c("wall_time", "string", "", "ISO-8601 UTC wall-clock time it was applied"),
        _c("source", "string", "", "one of: " + ", ".join(DECISION_SOURCES)),
        _c("issuer", "string", "", "who issued it (seat, user or `scenario`)"),
        _c("type", "string", "", "decision kind (warning, evacuation_order, road_closure, …)"),
        _c("params", "string", "", "JSON object of the decision's fields"),
        _c("outcome", "string", "", "one of: " + ", ".join(DECISION_OUTCOMES)),
        _c("message", "string", "", "what it did, or why it was refused"),
        _c("parent_id", "int64", "", "the decision that queued this one (a closure's `until` reopening), -1: none"),
    ), required=False),
    Table("injects.parquet", "An exercise's injects that fired (`twin exercise`, twin/exercise/session.py), in "
          "the order they fired; their decisions are in decisions.parquet (source `exercise`).", (
        _c("inject_id", "int64", "", "index of the inject in the exercise file's `injects` list"),
        _c("t_s", "float64", "s", f"{T_S} the inject was timed at (it fired at the start of the coupling step holding it)"),
        _c("message", "string", "", "what the trainees were told"),
        _c("decision_id", "int64", "", "the decision the inject submitted (decisions.parquet), -1: none or refused"),
        _c("fired_wall_time", "string", "", "ISO-8601 UTC wall-clock time it fired"),
    ), required=False),
)
TABLES: dict[str, Table] = {t.name: t for t in _TABLES}


@dataclass(frozen=True)
class JsonKey:
    name: str
    types: tuple[str, ...]   # of: string, number, integer, boolean, object, array, null
    units: str
    description: str
    required: bool = True


@dataclass(frozen=True)
class JsonFile:
    name: str
    description: str
    keys: tuple[JsonKey, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


def _k(name, types, units, description, required=True) -> JsonKey:
    return JsonKey(name, tuple(types.split("|")), units, description, required)


NUM = "number|null"   # non-finite floats are written as null
_JSON = (
    JsonFile("manifest.json", "What was run, by which code, on which inputs, and how far it got "
             "(rewritten at start, at each checkpoint and at the end).", (
        _k("scenario", "object", "", "the validated scenario as run"),
        _k("scenario_name", "string", "", "scenario name"),
        _k("status", "string", "", "running, checkpointed or completed"),
        _k("stop_reason", "string|null", "", "why the run stopped (null while running)"),
        _k("seed", "integer", "", "the scenario's seed"),
        _k("seed_entropy", "string", "", "entropy of the run's numpy SeedSequence"),
        _k("seed_spawn_key", "array", "", "spawn key of that SeedSequence"),
        _k("package", "string", "", "distribution name"),
        _k("package_version", "string", "", "twin version"),
        _k("git_hash", "string|null", "", "commit of the code (`-dirty` when modified; null outside git)"),
        _k("python", "string", "", "Python version"),
        _k("platform", "string", "", "operating system"),
        _k("input_checksums_sha256", "object", "", "input file → SHA-256 (null: unreadable)"),
        _k("components", "array", "", "components that ran (flood, traffic, people, services)"),
        _k("coupling_step_s", "number", "s", "coupling step Δt_c"),
        _k("iteration", "integer", "1", "coupling steps done"),
        _k("time_s", "number", "s", f"{T_S} reached"),
        _k("stop_time_s", "number", "s", "model time the run was to stop at"),
        _k("wall_time_s", "number", "s", "wall-clock time spent stepping"),
        _k("phase_wall_s", "object", "s", "wall-clock time per phase of the coupling step"),
        _k("written_utc", "string", "", "ISO-8601 UTC time this manifest was written"),
        _k("files", "array", "", "files in the run folder when this manifest was written"),
        _k("schema_version", "integer", "", "version of this schema (twin.output.schema.SCHEMA_VERSION)"),
        _k("warnings", "array", "", "what the build warned about (e.g. places that fall in water at this "
           "resolution)", False),
    )),
    JsonFile("kpis.json", "Key performance indicators of the run (definitions: twin/output/kpis.py). "
             "Sections of components that did not run are absent.", (
        _k("scenario", "string", "", "scenario name"),
        _k("start_local", "string", "", "scenario start, ISO-8601 local time with UTC offset"),
        _k("end_time_s", "number", "s", f"{T_S} at the end"),
        _k("definitions", "string", "", "where the KPIs are defined"),
        _k("series_t_s", "array", "s", "times of the KPI series (every outputs.kpis_every)"),
        _k("flooded_area_m2", "array", "m2", "per series time: {depth class: flooded land area}"),
        _k("volume_m3", "array", "m3", "per series time: water volume on the grid (null: no flood)"),
        _k("flooded_area_final_m2", "object", "m2", "flood: {depth class: land area} at the end", False),
        _k("flooded_area_max_m2", NUM, "m2", "flood: land area flooded > 0.1 m at any time", False),
        _k("land_area_m2", NUM, "m2", "flood: land area of the grid", False),
        _k("volume_balance", "object", "m3", "flood: volume, initial, inflow, outflow, lost, error", False),
        _k("max_depth_at_places", "array", "m", "flood: per place {place_id, name, kind, x, y, max_depth_m, "
           "arrival_time_s, read, row, col}: the water a person there meets (above the normal water surface, "
           "on land near the place)", False),
        _k("places_in_water", "array", "", "flood: places whose own cell is permanent water at this resolution "
           "(they read a nearby land cell instead)", False),
        _k("direct_damage", "object", "USD", "flood: depth-damage estimate with its method", False),
        _k("reservoir", "object", "m", "flood: an operated reservoir (flood.reservoir.operation rule or manual): "
           "max_level_m, final_level_m, peak_release_m3_s, peak_inflow_m3_s, fuse_opened_at_s, events", False),
        _k("economy_exposure", "object", "", "flood: industrial zones, tourism sites and hotels: per place max depth, "
           "workers/guests exposed, damage fraction, days of disruption (assumed table); totals", False),
        _k("people_exposure_person_hours", "object", "h", "people: person-hours per hazard class", False),
        _k("evacuation_clearance_s", "object", "s", "people: p50, p90, p95 clearance times", False),
        _k("evacuated_before_water", "object", "1", "people: persons who reached safety before meeting water "
           "≥ 0.1 m, after it, or met it and never did", False),
        _k("people_states", "array", "1", "people: per series time {state: persons}", False),
        _k("people_model", "object|null", "", "people: the people model's own summary", False),
        _k("ambulance_response_s", "object", "s", "services: response-time statistics", False),
        _k("services_model", "object|null", "", "services: the services model's own summary", False),
        _k("road_links_closed_share", "array", "1", "traffic: per table time {t_s, share of links closed}", False),
        _k("road_links_closed_share_max", NUM, "1", "traffic: largest share of links closed", False),
        _k("travel_time_index", "object", "1", "traffic: completed trips and mean travel / free-flow time", False),
    )),
)
JSON_FILES: dict[str, JsonFile] = {j.name: j for j in _JSON}


@dataclass(frozen=True)
class NcVariable:
    name: str
    dims: tuple[str, ...]
    dtypes: tuple[str, ...]          # numpy dtype names allowed
    attrs: dict[str, str]            # CF attributes written as given: units, long_name, standard_name, comment ...
    description: str
    required: bool = True            # False: only when listed in the scenario's outputs.fields
    units_prefix: bool = False       # units is a prefix (time: "seconds since <start>")


FIELD_TIME_DIMS = ("time", "y", "x")
_FIELD_DT = ("float32", "float64")   # outputs.fields_dtype
_WATER_COMMENT = (
    "{what} on every valid cell, permanent water (sea, rivers, a reservoir filled on the grid) included; a "
    "lumped reservoir's lake (flood.reservoir without in_grid) is drained on the grid, its level is in kpis.json. "
    "On cells with land == 1 it is CF {name}; CF has no standard name for the whole field, so none is given.")
_NC = (
    NcVariable("time", ("time",), ("float64",), {
        "standard_name": "time", "long_name": "time since scenario start", "units": "seconds since",
        "calendar": "standard", "axis": "T"},
        "model time; units `seconds since <scenario start, local time with its UTC offset>`", units_prefix=True),
    NcVariable("x", ("x",), ("float64",), {
        "standard_name": "projection_x_coordinate", "long_name": "x coordinate of cell centre (easting)",
        "units": "m", "axis": "X"}, f"cell-centre easting, {XY}"),
    NcVariable("y", ("y",), ("float64",), {
        "standard_name": "projection_y_coordinate", "long_name": "y coordinate of cell centre (northing)",
        "units": "m", "axis": "Y"}, f"cell-centre northing, {XY}; row 0 is the north edge"),
    NcVariable("spatial_ref", (), ("int32",), {"long_name": "coordinate reference system"},
               "CF grid mapping: pyproj CRS.to_cf() attributes, crs_wkt, spatial_ref (WKT), GeoTransform"),
    NcVariable("elevation", ("y", "x"), ("float32",), {
        "standard_name": "ground_level_altitude", "long_name": "ground elevation", "units": "m"},
        "height of the ground (river bed and sea floor included) above the geoid; NaN outside the valid area"),
    NcVariable("land", ("y", "x"), ("int8",), {
        "long_name": "land cell (1) or sea / permanent water / nodata (0); flooded-area KPIs count land cells only",
        "units": "1"}, "land mask (not CF land_binary_mask: permanent inland water is 0 here)"),
    NcVariable("depth", FIELD_TIME_DIMS, _FIELD_DT, {
        "long_name": "surface water depth", "units": "m", "twin_name": "surface_water__depth",
        "comment": _WATER_COMMENT.format(what="Depth of the water above the ground", name="flood_water_thickness")},
        "water depth above the ground (NaN: outside the valid area)", required=False),
    NcVariable("speed", FIELD_TIME_DIMS, _FIELD_DT, {
        "long_name": "depth-averaged water speed", "units": "m s-1", "twin_name": "surface_water__speed",
        "comment": _WATER_COMMENT.format(what="Speed of the water", name="flood_water_speed")},
        "magnitude of the depth-averaged velocity", required=False),
    NcVariable("hazard", FIELD_TIME_DIMS, _FIELD_DT, {
        "long_name": "flood hazard rating HR = d (v + 0.5) + DF (Defra/EA FD2321)", "units": "1",
        "twin_name": "surface_water__hazard_rating"},
        "hazard to people (twin/hazard.py); its classes use the scenario's thresholds", required=False),
)
FIELDS_NC: dict[str, NcVariable] = {v.name: v for v in _NC}
FIELDS_NC_GLOBALS = ("Conventions", "title", "institution", "source", "history")


@dataclass(frozen=True)
class Raster:
    name: str            # file name or pattern with {run}
    dtype: str
    units: str
    description: str     # band description
    nodata: float = -9999.0

    def matches(self, filename: str) -> bool:
        pat = "^" + re.escape(self.name).replace(re.escape("{run}"), ".+") + "$"
        return re.match(pat, filename) is not None


_RASTERS = (
    Raster("max_depth.tif", "float32", "m", "maximum water depth over the run (permanent water included)"),
    Raster("compare_{run}.tif", "float32", "m", "difference of maximum water depth: this run minus the run "
           "named in the file name (written by twin compare)"),
)
RASTERS: dict[str, Raster] = {r.name: r for r in _RASTERS}

OTHER_FILES: dict[str, str] = {
    "scenario.yaml": "the validated scenario as run (`twin run` on this file repeats the run)",
    "max_depth.png": "map of the maximum flood depth on land ≥ 5 cm over a hillshade (when outputs.png)",
    "checkpoints/": "restart states (`twin run --resume`, `twin fork`); format owned by twin/output/checkpoint.py",
    "<table>.parts/": "Parquet parts of a table while the run is going; merged into <table>.parquet at the end",
    "compare_{run}.png": "map of compare_{run}.tif (written by twin compare)",
    "live.json": "a live twin's status, rewritten every step (twin/sensors/live.py)",
    "sensors.duckdb": "a live twin's sensor store when no other store is given (twin/sensors/store.py)",
    "exercise.yaml": "an exercise run (`twin exercise`): the exercise file as run (scenario keys, `roles`, "
                     "`injects`, `objectives`; twin/exercise/spec.py)",
    "seats.json": "an exercise run: seat name → SHA-256 of its bearer token, the decision kinds it may issue and "
                  "whether it steers the clock (mode 0600; the tokens themselves are printed at start only)",
}


@dataclass
class _Problems:
    file: str
    items: list[str] = field(default_factory=list)

    def raise_if_any(self) -> None:
        if self.items:
            raise RunSchemaError(f"{self.file}: " + "; ".join(self.items)
                                 + " (the run-folder schema is twin/output/schema.py)")


# =============================================================================================
# tables
# =============================================================================================
def _table(name: str) -> Table:
    key = name if name.endswith(".parquet") else f"{name}.parquet"
    try:
        return TABLES[key]
    except KeyError:
        raise RunSchemaError(f"{key}: not a table of the run folder (known: {', '.join(TABLES)})") from None


def _dtype_matches(s: pd.Series, want: str) -> bool:
    dt = s.dtype
    if want == "float64":
        return dt == np.float64
    if want == "int64":
        return dt == np.int64
    if want == "bool":
        return dt == np.bool_
    if want == "string":
        if isinstance(dt, pd.StringDtype):
            return True
        if isinstance(dt, pd.CategoricalDtype):
            return pd.api.types.infer_dtype(dt.categories, skipna=True) in ("string", "empty")
        if dt == object:
            return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")
        return False
    if want == "list<int64>":
        if dt != object:
            return False
        for v in s:
            if v is None:
                continue
            if not isinstance(v, (list, tuple, np.ndarray)):
                return False
            a = np.asarray(v)
            if a.size and a.dtype.kind not in "iu":
                return False
        return True
    return False


def _dtype_name(s: pd.Series) -> str:
    dt = s.dtype
    if dt == object:
        kind = pd.api.types.infer_dtype(s, skipna=True)
        return f"object ({kind})"
    return str(dt)


def validate_frame(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Check ``df`` against the schema of table ``name`` (``"links"`` or ``"links.parquet"``).

    Raises :class:`RunSchemaError` naming the file and every missing, extra or mistyped column with
    the expected and actual dtype. Returns ``df`` unchanged."""
    table = _table(name)
    if not isinstance(df, pd.DataFrame):
        raise RunSchemaError(f"{table.name}: expected a pandas DataFrame, got {type(df).__name__}")
    p = _Problems(table.name)
    have = [str(c) for c in df.columns]
    dup = sorted({c for c in have if have.count(c) > 1})
    if dup:
        p.items.append(f"duplicate columns {dup}")
    for col in table.columns:
        if col.name not in df.columns:
            p.items.append(f"column {col.name!r} is missing (expected {col.dtype}: {col.description})")
        elif col.name not in dup and not _dtype_matches(df[col.name], col.dtype):
            p.items.append(f"column {col.name!r} has dtype {_dtype_name(df[col.name])}, expected {col.dtype}")
    extra = [c for c in have if c not in table.names]
    for c in extra:
        p.items.append(f"column {c!r} is not in the schema (declare it in twin/output/schema.py with dtype and units)")
    p.raise_if_any()
    return df


_PANDAS_DTYPE = {"int64": "int64", "float64": "float64", "bool": "bool", "string": "str", "list<int64>": "object"}


def empty_frame(name: str) -> pd.DataFrame:
    """A frame with no rows and the table's columns and dtypes."""
    table = _table(name)
    return pd.DataFrame({c.name: pd.Series(dtype=_PANDAS_DTYPE[c.dtype]) for c in table.columns})


def _run_completed(run_dir: Path) -> bool:
    f = run_dir / "manifest.json"
    try:
        return json.loads(f.read_text(encoding="utf-8")).get("status") == "completed"
    except (OSError, ValueError, AttributeError):
        return False


def read_table(run_dir: str | Path, name: str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read table ``name`` of a run folder through the schema.

    Missing file: a typed empty frame, unless the run is completed (manifest status) and the table is
    one every completed run has (:attr:`Table.required`): then :class:`RunSchemaError`. A file with no
    rows reads as the typed empty frame (older runs wrote fewer columns there). A file that cannot be
    read, or whose columns or dtypes differ from the schema, raises :class:`RunSchemaError` naming the
    file and column. ``columns`` reads only those (each must be in the schema)."""
    table = _table(name)
    run_dir = Path(run_dir)
    f = run_dir / table.name
    if columns is not None:
        unknown = [c for c in columns if c not in table.names]
        if unknown:
            raise RunSchemaError(f"{f}: columns {unknown} are not in the schema of {table.name}")
    if not f.exists():
        if table.required and _run_completed(run_dir):
            raise RunSchemaError(f"{f}: missing, but the run is completed and every completed run has it")
        df = empty_frame(table.name)
        return df[columns] if columns is not None else df
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(f).names
        df = pd.read_parquet(f, columns=columns)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise RunSchemaError(f"{f}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    if len(df) == 0:  # no rows, no values to misread: older runs wrote empty tables with fewer columns
        df = empty_frame(table.name)
        return df[columns] if columns is not None else df
    if columns is None:
        _validate_at(f, table.name, df)
    else:
        missing = [c for c in columns if c not in names]
        if missing:
            raise RunSchemaError(f"{f}: column {missing[0]!r} is missing (expected "
                                 f"{table.column(missing[0]).dtype})")
        p = _Problems(str(f))
        for c in columns:
            want = table.column(c).dtype
            if not _dtype_matches(df[c], want):
                p.items.append(f"column {c!r} has dtype {_dtype_name(df[c])}, expected {want}")
        p.raise_if_any()
    return df


def _validate_at(path: Path, name: str, df: pd.DataFrame) -> None:
    try:
        validate_frame(name, df)
    except RunSchemaError as exc:
        msg = str(exc)
        raise RunSchemaError(str(path) + msg[len(_table(name).name):]) from None


# =============================================================================================
# JSON
# =============================================================================================
def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, np.integer)):
        return "integer"
    if isinstance(v, (float, np.floating)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return type(v).__name__


def validate_json(name: str, obj: Any) -> Any:
    """Check the top-level keys of ``manifest.json`` or ``kpis.json`` (missing, extra, wrong type)."""
    try:
        spec = JSON_FILES[name]
    except KeyError:
        raise RunSchemaError(f"{name}: not a JSON file of the run folder (known: {', '.join(JSON_FILES)})") from None
    if not isinstance(obj, dict):
        raise RunSchemaError(f"{name}: expected a JSON object, got {_json_type(obj)}")
    p = _Problems(name)
    for k in spec.keys:
        if k.name not in obj:
            if k.required:
                p.items.append(f"key {k.name!r} is missing (expected {'|'.join(k.types)})")
            continue
        t = _json_type(obj[k.name])
        ok = t in k.types or (t == "integer" and "number" in k.types)
        if not ok:
            p.items.append(f"key {k.name!r} has type {t}, expected {'|'.join(k.types)}")
    for extra in (str(x) for x in obj if x not in spec.names):
        p.items.append(f"key {extra!r} is not in the schema (declare it in twin/output/schema.py)")
    p.raise_if_any()
    return obj


# =============================================================================================
# fields.nc and GeoTIFFs
# =============================================================================================
def nc_attrs(name: str) -> dict[str, str]:
    """CF attributes to write on ``fields.nc`` variable ``name`` (units, long_name, standard_name …)."""
    try:
        return dict(FIELDS_NC[name].attrs)
    except KeyError:
        raise RunSchemaError(f"fields.nc: variable {name!r} is not in the schema (known: {', '.join(FIELDS_NC)})") from None


def validate_netcdf(path: str | Path) -> None:
    """Check a ``fields.nc``: every variable declared, with its dims, dtype and CF attributes exactly as
    the schema gives them (a ``standard_name`` the schema does not give is an error)."""
    import netCDF4

    path = Path(path)
    p = _Problems(str(path))
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise RunSchemaError(f"{path}: cannot be opened as NetCDF ({exc})") from None
    with ds:
        for g in ("Conventions",):
            if g not in ds.ncattrs():
                p.items.append(f"global attribute {g!r} is missing")
        for vname, var in ds.variables.items():
            spec = FIELDS_NC.get(vname)
            if spec is None:
                p.items.append(f"variable {vname!r} is not in the schema")
                continue
            if tuple(var.dimensions) != spec.dims:
                p.items.append(f"variable {vname!r} has dims {tuple(var.dimensions)}, expected {spec.dims}")
            if str(var.dtype) not in spec.dtypes:
                p.items.append(f"variable {vname!r} has dtype {var.dtype}, expected {'|'.join(spec.dtypes)}")
            have = {k: var.getncattr(k) for k in var.ncattrs()}
            for k, want in spec.attrs.items():
                got = have.get(k)
                if got is None:
                    p.items.append(f"variable {vname!r} lacks attribute {k!r} (expected {want!r})")
                elif k == "units" and spec.units_prefix:
                    if not str(got).startswith(want):
                        p.items.append(f"variable {vname!r} has units {got!r}, expected {want!r} …")
                elif str(got) != want:
                    p.items.append(f"variable {vname!r} has {k} {got!r}, expected {want!r}")
            if "standard_name" in have and "standard_name" not in spec.attrs:
                p.items.append(f"variable {vname!r} has standard_name {have['standard_name']!r}, "
                               "but the schema gives it none")
        for vname, spec in FIELDS_NC.items():
            if spec.required and vname not in ds.variables:
                p.items.append(f"variable {vname!r} is missing")
    p.raise_if_any()


def raster_for(filename: str) -> Raster:
    """The :class:`Raster` declaration of a GeoTIFF of the run folder, by file name."""
    for r in RASTERS.values():
        if r.matches(filename):
            return r
    raise RunSchemaError(f"{filename}: not a GeoTIFF of the run folder (known: {', '.join(RASTERS)})")


# =============================================================================================
# Markdown reference
# =============================================================================================
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def schema_markdown() -> str:
    """The run-folder reference in Markdown (docs/reference/run-folder.md is generated from it)."""
    out = [
        "# Run folder reference",
        "",
        "<!-- generated from twin/output/schema.py by tools/gen_reference.py: edit the schema, not this file -->",
        "",
        f"Schema version {SCHEMA_VERSION}. Every file `twin run` writes into a run folder. The recorders check "
        "what they write against this schema and the dashboard reads through it: a file that differs is refused "
        "with a message naming the file and the column.",
        "",
        "Times are model seconds since the scenario start (`start` in scenario.yaml, local time, UTC+7); "
        "coordinates are EPSG:32649 (UTM zone 49N) metres. Integer columns use -1 for \"none\"; float columns "
        "use NaN for \"not (yet)\". Units are UDUNITS strings (`1`: dimensionless).",
        "",
        "| file | what |",
        "|---|---|",
    ]
    for t in TABLES.values():
        out.append(f"| `{t.name}` | {_md_cell(t.description)} |")
    for j in JSON_FILES.values():
        out.append(f"| `{j.name}` | {_md_cell(j.description)} |")
    out.append("| `fields.nc` | gridded fields (NetCDF-4, CF-1.8) every `outputs.fields_every` |")
    for r in RASTERS.values():
        out.append(f"| `{r.name}` | {_md_cell(r.description)} |")
    for n, d in OTHER_FILES.items():
        out.append(f"| `{n}` | {_md_cell(d)} |")
    out.append("")
    for t in TABLES.values():
        out += [f"## {t.name}", "", t.description + ("" if t.required else
                " Older runs may lack this file; readers then see an empty table."), "",
                "| column | dtype | units | description |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.dtype} | {c.units or '–'} | {_md_cell(c.description)} |" for c in t.columns]
        out.append("")
    for j in JSON_FILES.values():
        out += [f"## {j.name}", "", j.description, "",
                "| key | type | units | required | description |", "|---|---|---|---|---|"]
        out += [f"| `{k.name}` | {' or '.join(k.types)} | {k.units or '–'} | {'yes' if k.required else 'no'} | "
                f"{_md_cell(k.description)} |" for k in j.keys]
        out.append("")
    out += ["## fields.nc", "",
            "NetCDF-4, CF-1.8, dims `(time, y, x)`, row 0 at the north edge; the grid mapping `spatial_ref` "
            "carries the CRS. `depth`, `speed` and `hazard` are written when listed in `outputs.fields`, as "
            "`outputs.fields_dtype`. `standard_name` is given only where the CF standard-name table has a name "
            "that fits the whole variable.", "",
            "| variable | dims | dtype | units | standard_name | long_name | description |",
            "|---|---|---|---|---|---|---|"]
    for v in FIELDS_NC.values():
        units = v.attrs.get("units", "–") + (" <start>" if v.units_prefix else "")
        out.append(f"| `{v.name}` | ({', '.join(v.dims)}) | {' or '.join(v.dtypes)} | {_md_cell(units)} | "
                   f"{v.attrs.get('standard_name', '–')} | {_md_cell(v.attrs.get('long_name', ''))} | "
                   f"{_md_cell(v.description)} |")
    out += ["", "## GeoTIFFs", "", "One float32 band, nodata −9999, the run's grid and CRS; the band carries its "
            "unit and description (GDAL band metadata).", "",
            "| file | units | band description |", "|---|---|---|"]
    out += [f"| `{r.name}` | {r.units} | {_md_cell(r.description)} |" for r in RASTERS.values()]
    out.append("")
    return "\n".join(out)
