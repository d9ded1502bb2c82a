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

REPO = Path(__file__).resolve().parents[2]
EVENTS = [
    {"label": "Typhoon replay (JTWC track)", "value": "typhoon"},
    {"label": "Design storm (return period)", "value": "design_storm"},
    {"label": "Phú Ninh reservoir release", "value": "reservoir"},
    {"label": "Tide and storm surge", "value": "tide_surge"},
]
RETURN_PERIODS = [2, 5, 10, 25, 50, 100, 200]
_CHANNEL_LABELS = {"cell_broadcast": "cell broadcast", "sms": "SMS", "loudspeaker": "loudspeaker", "siren": "siren",
                   "radio": "radio", "tv": "TV", "door_to_door": "door to door"}


def warning_channels() -> list[dict]:
    """The warning channels the scenario schema accepts (read from it), labelled for people."""
    try:
        import typing

        from twin.scenario import Warning_

        values = list(typing.get_args(Warning_.model_fields["channel"].annotation))
    except Exception:  # the schema is not importable: the usual set
        values = ["cell_broadcast", "loudspeaker", "tv", "door_to_door"]
    return [{"label": _CHANNEL_LABELS.get(v, v.replace("_", " ")), "value": v} for v in values]


INTERVENTIONS = [
    {"label": "mobile pumps at every pumping station (2 m³/s each)", "value": "pumps"},
    {"label": "warning before the peak", "value": "warning"},
    {"label": "open the schools as shelters", "value": "shelters"},
    {"label": "extra ambulances", "value": "ambulances"},
    {"label": "extra rescue boats", "value": "boats"},
]

# form field id -> the scenario key path it edits (errors naming this path show next to the field);
# interventions.N are added per scenario by scenario_from_form
FIELD_KEYS: dict[str, str] = {
    "b-name": "name",
    "b-duration": "duration",
    "b-resolution": "resolution_m",
    "b-seed": "seed",
    "b-event": "flood.rain",
    "b-track": "flood.rain.storm",
    "b-return-period": "flood.rain.return_period_years",
    "b-storm-duration": "flood.rain.duration",
    "b-surge": "flood.sea.surge",
    "b-base": "city",
}


def slug(text: str) -> str:
    from .jobs import slug as _slug

    return _slug(text)


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


