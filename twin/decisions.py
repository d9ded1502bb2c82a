"""Decisions: validated commands that the running simulation applies at a coupling-step boundary.

A decision is data — a ``type`` and its fields, the same keys as a scenario's ``interventions:``
entry — so YAML files, the Python API, the dashboard and exercise seats speak one schema::

    sim.submit({"type": "road_closure", "near": [x, y], "radius_m": 300}, at=7200,
               source="api", issuer="duty officer")

Every kind is a pydantic class below with two methods:

- ``validate(twin)`` checks the decision against the built twin (the component it needs exists, the
  place, ward, link or unit it names is there, the geometry lies on the map) and raises
  :class:`DecisionError` naming the field and the value. Nothing changes.
- ``apply(twin, t_s)`` carries it out at model time ``t_s`` and returns a one-line outcome.

Both go through one private ``_plan(twin)`` that does every check and returns the action to run, so
what ``validate`` accepted is exactly what ``apply`` does.

``structural`` kinds change configuration that the components' ``get_state()`` does not hold (a
levee's faces, a pump, an inflow, a shelter added to the people model's arrays). A restart (resume,
fork, replay from a checkpoint) re-installs them, in the order they acted, before the component
states are restored; the other kinds live entirely in the component states.

To add a kind: write a class here with ``type: Literal["my_kind"]``, its fields, ``_plan`` (and
``structural = True`` if a restart must re-install it), add it to :data:`Decision`, and test it in
``tests/sim/test_decisions.py``. Scenarios, ``Simulation.submit`` and the reference docs pick it up.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from twin.valuetypes import XY, Duration, EventTime, FrozenModel

if TYPE_CHECKING:  # pragma: no cover
    from twin.build import Twin

__all__ = [
    "Decision",
    "DecisionError",
    "parse_decision",
    "DECISION_TYPES",
    "SOURCES",
    "Levee",
    "Pump",
    "RoadClosure",
    "RoadReopen",
    "ShelterOpen",
    "ShelterClose",
    "ExtraUnits",
    "Warning_",
    "EvacuationOrder",
    "Dispatch",
    "HospitalClosure",
    "ReservoirRelease",
    "Breach",
    "DecisionQueue",
    "Pending",
    "LOG_COLUMNS",
]

SOURCES = ("scenario", "api", "dashboard", "exercise", "replay")

Action = Callable[[float], str]


class DecisionError(ValueError):
    """A decision that cannot act: the message names the field and the value."""

    def __init__(self, message: str, field: str | None = None, value: Any = None):
        super().__init__(message)
        self.field = field
        self.value = value


def _err(d: _Decision, field: str, value: Any, why: str) -> DecisionError:
    v = repr(value)
    if len(v) > 120:
        v = v[:117] + "..."
    return DecisionError(f"{d.type}.{field}: {why} (value {v})", field=field, value=value)


def _need(d: _Decision, twin: Twin, component: str) -> Any:
    comp = getattr(twin, component, None)
    if comp is None:
        raise DecisionError(f"{d.type}: needs the {component} component, which this scenario does not enable",
                            field="type", value=d.type)
    return comp


def _utm(d: _Decision, twin: Twin, xy: Any, field: str, crs: str) -> np.ndarray:
    """Points in the twin's CRS, finite and on the map (at least one point when ``any_inside``)."""
    from twin.geo import to_utm

    _in_crs(d, np.atleast_2d(np.asarray(xy, dtype=float)), field, xy, crs)
    try:
        pts = to_utm(xy, crs)
    except Exception as exc:  # pyproj errors for a bad CRS string
        raise _err(d, "crs", crs, f"cannot transform: {exc}") from None
    if not np.isfinite(pts).all():
        raise _err(d, field, xy, "coordinates must be finite")
    return pts


def _in_crs(d: _Decision, raw: np.ndarray, field: str, xy: Any, crs: str) -> None:
    """Refuse points outside their CRS: longitude beyond ±180° or latitude beyond ±90° (pyproj would
    wrap them), or projected metres farther than the Earth's circumference from the origin."""
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception:  # a bad CRS string: the transform reports it
        return
    lim = (180.0, 90.0) if c.is_geographic else (4.1e7, 4.1e7) if c.axis_info[0].unit_name == "metre" else None
    if lim is not None and ((np.abs(raw[:, 0]) > lim[0]) | (np.abs(raw[:, 1]) > lim[1])).any():
        raise _err(d, field, xy, f"a point lies outside the coordinate range of {crs} "
                                 f"(|x| <= {lim[0]:g}, |y| <= {lim[1]:g}{'; lon, lat order' if c.is_geographic else ' m'})")


def _on_map(d: _Decision, twin: Twin, pts: np.ndarray, field: str, value: Any, every: bool = True) -> None:
    x0, y0, x1, y1 = twin.terrain.bounds
    inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    if not every and len(pts) > 1 and not inside.any():
        # a polyline may cross the map with both ends outside it (a levee drawn across the domain)
        from shapely.geometry import LineString, box

        if LineString(pts).intersects(box(x0, y0, x1, y1)):
            return
    if (every and not inside.all()) or not inside.any():
        raise _err(d, field, value, f"outside the map (x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} in "
                                    f"{twin.terrain.crs})")


