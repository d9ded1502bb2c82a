"""The forecast folder's schema (``twin forecast --out FDIR``), beside the run folder's
(:mod:`twin.output.schema`, whose :class:`Column`, :class:`Table` and :class:`NcVariable` it uses).

- ``exceedance.nc`` (CF-1.8; x/y in metres of EPSG:32649, the CRS as ``grid_mapping``): per cell and
  output time the probability (share of members) that the water depth exceeds 0.1 / 0.3 / 0.5 /
  1.0 m; per cell the ensemble median and 5 / 95 % of the members' maximum depth over the horizon.
- ``impacts.parquet``: long format, one row per target, impact, time and (distributions) quantile.
- ``gauges.parquet``: per member, gauge and output time the stage and depth (fan charts).
- ``forecast.json``: members, perturbations, base run, issue time, horizon, wall time, spread.
- ``alerts/*.xml``: CAP 1.2 alerts (``--alerts``), valid against ``twin/data/cap/CAP-v1.2.xsd``.

Writers validate what they write (:func:`validate_forecast_frame`, :func:`validate_forecast_json`);
:func:`read_forecast_table` reads through the schema.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from twin.output.schema import Column, NcVariable, RunSchemaError, Table, _dtype_matches, _dtype_name

__all__ = ["FORECAST_TABLES", "FORECAST_NC", "FORECAST_JSON_KEYS", "EXCEEDANCE_THRESHOLDS", "IMPACT_TARGETS",
           "IMPACT_KINDS", "OTHER_FORECAST_FILES", "validate_forecast_frame", "validate_forecast_json",
           "read_forecast_table", "exceedance_var", "forecast_schema_markdown"]

EXCEEDANCE_THRESHOLDS = (0.1, 0.3, 0.5, 1.0)
IMPACT_TARGETS = ("hospital", "shelter", "school", "station", "road_link", "ward", "services")
IMPACT_KINDS = ("flooded_above_threshold", "closed_to_cars", "closed_to_ambulances",
                "population_at_significant_hazard", "ambulance_response_s")


def exceedance_var(threshold_m: float) -> str:
    """``p_depth_gt_0.1m`` for 0.1 (the name of a probability variable of exceedance.nc)."""
    return f"p_depth_gt_{threshold_m:g}m" if threshold_m != int(threshold_m) else f"p_depth_gt_{threshold_m:.1f}m"


def _c(name: str, dtype: str, units: str, description: str) -> Column:
    return Column(name, dtype, units, description)


_T = "model time since the base run's scenario start (the issue time is forecast.json's issue_time_s)"
FORECAST_TABLES: dict[str, Table] = {t.name: t for t in (
    Table("impacts.parquet", "Impact probabilities and distributions per target and output time (long format).", (
        _c("target_kind", "string", "", "hospital, shelter, school, station (fire, police, pumping), road_link, "
           "ward or services"),
        _c("target_id", "string", "", "place_id, road link id, ward name, or 'ambulance' (services)"),
        _c("name", "string", "", "the target's name"),
        _c("impact", "string", "", "flooded_above_threshold (places: water above the ground floor, "
           "forecast.json place_flood_threshold_m), closed_to_cars, closed_to_ambulances (road links, the "
           "stall-depth rule of twin.traffic.flood), population_at_significant_hazard (wards: persons at "
           "FD2321 hazard 'significant' or 'extreme'), ambulance_response_s (services, full members)"),
        _c("t_s", "float64", "s", f"{_T}; distributions over the whole horizon carry its end"),
        _c("probability", "float64", "1", "share of members with the impact at t_s (0-1); NaN for distribution rows"),
        _c("quantile", "float64", "1", "quantile of a distribution row (0-1); NaN for probability rows"),
        _c("value", "float64", "", "the distribution's value at that quantile (persons, or s); NaN for "
           "probability rows"),
    )),
    Table("gauges.parquet", "Stage and depth at each gauge place per member and output time (fan charts).", (
        _c("member", "int64", "", "member number (0 = the control, unperturbed)"),
        _c("gauge_id", "string", "", "the gauge's place_id"),
        _c("name", "string", "", "the gauge's name"),
        _c("kind", "string", "", "gauge_stage, gauge_tide or gauge_rain"),
        _c("t_s", "float64", "s", _T),
        _c("stage_m", "float64", "m", "water surface above the terrain datum at the gauge's cell (terrain + depth)"),
        _c("depth_m", "float64", "m", "water depth at the gauge's cell"),
    )),
)}

_P_ATTRS = {"units": "1", "grid_mapping": "spatial_ref"}
FORECAST_NC: tuple[NcVariable, ...] = tuple(
    NcVariable(exceedance_var(t), ("time", "y", "x"), ("float32",),
               _P_ATTRS | {"long_name": f"probability that the water depth exceeds {t:g} m"},
               f"share of members whose depth exceeds {t:g} m at the output time (NaN outside the model, at sea "
               "and on permanent water: rivers, lagoon, reservoir)")
    for t in EXCEEDANCE_THRESHOLDS) + tuple(
    NcVariable(name, ("y", "x"), ("float32",), {"units": "m", "grid_mapping": "spatial_ref", "long_name": ln}, ln)
    for name, ln in (("max_depth_median_m", "ensemble median of the members' maximum depth over the horizon"),
                     ("max_depth_p05_m", "5 % quantile of the members' maximum depth over the horizon"),
                     ("max_depth_p95_m", "95 % quantile of the members' maximum depth over the horizon")))

FORECAST_JSON_KEYS: dict[str, str] = {
    "members": "list: per member its number, perturbation, wall/build/run seconds and max depth",
    "n_members": "int", "base_run": "str: the run folder forecast from", "checkpoint": "str",
    "scenario": "str", "issue_time_s": "number", "issue_time_local": "str", "issue_time_utc": "str",
    "horizon_s": "number", "every_s": "number", "components": "list", "scheduler": "str", "seed": "int",
    "wall_time_s": "number", "spread": "dict: spread summary (flooded area, max depth per member)",
    "perturbations": "dict: the error statistics and their sources", "thresholds_m": "list",
    "place_flood_threshold_m": "number", "alerts": "list: the alerts written (file, identifier, msgType, rule)",
    "files": "list: the files of the folder",
    "warnings": "list: what building the members warned about (e.g. places read at a nearby land cell), once each",
}

OTHER_FORECAST_FILES = {
    "forecast.json": "what was forecast, how, and the spread (keys: twin.output.forecast_schema.FORECAST_JSON_KEYS)",
    "alerts/*.xml": "CAP 1.2 alerts (with --alerts), valid against twin/data/cap/CAP-v1.2.xsd",
}


def validate_forecast_frame(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """RunSchemaError naming the file and every missing, extra or mistyped column."""
    table = FORECAST_TABLES[name]
    problems = []
    for col in table.columns:
        if col.name not in df.columns:
            problems.append(f"column {col.name!r} is missing (expected {col.dtype})")
        elif not _dtype_matches(df[col.name], col.dtype):
            problems.append(f"column {col.name!r} has dtype {_dtype_name(df[col.name])}, expected {col.dtype}")
    for c in df.columns:
        if c not in table.names:
            problems.append(f"column {c!r} is not in the schema (twin/output/forecast_schema.py)")
    if name == "impacts.parquet" and not problems and len(df):
        p = df["probability"].dropna()
        if ((p < 0) | (p > 1)).any():
            problems.append("probability outside [0, 1]")
        bad = set(df["target_kind"]) - set(IMPACT_TARGETS)
        if bad:
            problems.append(f"target_kind {sorted(bad)} not one of {IMPACT_TARGETS}")
    if problems:
        raise RunSchemaError(f"{name}: " + "; ".join(problems))
    return df


def validate_forecast_json(doc: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in FORECAST_JSON_KEYS if k not in doc]
    if missing:
        raise RunSchemaError(f"forecast.json: keys {missing} missing")
    return doc


def read_forecast_table(fdir: str | Path, name: str) -> pd.DataFrame:
    """A forecast folder's table, checked against the schema."""
    path = Path(fdir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (not a forecast folder?)")
    return validate_forecast_frame(name, pd.read_parquet(path))


def forecast_schema_markdown() -> str:
    """The forecast folder's reference (Markdown)."""
    lines = ["# Forecast folder reference", "", "Written by `twin forecast`; declared in "
             "`twin/output/forecast_schema.py`.", ""]
    for t in FORECAST_TABLES.values():
        lines += [f"## {t.name}", "", t.description, "", "| column | dtype | units | description |",
                  "|---|---|---|---|"]
        lines += [f"| {c.name} | {c.dtype} | {c.units} | {c.description} |" for c in t.columns]
        lines.append("")
    lines += ["## exceedance.nc", "", "| variable | dims | units | long_name |", "|---|---|---|---|"]
    lines += [f"| {v.name} | {', '.join(v.dims)} | {v.attrs.get('units', '')} | {v.attrs.get('long_name', '')} |"
              for v in FORECAST_NC]
    lines += ["", "## Other files", ""] + [f"- `{k}`: {v}" for k, v in OTHER_FORECAST_FILES.items()]
    return "\n".join(lines) + "\n"
