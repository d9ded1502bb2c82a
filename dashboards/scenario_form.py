"""The builder's form <-> scenario mapping, and validation through the project's scenario schema.

The form edits a *base scenario* (a file in ``scenarios/``): the chosen event and interventions are
merged into it and the result is validated by ``twin.scenario.load_scenario`` (the same pydantic
schema ``twin run`` uses). Validation errors are mapped back to the form field whose key path they
name, so the message appears next to that field.
"""
from __future__ import annotations

import copy
import csv
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EVENTS = [
    {"label": "Typhoon replay (JTWC track)", "value": "typhoon"},
    {"label": "Design storm (return period)", "value": "design_storm"},
    {"label": "Phú Ninh reservoir release", "value": "reservoir"},
    {"label": "Tide and storm surge", "value": "tide_surge"},
]
RETURN_PERIODS = [2, 5, 10, 25, 50, 100, 200]
WARNING_CHANNELS = [
    {"label": "loudspeaker", "value": "loudspeaker"},
    {"label": "cell broadcast", "value": "cell_broadcast"},
    {"label": "TV / radio", "value": "tv"},
    {"label": "door to door", "value": "door_to_door"},
]
INTERVENTIONS = [
    {"label": " temporary levee along the Tam Kỳ river", "value": "levee"},
    {"label": " mobile pumps at the pumping stations", "value": "pumps"},
    {"label": " early warning", "value": "warning"},
    {"label": " open extra shelters (schools)", "value": "shelters"},
    {"label": " extra ambulances", "value": "ambulances"},
    {"label": " extra rescue boats", "value": "boats"},
]

# form field id -> the scenario key path it edits (errors naming this path show next to the field)
FIELD_KEYS: dict[str, str] = {
    "b-name": "name",
    "b-duration": "duration",
    "b-resolution": "resolution_m",
    "b-seed": "seed",
    "b-event": "flood",
    "b-track": "flood.rain.track",
    "b-return-period": "flood.rain.return_period_years",
    "b-storm-duration": "flood.rain.duration",
    "b-release": "flood.inflows",
    "b-surge": "flood.sea.surge_m",
    "b-interventions": "interventions",
    "b-warning-lead": "interventions",
    "b-ambulances": "interventions",
    "b-boats": "interventions",
}


def track_files() -> list[Path]:
    found = sorted((REPO / "twin" / "data").glob("**/storms_summary.csv"))
    shared = REPO.parent.parent / "shared" / "data" / "jtwc_typhoon_tracks_tamky" / "storms_summary.csv"
    if not found and shared.exists():
        found = [shared]
    return found