def _cell(d: _Decision, twin: Twin, x: float, y: float, field: str, value: Any) -> tuple[int, int]:
    try:
        return twin.terrain.cells_near(x, y, 0)[0]
    except ValueError as exc:
        raise _err(d, field, value, str(exc)) from None


def _place(d: _Decision, twin: Twin, place: str, field: str = "place") -> tuple[float, float]:
    from twin.city import lookup_xy

    try:
        return lookup_xy(getattr(twin.city, "places", None), place, city=twin.scenario.city, what="place",
                         plural="places", by_id="place_id")
    except ValueError as exc:
        raise _err(d, field, place, str(exc)) from None


def _ward_codes(d: _Decision, twin: Twin, wards: list[str] | None, field: str) -> list[int] | None:
    from twin.geo import normalise_name as _norm

    if wards is None:
        return None
    codes = {_norm(k): v for k, v in twin.ward_codes.items()}
    # a ward's name before a merger (Tam Kỳ: "An Mỹ", "Phường Tân Thạnh") means the ward it is part of today
    legacy = {_norm(k): v for k, v in getattr(twin, "legacy_ward_codes", {}).items()}
    out, bad = [], []
    for a in wards:
        key = _norm(a)
        for prefix in ("phuong ", "xa ", "ward "):
            if key.startswith(prefix) and key[len(prefix):] in {**codes, **legacy}:
                key = key[len(prefix):]
        if str(a).isdigit():
            out.append(int(a))
        elif key in codes:
            out.append(codes[key])
        elif key in legacy:
            out.append(legacy[key])
        else:
            bad.append(a)
    if bad:
        raise _err(d, field, bad, f"unknown ward(s) {bad} (wards: {', '.join(twin.ward_codes) or 'none'})")
    return out


class _Decision(FrozenModel):
    """Fields every decision has: when it acts and an optional label."""

    at: EventTime = Field(0.0, description="model time [s since start] (or a local datetime in a scenario)")
    label: str | None = Field(None, max_length=200, description="a name for logs and maps")

    type: str
    structural: ClassVar[bool] = False

    def _plan(self, twin: Twin) -> Action:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def validate(self, twin: Twin) -> None:  # type: ignore[override]
        """Raise :class:`DecisionError` if this decision cannot act on ``twin``; change nothing."""
        self._plan(twin)

    def apply(self, twin: Twin, t_s: float) -> str:
        """Carry the decision out at model time ``t_s``; returns what it did."""
        return self._plan(twin)(float(t_s))

    def params(self) -> dict:
        """The decision's fields as JSON-safe data (what ``decisions.parquet`` stores)."""
        return self.model_dump(mode="json", exclude_defaults=False)


# ----------------------------------------------------------------------------------------------
# flood
# ----------------------------------------------------------------------------------------------
class Levee(_Decision):
    """Raise the crest of every face a polyline crosses to ``crest_m`` (sandbags, a temporary wall)."""

    type: Literal["levee"]
    polyline: list[XY] = Field(..., min_length=2)
    crs: str = "EPSG:32649"
    crest_m: float = Field(..., gt=-50, lt=500, description="crest elevation [m above MSL]")
    structural: ClassVar[bool] = True

    def _plan(self, twin: Twin) -> Action:
        flood = _need(self, twin, "flood")
        xy = _utm(self, twin, self.polyline, "polyline", self.crs)
        _on_map(self, twin, xy, "polyline", self.polyline, every=False)

        def act(t_s: float) -> str:
            n = flood.add_levee(xy, self.crest_m)
            return f"{n} cell faces raised to {self.crest_m:g} m"
        return act


class Pump(_Decision):
    """A pump at a place or point removing up to ``capacity_m3_per_s`` (to ``to_xy`` or out of the
    map); ``active: false`` switches off the pumps at that cell."""

    type: Literal["pump"]
    place: str | None = None
    xy: XY | None = None
    crs: str = "EPSG:32649"
    capacity_m3_per_s: float = Field(..., gt=0, le=1000)
    to_xy: XY | None = None
    active: bool = True
    structural: ClassVar[bool] = True

    @model_validator(mode="after")
    def _where(self):
        if (self.place is None) == (self.xy is None):
            raise ValueError("give exactly one of 'place' or 'xy'")
        return self

    def _plan(self, twin: Twin) -> Action:
        flood = _need(self, twin, "flood")
        if self.place is not None:
            x, y = _place(self, twin, self.place)
            cell = _cell(self, twin, x, y, "place", self.place)
        else:
            (x, y), = _utm(self, twin, self.xy, "xy", self.crs)
            cell = _cell(self, twin, x, y, "xy", self.xy)
        to_cell = None
        if self.to_xy is not None:
            (tx, ty), = _utm(self, twin, self.to_xy, "to_xy", self.crs)
            to_cell = _cell(self, twin, tx, ty, "to_xy", self.to_xy)
        if getattr(flood, "subgrid", None) is not None:  # terrain cell -> the flood's (coarse) solve cell
            cell = flood.grid_cells([cell])[0]
            to_cell = flood.grid_cells([to_cell])[0] if to_cell is not None else None

        def act(t_s: float) -> str:
            if not self.active:
                n = flood.set_pump_capacity(cell, 0.0)
                return f"{n} pump(s) at cell {cell} switched off"
            flood.add_pump(cell, self.capacity_m3_per_s, to_cell=to_cell)
            return f"pump of {self.capacity_m3_per_s:g} m3/s at cell {cell}"
        return act


