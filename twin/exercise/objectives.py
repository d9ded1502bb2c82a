"""Objectives of an exercise: measurable goals, scored on a finished run folder.

An exercise file lists them under ``objectives:``, one mapping each with a ``kind``::

    objectives:
      - {kind: ward_evacuated_before_depth, ward: Tam Kỳ, depth_m: 0.5}
      - {kind: no_hospital_closed}
      - {kind: ambulance_response_p90_max, minutes: 20}
      - {kind: rescue_wait_max, minutes: 60}
      - {kind: people_hours_significant_max, person_hours: 500}
      - {kind: evacuated_before_water_min, share: 0.8, depth_m: 0.1}

:func:`parse_objectives` validates such a list (an :class:`ObjectiveError` names the entry, the
field and the value); :func:`score_objectives` scores them on a run folder from its tables
(``people``, ``incidents``, ``unit_actions``, ``fields.nc``) and the city's wards. Each result says
``met`` or ``missed`` (``unmeasured`` when the run lacks what the objective needs, with the reason),
the measured value, the target, and ``decided_at_s``: the model time the outcome was settled — for a
miss the moment it became irrecoverable given how the run went (the failure that broke it), for a
met objective the end of the run (a later failure could still have broken it).

Definitions (the same ones ``twin review`` reports as KPIs):

- *evacuated before the water*: a person (household member or tourist) whose home — where the
  agent was at t = 0 — sees water of at least ``depth_m`` is counted as evacuated before the water
  when the agent had left (a state of ``twin.output.kpis.SAFE_STATES`` or ``MOVING_STATES``) at or
  before the first record in which that water was seen (people-table records every
  ``outputs.tables_every``, and ``fields.nc`` depth where written). Homes already in that water
  at the first record are not counted.
- *people-hours at significant hazard*: Σ persons × record interval over people records whose
  FD2321 hazard class is ``significant`` or ``extreme`` (``twin.output.kpis``).
- *ambulance response p90*: the 90th percentile (nearest rank above) of the response time of
  medical calls; a call still unanswered at the end counts with its wait so far (a lower bound).
- *rescue wait*: time from a rescue call to a unit on scene; a call unanswered at the end counts
  with its wait so far.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter, ValidationError

from twin.valuetypes import FrozenModel

__all__ = ["Objective", "ObjectiveError", "OBJECTIVE_KINDS", "parse_objectives", "score_objectives",
           "check_objectives", "evacuated_before_water", "significant_person_hours", "RunData"]


class ObjectiveError(ValueError):
    """An objective that cannot be read or scored; the message names the entry, field and value."""


class _Objective(FrozenModel):
    kind: str
    label: str | None = Field(None, max_length=200, description="a name for the review")

    def target(self) -> float:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


class WardEvacuatedBeforeDepth(_Objective):
    """The people of ``ward`` whose homes see ``depth_m`` of water had left before it came (at
    least ``min_share`` of them, by persons)."""

    kind: Literal["ward_evacuated_before_depth"]
    ward: str = Field(..., min_length=1, description="ward name or code")
    depth_m: float = Field(0.5, gt=0, le=20, description="water depth at home [m]")
    min_share: float = Field(1.0, gt=0, le=1, description="share of those persons that must have left [1]")

    def target(self) -> float:
        return self.min_share

    def describe(self) -> str:
        return (f"ward {self.ward} evacuated before its homes see {self.depth_m:g} m "
                f"(at least {100 * self.min_share:g} % of those persons)")


class NoHospitalClosed(_Objective):
    """No hospital closes (by water) during the run."""

    kind: Literal["no_hospital_closed"]

    def target(self) -> float:
        return 0.0

    def describe(self) -> str:
        return "no hospital closed"


class AmbulanceResponseP90Max(_Objective):
    """The 90th percentile of the ambulance response to medical calls is at most ``minutes``."""

    kind: Literal["ambulance_response_p90_max"]
    minutes: float = Field(..., gt=0, le=10_000)

    def target(self) -> float:
        return self.minutes * 60.0

    def describe(self) -> str:
        return f"p90 ambulance response <= {self.minutes:g} min"


class RescueWaitMax(_Objective):
    """No rescue call waits more than ``minutes`` for a unit on scene."""

    kind: Literal["rescue_wait_max"]
    minutes: float = Field(..., gt=0, le=10_000)

    def target(self) -> float:
        return self.minutes * 60.0

    def describe(self) -> str:
        return f"no rescue call waits more than {self.minutes:g} min"


class PeopleHoursSignificantMax(_Objective):
    """People-hours at significant or extreme hazard (FD2321) stay at most ``person_hours``."""

    kind: Literal["people_hours_significant_max"]
    person_hours: float = Field(..., ge=0, le=1e12)

    def target(self) -> float:
        return self.person_hours

    def describe(self) -> str:
        return f"people-hours at significant hazard or worse <= {self.person_hours:g}"


class EvacuatedBeforeWaterMin(_Objective):
    """At least ``share`` of the persons whose homes see ``depth_m`` had left before it came."""

    kind: Literal["evacuated_before_water_min"]
    share: float = Field(..., gt=0, le=1)
    depth_m: float = Field(0.1, gt=0, le=20)

    def target(self) -> float:
        return self.share

    def describe(self) -> str:
        return f"at least {100 * self.share:g} % of the persons whose homes see {self.depth_m:g} m left before it"


Objective = Annotated[
    WardEvacuatedBeforeDepth | NoHospitalClosed | AmbulanceResponseP90Max | RescueWaitMax
    | PeopleHoursSignificantMax | EvacuatedBeforeWaterMin,
    Field(discriminator="kind"),
]
OBJECTIVE_KINDS: dict[str, type[_Objective]] = {
    "ward_evacuated_before_depth": WardEvacuatedBeforeDepth, "no_hospital_closed": NoHospitalClosed,
    "ambulance_response_p90_max": AmbulanceResponseP90Max, "rescue_wait_max": RescueWaitMax,
    "people_hours_significant_max": PeopleHoursSignificantMax,
    "evacuated_before_water_min": EvacuatedBeforeWaterMin,
}
_ADAPTER: TypeAdapter = TypeAdapter(Objective)
UNITS = {"ward_evacuated_before_depth": "1", "no_hospital_closed": "1", "ambulance_response_p90_max": "s",
         "rescue_wait_max": "s", "people_hours_significant_max": "h", "evacuated_before_water_min": "1"}


def parse_objectives(items: Any, where: str = "objectives") -> list[_Objective]:
    """Objects from a list of mappings (an exercise file's ``objectives:``); :class:`ObjectiveError`
    names the entry (``objectives[2]``), the field and the value of the first bad one."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ObjectiveError(f"{where}: expected a list of objectives, got {type(items).__name__}")
    out = []
    for i, obj in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(obj, _Objective):
            out.append(obj)
            continue
        if not isinstance(obj, dict):
            raise ObjectiveError(f"{at}: expected a mapping with a 'kind' key, got {type(obj).__name__} (value {obj!r})")
        kind = obj.get("kind")
        if kind not in OBJECTIVE_KINDS:
            raise ObjectiveError(f"{at}.kind: unknown objective kind (value {kind!r}); kinds are "
                                 f"{', '.join(sorted(OBJECTIVE_KINDS))}")
        try:
            out.append(_ADAPTER.validate_python(obj))
        except ValidationError as exc:
            e = exc.errors(include_url=False)[0]
            loc = [str(p) for p in e.get("loc", ()) if not str(p).startswith("function-")]
            if loc and loc[0] == kind:
                loc = loc[1:]
            msg = "unknown field" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
            v = repr(e.get("input"))
            v = v if len(v) <= 120 else v[:117] + "..."
            raise ObjectiveError(f"{at}.{'.'.join(loc) or kind} ({kind}): {msg} (value {v})") from None
    return out


# ----------------------------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load_city(name: str, resolution_m: float):
    from twin.city import load_city

    return load_city(name, resolution_m)


class RunData:
    """Lazy, cached reads of a run folder through the schema (tables, fields, the city's wards)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "scenario.yaml").is_file():
            raise ObjectiveError(f"{self.run_dir}: not a run folder (no scenario.yaml)")
        self._cache: dict[str, Any] = {}

    def manifest(self) -> dict:
        if "manifest" not in self._cache:
            f = self.run_dir / "manifest.json"
            try:
                self._cache["manifest"] = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ObjectiveError(f"{f}: cannot be read ({exc})") from None
        return self._cache["manifest"]

    def components(self) -> list[str]:
        return [str(c) for c in self.manifest().get("components", [])]

    def end_s(self) -> float:
        return float(self.manifest().get("time_s", 0.0))

    def scenario_dict(self) -> dict:
        sc = self.manifest().get("scenario")
        if not isinstance(sc, dict):
            raise ObjectiveError(f"{self.run_dir / 'manifest.json'}: no scenario object")
        return sc

    def tables_every(self) -> float:
        from twin.valuetypes import parse_duration

        return parse_duration(self.scenario_dict().get("outputs", {}).get("tables_every", 0))

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            from twin.output.schema import read_table

            self._cache[name] = read_table(self.run_dir, name)
        return self._cache[name]

    def homes(self) -> pd.DataFrame:
        """Per agent: home x, y (the position at its first record), persons (largest recorded)."""
        if "homes" not in self._cache:
            p = self.table("people")
            first = p.sort_values(["agent_id", "t_s"], kind="stable").drop_duplicates("agent_id")
            h = first.set_index("agent_id")[["x", "y", "kind"]].rename(columns={"x": "home_x", "y": "home_y"})
            h["persons"] = p.groupby("agent_id")["persons"].max()
            self._cache["homes"] = h
        return self._cache["homes"]

    def city(self):
        """The run's city bundle at the run's resolution (loaded once per process)."""
        sc = self.scenario_dict()
        try:
            return _load_city(str(sc.get("city", "tamky")), float(sc.get("resolution_m", 30)))
        except (ValueError, FileNotFoundError) as exc:
            raise ObjectiveError(f"{self.run_dir}: cannot load the city {sc.get('city')!r} ({exc})") from None

    def wards(self):
        """The city's ward polygons (GeoDataFrame with ``ward``, ``ward_name``) or None."""
        return getattr(self.city(), "wards", None)

    def home_water_time(self, depth_m: float) -> pd.Series:
        """Per agent: the first model time its home had at least ``depth_m`` of water (NaN: never)."""
        key = f"water@{depth_m!r}"
        if key in self._cache:
            return self._cache[key]
        p = self.table("people")
        h = self.homes()
        hx = h["home_x"].reindex(p["agent_id"]).to_numpy()
        hy = h["home_y"].reindex(p["agent_id"]).to_numpy()
        at_home = (p["x"].to_numpy() == hx) & (p["y"].to_numpy() == hy)
        wet = p[at_home & (p["depth_m"].to_numpy() >= depth_m)]
        t = wet.groupby("agent_id")["t_s"].min().reindex(h.index)
        tf = self._fields_water_time(h, depth_m)
        if tf is not None:
            t = pd.concat([t, tf], axis=1).min(axis=1)
        self._cache[key] = t
        return t

    def _fields_water_time(self, h: pd.DataFrame, depth_m: float) -> pd.Series | None:
        f = self.run_dir / "fields.nc"
        if not f.is_file():
            return None
        import xarray as xr

        with xr.open_dataset(f, decode_times=False) as ds:
            if "depth" not in ds.variables or len(h) == 0:
                return None
            xs, ys = ds["x"].values, ds["y"].values
            col = np.clip(np.rint((h["home_x"].to_numpy() - xs[0]) / (xs[1] - xs[0])).astype(int), 0, len(xs) - 1) \
                if len(xs) > 1 else np.zeros(len(h), int)
            row = np.clip(np.rint((h["home_y"].to_numpy() - ys[0]) / (ys[1] - ys[0])).astype(int), 0, len(ys) - 1) \
                if len(ys) > 1 else np.zeros(len(h), int)
            d = ds["depth"].values[:, row, col]            # (time, agents)
            times = ds["time"].values.astype(float)
        hit = np.nan_to_num(d, nan=0.0) >= depth_m
        first = np.where(hit.any(axis=0), times[np.argmax(hit, axis=0)], np.nan)
        return pd.Series(first, index=h.index)

    def left_time(self) -> pd.Series:
        """Per agent: the first model time it had left (safe or on its way; NaN: never)."""
        if "left" not in self._cache:
            from twin.output.kpis import MOVING_STATES, SAFE_STATES

            p = self.table("people")
            gone = p[p["state"].astype(str).isin(SAFE_STATES + MOVING_STATES)]
            self._cache["left"] = gone.groupby("agent_id")["t_s"].min().reindex(self.homes().index)
        return self._cache["left"]


def _ward_agents(data: RunData, ward: str) -> tuple[np.ndarray, str]:
    import shapely

    from twin.geo import normalise_name

    wards = data.wards()
    if wards is None or len(wards) == 0:
        raise ObjectiveError(f"ward {ward!r}: the city of {data.run_dir} has no wards")
    names = [str(n) for n in wards["ward_name"]] if "ward_name" in wards.columns else [str(n) for n in wards["ward"]]
    codes = [str(c) for c in wards["ward"]]
    want = normalise_name(ward)
    hit = [i for i, (n, c) in enumerate(zip(names, codes)) if normalise_name(n) == want or c == str(ward).strip()]
    if not hit:
        raise ObjectiveError(f"ward_evacuated_before_depth.ward: unknown ward (value {ward!r}); wards: {', '.join(names)}")
    geom = wards.geometry.iloc[hit[0]]
    h = data.homes()
    inside = shapely.contains_xy(geom, h["home_x"].to_numpy(), h["home_y"].to_numpy())
    return h.index.to_numpy()[inside], names[hit[0]]


def evacuated_before_water(data: RunData | str | Path, depth_m: float = 0.1, agents: np.ndarray | None = None) -> dict:
    """Persons whose homes saw ``depth_m`` and how many of them had left before it (module docstring).

    Homes already in that water at the first record are left out (``persons_wet_at_start``): nobody
    could have left before it. Returns ``{"persons_flooded", "persons_left_before", "share",
    "persons_wet_at_start", "failures"}``; ``failures`` is a
    frame (t_s: when the water came to a home of someone still there, persons), sorted by time."""
    data = data if isinstance(data, RunData) else RunData(data)
    h = data.homes()
    tw = data.home_water_time(depth_m)
    tl = data.left_time()
    if agents is not None:
        h, tw, tl = h.loc[agents], tw.loc[agents], tl.loc[agents]
    t_first = float(data.table("people")["t_s"].min()) if len(h) else 0.0
    already = tw.notna() & (tw <= t_first)          # in the water before the run began: nothing to decide
    flooded = tw.notna() & ~already
    ok = flooded & tl.notna() & (tl <= tw)
    pf = float(h.loc[flooded, "persons"].sum())
    po = float(h.loc[ok, "persons"].sum())
    bad = flooded & ~ok
    failures = pd.DataFrame({"t_s": tw[bad].to_numpy(float), "persons": h.loc[bad, "persons"].to_numpy(float)})
    return {"persons_flooded": pf, "persons_left_before": po, "share": (po / pf) if pf > 0 else None,
            "persons_wet_at_start": float(h.loc[already, "persons"].sum()),
            "failures": failures.sort_values("t_s", kind="stable").reset_index(drop=True)}


def significant_person_hours(data: RunData | str | Path) -> tuple[float, pd.Series]:
    """People-hours at significant or extreme hazard, and its cumulative sum by record time."""
    data = data if isinstance(data, RunData) else RunData(data)
    p = data.table("people")
    sig = p[p["hazard_class"].astype(str).isin(("significant", "extreme"))]
    per_t = (sig["persons"] * data.tables_every() / 3600.0).groupby(sig["t_s"]).sum().sort_index()
    cum = per_t.cumsum()
    return (float(cum.iloc[-1]) if len(cum) else 0.0), cum


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def _result(i: int, o: _Objective, status: str, measured: float | None, decided: float | None, detail: str) -> dict:
    return {"index": i, "kind": o.kind, "label": o.label or o.describe(), "spec": o.model_dump(mode="json"),
            "status": status, "measured": None if measured is None or not math.isfinite(measured) else float(measured),
            "target": float(o.target()), "units": UNITS[o.kind],
            "decided_at_s": None if decided is None else float(decided), "detail": detail}


def _share_result(i: int, o: _Objective, ev: dict, min_share: float, end: float, what: str) -> dict:
    pf = ev["persons_flooded"]
    if pf <= 0:
        return _result(i, o, "met", None, end, f"no home of {what} saw that water during the run")
    allowed = (1.0 - min_share) * pf
    fails = ev["failures"]
    cum = fails["persons"].cumsum().to_numpy()
    over = np.flatnonzero(cum > allowed + 1e-9 * max(pf, 1.0))
    share = ev["share"]
    detail = (f"{ev['persons_left_before']:.0f} of {pf:.0f} persons of {what} whose homes saw the water "
              f"had left before it")
    if ev["persons_wet_at_start"] > 0:
        detail += f" ({ev['persons_wet_at_start']:.0f} persons whose homes were in it at the start are not counted)"
    if len(over):
        return _result(i, o, "missed", share, float(fails["t_s"].iloc[over[0]]), detail)
    return _result(i, o, "met", share, end, detail)


def _needs(data: RunData, comp: str) -> str | None:
    return None if comp in data.components() else f"the run has no {comp} component"


def _score_one(i: int, o: _Objective, data: RunData) -> dict:
    end = data.end_s()
    if isinstance(o, (WardEvacuatedBeforeDepth, EvacuatedBeforeWaterMin)):
        why = _needs(data, "people")
        if why:
            return _result(i, o, "unmeasured", None, None, why)
        if isinstance(o, WardEvacuatedBeforeDepth):
            agents, name = _ward_agents(data, o.ward)
            ev = evacuated_before_water(data, o.depth_m, agents)
            return _share_result(i, o, ev, o.min_share, end, f"ward {name}")
        ev = evacuated_before_water(data, o.depth_m)
        return _share_result(i, o, ev, o.share, end, "the city")
    if isinstance(o, PeopleHoursSignificantMax):
        why = _needs(data, "people")
        if why:
            return _result(i, o, "unmeasured", None, None, why)
        total, cum = significant_person_hours(data)
        over = cum[cum > o.person_hours]
        if len(over):
            return _result(i, o, "missed", total, float(over.index[0]), f"{total:.1f} person-h at significant hazard or worse")
        return _result(i, o, "met", total, end, f"{total:.1f} person-h at significant hazard or worse")
    why = _needs(data, "services")
    if why:
        return _result(i, o, "unmeasured", None, None, why)
    if isinstance(o, NoHospitalClosed):
        acts = data.table("unit_actions")
        closed = acts[acts["action"].astype(str) == "hospital_closed"].sort_values("t_s", kind="stable")
        if len(closed):
            return _result(i, o, "missed", float(len(closed)), float(closed["t_s"].iloc[0]),
                           f"{len(closed)} hospital(s) closed by water, the first at t = {closed['t_s'].iloc[0]:g} s")
        return _result(i, o, "met", 0.0, end, "no hospital closed")
    inc = data.table("incidents")
    want = "medical" if isinstance(o, AmbulanceResponseP90Max) else "rescue"
    inc = inc[inc["kind"].astype(str) == want]
    if len(inc) == 0:
        return _result(i, o, "met", None, end, f"no {want} call in the run")
    call = inc["call_s"].to_numpy(float)
    rt = inc["response_time_s"].to_numpy(float)
    open_ = ~np.isfinite(rt)
    wait = np.where(open_, np.maximum(end - call, 0.0), rt)
    target = o.target()
    known_at = np.sort(call[wait > target] + target)   # when each failure became certain
    n_open = int(open_.sum())
    note = f" ({n_open} call(s) unanswered at the end count with their wait so far)" if n_open else ""
    if isinstance(o, RescueWaitMax):
        worst = float(wait.max())
        if len(known_at):
            return _result(i, o, "missed", worst, float(known_at[0]),
                           f"{len(known_at)} of {len(inc)} rescue calls waited more than {o.minutes:g} min{note}")
        return _result(i, o, "met", worst, end, f"{len(inc)} rescue calls, longest wait {worst / 60:.1f} min{note}")
    n = len(wait)
    k = int(math.ceil(0.9 * (n - 1)))                       # nearest rank above (numpy method "higher")
    p90 = float(np.sort(wait)[k])
    need = n - k                                            # failures that push the p90 over the target
    detail = f"p90 of {n} medical calls {p90 / 60:.1f} min{note}"
    if p90 > target and len(known_at) >= need:
        return _result(i, o, "missed", p90, float(known_at[need - 1]), detail)
    return _result(i, o, "met", p90, end, detail)


def score_objectives(run_dir: str | Path | RunData, objectives: list) -> list[dict]:
    """Score ``objectives`` (parsed or raw mappings) on a finished run folder; one dict each:
    ``index, kind, label, spec, status (met|missed|unmeasured), measured, target, units,
    decided_at_s, detail``."""
    data = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    objs = parse_objectives(list(objectives))
    return [_score_one(i, o, data) for i, o in enumerate(objs)]


def check_objectives(objectives: list, city) -> None:
    """Check the objectives against a city before an exercise starts (wards that exist)."""
    from twin.geo import normalise_name

    wards = getattr(city, "wards", None)
    names = [] if wards is None else [str(n) for n in wards.get("ward_name", wards.get("ward", []))]
    codes = [] if wards is None else [str(c) for c in wards.get("ward", [])]
    known = {normalise_name(n) for n in names} | set(codes)
    for i, o in enumerate(parse_objectives(list(objectives))):
        if isinstance(o, WardEvacuatedBeforeDepth) and normalise_name(o.ward) not in known and o.ward.strip() not in known:
            raise ObjectiveError(f"objectives[{i}].ward: unknown ward (value {o.ward!r}); wards: "
                                 f"{', '.join(names) or 'none'}")
