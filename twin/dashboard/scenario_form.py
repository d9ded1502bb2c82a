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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
#: the event choices; "base" (the default) keeps the base scenario's own event untouched
EVENTS = [
    {"label": "As in the base scenario", "value": "base"},
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
    "b-start": "start",
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


# ---------------------------------------------------------------------------------------------
# the event's timing: which storm, when it peaks, in local clock time
# ---------------------------------------------------------------------------------------------
def sub(d: Any, key: str) -> dict:
    """``d[key]`` when ``d`` is a mapping and that value is one, else an empty dict."""
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def storm_sid(storm: Any, season: Any = None) -> str | None:
    """The JTWC sid of a storm given by sid (``WP212020``) or by name (``MOLAVE``, with ``season``
    when the name was used more than once: the latest season otherwise)."""
    files = track_files()
    if not files or not isinstance(storm, str) or not storm.strip():
        return None
    want = storm.strip().upper()
    hits = []
    with open(files[0], newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            sid = (row.get("sid") or "").upper()
            if sid == want:
                return row["sid"]
            if (row.get("name") or "").strip().upper() == want:
                year = (row.get("start") or "")[:4]
                if season in (None, "") or str(season) == year:
                    hits.append((year, row["sid"]))
    return max(hits)[1] if hits else None


def same_storm(rain: Any, sid: Any) -> bool:
    """True when the base scenario's rain is a typhoon replay of the storm ``sid``."""
    if not isinstance(rain, dict) or rain.get("kind") != "typhoon" or not sid:
        return False
    return storm_sid(rain.get("storm"), rain.get("season")) == str(sid)


def _local(value: Any):
    from twin.valuetypes import _to_local

    try:
        return _to_local(value)
    except (ValueError, TypeError):
        return None


def clock(start: Any, t_s: float) -> str:
    """Local clock time (Asia/Ho_Chi_Minh) of model time ``t_s`` after ``start``: ``28 Oct 05:00``."""
    import datetime as dt

    t0 = _local(start)
    if t0 is None:
        return f"t = {t_s / 3600:g} h"
    return (t0 + dt.timedelta(seconds=float(t_s))).strftime("%d %b %H:%M")


def _dur(v: Any, default: float) -> float:
    from twin.valuetypes import parse_duration

    try:
        return parse_duration(v) if v is not None else default
    except ValueError:
        return default


def event_peak(data: dict, prefer: str | None = None) -> tuple[float, str]:
    """(model time [s] of the event's peak, what that peak is) from a scenario mapping: the design
    storm's peak, a typhoon's closest approach to Tam Kỳ (JTWC track), the peak of an inline rain
    series or of the surge; otherwise the middle of the run, said as such."""
    flood = sub(data, "flood")
    rain = sub(flood, "rain")
    sea = sub(flood, "sea")
    surge = sub(sea, "surge") or None
    dur = _dur(data.get("duration"), 0.0)
    if prefer == "tide_surge" and surge and surge.get("peak_time") is not None:
        return _dur(surge.get("peak_time"), dur / 2), "the surge peak"
    kind = rain.get("kind")
    if kind == "design_storm":
        d = _dur(rain.get("duration"), 6 * 3600.0)
        return _dur(rain.get("start"), 0.0) + float(rain.get("peak_fraction", 0.5) or 0.5) * d, "the design storm's peak"
    if kind == "typhoon":
        sid = storm_sid(rain.get("storm"), rain.get("season"))
        when = storm_closest_approach(sid) if sid else None
        t0, t1 = _local(data.get("start")), _local(when) if when else None
        if t0 is not None and t1 is not None:
            return ((t1 - t0).total_seconds() + _dur(rain.get("time_shift"), 0.0),
                    f"{rain.get('storm')}'s closest approach to Tam Kỳ")
    if kind == "series" and rain.get("times") and rain.get("rain_mm_per_h"):
        rates = list(rain["rain_mm_per_h"])
        k = max(range(len(rates)), key=lambda i: rates[i])
        return _dur(rain["times"][k], dur / 2), "the rain peak"
    if surge and surge.get("peak_time") is not None:
        return _dur(surge.get("peak_time"), dur / 2), "the surge peak"
    return dur / 2, "the middle of the run (the builder cannot read a single peak from this event)"


def _fmt_h(seconds: float) -> str:
    h = abs(seconds) / 3600.0
    return f"{h:.0f} h" if h >= 10 else f"{h:.1f} h".replace(".0 h", " h")


_DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d")


def _window_check(items: list, start: Any, dur_s: float, first: int, errors: dict, notes: list) -> None:
    """Base items timed by a local datetime that falls outside the run once its start changed:
    before the start is an error naming the item (untick it or start earlier); after the end a note."""
    t0 = _local(start)
    if t0 is None:
        return
    for k, iv in enumerate(items):
        at = iv.get("at") if isinstance(iv, dict) else None
        if not (isinstance(at, str) and _DATE_RE.match(at)) and not hasattr(at, "year"):
            continue
        t = _local(at)
        if t is None:
            continue
        off = (t - t0).total_seconds()
        name = iv.get("label") or iv.get("type", "?")
        when = t.strftime("%d %b %H:%M")
        if off < 0:
            msg = (f"interventions.{first + k}.at: '{name}' ({iv.get('type')} at {when}) is {_fmt_h(off)} before "
                   f"this run starts ({t0.strftime('%d %b %H:%M')}): untick it, or give an earlier start.")
            errors["b-base-interventions"] = (errors.get("b-base-interventions", "") + " " + msg).strip()
        elif off >= dur_s:
            notes.append(f"'{name}' ({when}) is after this run ends ({clock(start, dur_s)}): it will not act.")


#: the scenario sections a decision kind needs (twin.decisions ``_need``), checked before a run
_NEEDS = {"road_closure": ("traffic",), "contraflow": ("traffic",), "road_reopen": ("traffic",),
          "warning": ("people",), "evacuation_order": ("people",), "shelter_close": ("people",),
          "shelter_open": ("people", "services"), "extra_units": ("services",), "dispatch": ("services",),
          "hospital_closure": ("services",)}


def _enabled(data: dict, section: str) -> bool:
    v = data.get(section)
    return v is not None and not (isinstance(v, dict) and v.get("enabled") is False)


def to_yaml(data: dict) -> str:
    """YAML of a scenario mapping, coordinate pairs and short number lists on one line."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _list(dumper: yaml.SafeDumper, value: list) -> Any:
        flow = len(value) <= 8 and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    _Dumper.add_representer(list, _list)
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False)


@dataclass
class FormResult:
    """What the form makes: the scenario mapping, {key path prefix: field id} for the schema's
    errors, the form's own errors (field id -> message, shown before the schema is asked) and
    stated consequences (``notes``: clock times, kept or moved starts, items that will not act)."""

    data: dict
    keys: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_from_form(form: dict, base: dict | None = None, places=None) -> FormResult:
    """Base scenario + the form's choices (see :func:`scenario_from_form`), with the form's own
    errors and notes.

    - ``event`` ``"base"`` (the default) keeps the base scenario's event untouched.
    - The start: ``start`` when given (local time); else a typhoon replay of the base's own storm
      keeps the base's start and rain settings; another storm starts the run half the duration
      before its closest approach to Tam Kỳ.
    - The warning acts ``warning_lead_h`` before the event's peak (:func:`event_peak`); a lead that
      would put it before the start or after the end is an error on that field, never clamped.
    - ``drawn``: decisions drawn on the map (``twin.dashboard.drawing``), appended in order.
    """
    f = form
    keys = dict((v, k) for k, v in FIELD_KEYS.items())
    base = base or {}
    data = copy.deepcopy(base)
    errors: dict[str, str] = {}
    notes: list[str] = []
    if (f.get("name") or "").strip():
        data["description"] = f["name"].strip()
        data["name"] = slug(f["name"]).replace("-", "_")
    if f.get("duration_h") not in (None, ""):
        data["duration"] = f"{f['duration_h']}h"
    dur_s = _dur(data.get("duration"), _hours(f.get("duration_h"), 6.0) * 3600.0)
    dur_h = dur_s / 3600.0
    if f.get("resolution_m") not in (None, ""):
        data["resolution_m"] = f["resolution_m"]
    if f.get("seed") not in (None, ""):
        data["seed"] = f["seed"]
    flood = data.setdefault("flood", {})
    ev = f.get("event") or "base"
    base_rain = sub(sub(base, "flood"), "rain")
    if ev == "typhoon":
        track = f.get("track")
        if same_storm(base_rain, track):
            notes.append(f"Typhoon {base_rain['storm']} is the base scenario's own storm: its start and rain "
                         "settings are kept.")
        else:
            flood["rain"] = {"kind": "typhoon", "storm": track}
            when = storm_closest_approach(str(track)) if track else None
            if when and not (f.get("start") or "").strip():
                import datetime as dt

                data["start"] = (dt.datetime.fromisoformat(when) - dt.timedelta(hours=dur_h / 2)).isoformat(timespec="minutes")
                notes.append(f"The run starts {_fmt_h(dur_s / 2)} before the storm's closest approach to Tam Kỳ "
                             f"({dt.datetime.fromisoformat(when).strftime('%d %b %H:%M')} local).")
            elif not when and track:
                notes.append(f"No fix of {track} near Tam Kỳ in the shipped tracks: the start is not moved.")
    elif ev == "design_storm":
        flood["rain"] = {"kind": "design_storm", "return_period_years": f.get("return_period"),
                         "duration": f"{f.get('storm_duration_h')}h" if f.get("storm_duration_h") not in (None, "") else None}
        if flood["rain"]["duration"] is None:
            flood["rain"].pop("duration")
    elif ev == "tide_surge":
        sea = flood.setdefault("sea", {})
        sea["enabled"] = True
        sea["surge"] = {"peak_m": f.get("surge_m"), "peak_time": dur_s / 2, "duration": f"{dur_h:g}h"}
    if (f.get("start") or "").strip():
        data["start"] = f["start"].strip()
    inter = list(data.get("interventions") or [])
    keep = f.get("base_interventions")
    if keep is not None:
        inter = [iv for k, iv in enumerate(inter) if k in set(keep)]
    for k in range(len(inter)):  # errors in the base scenario's own items show beside their checklist
        keys[f"interventions.{k}"] = "b-base-interventions"
    _window_check(inter, data.get("start"), dur_s, 0, errors, notes)   # a moved start or a shorter run

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
        lead_h = _number(f.get("warning_lead_h"))
        peak_s, what = event_peak(data, prefer=ev)
        at = peak_s - (lead_h or 0.0) * 3600.0
        if lead_h is not None and lead_h >= 0:
            start = data.get("start")
            if at < 0:
                errors["b-warning-lead"] = (
                    f"A {lead_h:g} h lead puts the warning {_fmt_h(at)} before the run starts ({clock(start, 0)}): "
                    f"{what} is {_fmt_h(peak_s)} {'after' if peak_s >= 0 else 'before'} the start ({clock(start, peak_s)}). "
                    f"Give a lead of at most {max(peak_s, 0) / 3600:.1f} h, or start the run earlier.")
            elif at >= dur_s:
                errors["b-warning-lead"] = (
                    f"The warning would come at {clock(start, at)}, after the run ends ({clock(start, dur_s)}): "
                    f"{what} is at {clock(start, peak_s)}. Give a longer lead or a longer duration.")
            else:
                notes.append(f"Warning by {f.get('warning_channel') or 'cell_broadcast'} at {clock(start, at)}: "
                             f"{lead_h:g} h before {what} ({clock(start, peak_s)}).")
        keys[f"interventions.{len(inter)}.channel"] = "b-warning-channel"
        add({"type": "warning", "at": at, "channel": f.get("warning_channel") or "cell_broadcast"},
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
    peak_s, what = event_peak(data, prefer=ev)
    if not what.startswith("the middle") and not 0 <= peak_s <= dur_s:
        notes.append(f"{what[0].upper() + what[1:]} ({clock(data.get('start'), peak_s)}) is "
                     f"{'before this run starts' if peak_s < 0 else 'after this run ends'} "
                     f"({clock(data.get('start'), 0 if peak_s < 0 else dur_s)}).")
    for item in f.get("drawn") or []:
        if isinstance(item, dict):
            need = _NEEDS.get(str(item.get("type")))
            if need and not any(_enabled(data, sec) for sec in need):
                msg = (f"interventions.{len(inter)}: {item.get('type')} needs the {' or '.join(need)} section, "
                       "which this scenario does not enable: remove it or choose another base.")
                errors["b-drawn"] = (errors.get("b-drawn", "") + " " + msg).strip()
            add(copy.deepcopy(item), "b-drawn")
    if inter or "interventions" in data:
        data["interventions"] = inter
    return FormResult(data, keys, errors, notes)


def describe_event(base: dict) -> str:
    """One line on the base scenario's own event (what "As in the base scenario" keeps)."""
    flood = sub(base, "flood")
    rain = sub(flood, "rain") or None
    bits = []
    if rain is None or rain.get("kind") in (None, "none"):
        bits.append("no rain")
    elif rain.get("kind") == "typhoon":
        bits.append(f"typhoon {rain.get('storm')}" + (f" {rain.get('season')}" if rain.get("season") else "") + " replay")
    elif rain.get("kind") == "design_storm":
        rp = rain.get("return_period_years")
        bits.append(f"design storm {f'{rp:g}-year' if isinstance(rp, (int, float)) else ''} "
                    f"{rain.get('duration', '6h')}".replace("  ", " "))
    else:
        bits.append(f"rain from {rain.get('kind')}")
    if flood.get("reservoir"):
        bits.append("Phú Ninh reservoir")
    sea = sub(flood, "sea")
    if sea and sea.get("enabled", True):
        bits.append("tide" + (" and surge" if sea.get("surge") else ""))
    start = _local(base.get("start"))
    when = f", from {start.strftime('%d %b %Y %H:%M')} local" if start is not None else ""
    return ", ".join(bits) + when + f", {_fmt_h(_dur(base.get('duration'), 0.0))}"


#: the run-time cost model (seconds per unit), measured on two Tam Kỳ runs at 100 m on the 2-core
#: development machine (shared): flood per cell per simulated second and agents (traffic, people,
#: services, recorders) per household per simulated second. Low: a quiet 1 h run (shallow water, few
#: people moving); high: 3 h of Molave with an early warning (deep water: a shorter flood time step;
#: evacuation: many agents moving). manifest.json ``phase_wall_s`` of those runs.
COST_FLOOD_S = (2.8e-9, 1.4e-8)
COST_AGENT_S = (1.2e-8, 8.6e-8)
COST_SETUP_S = (3.0, 15.0)


def estimate_run_time(data: dict, bounds: tuple[float, float, float, float] | None,
                      households: float | None) -> dict | None:
    """{"low_s", "high_s", "text", "assumption"}: wall time of a run from the cost model
    cells × simulated seconds × COST_FLOOD_S + households × simulated seconds × COST_AGENT_S (when
    traffic or people are on) + set-up. None when the grid size is unknown."""
    if bounds is None:
        return None
    res = _number(data.get("resolution_m")) or 30.0
    dur = _dur(data.get("duration"), 0.0)
    if res <= 0 or dur <= 0:
        return None
    w, s_, e, n = bounds
    cells = max(1.0, (e - w) / res) * max(1.0, (n - s_) / res)
    agents = 0.0
    if households and (data.get("people") is not None or data.get("traffic") is not None):
        people = sub(data, "people")
        agents = households * float(people.get("sample_fraction", 1.0) or 1.0)
    lo = COST_SETUP_S[0] + cells * dur * COST_FLOOD_S[0] + agents * dur * COST_AGENT_S[0]
    hi = COST_SETUP_S[1] + cells * dur * COST_FLOOD_S[1] + agents * dur * COST_AGENT_S[1]

    def fmt(t: float) -> str:
        return f"{t:.0f} s" if t < 90 else f"{t / 60:.0f} min" if t < 5400 else f"{t / 3600:.1f} h"

    return {"low_s": lo, "high_s": hi, "text": f"{fmt(lo)} – {fmt(hi)}",
            "assumption": (f"{cells:,.0f} cells × {dur / 3600:g} h simulated"
                           + (f", {agents:,.0f} households" if agents else "")
                           + "; rates measured on Tam Kỳ runs at 100 m on a 2-core machine (low: a quiet hour; "
                             "high: Molave with evacuation). Deeper water and more people moving make it slower.")}


def scenario_from_form(form: dict, base: dict | None = None, places=None) -> tuple[dict, dict[str, str]]:
    """(scenario dict, {key path prefix: form field id}) = base scenario + the form's choices.

    Only what the form sets is changed; the rain section is replaced whole when the event sets it
    (its kinds have different keys). ``places`` (the city's places table) names the pumping
    stations and schools that the pump and shelter interventions use. The form's own errors and
    notes: :func:`build_from_form`.
    """
    r = build_from_form(form, base, places)
    return r.data, r.keys


def _number(v: Any) -> float | None:
    if v is None or v == "" or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


#: the form's numeric fields: (field id, form key, label, unit, lowest, highest, integer, needed when)
NUMERIC_FIELDS = [
    ("b-duration", "duration_h", "Duration", "h", 0.05, 240.0, False, lambda f: True),
    ("b-seed", "seed", "Seed", "", 0.0, 2.0**63, True, lambda f: False),
    ("b-storm-duration", "storm_duration_h", "Storm duration", "h", 0.05, 240.0, False, lambda f: False),
    ("b-release", "release_m3_per_s", "Peak release", "m³/s", 0.0, 1e5, False, lambda f: f.get("event") == "reservoir"),
    ("b-surge", "surge_m", "Surge", "m", -5.0, 15.0, False, lambda f: f.get("event") == "tide_surge"),
    ("b-warning-lead", "warning_lead_h", "Warning lead", "h", 0.0, 240.0, False,
     lambda f: "warning" in (f.get("interventions") or [])),
    ("b-ambulances", "ambulances", "Extra ambulances", "", 1.0, 1000.0, True,
     lambda f: "ambulances" in (f.get("interventions") or [])),
    ("b-boats", "boats", "Extra boats", "", 1.0, 1000.0, True, lambda f: "boats" in (f.get("interventions") or [])),
]


def form_errors(form: dict) -> dict[str, str]:
    """Checks the form itself can make before the schema sees it: a required input left empty is
    "Required"; a value given but out of range is reported as what it is (a negative number says so)."""
    err = {}
    if not (form.get("name") or "").strip():
        err["b-name"] = "Give the scenario a name."
    ev = form.get("event") or "base"
    for fid, key, label, unit, lo, hi, integer, needed in NUMERIC_FIELDS:
        if fid == "b-storm-duration" and ev != "design_storm":
            continue
        v = form.get(key)
        u = f" {unit}" if unit else ""
        if v is None or v == "":
            if needed(form):
                err[fid] = f"Required: a number{' in ' + unit if unit else ''}."
            continue
        x = _number(v)
        if x is None:
            err[fid] = f"{label}: not a number (got {cap_text(v)})."
        elif x < 0 and lo >= 0:
            err[fid] = f"{label} cannot be negative (got {x:g}{u})."
        elif not (lo <= x <= hi):
            err[fid] = f"{label} must be between {lo:g} and {hi:g}{u} (got {x:g}{u})."
        elif integer and x != int(x):
            err[fid] = f"{label} must be a whole number (got {x:g})."
    if ev == "typhoon" and not form.get("track"):
        err["b-track"] = "Choose a storm track."
    if ev == "design_storm" and not form.get("return_period"):
        err["b-return-period"] = "Choose a return period."
    return err


def cap_text(v: Any, n: int = 40) -> str:
    t = repr(v) if not isinstance(v, str) else v
    return t if len(t) <= n else t[: n - 1] + "…"


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
    path.write_text(to_yaml(data), encoding="utf-8")
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