class ReservoirRelease(_Decision):
    """A release from the reservoir into the city's river at the outlet: ``discharge_m3_per_s`` at
    ``times`` (model seconds, interpolated; zero outside). In a scenario it is part of the reservoir's
    level-pool balance. Issued during a run it adds that hydrograph from the time it acts: drawn from the
    level pool (``flood.reservoir``, re-integrated from the pool's first step at or after that time: the
    level falls, spill and the rule's release follow, and an operated reservoir gives no more than it
    holds above its lowest sill); without a reservoir section it is an inflow from outside the model. A
    reservoir filled on the grid (``in_grid``) refuses it (the release would not lower the lake)."""

    type: Literal["reservoir_release"]
    reservoir: str = "Phu Ninh"
    outlet: str | None = Field(None, description="city inflow point; default the reservoir's outlet")
    times: list[Duration]
    discharge_m3_per_s: list[Annotated[float, Field(ge=0, le=100000)]]
    structural: ClassVar[bool] = True

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.times) != len(self.discharge_m3_per_s) or not self.times:
            raise ValueError("times and discharge_m3_per_s must have the same length >= 1")
        if any(b < a for a, b in zip(self.times[:-1], self.times[1:])):
            raise ValueError("times must be increasing")
        return self

    def _plan(self, twin: Twin) -> Action:
        flood = _need(self, twin, "flood")
        from twin.city import lookup_xy
        from twin.flood.forcing import reservoir_outlet

        res = twin.scenario.flood.reservoir if twin.scenario.flood is not None else None
        if res is not None and res.in_grid:
            raise _err(self, "type", self.type, f"the reservoir ({res.name}) is filled on the grid (in_grid): a "
                       "release would add water at the outlet without lowering the lake; model the outflow on "
                       "the grid (a breach) or use the level pool (in_grid: false)")
        try:
            name = self.outlet or reservoir_outlet(twin)
            x, y = lookup_xy(getattr(twin.city, "inflows", None), name, city=twin.scenario.city,
                             what="inflow point", plural="inflows", by_id=None)
            cells = twin.terrain.cells_near(x, y, 3 * twin.terrain.cell_size)
        except ValueError as exc:
            raise _err(self, "outlet", self.outlet, str(exc)) from None
        idx = twin.forcing.get("reservoir_inflow_index")
        if res is not None and idx is not None:
            pool_outlet = reservoir_outlet(twin)
            if name != pool_outlet:
                raise _err(self, "outlet", self.outlet, f"the level pool of {res.name} releases at its outlet "
                           f"{pool_outlet!r} (flood.reservoir.outlet); leave outlet out or give that one")
            return self._draw_from_pool(twin, flood, idx, name, res.name)

        def act(t_s: float) -> str:
            t = np.asarray(self.times, float)
            q = np.asarray(self.discharge_m3_per_s, float)
            # zero before the decision acts: a step at t_s
            keep = t > t_s
            tt = np.concatenate([[t_s, t_s], t[keep]]) if keep.any() else np.array([t_s, t_s + 1.0])
            q_at = float(np.interp(t_s, t, q, left=0.0, right=0.0))
            qq = np.concatenate([[0.0, q_at], q[keep]]) if keep.any() else np.array([0.0, 0.0])
            tt[0] = np.nextafter(t_s, -np.inf)
            flood.add_inflow(flood.grid_cells(cells) if getattr(flood, "subgrid", None) is not None else cells,
                             hydrograph=(tt, qq))
            return f"release of up to {q.max():g} m3/s at {name}"
        return act

    def _draw_from_pool(self, twin: Twin, flood: Any, idx: int, name: str, pool: str) -> Action:
        from twin.flood.forcing import draw_release, stepped_hydrograph

        def act(t_s: float) -> str:
            t, q_old = (np.asarray(a, float) for a in twin.forcing["reservoir_release"])
            out = draw_release(twin, t_s, np.asarray(self.times, float), np.asarray(self.discharge_m3_per_s, float))
            flood.set_inflow_hydrograph(idx, stepped_hydrograph(out["t"], q_old, out["q"], out["from_index"]))
            return (f"release of up to {max(self.discharge_m3_per_s):g} m3/s at {name}, drawn from {pool}: "
                    f"{out['asked_m3'] / 1e6:.2f} Mm3 asked, the pool's release changes by "
                    f"{out['release_change_m3'] / 1e6:+.2f} Mm3; level at the end {out['level_before_m']:.2f} → "
                    f"{out['level_after_m']:.2f} m")
        return act