# ---------------------------------------------------------------------------------------------
# confinement: what the client names is an id from a server-side list; what a scenario from the
# client names must lie in the scenarios folder (docs/design/dashsec-confined-server.md)
# ---------------------------------------------------------------------------------------------
#: the one answer to a base-scenario id not in the list; it says nothing about other paths
UNKNOWN_BASE = "Unknown base scenario: choose one from the list."
#: keys whose value the scenario schema reads as a file path (twin.scenario FilePath) or a file to merge
PATH_KEYS = ("file", "store", "track_file")
REFUSED_PATH = "refused: a scenario from the dashboard may only name files in the scenarios folder"
_CITY_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _real_inside(path: Path, root: Path) -> Path | None:
    """The real path of ``path`` if it exists and lies inside ``root`` (resolved), else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_relative_to(root) else None


def scenario_ids(scenarios_dir: Path) -> list[str]:
    """Stems of the ``*.yaml`` files of the scenarios folder that are regular files inside it
    (a symlink out of the folder is left out): the base scenarios a client may choose."""
    try:
        root = Path(scenarios_dir).resolve(strict=True)
        files = sorted(Path(scenarios_dir).glob("*.yaml"))
    except OSError:
        return []
    out = []
    for f in files:
        real = _real_inside(f, root)
        if real is not None and real.is_file() and not f.name.startswith("."):
            out.append(f.stem)
    return out


def base_scenarios(scenarios_dir: Path) -> list[dict]:
    """Dropdown options: label the file name, value its id (the stem), never a path."""
    return [{"label": f"{stem}.yaml", "value": stem} for stem in scenario_ids(Path(scenarios_dir))]


def resolve_base(scenarios_dir: Path, base_id: Any) -> Path:
    """The real path of base scenario ``base_id`` (an id from :func:`scenario_ids`); anything else
    raises ValueError(:data:`UNKNOWN_BASE`), whether or not such a path exists."""
    if not isinstance(base_id, str) or base_id not in scenario_ids(Path(scenarios_dir)):
        raise ValueError(UNKNOWN_BASE)
    return (Path(scenarios_dir) / f"{base_id}.yaml").resolve()


def confine(data: dict, scenarios_dir: Path) -> tuple[dict, list[str]]:
    """(copy of ``data`` with every file it names made absolute, messages for refused paths).

    A scenario from the dashboard (an upload, or the form merged into a base) may name files
    (``extends`` and the schema's file keys, relative names taken from the scenarios folder) only
    inside the scenarios folder, and a city only by bundle name: the server never opens (so never
    quotes, nor reveals the existence of) a file elsewhere. Each refusal names the key, not the path.
    """
    root = Path(scenarios_dir).resolve()
    errors: list[str] = []

    def path_value(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            return value  # the schema reports the wrong type
        p = Path(value)
        real = _real_inside(p if p.is_absolute() else root / p, root)
        if real is None or not real.is_file():
            errors.append(f"{where}: {REFUSED_PATH}")
            return value
        return str(real)

    def walk(obj: Any, where: str) -> Any:
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                key = f"{where}.{k}" if where else str(k)
                if (k in PATH_KEYS or (k == "extends" and not where)) and not isinstance(v, (dict, list)):
                    out[k] = path_value(v, key)
                else:
                    out[k] = walk(v, key)
            return out
        if isinstance(obj, list):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(obj)]
        return obj

    out = walk(data, "")
    city = out.get("city")
    if isinstance(city, str) and not _CITY_RE.fullmatch(city):
        errors.append("city: refused: give a city bundle name (letters, digits, _ and -), not a path")
    return out, errors


class UploadError(ValueError):
    """An uploaded scenario file is refused; the message is short and quotes only the upload."""


def parse_scenario_text(raw: bytes, max_bytes: int) -> dict:
    """The mapping of an uploaded scenario file, refusing (before any parsing) a file over
    ``max_bytes``, and refusing YAML anchors and aliases (a few lines of aliases expand to
    billions of nodes)."""
    if len(raw) > max_bytes:
        raise UploadError(f"the file is {len(raw):,} bytes; the limit is {max_bytes:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError("not a UTF-8 text file") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for ev in yaml.parse(text, Loader=loader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                raise UploadError("YAML anchors and aliases (& and *) are not accepted in an uploaded scenario")
        data = yaml.load(text, Loader=loader)  # a safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise UploadError(f"not valid YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UploadError(f"a scenario file must be a YAML mapping, found {type(data).__name__}")
    return data


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


def storm_closest_approach(sid: str) -> str | None:
    """Local datetime (ISO) of a storm's closest approach to Tam Kỳ from the shipped JTWC tracks."""
    files = track_files()
    if not files:
        return None
    full = files[0].parent / "jtwc_wp_tracks_within300km_tamky_1945_2021.csv"
    if not full.exists():
        return None
    best = None
    with open(full, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("sid") != sid:
                continue
            try:
                d = float(row["dist_tamky_km"])
            except (KeyError, ValueError):
                continue
            if best is None or d < best[0]:
                best = (d, row["iso_time_utc"])
    if best is None:
        return None
    import datetime as dt

    t = dt.datetime.fromisoformat(best[1].replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t + dt.timedelta(hours=7)).replace(tzinfo=None).isoformat(timespec="minutes")


def _hours(v, default: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def scenario_from_form(form: dict, base: dict | None = None, places=None) -> tuple[dict, dict[str, str]]:
    """(scenario dict, {key path prefix: form field id}) = base scenario + the form's choices.

    Only what the form sets is changed; the rain section is replaced whole when the event sets it
    (its kinds have different keys). ``places`` (the city's places table) names the pumping
    stations and schools that the pump and shelter interventions use.
    """
    f = form
    keys = dict((v, k) for k, v in FIELD_KEYS.items())
    data = copy.deepcopy(base or {})
    if (f.get("name") or "").strip():
        data["description"] = f["name"].strip()
        data["name"] = slug(f["name"]).replace("-", "_")
    dur_h = _hours(f.get("duration_h"), 6.0)
    if f.get("duration_h") not in (None, ""):
        data["duration"] = f"{f['duration_h']}h"
    if f.get("resolution_m") not in (None, ""):
        data["resolution_m"] = f["resolution_m"]
    if f.get("seed") not in (None, ""):
        data["seed"] = f["seed"]
    flood = data.setdefault("flood", {})
    ev = f.get("event")
    peak_s = dur_h * 3600.0 / 2
    if ev == "typhoon":
        flood["rain"] = {"kind": "typhoon", "storm": f.get("track")}
        when = storm_closest_approach(str(f.get("track"))) if f.get("track") else None
        if when:
            import datetime as dt

            data["start"] = (dt.datetime.fromisoformat(when) - dt.timedelta(hours=dur_h / 2)).isoformat(timespec="minutes")
    elif ev == "design_storm":
        sd = _hours(f.get("storm_duration_h"), dur_h)
        flood["rain"] = {"kind": "design_storm", "return_period_years": f.get("return_period"),
                         "duration": f"{f.get('storm_duration_h')}h" if f.get("storm_duration_h") not in (None, "") else None}
        if flood["rain"]["duration"] is None:
            flood["rain"].pop("duration")
        peak_s = sd * 3600.0 / 2
    elif ev == "tide_surge":
        sea = flood.setdefault("sea", {})
        sea["enabled"] = True
        sea["surge"] = {"peak_m": f.get("surge_m"), "peak_time": peak_s, "duration": f"{dur_h:g}h"}
    inter = list(data.get("interventions") or [])
    keep = f.get("base_interventions")
    if keep is not None:
        inter = [iv for k, iv in enumerate(inter) if k in set(keep)]
    for k in range(len(inter)):  # errors in the base scenario's own items show beside their checklist
        keys[f"interventions.{k}"] = "b-base-interventions"

    def add(item, fid):
        keys[f"interventions.{len(inter)}"] = fid
        inter.append(item)

    if ev == "reservoir":
        q = f.get("release_m3_per_s")
        add({"type": "reservoir_release", "times": [0, f"{dur_h * 0.25:g}h", f"{dur_h * 0.75:g}h", f"{dur_h:g}h"],
             "discharge_m3_per_s": [0, q, q, 0], "label": "Phú Ninh release"}, "b-release")
    chosen = set(f.get("interventions") or [])
    kinds = places["kind"].astype(str) if places is not None and len(places) else None
    if "pumps" in chosen:
        ids = places.loc[kinds == "pumping_station", "place_id"].astype(str).tolist() if kinds is not None else []
        if not ids:
            keys["interventions"] = "b-interventions"
            add({"type": "pump", "capacity_m3_per_s": 2.0}, "b-interventions")  # the schema says what is missing
        for pid in ids:
            add({"type": "pump", "place": pid, "capacity_m3_per_s": 2.0, "label": "mobile pump"}, "b-interventions")
    if "warning" in chosen:
        lead_s = _hours(f.get("warning_lead_h"), 0.0) * 3600.0
        keys[f"interventions.{len(inter)}.channel"] = "b-warning-channel"
        add({"type": "warning", "at": max(0.0, peak_s - lead_s), "channel": f.get("warning_channel") or "cell_broadcast"},
            "b-warning-lead")
    if "shelters" in chosen:
        if kinds is not None:
            sch = places[kinds == "school"]
            for pid, cap in zip(sch["place_id"].astype(str), sch.get("capacity", [200] * len(sch))):
                add({"type": "shelter_open", "place": pid, "capacity": int(cap) if cap and cap > 0 else 200}, "b-interventions")
    if "ambulances" in chosen:
        add({"type": "extra_units", "unit": "ambulance", "count": f.get("ambulances")}, "b-ambulances")
    if "boats" in chosen:
        add({"type": "extra_units", "unit": "boat", "count": f.get("boats")}, "b-boats")
    if inter or "interventions" in data:
        data["interventions"] = inter
    return data, keys


def form_errors(form: dict) -> dict[str, str]:
    """Checks the form itself can make before the schema sees it (empty required inputs)."""
    err = {}
    if not (form.get("name") or "").strip():
        err["b-name"] = "Give the scenario a name."
    for fid, key, lo, hi, unit in (("b-duration", "duration_h", 0.05, 240, "h"),):
        v = form.get(key)
        if v is None or v == "":
            err[fid] = f"Required: a number in {unit}."
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


# discriminator tags pydantic puts in error locations (flood.rain.design_storm.duration)
_TAGS = {"design_storm", "typhoon", "gauge", "file", "series", "none", "levee", "pump", "road_closure", "contraflow",
         "shelter_open", "extra_units", "reservoir_release", "breach", "warning"}
_LINE_RE = re.compile(r"^\s*(?:.*?\.ya?ml|<[^>]+>): ([A-Za-z0-9_.<>]+): (.*)$")


def _scenario_error_items(text: str) -> list[tuple[str, str]]:
    """(key path, message) from ``ScenarioError`` text: lines ``FILE: key.path: message``."""
    out = []
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def map_errors(exc: Exception, keys: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Field id -> message for errors whose key path a field edits; the rest as general messages.

    ``keys`` maps key path prefixes to field ids (default FIELD_KEYS inverted)."""
    keys = keys if keys is not None else {v: k for k, v in FIELD_KEYS.items()}
    by_field: dict[str, str] = {}
    general: list[str] = []
    text_all = str(exc)
    items = _error_items(exc)
    if items == [("", text_all)]:
        items = _scenario_error_items(text_all) or items
    for loc, msg in items:
        loc = ".".join(p for p in loc.split(".") if p not in _TAGS)
        target = None
        best = -1
        for key, fid in keys.items():
            hit = (bool(loc) and (loc == key or loc.startswith(key + "."))) or (not loc and key in msg)
            if hit and len(key) > best:
                target, best = fid, len(key)
        msg = msg.replace("Value error, ", "")
        text = f"{loc}: {msg}" if loc else msg
        if target:
            by_field[target] = (by_field.get(target, "") + " " + text).strip()
        else:
            general.append(text)
    if not by_field and not general:
        general.append(text_all)
    return by_field, general


def validate(data: dict, folder: Path | None = None, keys: dict[str, str] | None = None) -> tuple[Any, dict[str, str], list[str]]:
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
            fe, ge = map_errors(exc, keys)
            return None, fe, ge
        return sc, {}, []
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