def typhoon_options(max_km: float = 150.0) -> list[dict]:
    """Storms from the shipped JTWC summary passing within ``max_km`` of Tam Kỳ, newest first."""
    files = track_files()
    if not files:
        return []
    out = []
    with open(files[0], newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                dist = float(row.get("min_dist_km") or "nan")
            except ValueError:
                continue
            if not dist <= max_km:
                continue
            name = (row.get("name") or "").strip().title() or "unnamed"
            year = (row.get("start") or "")[:10]
            out.append({"label": f"{name} {year} — {row.get('vmax_kt', '?')} kt, {dist:.0f} km", "value": row["sid"],
                        "year": year})
    out.sort(key=lambda d: d["year"], reverse=True)
    return [{"label": d["label"], "value": d["value"]} for d in out]


def base_scenarios(scenarios_dir: Path) -> list[dict]:
    if not scenarios_dir.is_dir():
        return []
    return [{"label": p.name, "value": str(p)} for p in sorted(scenarios_dir.glob("*.yaml"))]


def _absolutize(obj: Any, base_dir: Path) -> Any:
    """Strings that name an existing file relative to the base scenario become absolute paths."""
    if isinstance(obj, dict):
        return {k: _absolutize(v, base_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_absolutize(v, base_dir) for v in obj]
    if isinstance(obj, str) and obj and not obj.startswith("/") and ("/" in obj or "." in obj) and len(obj) < 300:
        try:
            p = (base_dir / obj).resolve()
            if p.exists() and p != base_dir.resolve():
                return str(p)
        except OSError:
            pass
    return obj


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def scenario_from_form(form: dict, base: dict | None = None) -> dict:
    """Scenario dict = base scenario + the form's choices (only what the form sets is changed)."""
    f = form
    over: dict[str, Any] = {}
    if f.get("name"):
        over["name"] = f["name"]
    if f.get("duration_h") not in (None, ""):
        over["duration"] = f"{f['duration_h']}h"
    if f.get("resolution_m") not in (None, ""):
        over["resolution_m"] = f["resolution_m"]
    if f.get("seed") not in (None, ""):
        over["seed"] = f["seed"]
    ev = f.get("event")
    flood: dict[str, Any] = {}
    if ev == "typhoon":
        flood["rain"] = {"kind": "typhoon", "track": f.get("track")}
    elif ev == "design_storm":
        flood["rain"] = {"kind": "design_storm", "return_period_years": f.get("return_period"),
                         "duration": f"{f.get('storm_duration_h')}h" if f.get("storm_duration_h") not in (None, "") else None}
    elif ev == "reservoir":
        flood["inflows"] = [{"name": "phu_ninh", "kind": "reservoir_release", "peak_m3_per_s": f.get("release_m3_per_s")}]
    elif ev == "tide_surge":
        flood["sea"] = {"surge_m": f.get("surge_m")}
    if flood:
        over["flood"] = flood
    inter = []
    chosen = set(f.get("interventions") or [])
    if "levee" in chosen:
        inter.append({"kind": "levee", "name": "Tam Kỳ river temporary levee", "crest_m": 4.0})
    if "pumps" in chosen:
        inter.append({"kind": "pump", "place": "all_pumping_stations", "capacity_m3_per_s": 2.0})
    if "warning" in chosen:
        inter.append({"kind": "warning", "lead_time": f"{f.get('warning_lead_h') or 0}h",
                      "channel": f.get("warning_channel") or "cell_broadcast"})
    if "shelters" in chosen:
        inter.append({"kind": "shelter_opened", "place": "all_schools"})
    if "ambulances" in chosen:
        inter.append({"kind": "extra_units", "unit": "ambulance", "count": f.get("ambulances")})
    if "boats" in chosen:
        inter.append({"kind": "extra_units", "unit": "boat", "count": f.get("boats")})
    if inter:
        over["interventions"] = inter
    return merge(base or {}, over)


def form_errors(form: dict) -> dict[str, str]:
    """Checks the form itself can make before the schema sees it (empty required inputs)."""
    err = {}
    if not (form.get("name") or "").strip():
        err["b-name"] = "Give the scenario a name."
    for fid, key, lo, hi, unit in (("b-duration", "duration_h", 0.05, 240, "h"),):
        v = form.get(key)
        if v is None or v == "":
            err[fid] = "Required."
        elif not (lo <= float(v) <= hi):
            err[fid] = f"Must be between {lo} and {hi} {unit} (got {v})."
    ev = form.get("event")
    if ev == "typhoon" and not form.get("track"):
        err["b-track"] = "Choose a storm track."
    if ev == "design_storm" and not form.get("return_period"):
        err["b-return-period"] = "Choose a return period."
    if ev == "reservoir" and form.get("release_m3_per_s") in (None, ""):
        err["b-release"] = "Give the release in m³/s."
    if ev == "tide_surge" and form.get("surge_m") in (None, ""):
        err["b-surge"] = "Give the surge height in m."
    return err


def load_base(path: str | Path | None) -> tuple[dict, Path | None]:
    if not path:
        return {}, None
    p = Path(path)
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a scenario file must be a mapping")
    return _absolutize(data, p.parent), p


def write_scenario(data: dict, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


_LOC_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\[\]]+)+|\b[a-z_]+\b)")


def _error_items(exc: Exception) -> list[tuple[str, str]]:
    """(key path, message) pairs from a pydantic ValidationError or a ValueError naming the key."""
    errs = getattr(exc, "errors", None)
    if callable(errs):
        try:
            items = errs()
            return [(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", ""))) for e in items]
        except Exception:
            pass
    cause = exc.__cause__ or exc.__context__
    if cause is not None and callable(getattr(cause, "errors", None)):
        return _error_items(cause)
    return [("", str(exc))]


def map_errors(exc: Exception) -> tuple[dict[str, str], list[str]]:
    """Field id -> message for errors whose key path a field edits; the rest as general messages."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    text_all = str(exc)
    for loc, msg in _error_items(exc):
        target = None
        best = -1
        for fid, key in FIELD_KEYS.items():
            hit = (bool(loc) and (loc == key or loc.startswith(key + "."))) or (not loc and key in msg)
            if hit and len(key) > best:
                target, best = fid, len(key)
        text = f"{loc}: {msg}" if loc else msg
        if target:
            by_field[target] = (by_field.get(target, "") + " " + text).strip()
        else:
            general.append(text)
    if not by_field and not general:
        general.append(text_all)
    return by_field, general


def validate(data: dict, folder: Path | None = None) -> tuple[Any, dict[str, str], list[str]]:
    """(scenario object or None, field errors, general errors) through ``twin.scenario.load_scenario``."""
    try:
        from twin.scenario import load_scenario
    except ImportError as exc:
        return None, {}, [f"the scenario schema is not available in this installation ({exc})"]
    tmpdir = None
    if folder is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="twin-builder-")
        folder = Path(tmpdir.name)
    try:
        path = write_scenario(data, folder, "validate")
        try:
            sc = load_scenario(path)
        except Exception as exc:  # ValueError / pydantic.ValidationError from the schema
            fe, ge = map_errors(exc)
            return None, fe, ge
        return sc, {}, []
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