class ReservoirGate(_Decision):
    """Set the gates of one gated spillway of an operated reservoir (``flood.reservoir.operation`` rule
    or manual) to ``opening_m`` from the time it acts: the level pool is re-integrated from then on
    (twin.flood.reservoir_ops) and the release into the city follows. Overrides the rule for that
    spillway for the rest of the run; a later gate decision replaces it."""

    type: Literal["reservoir_gate"]
    spillway: str = Field(..., description="the gated spillway ('2' or '3' at Phú Ninh; 'all' for both)")
    opening_m: float = Field(..., ge=0, le=20, description="gate opening [m]; 0 closes, the gate height opens fully")
    structural: ClassVar[bool] = True

    def _plan(self, twin: Twin) -> Action:
        flood = _need(self, twin, "flood")
        from twin.flood.forcing import operated_reservoir, stepped_hydrograph
        from twin.flood.reservoir_ops import PHU_NINH

        res = twin.scenario.flood.reservoir
        if res is None or res.operation == "simple" or "reservoir_ops" not in twin.forcing:
            raise _err(self, "type", self.type, "gates need an operated reservoir: set flood.reservoir.operation "
                       "to 'rule' or 'manual' (the 'simple' level pool has no gates)")
        try:
            gates = (list(range(len(PHU_NINH.gated))) if str(self.spillway).lower() == "all"
                     else [PHU_NINH.gate(self.spillway)])
        except ValueError as exc:
            raise _err(self, "spillway", self.spillway, str(exc)) from None
        for gi in gates:
            h = PHU_NINH.gated[gi].gate_height_m
            if self.opening_m > h:
                raise _err(self, "opening_m", self.opening_m,
                           f"spillway {PHU_NINH.gated[gi].name} has gates {h:g} m high (0 ≤ opening_m ≤ {h:g})")
        idx = twin.forcing.get("reservoir_inflow_index")
        if idx is None:
            raise _err(self, "type", self.type, "the reservoir's release has no inflow point in the flood model")

        def act(t_s: float) -> str:
            t, q_old = twin.forcing["reservoir_release"]
            old = twin.forcing["reservoir_ops"]["run"].release_m3_s
            run = operated_reservoir(twin, t, None, extra_gates=[(float(t_s), gi, float(self.opening_m)) for gi in gates],
                                     t_from=float(t_s))
            q_new = np.asarray(q_old, float) - old + run.release_m3_s
            q_new = np.maximum(q_new, 0.0)
            i0 = min(int(np.searchsorted(t, t_s, side="left")), len(t) - 1)
            flood.set_inflow_hydrograph(idx, stepped_hydrograph(t, q_old, q_new, i0))
            twin.forcing["reservoir_release"] = (t, q_new)
            later = t >= t_s
            peak = float(run.release_m3_s[later].max()) if later.any() else 0.0
            names = ", ".join(PHU_NINH.gated[gi].name for gi in gates)
            return (f"gates of spillway {names} at {self.opening_m:g} m: release up to {peak:.0f} m3/s, "
                    f"level up to {float(run.level_m[later].max()) if later.any() else float(run.level_m[-1]):.2f} m")
        return act

class Breach(_Decision):
    """A levee/dyke breach: the crest along ``polyline`` (or at ``place``/``xy``) falls from
    ``crest_start_m`` to ``crest_end_m`` over ``formation`` starting when it acts, ``width_m`` wide."""

    type: Literal["breach"]
    polyline: list[XY] | None = None
    place: str | None = None
    xy: XY | None = None
    crs: str = "EPSG:32649"
    crest_start_m: float
    crest_end_m: float
    width_m: float | None = Field(None, gt=0, description="bottom width (default 50 m; froehlich2008: computed)")
    formation: Duration | None = Field(None, description="formation time (default 30 min; froehlich2008: computed)")
    method: Literal["linear", "froehlich2008"] = "linear"
    thickness_m: float | None = Field(None, ge=0, description="cut cells within thickness/2 of the polyline")
    side_slope: float | None = Field(None, ge=0, description="H:V of the opening's sides (default 0; froehlich: 1 or 0.7)")
    reservoir_volume_m3: float | None = Field(None, gt=0, description="froehlich2008: volume above the breach bottom")
    failure_mode: Literal["overtopping", "piping"] = "overtopping"
    structural: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check(self):
        if sum(v is not None for v in (self.polyline, self.place, self.xy)) != 1:
            raise ValueError("give exactly one of 'polyline', 'place' or 'xy'")
        if self.crest_end_m > self.crest_start_m:
            raise ValueError(f"crest_end_m ({self.crest_end_m}) must not exceed crest_start_m ({self.crest_start_m})")
        return self

    def _plan(self, twin: Twin) -> Action:
        flood = _need(self, twin, "flood")
        if self.polyline is not None:
            geom = _utm(self, twin, self.polyline, "polyline", self.crs)
            _on_map(self, twin, geom, "polyline", self.polyline, every=False)
        elif self.place is not None:
            geom = np.atleast_2d(_place(self, twin, self.place))
        else:
            geom = _utm(self, twin, self.xy, "xy", self.crs)
            _on_map(self, twin, geom, "xy", self.xy)
        linear = self.method == "linear"

        def act(t_s: float) -> str:
            flood.add_breach(geom, crest_start_m=self.crest_start_m, crest_end_m=self.crest_end_m,
                             width_m=self.width_m if self.width_m is not None else (50.0 if linear else None),
                             start_s=t_s,
                             formation_s=self.formation if self.formation is not None else (1800.0 if linear else None),
                             method=self.method, thickness_m=self.thickness_m, side_slope=self.side_slope,
                             reservoir_volume_m3=self.reservoir_volume_m3, failure_mode=self.failure_mode)
            return f"breach from {self.crest_start_m:g} m to {self.crest_end_m:g} m"
        return act


# ----------------------------------------------------------------------------------------------
# roads
# ----------------------------------------------------------------------------------------------
class _Links(_Decision):
    links: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    near: XY | None = None
    radius_m: float = Field(100.0, gt=0, le=50_000)
    crs: str = "EPSG:32649"

    @model_validator(mode="after")
    def _what(self):
        if not self.links and self.near is None:
            raise ValueError("give 'links' (ids) or 'near' (x, y)")
        return self

    def _link_ids(self, twin: Twin) -> list[int]:
        _need(self, twin, "traffic")
        net = twin.traffic_network
        ids = list(self.links)
        bad = [j for j in ids if j >= net.n_links]
        if bad:
            raise _err(self, "links", bad[0], f"no such link (the network has links 0..{net.n_links - 1})")
        if self.near is not None:
            from shapely.geometry import Point

            pts = _utm(self, twin, self.near, "near", self.crs)
            _on_map(self, twin, pts, "near", self.near)
            pt = Point(*pts[0])
            ids += [j for j, g in enumerate(net.links["geometry"])
                    if g is not None and g.distance(pt) <= self.radius_m]
            if len(set(ids)) == len(self.links):
                raise _err(self, "near", self.near, f"no road link within radius_m={self.radius_m:g} m")
        return sorted(set(ids))


class RoadClosure(_Links):
    """Close links to all traffic (``road_closure``) until ``until`` or a ``road_reopen``; or give
    each link the lanes of its reverse link (``contraflow``, outbound evacuation)."""

    type: Literal["road_closure", "contraflow"]
    until: EventTime | None = Field(None, description="reopen at this model time (None: stays closed)")

    @model_validator(mode="after")
    def _until(self):
        if self.until is not None and self.until <= self.at:
            raise ValueError(f"until ({self.until:g} s) must be after at ({self.at:g} s)")
        return self

    def _plan(self, twin: Twin) -> Action:
        ids = self._link_ids(twin)
        if self.type == "contraflow":
            fr, to = twin.traffic.network.link_from_index, twin.traffic.network.link_to_index
            rev = {(int(a), int(b)) for a, b in zip(fr, to)}
            lone = [j for j in ids if (int(to[j]), int(fr[j])) not in rev]
            if lone:
                raise _err(self, "links", lone[0], "contraflow needs a reverse link (a two-way road)")

        def act(t_s: float) -> str:
            if self.type == "contraflow":
                twin.traffic.set_contraflow(ids, True)
                what = f"contraflow on {len(ids)} link(s)"
            else:
                twin.close_manual(ids, True)
                what = f"{len(ids)} link(s) closed"
            if self.until is not None:
                twin.schedule_followup(RoadReopen(type="road_reopen", links=ids, at=self.until,
                                                  contraflow=self.type == "contraflow", label=self.label))
                what += f" until t = {self.until:g} s"
            return what
        return act


class RoadReopen(_Links):
    """Reopen links closed by a decision (water closures stay as the water says); with
    ``contraflow: true`` end a contraflow on those links."""

    type: Literal["road_reopen"]
    contraflow: bool = False

    def _plan(self, twin: Twin) -> Action:
        ids = self._link_ids(twin)

        def act(t_s: float) -> str:
            if self.contraflow:
                twin.traffic.set_contraflow(ids, False)
                return f"contraflow ended on {len(ids)} link(s)"
            twin.close_manual(ids, False)
            return f"{len(ids)} link(s) reopened"
        return act


# ----------------------------------------------------------------------------------------------
# people and shelters
# ----------------------------------------------------------------------------------------------
class Warning_(_Decision):
    """An official warning through a channel to wards (``area``; none = the whole city)."""

    type: Literal["warning"]
    channel: Literal["cell_broadcast", "loudspeaker", "tv", "door_to_door"] = "cell_broadcast"
    area: list[str] | None = Field(None, description="ward names/codes; none = the whole city")

    def _plan(self, twin: Twin) -> Action:
        people = _need(self, twin, "people")
        codes = _ward_codes(self, twin, self.area, "area")

        def act(t_s: float) -> str:
            people.issue_warning(t_s, self.channel, area=codes)
            return f"warning by {self.channel} to {'the whole city' if codes is None else f'{len(codes)} ward(s)'}"
        return act


class EvacuationOrder(_Decision):
    """A mandatory evacuation order for wards (none = the whole city), announced through
    ``channel``: households who receive it leave (to the given ``shelters`` when named, else the
    nearest with room, or to relatives outside the hazard area) instead of moving upstairs."""

    type: Literal["evacuation_order"]
    wards: list[str] | None = Field(None, description="ward names/codes; none = the whole city")
    shelters: list[str] | None = Field(None, description="destination shelters (place names/ids); none = any")
    channel: Literal["cell_broadcast", "loudspeaker", "tv", "door_to_door"] = "loudspeaker"

    def _plan(self, twin: Twin) -> Action:
        people = _need(self, twin, "people")
        codes = _ward_codes(self, twin, self.wards, "wards")
        spots: list[tuple[str, float, float]] = []
        for s in self.shelters or []:
            x, y = _place(self, twin, s, "shelters")
            opening = any(p.decision.type == "shelter_open" and _place(p.decision, twin, p.decision.place) == (x, y)
                          for p in twin.decisions.pending)
            if people.shelter_index(x, y) < 0 and not opening:
                raise _err(self, "shelters", s, "this place is not a shelter (open it with shelter_open first)")
            spots.append((s, x, y))

        def act(t_s: float) -> str:
            idx = []
            for s, x, y in spots:
                k = people.shelter_index(x, y)
                if k < 0:
                    raise _err(self, "shelters", s, "this place is not a shelter")
                idx.append(k)
            people.issue_order(t_s, self.channel, area=codes, shelters=idx)
            return (f"evacuation order by {self.channel} to "
                    f"{'the whole city' if codes is None else f'{len(codes)} ward(s)'}"
                    + (f", to {len(idx)} shelter(s)" if idx else ""))
        return act


class ShelterOpen(_Decision):
    """A place (school, public building...) opened as a shelter for ``capacity`` persons."""

    type: Literal["shelter_open"]
    place: str
    capacity: int = Field(..., gt=0, le=1_000_000)
    structural: ClassVar[bool] = True

    def build_time(self) -> bool:
        return self.at == 0

    def _plan(self, twin: Twin) -> Action:
        if twin.people is None and twin.services is None:
            raise DecisionError("shelter_open: needs the people or services section enabled", "type", self.type)
        x, y = _place(self, twin, self.place)
        _cell(self, twin, x, y, "place", self.place)

        def act(t_s: float) -> str:
            if twin.people is None:
                return "no people model: nothing to shelter"
            k = twin.people.open_shelter(x, y, self.capacity, name=self.place)
            return f"shelter {k} ({self.place}) open for {self.capacity} persons"
        return act


class ShelterClose(_Decision):
    """A shelter takes nobody more (those inside stay)."""

    type: Literal["shelter_close"]
    place: str

    def _plan(self, twin: Twin) -> Action:
        people = _need(self, twin, "people")
        x, y = _place(self, twin, self.place)
        k = people.shelter_index(x, y)
        if k < 0:
            raise _err(self, "place", self.place, "this place is not a shelter")

        def act(t_s: float) -> str:
            n = people.close_shelter(k)
            return f"shelter {k} ({self.place}) closed to newcomers ({n} persons inside)"
        return act


# ----------------------------------------------------------------------------------------------
# services
# ----------------------------------------------------------------------------------------------
class ExtraUnits(_Decision):
    """Extra ambulances or rescue boats: in service from the start (``at: 0`` in a scenario), or
    joining when the decision acts (reinforcements)."""

    type: Literal["extra_units"]
    unit: Literal["ambulance", "boat"]
    count: int = Field(..., gt=0, le=1000)
    base: str | None = Field(None, description="the hospital or fire station (place id or name) where the units "
                                                 "start; default: spread over the stations")

    def build_time(self) -> bool:
        return self.at == 0 and self.base is None

    def _plan(self, twin: Twin) -> Action:
        services = _need(self, twin, "services")
        station = None
        if self.base is not None:
            x, y = _place(self, twin, self.base, "base")
            station = services.station_at(x, y)
            if station < 0:
                raise _err(self, "base", self.base, "not a station of the services (a hospital or fire station)")

        def act(t_s: float) -> str:
            ids = services.add_units(self.unit, self.count, station=station)
            return f"{len(ids)} {self.unit}(s) joined: units {ids}"
        return act


class Dispatch(_Decision):
    """Send a named unit to an incident or a place, overriding the dispatcher (a unit busy with
    another incident leaves it; that incident goes back to the queue)."""

    type: Literal["dispatch"]
    unit_id: int = Field(..., ge=0)
    incident_id: int | None = Field(None, ge=0)
    place: str | None = None
    xy: XY | None = None
    crs: str = "EPSG:32649"

    @model_validator(mode="after")
    def _target(self):
        if sum(v is not None for v in (self.incident_id, self.place, self.xy)) != 1:
            raise ValueError("give exactly one of 'incident_id', 'place' or 'xy'")
        return self

    def _plan(self, twin: Twin) -> Action:
        services = _need(self, twin, "services")
        if self.unit_id >= len(services.units):
            raise _err(self, "unit_id", self.unit_id, f"no such unit (units 0..{len(services.units) - 1})")
        target: tuple
        if self.incident_id is not None:
            if self.incident_id >= len(services.incidents):
                raise _err(self, "incident_id", self.incident_id,
                           f"no such incident ({len(services.incidents)} so far)")
            if services.incidents[self.incident_id].get("clear_s") is not None:
                raise _err(self, "incident_id", self.incident_id, "this incident is already closed")
            target = ("incident", self.incident_id)
        elif self.place is not None:
            target = ("place",) + _place(self, twin, self.place)
        else:
            pts = _utm(self, twin, self.xy, "xy", self.crs)
            _on_map(self, twin, pts, "xy", self.xy)
            target = ("place", float(pts[0, 0]), float(pts[0, 1]))

        def act(t_s: float) -> str:
            return services.dispatch_unit(self.unit_id, target)
        return act


class HospitalClosure(_Decision):
    """A hospital stops taking patients (power loss, damage, evacuation ordered): no patient is
    delivered there afterwards; the patients inside are moved to the nearest open hospitals with
    beds, as when the water closes it. It stays closed for the rest of the run."""

    type: Literal["hospital_closure"]
    place: str = Field(..., description="the hospital (place id or name)")
    reason: str = Field("closed by decision", max_length=200, description="why, for the logs")

    def _plan(self, twin: Twin) -> Action:
        services = _need(self, twin, "services")
        x, y = _place(self, twin, self.place)
        h = services.hospital_at(x, y)
        if h < 0:
            raise _err(self, "place", self.place, "not a hospital of the services")

        def act(t_s: float) -> str:
            return services.close_hospital(h, t_s, self.reason)
        return act


Decision = Annotated[
    Levee | Pump | RoadClosure | RoadReopen | ShelterOpen | ShelterClose | ExtraUnits | Warning_
    | EvacuationOrder | Dispatch | HospitalClosure | ReservoirRelease | ReservoirGate | Breach,
    Field(discriminator="type"),
]
DECISION_TYPES: dict[str, type[_Decision]] = {
    "levee": Levee, "pump": Pump, "road_closure": RoadClosure, "contraflow": RoadClosure,
    "road_reopen": RoadReopen, "shelter_open": ShelterOpen, "shelter_close": ShelterClose,
    "extra_units": ExtraUnits, "warning": Warning_, "evacuation_order": EvacuationOrder,
    "dispatch": Dispatch, "hospital_closure": HospitalClosure, "reservoir_release": ReservoirRelease,
    "reservoir_gate": ReservoirGate, "breach": Breach,
}
_ADAPTER: TypeAdapter = TypeAdapter(Decision)


def parse_decision(obj: Any) -> _Decision:
    """A decision object from a dict (or JSON text) with a ``type`` key; :class:`DecisionError`
    names the field and value when it does not validate."""
    if isinstance(obj, _Decision):
        return obj
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise DecisionError(f"decision: not valid JSON ({exc})", field=None, value=None) from None
    if not isinstance(obj, dict):
        raise DecisionError(f"decision: expected a mapping with a 'type' key, got {type(obj).__name__}",
                            field=None, value=obj)
    kind = obj.get("type")
    if kind not in DECISION_TYPES:
        raise DecisionError(f"decision.type: unknown decision kind (value {kind!r}); kinds are "
                            f"{', '.join(sorted(DECISION_TYPES))}", field="type", value=kind)
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        e = exc.errors(include_url=False)[0]
        loc = [str(p) for p in e.get("loc", ()) if not str(p).startswith("function-")]
        if loc and loc[0] == kind:
            loc = loc[1:]
        field = ".".join(loc) or None
        msg = e.get("msg", "invalid").replace("Value error, ", "")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        value = e.get("input")
        v = repr(value)
        if len(v) > 120:
            v = v[:117] + "..."
        raise DecisionError(f"{kind}.{field or '<decision>'}: {msg} (value {v})", field=field, value=value) from None


def decision_json(d: _Decision) -> str:
    """Canonical JSON of a decision's fields (sorted keys): what the log stores and forks compare."""
    return json.dumps(d.params(), sort_keys=True, separators=(",", ":"), allow_nan=False)


def finite_time(t: Any, what: str) -> float:
    try:
        v = float(t)
    except (TypeError, ValueError):
        raise DecisionError(f"{what}: expected a model time in seconds, got {t!r}", field=what, value=t) from None
    if not math.isfinite(v):
        raise DecisionError(f"{what}: must be finite, got {t!r}", field=what, value=t)
    return v


# ----------------------------------------------------------------------------------------------
# the queue and the log
# ----------------------------------------------------------------------------------------------
LOG_COLUMNS = ("decision_id", "t_s", "at_s", "wall_time", "source", "issuer", "type", "params", "outcome",
               "message", "parent_id")


@dataclass
class Pending:
    """A decision waiting in the queue: it acts at the start of the coupling step holding ``at``."""

    at: float
    seq: int
    decision: _Decision
    source: str
    issuer: str
    parent_id: int = -1
    note: str = ""

    def to_state(self) -> dict:
        return {"at": self.at, "seq": self.seq, "decision": decision_json(self.decision), "source": self.source,
                "issuer": self.issuer, "parent_id": self.parent_id, "note": self.note}

    @classmethod
    def from_state(cls, s: dict) -> Pending:
        return cls(float(s["at"]), int(s["seq"]), parse_decision(s["decision"]), str(s["source"]),
                   str(s["issuer"]), int(s.get("parent_id", -1)), str(s.get("note", "")))


class DecisionQueue:
    """Pending decisions in (time, submission) order, the log of every decision that acted or was
    refused when it came due, and the structural decisions a restart must re-install.

    Ids (``decision_id``) are submission numbers: scenario interventions first, in file order, then
    every submitted or follow-up decision. The queue, the log and the counters are part of the
    twin's state, so checkpoints carry pending decisions and resume, fork and replay stay exact.
    """

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.log: list[dict] = []
        self.structural: list[dict] = []   # {"decision": json, "t_s": t} of runtime structural decisions
        self._seq = 0
        self._current: Pending | None = None
        self._twin: Any = None

    # -- queue -----------------------------------------------------------------------------------
    def push(self, decision: _Decision, at: float, source: str, issuer: str = "", parent_id: int = -1,
             note: str = "") -> Pending:
        if source not in SOURCES:
            raise DecisionError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}", "source", source)
        p = Pending(float(at), self._seq, decision, source, str(issuer or ""), int(parent_id), note)
        self._seq += 1
        self.pending.append(p)
        self.pending.sort(key=lambda q: (q.at, q.seq))
        return p

    def followup(self, decision: _Decision) -> Pending:
        """Queue a decision that one being applied implies (the reopening of a closure's ``until``)."""
        cur = self._current
        if cur is None:
            raise RuntimeError("followup() outside the application of a decision")
        return self.push(decision, decision.at, cur.source, cur.issuer, parent_id=cur.seq,
                         note=f"follow-up of decision {cur.seq}")

    def apply_due(self, twin: Any, t0: float, t1: float, stop_time: float) -> list[dict]:
        """Apply every pending decision with ``at < t1`` (and ``at < stop_time``) at ``t0``, in order.

        A decision that can no longer act (its unit or incident changed since it was submitted) is
        logged as ``rejected`` with the reason; the run goes on."""
        rows = []
        while self.pending and self.pending[0].at < t1 and self.pending[0].at < stop_time:
            p = self.pending.pop(0)
            self._current = p
            try:
                msg = p.decision.apply(twin, t0)
                outcome = "applied"
                if p.decision.structural:
                    self.structural.append({"decision": decision_json(p.decision), "t_s": float(t0)})
            except (DecisionError, ValueError) as exc:
                msg, outcome = f"refused when due: {exc}", "rejected"
            finally:
                self._current = None
            if p.note:
                msg = f"{msg} ({p.note})"
            rows.append(self.record(p, t0, outcome, msg))
        return rows

    def record(self, p: Pending, t_s: float, outcome: str, message: str) -> dict:
        row = {"decision_id": int(p.seq), "t_s": float(t_s), "at_s": float(p.at),
               "wall_time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
               "source": p.source, "issuer": p.issuer, "type": p.decision.type,
               "params": decision_json(p.decision), "outcome": outcome, "message": str(message)[:2000],
               "parent_id": int(p.parent_id)}
        self.log.append(row)
        return row

    def frame(self) -> pd.DataFrame:
        """The log as ``decisions.parquet`` holds it."""
        df = pd.DataFrame(self.log, columns=list(LOG_COLUMNS))
        for c in ("decision_id", "parent_id"):
            df[c] = df[c].astype("int64")
        for c in ("t_s", "at_s"):
            df[c] = df[c].astype("float64")
        for c in ("wall_time", "source", "issuer", "type", "params", "outcome", "message"):
            df[c] = df[c].astype(object)
        return df

    # -- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return {"pending": [p.to_state() for p in self.pending], "log": [dict(r) for r in self.log],
                "structural": [dict(s) for s in self.structural], "seq": self._seq}

    def reinstall(self, twin: Any, st: dict) -> None:
        """Re-apply the structural decisions of a state (before the components' states are set)."""
        for s in st.get("structural", []):
            parse_decision(s["decision"]).apply(twin, float(s["t_s"]))
        self.structural = [dict(s) for s in st.get("structural", [])]

    def set_state(self, st: dict, fork_at: float | None = None, base_scenario: list | None = None) -> None:
        """Restore. For a fork at ``fork_at``: the state's history (its log, its applied and pending
        non-scenario decisions) is kept; this twin's scenario decisions act from the fork on: those
        timed before the fork that the base scenario (``base_scenario``: its decisions) did not
        have act at the fork, with a note saying so; the base's own ones before the fork are history."""
        self.log = [dict(r) for r in st.get("log", [])]
        theirs = [Pending.from_state(s) for s in st.get("pending", [])]
        if fork_at is None:
            self.pending = theirs
            self._seq = int(st.get("seq", 0))
            return
        mine = [p for p in self.pending if p.source == "scenario"]
        base = {decision_json(d) for d in (base_scenario or [])}
        self._seq = max(int(st.get("seq", 0)), self._seq)
        keep = [p for p in theirs if p.source != "scenario"]
        for p in mine:
            if p.at >= fork_at:
                keep.append(p)
            elif decision_json(p.decision) not in base:
                p.note = f"scheduled at {p.at:g} s, before the fork at {fork_at:g} s: acts at the fork"
                p.at = float(fork_at)
                keep.append(p)
        # submission numbers continue after the history's
        for p in sorted(keep, key=lambda q: (q.at, q.seq)):
            if p in mine:
                p.seq = self._seq
                self._seq += 1
        self.pending = sorted(keep, key=lambda q: (q.at, q.seq))
