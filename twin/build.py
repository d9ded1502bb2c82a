"""Build a twin from a scenario: city bundle → terrain, flood, roads/traffic, people, services, sensors.

``build_twin(scenario)`` returns a :class:`Twin`: a typed container of the components (any of
traffic, people, services, sensors may be absent), the couplings between them, the decision queue
and every random generator, spawned from one ``numpy.random.SeedSequence(scenario.seed)``:
children in this fixed order: ``flood, traffic, demand, people, services, sensors, events``.

Forcing (``twin.flood.forcing``) is built here, before the run, so a run is a pure function of
the scenario and its decisions. A scenario's ``interventions`` are decisions (``twin.decisions``)
queued at their ``at``; the few that change the city or the fleet before anything moves (a shelter
opened at t = 0, units in service from t = 0, scheduled reservoir releases and breaches) are
applied while building and logged as such.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twin.city import lookup_xy
from twin.couplings import LinkDepthSampler, RoadWaterLevel
from twin.decisions import DecisionError, DecisionQueue, Pending, _Decision, finite_time, parse_decision
from twin.flood.forcing import rain_series, reservoir_outlet, reservoir_release, series_from_csv, tide_stage
from twin.geo import normalise_name as _norm
from twin.geo import to_utm as _to_utm
from twin.hazard import hazard_rating, land_use, land_use_index, land_use_indices
from twin.scenario import Scenario

if TYPE_CHECKING:  # pragma: no cover
    from twin.agents import EmergencyServices, PeopleModel
    from twin.city import City
    from twin.flood import FloodModel
    from twin.roads import RoadNetwork
    from twin.sensors.assimilation import Assimilator
    from twin.terrain import Terrain
    from twin.traffic import TrafficModel

__all__ = ["build_twin", "Twin", "SEED_CHILDREN"]

SEED_CHILDREN = ("flood", "traffic", "demand", "people", "services", "sensors", "events")

# ------------------------------------------------------------------------------------------------
# the twin
# ------------------------------------------------------------------------------------------------
@dataclass
class Twin:
    """The built twin: components, couplings, forcing and the decision queue (no stepping here:
    :class:`twin.simulation.Simulation` owns the clock and the order)."""

    scenario: Scenario
    city: City                                # (tests hand in stand-ins with the same layers)
    terrain: Terrain
    flood: FloodModel | None = None
    traffic: TrafficModel | None = None
    people: PeopleModel | None = None
    services: EmergencyServices | None = None
    assimilator: Assimilator | None = None
    seed_sequence: np.random.SeedSequence | None = None
    rngs: dict[str, np.random.Generator] = field(default_factory=dict)
    decisions: DecisionQueue = field(default_factory=DecisionQueue)
    sea_mask: np.ndarray | None = None      # sea cells in the model (the coastal stage strip)
    sea_full: np.ndarray | None = None      # every sea cell (maps)
    initial_depth: np.ndarray | None = None  # water at t = 0 (permanent water bodies)
    reservoir_footprint: np.ndarray | None = None  # the lumped reservoir's lake, drained on the grid
    urban: np.ndarray | str = "urban"  # FD2321 land use per cell (twin.hazard.land_use)
    link_sampler: LinkDepthSampler | None = None
    road_water: RoadWaterLevel | None = None  # bridges and bank roads meet water above the banks only
    traffic_network: RoadNetwork | None = None
    manual_closed: np.ndarray | None = None
    link_depth: np.ndarray | None = None
    free_flow_link_time_s: np.ndarray | None = None
    input_files: list[Path] = field(default_factory=list)
    forcing: dict[str, Any] = field(default_factory=dict)
    ward_codes: dict[str, int] = field(default_factory=dict)
    # names of wards before a merger (population.legacy_wards, "; "-joined) -> the code of today's ward
    legacy_ward_codes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # printed while building; in kpis.json and manifest.json
    # depth/speed/land on the twin's grid, computed once per coupled step and shared by every consumer
    # (roads, people, services, callbacks, recorders): None = off (each call computes). The Simulation
    # opens it after the flood step and closes it at the end of the step (see :meth:`open_field_cache`).
    _field_cache: dict[str, Any] | None = field(default=None, repr=False)
    _urban_memo: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def valid(self) -> np.ndarray:
        return self.terrain.valid

    @property
    def land(self) -> np.ndarray:
        """Valid cells that are neither sea nor permanent water (initial depth >= 0.1 m: rivers,
        lagoon, reservoir): where flooded area, damage and the map's colour scale count."""
        return self._cached("land", self._land_direct)

    def _land_direct(self) -> np.ndarray:
        sea = self.sea_full if self.sea_full is not None else self.sea_mask
        m = self.terrain.valid if sea is None else self.terrain.valid & ~sea
        if self.initial_depth is not None:
            m = m & ~(self.initial_depth >= 0.1)
        return m

    @property
    def cell_area(self) -> float:
        return float(self.terrain.cell_size) ** 2

    def component_names(self) -> list[str]:
        return [n for n in ("flood", "traffic", "people", "services", "assimilator") if getattr(self, n) is not None]

    def close(self) -> None:
        """Release what the twin holds outside its arrays: the assimilator's DuckDB connection and, with
        ``assimilation.enkf.dask``, its Dask client and the LocalCluster it started (worker processes). The
        run's outputs and checkpoints are unaffected; the twin cannot assimilate afterwards. Idempotent;
        ``with build_twin(sc) as tw:`` closes at the end of the block. ``twin run``/``fork``/``replay``
        close the twin when the run ends."""
        if self.assimilator is not None:
            self.assimilator.close()

    def __enter__(self) -> Twin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- fields ---------------------------------------------------------------------------------
    def open_field_cache(self) -> None:
        """From now until :meth:`close_field_cache`, :meth:`depth`, :meth:`speed` and :attr:`land` are
        computed once and the same (read-only) arrays handed to every caller. Called by the Simulation
        after the flood step (and again after assimilation, which changes the water: a fresh cache);
        whoever changes the flood state inside that window opens it again. As a guard, a cached field is
        recomputed when the flood's step count or time differs from when it was taken."""
        self._field_cache = {}

    def close_field_cache(self) -> None:
        """Back to computing each field on every call (between steps the state may be changed freely)."""
        self._field_cache = None

    def _cached(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        cache = self._field_cache
        if cache is None:
            return compute()
        fl = self.flood
        key = None if fl is None else (getattr(fl, "n_steps", None), getattr(fl, "time", None))
        hit = cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        a = np.asarray(compute())
        if a.flags.writeable:      # shared: a consumer that writes into it fails loudly instead of
            a = a.view()           # changing what the next one reads
            a.flags.writeable = False
        cache[name] = (key, a)
        return a

    def depth(self) -> np.ndarray | None:
        """Depth on the twin's grid (with subgrid topography: the flood level downscaled onto the fine terrain)."""
        if self.flood is None:
            return None
        return self._cached("depth", self._depth_direct)

    def _depth_direct(self) -> np.ndarray:
        fl = self.flood
        assert fl is not None  # (depth() returns None without a flood model)
        fine = getattr(fl, "fine_depth", None)
        return np.asarray(fine() if fine is not None else fl.depth)

    def max_depth(self) -> np.ndarray:
        """Maximum depth so far on the twin's grid (subgrid: downscaled from the highest level)."""
        fl = self.flood
        if fl is None:
            raise ValueError("max_depth: this twin has no flood model")
        fine = getattr(fl, "fine_max_depth", None)
        return np.asarray(fine() if fine is not None else fl.max_depth)

    def arrival_time(self) -> np.ndarray:
        """First time the depth exceeded 0.1 m, on the twin's grid (subgrid: of the coarse cell's mean depth)."""
        fl = self.flood
        if fl is None:
            raise ValueError("arrival_time: this twin has no flood model")
        to_fine = getattr(fl, "to_fine", None)
        at = fl.arrival_time
        return np.asarray(to_fine(at) if to_fine is not None else at)

    def speed(self) -> np.ndarray | None:
        if self.flood is None:
            return None
        return self._cached("speed", self._speed_direct)

    def _speed_direct(self) -> np.ndarray:
        fl = self.flood
        assert fl is not None  # (speed() returns None without a flood model)
        sp = getattr(fl, "speed", None)
        if sp is not None:
            return self._on_twin_grid(np.asarray(sp))
        v = np.asarray(fl.velocity)
        sp = np.hypot(v[0], v[1]) if v.ndim == 3 else np.abs(v)
        return self._on_twin_grid(sp)

    def _on_twin_grid(self, a: np.ndarray) -> np.ndarray:
        to_fine = getattr(self.flood, "to_fine", None)
        return np.asarray(to_fine(a)) if to_fine is not None and getattr(self.flood, "subgrid", None) else a

    def hazard(self) -> np.ndarray:
        return hazard_rating(self.depth(), self.speed(), self.land_use_index())

    def land_use_index(self) -> np.ndarray | str:
        """The FD2321 land use of every cell as indices into :data:`twin.hazard.LAND_USES` (what
        :func:`twin.hazard.hazard_rating` takes; the same for the whole run)."""
        return self._urban_index()

    def _urban_index(self) -> np.ndarray | str:
        """:attr:`urban` as land-use indices (a grid of names converted once, not on every hazard map)."""
        u = self.urban
        if not isinstance(u, np.ndarray) or u.dtype.kind not in "UO":
            return u
        memo = self._urban_memo
        if memo is None or memo[0] is not u:
            memo = (u, land_use_index(u))
            self._urban_memo = memo
        return memo[1]

    def grid_fields(self, names: list[str]) -> dict[str, np.ndarray]:
        """The output fields ``names`` (depth, speed, hazard) now, float32 on the twin's grid."""
        need_d = "depth" in names or "hazard" in names
        need_v = "speed" in names or "hazard" in names
        return grid_fields_of(names, self.depth() if need_d else None, self.speed() if need_v else None,
                              self.land_use_index() if "hazard" in names else None)

    @property
    def closed(self) -> np.ndarray:
        """Links closed to cars (by water or by an intervention)."""
        if self.traffic is None:
            return np.zeros(0, bool)
        return np.asarray(self.traffic.link_closed, dtype=bool)

    # -- decisions ------------------------------------------------------------------------------
    def submit(self, decision: Any, at: float | None = None, *, now: float = 0.0, source: str = "api",
               issuer: str = "") -> Pending:
        """Validate ``decision`` (a dict, JSON text or decision object) against this twin and queue it
        for model time ``at`` (default ``now``, the start of the next coupling step). Raises
        :class:`twin.decisions.DecisionError` naming the field and value, and changes nothing, when it
        cannot act."""
        d = parse_decision(decision)
        t = finite_time(now if at is None else at, "at")
        if t < now:
            raise DecisionError(f"at: {t:g} s is in the past (model time is {now:g} s)", "at", t)
        d.validate(self)
        return self.decisions.push(d, t, source, issuer)

    def schedule_followup(self, decision: _Decision) -> Pending:
        """Called by a decision being applied (a closure's ``until``): queued with its source and issuer."""
        return self.decisions.followup(decision)

    def apply_decisions(self, t0: float, t1: float, stop_time: float) -> list[dict]:
        """Apply pending decisions with ``at < t1`` (and ``< stop_time``) at ``t0``; their log rows."""
        return self.decisions.apply_due(self, t0, t1, stop_time)

    # -- couplings --------------------------------------------------------------------------------
    def update_roads(self) -> None:
        """Roads ← flood depth: each link's depth is the deepest cell sampled along its geometry;
        the traffic model turns it into the Pregnolato speed and per-class stall closures."""
        if self.traffic is None or self.link_sampler is None:
            return
        d = self.depth()
        if d is None:
            return
        s = self.link_sampler
        vals = np.asarray(d).ravel()[s.cells]
        if self.road_water is not None:
            vals = self.road_water.met_depth_at(vals, s.cells)
        self.link_depth = s.max_of_samples(vals)
        self.traffic.set_link_depth(self.link_depth)

    def close_manual(self, ids, close: bool = True) -> None:
        if self.manual_closed is None or self.traffic is None:
            raise ValueError("road closure: this twin has no traffic component (enable traffic in the scenario)")
        ids = np.asarray(ids, dtype=int)
        self.manual_closed[ids] = close
        if close:
            self.traffic.close_links(ids)
        else:
            self.traffic.open_links(ids)

    def couple_services(self) -> None:
        """Services ← flood: boats navigate on the flood depth, road units on the water met on roads
        (the people model's met depth: bridges and bank roads read the water above the banks)."""
        if self.services is None or self.flood is None:
            return
        met = self.people.met_depth if self.people is not None else None
        self.services.set_flood(self.depth(), road_depth=met)

    def assimilate(self, t_s: float) -> None:
        if self.assimilator is not None and self.flood is not None:
            self.assimilator.apply(self.flood, t_s)

    # -- state --------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        st: dict = {
            "decisions": self.decisions.get_state(),
            "rngs": {k: g.bit_generator.state for k, g in self.rngs.items()},
        }
        for name in ("flood", "traffic", "people", "services", "assimilator"):
            comp = getattr(self, name)
            if comp is not None and hasattr(comp, "get_state"):
                st[name] = comp.get_state()
        if self.manual_closed is not None:
            st["manual_closed"] = self.manual_closed.copy()
            st["link_depth"] = None if self.link_depth is None else self.link_depth.copy()
        return st

    def set_state(self, st: dict, fork_at: float | None = None, base_scenario: Scenario | None = None) -> None:
        """Restore a state: structural decisions that had acted are re-installed first (levees, pumps,
        shelters...: configuration the component states do not hold), then every component's state.

        ``fork_at``: this twin's scenario may differ from the state's (a fork); decisions before the
        fork are history (see :meth:`twin.decisions.DecisionQueue.set_state`); ``base_scenario`` is
        the scenario the state was run with."""
        dec = st.get("decisions", {})
        self.decisions.reinstall(self, dec)
        for name in ("flood", "traffic", "people", "services", "assimilator"):
            comp = getattr(self, name)
            if comp is not None and name in st:
                comp.set_state(st[name])
        for k, s in st.get("rngs", {}).items():
            if k in self.rngs:
                self.rngs[k].bit_generator.state = s
        self.decisions.set_state(dec, fork_at=fork_at,
                                 base_scenario=None if base_scenario is None else list(base_scenario.interventions))
        if "manual_closed" in st and self.manual_closed is not None:
            self.manual_closed = st["manual_closed"].copy()
            self.link_depth = None if st["link_depth"] is None else st["link_depth"].copy()


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------
def city_resolution_m(sc: Scenario) -> float:
    """The resolution the scenario's city is loaded at: ``resolution_m``, or with subgrid topography
    ``resolution_m / flood.subgrid_factor`` (the terrain, roads, places and maps at the fine resolution,
    the flood solved at ``resolution_m`` on tables of that terrain)."""
    sgf = sc.flood.subgrid_factor if sc.flood is not None else None
    return float(sc.resolution_m) / sgf if sgf else float(sc.resolution_m)


def build_twin(scenario: Scenario, city=None, forcing: dict | None = None) -> Twin:
    """Build every component the scenario asks for. ``city`` overrides ``load_city(scenario.city)``;
    ``forcing`` pre-sets forcing inputs (``typhoon_track``: a perturbed track for a forecast member)."""
    sc = scenario
    # refuse, before anything is allocated, a grid this machine cannot hold (TWIN_ALLOW_LARGE=1 overrides)
    from twin.memory import check_memory

    check_memory(sc, city)
    ss = np.random.SeedSequence(sc.seed)
    children = dict(zip(SEED_CHILDREN, ss.spawn(len(SEED_CHILDREN))))
    rngs = {k: np.random.default_rng(v) for k, v in children.items()}
    if city is None:
        from twin.city import load_city

        city = load_city(sc.city, resolution_m=city_resolution_m(sc))
    elif sc.flood is not None and sc.flood.subgrid_factor:
        # a city at the coarse resolution would give tables of the coarse terrain: a solve factor times
        # coarser than asked, without a word
        want, got = city_resolution_m(sc), float(city.terrain.cell_size)
        if abs(got - want) > 1e-6 * want:
            raise ValueError(f"flood.subgrid_factor {sc.flood.subgrid_factor}: the city given is at {got:g} m; "
                             f"this scenario needs it at resolution_m / subgrid_factor = {want:g} m")
    terrain = city.terrain
    tw = Twin(scenario=sc, city=city, terrain=terrain, seed_sequence=ss, rngs=rngs)
    tw.forcing.update(forcing or {})
    # the city bundle's files (manifest + every layer file) go into the run manifest's checksums
    src = getattr(city, "manifest", None) or {}
    folder = getattr(city, "path", None)
    if folder is not None and isinstance(src, dict):
        folder = Path(folder)
        if (folder / "manifest.json").is_file():
            tw.input_files.append(folder / "manifest.json")
        for layer in (src.get("layers") or {}).values():
            for key in ("file", "nodes", "links"):
                f = layer.get(key) if isinstance(layer, dict) else None
                if isinstance(f, str) and (folder / f).is_file():
                    tw.input_files.append(folder / f)
    _urban_mask(tw)
    _apply_build_time_decisions(tw)
    _build_flood(tw)
    if sc.traffic is not None and sc.traffic.enabled:
        _build_traffic(tw)
    if sc.people is not None and sc.people.enabled:
        _build_people(tw)
    if sc.services is not None and sc.services.enabled:
        _build_services(tw)
    if sc.sensors is not None and sc.sensors.enabled:
        _build_sensors(tw)
    _queue_scenario_decisions(tw)
    return tw


def grid_fields_of(names: list[str], depth, speed, land_use) -> dict[str, np.ndarray]:
    """The output fields ``names`` (depth, speed, hazard), float32, from a depth, a speed and the land
    use as :meth:`Twin.land_use_index` gives it (the run folder's recorder calls this on its thread)."""
    out = {}
    for n in names:
        if n == "depth":
            out[n] = np.array(depth, dtype=np.float32)
        elif n == "speed":
            out[n] = np.array(speed, dtype=np.float32)
        elif n == "hazard":
            out[n] = np.array(hazard_rating(depth, speed, land_use), dtype=np.float32)
    return out


def _urban_mask(tw: Twin) -> None:
    # FD2321 land use per cell (urban / woodland / pasture), the same rule the people model uses
    lc, classes = getattr(tw.city, "landcover", None), getattr(tw.city, "landcover_classes", None)
    tw.urban = land_use(lc, classes)
    if isinstance(tw.urban, np.ndarray):   # its indices, from the codes (no sort of the names grid)
        tw._urban_memo = (tw.urban, np.asarray(land_use_indices(lc, classes), dtype=np.int8))


def _sea_mask(tw: Twin) -> np.ndarray | None:
    sea = tw.scenario.flood.sea
    if not sea.enabled:
        return None
    if sea.sea_cells == "city" and getattr(tw.city, "sea_cells", None) is not None:
        m = np.asarray(tw.city.sea_cells, dtype=bool)
    else:
        # cells below 0 m that are connected (4-neighbour) to the map edge: the sea, not inland pits
        from scipy import ndimage

        # (SRTM writes its water surfaces as exactly 0 m, so "below zero" means z <= 0 here)
        z = tw.terrain.elevation
        below = np.isfinite(z) & (z <= 0.0) & tw.terrain.valid
        lab, n = ndimage.label(below)
        outer = ~tw.terrain.valid
        outer = ndimage.binary_dilation(outer) if outer.any() else outer
        touch = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[outer & below]]))
        m = np.isin(lab, touch[touch > 0])
    m = m & tw.terrain.valid
    return m if m.any() else None


def _trim_sea(tw: Twin) -> None:
    """Keep a strip of ``flood.sea.strip_cells`` sea cells along the coast as the tidal stage
    boundary; the open sea beyond it becomes nodata (outside the model). The strip holds the sea
    level, so the water the land sends to the sea leaves the model there (counted as outflow)."""
    from scipy import ndimage

    k = tw.scenario.flood.sea.strip_cells
    sea = tw.sea_mask
    land = tw.terrain.valid & ~sea
    near = ndimage.binary_dilation(land, iterations=k) if land.any() else land
    keep = sea & near
    tw.sea_full = sea
    if keep.sum() == sea.sum():
        return
    from twin.terrain import Terrain

    t = tw.terrain
    z = np.where(sea & ~keep, np.nan, t.elevation)
    tw.terrain = Terrain.from_array(z, t.cell_size, origin=(t.transform.c, t.transform.f), crs=t.crs)
    tw.sea_mask = keep


def _cells_near(tw: Twin, x: float, y: float, width_m: float) -> list[tuple[int, int]]:
    return tw.terrain.cells_near(x, y, width_m)


def _inflow_point(tw: Twin, name: str) -> tuple[float, float]:
    return lookup_xy(getattr(tw.city, "inflows", None), name, city=tw.scenario.city, what="inflow point",
                     plural="inflows", by_id=None)


def _place_xy(tw: Twin, place: str) -> tuple[float, float]:
    return lookup_xy(getattr(tw.city, "places", None), place, city=tw.scenario.city, what="place",
                     plural="places", by_id="place_id")


# a lumped reservoir's water on the grid: cells of the city's initial water whose level lies within this of
# the seed's (the bundle holds the lake at its normal level; rivers entering it stand higher)
LAKE_LEVEL_BAND_M = 0.5
# without 'xy', the seed is the deepest initial water at the full-supply level, if it is at least this deep
LAKE_MIN_SEED_DEPTH_M = 2.0


def _lumped_reservoir_footprint(tw: Twin, terrain, h0: np.ndarray) -> np.ndarray | None:
    """The cells of the twin's grid where the city's initial water is the lumped reservoir's lake
    (``flood.reservoir`` without ``in_grid``), or None when the grid holds no such water.

    The level pool (twin.flood.reservoir_ops / forcing) owns the reservoir's storage and release. Its lake,
    left on the 2-D grid, would be a second copy of that water: 14 m deep, it set the sub-step of every Tam
    Kỳ run, and where the domain's free edge cuts it the inertial solver drained it out of the domain (at
    100 m, 135 Mm³ in 12 h of the Molave scenario, the lake 5 m lower while the level pool rose). The lake is
    the 4-connected initial water around ``reservoir.xy`` (or, without it, around the deepest initial water
    standing at the full-supply level) whose level is within ``LAKE_LEVEL_BAND_M`` of the seed's."""
    from scipy import ndimage

    res = tw.scenario.flood.reservoir
    assert res is not None
    wet = terrain.valid & (h0 > 0.05)
    if not wet.any():
        return None
    level = np.where(wet, terrain.elevation + h0, -np.inf)   # dry cells never within a band
    if res.xy is not None:
        x, y = _to_utm(res.xy, res.crs)[0]
        r, c = terrain.rowcol(x, y)
        ny, nx = terrain.shape
        if not (0 <= r < ny and 0 <= c < nx) or not wet[r, c]:
            raise ValueError(f"flood.reservoir.xy ({res.name}): ({x:.0f}, {y:.0f}) is not in the city's initial "
                             "water on the grid: give a point inside the reservoir's lake")
    else:
        at_fsl = np.abs(level - res.full_supply_level_m) <= LAKE_LEVEL_BAND_M
        if not at_fsl.any():
            return None
        d = np.where(at_fsl, h0, -1.0)
        r, c = np.unravel_index(int(np.argmax(d)), d.shape)
        if d[r, c] < LAKE_MIN_SEED_DEPTH_M:
            return None
    lab, _ = ndimage.label(np.abs(level - level[r, c]) <= LAKE_LEVEL_BAND_M)
    lake = lab == lab[r, c]
    sea = tw.sea_full if tw.sea_full is not None else tw.sea_mask
    if sea is not None and sea.shape == lake.shape and (lake & sea).any():
        # a lake joined to the sea is the lagoon or the sea itself: draining it would empty the coast
        raise ValueError(f"flood.reservoir ({res.name}): the water standing at {level[r, c]:.2f} m around cell "
                         f"({r}, {c}) reaches the sea, so it is not the reservoir's lake: give flood.reservoir.xy "
                         f"inside the reservoir or check full_supply_level_m ({res.full_supply_level_m:g} m)")
    return lake


def _close_edges_of(fm, mask: np.ndarray) -> None:
    """Wall on the domain-edge faces of the cells in ``mask``."""
    ny, nx = mask.shape
    for edge, rr, cc in (("west", np.arange(ny), np.zeros(ny, int)), ("east", np.arange(ny), np.full(ny, nx - 1)),
                         ("north", np.zeros(nx, int), np.arange(nx)), ("south", np.full(nx, ny - 1), np.arange(nx))):
        on = mask[rr, cc]
        if on.any():
            fm.set_boundary(edge, "wall", cells=list(zip(rr[on].tolist(), cc[on].tolist())))


def _solve_cells(fm, mask: np.ndarray) -> list[tuple[int, int]]:
    """The solve grid's cells of a mask on the twin's grid: with subgrid topography, the coarse cells at
    least half of whose pixels are in it."""
    share = mask if fm.subgrid is None else fm.subgrid.to_coarse(mask.astype(np.float64), "reservoir footprint")
    r, c = np.nonzero(share >= 0.5)
    return list(zip(r.tolist(), c.tolist()))


def _reservoir_on_grid(tw: Twin) -> np.ndarray:
    """The reservoir's water at its initial level (``flood.reservoir.in_grid``), its footprint and
    volume taken from the city bundle's native terrain when the model grid is coarser
    (:func:`twin.flood.reservoir.fill_reservoir`): the barrier cells around the footprint that the
    coarsening lowered below the level get their native height back (``tw.terrain`` is replaced).
    A fill off the level–volume relation, or one whose water would not stay, stops the build."""
    from twin.flood.reservoir import fill_reservoir
    from twin.terrain import Terrain

    res = _section(tw.scenario.flood.reservoir, "flood.reservoir")
    t = tw.terrain
    rx, ry = _to_utm(res.xy, res.crs)[0]
    reference = None
    folder, man = getattr(tw.city, "path", None), getattr(tw.city, "manifest", None) or {}
    tfile = ((man.get("layers") or {}).get("terrain") or {}).get("file") if isinstance(man, dict) else None
    native = float(man.get("native_resolution_m", 0) or 0) if isinstance(man, dict) else 0.0
    if folder is not None and tfile and 0 < native < t.cell_size - 1e-9 and (Path(folder) / tfile).is_file():
        from twin.city.bundle import read_raster

        zn, tr, crs = read_raster(Path(folder) / tfile)
        reference = Terrain.from_array(zn, abs(tr.a), origin=(tr.c, tr.f), crs=crs)
    try:
        fill = fill_reservoir(t, rx, ry, res.initial_level_m, reference=reference)
    except ValueError as exc:
        raise ValueError(f"flood.reservoir ({res.name}): {exc}") from None
    if fill.raised.any():
        tw.terrain = Terrain.from_array(fill.elevation, t.cell_size, origin=(t.transform.c, t.transform.f), crs=t.crs)
    tw.forcing["reservoir_fill"] = {"volume_m3": fill.volume_m3, "reference_volume_m3": fill.reference_volume_m3,
                                    "reference_cell_m": fill.reference_cell_m, "cells": int(fill.footprint.sum()),
                                    "raised_cells": int(fill.raised.sum())}
    return fill.depth


def _build_flood(tw: Twin) -> None:
    from twin.flood import FloodModel

    sc, city, terrain = tw.scenario, tw.city, tw.terrain
    f = sc.flood
    manning = f.manning if f.manning is not None else getattr(city, "manning", None)
    if manning is None:
        manning = 0.03
    kw = dict(manning=manning, solver=f.solver, dtype=f.dtype, alpha=f.alpha, theta=f.theta, threads=f.threads)
    z = terrain.elevation
    h0 = np.zeros(terrain.shape)
    if f.initial_water == "city" and getattr(city, "water_depth0", None) is not None:
        h0 = np.nan_to_num(np.asarray(city.water_depth0, float))
    tw.sea_mask = _sea_mask(tw)
    if tw.sea_mask is not None:
        _trim_sea(tw)
        terrain = tw.terrain
        z = terrain.elevation
        h0 = np.where(terrain.valid, h0, 0.0)
    h_res = None
    lake = None
    if f.reservoir is not None and not f.reservoir.in_grid:
        lake = _lumped_reservoir_footprint(tw, terrain, h0)
        if lake is not None:
            lake_water_m3 = float(np.nan_to_num(h0[lake]).sum()) * terrain.cell_size ** 2
        else:
            tw.forcing["reservoir_footprint"] = {
                "cells": 0, "area_m2": 0.0, "initial_water_m3": 0.0,
                "note": "no initial water at the full-supply level on the grid: the level pool lies outside it"}
    if f.reservoir is not None and f.reservoir.in_grid:
        h_res = _reservoir_on_grid(tw)
        if tw.terrain is not terrain:  # barrier cells raised: their normal water keeps its surface
            raised = terrain.valid & (tw.terrain.elevation != terrain.elevation)
            h0 = np.where(raised, np.clip(np.nan_to_num(terrain.elevation + h0 - tw.terrain.elevation), 0.0, None), h0)
        terrain = tw.terrain
        z = terrain.elevation
    if isinstance(manning, np.ndarray):
        manning = np.where(terrain.valid, np.nan_to_num(manning, nan=0.03), 0.03)
    sgf = f.subgrid_factor if f.subgrid_factor and f.subgrid_factor > 1 else None
    fm = FloodModel(terrain, **kw | {"manning": manning}, subgrid=sgf, subgrid_face_weight=f.subgrid_face_weight,
                    local_time_steps=f.local_time_steps)
    tw.flood = fm
    # edges
    for edge in ("north", "south", "east", "west"):
        fm.set_boundary(edge, getattr(f.boundaries, edge))
    if h_res is not None:
        # a reservoir filled on the grid and cut by the domain's edge continues beyond it: a wall there (a
        # free edge would drain it at normal depth, the inertial solver at thousands of m³/s)
        _close_edges_of(fm, h_res > 0)
    rain = rain_series(tw)
    if rain is not None:
        fm.set_rainfall(rain[0], rain[1])
        tw.forcing["rain"] = (rain[0], rain[1] if np.ndim(rain[1]) == 1 else rain[1].mean(axis=(1, 2)))
    if f.loss_rate_mm_per_h > 0:
        fm.set_loss_rate(f.loss_rate_mm_per_h)
    if tw.sea_mask is not None:
        times = np.arange(0.0, sc.duration + f.sea.stage_step, f.sea.stage_step)
        stage = tide_stage(f.sea, times)
        sg = tw.forcing.get("typhoon_surge_m")
        if sg is not None:
            stage = stage + np.interp(times, sg[0], sg[1])
        tw.forcing["sea_stage"] = (times, stage)
        sea_z = np.where(tw.sea_mask, z, np.inf)
        h0 = np.where(tw.sea_mask, np.maximum(h0, stage[0] - sea_z), h0)
        rows, cols = np.nonzero(tw.sea_mask)
        # the sea cells hold the stage (water they gain or lose counts as boundary flow)
        sea_cells = fm.grid_cells(list(zip(rows.tolist(), cols.tolist())))
        fm.set_boundary(None, "stage", times_s=times, stage_m=stage, cells=sea_cells)
        # where the sea strip meets the domain's edge, the stage is the sea beyond it: a free edge there drained
        # the held cells at normal depth every sub-step and the stage refilled them (Molave at 100 m: ~20,000
        # m³/s through the north and east edges, booked as boundary inflow and outflow)
        held = np.zeros(fm.shape, bool)
        held[tuple(np.array(sea_cells).T)] = True
        _close_edges_of(fm, held)
    if lake is not None:
        # the reservoir's footprint drains each sub-step: rain on it and runoff reaching it from the grid
        # leave the grid (booked as boundary outflow: the lumped model counts its catchment's rain)
        cells = _solve_cells(fm, lake)
        fm.set_boundary(None, "free", cells=cells)
        tw.forcing["reservoir_footprint"] = {"cells": len(cells), "area_m2": float(lake.sum()) * terrain.cell_size ** 2,
                                             "initial_water_m3": lake_water_m3}
    if h_res is not None:
        h0 = np.maximum(np.nan_to_num(h0), h_res)
    h0 = np.where(terrain.valid, np.clip(np.nan_to_num(h0), 0.0, None), 0.0)
    # the lumped reservoir's lake starts dry on the grid (the level pool holds that water) but stays permanent
    # water for the land mask, the places and the roads (tw.initial_depth)
    fm.set_depth(h0 if lake is None else np.where(lake, 0.0, h0))
    tw.initial_depth = h0
    tw.reservoir_footprint = lake
    from twin.output.tables import places_in_water

    for p in places_in_water(tw):  # a place whose cell is river, lagoon or sea at this resolution
        tw.warnings.append(p["message"])
        print(f"warning: {p['message']}", file=sys.stderr)
    for inf in f.inflows:
        if inf.at is not None:
            x, y = _inflow_point(tw, inf.at)
        else:
            x, y = _to_utm(inf.xy, inf.crs)[0]
        if inf.hydrograph is not None:
            t = np.asarray(inf.hydrograph.times, float)
            q = np.asarray(inf.hydrograph.discharge_m3_per_s, float)
        elif inf.file is not None:
            t, q = series_from_csv(inf.file, "t_s", "discharge_m3_per_s", sc.start)
            tw.input_files.append(inf.file)
        else:
            t, q = np.array([0.0, sc.duration]), np.zeros(2)
        q = q * inf.scale + inf.base_m3_per_s
        fm.add_inflow(fm.grid_cells(_cells_near(tw, x, y, inf.width_m)), hydrograph=(t, q))
    rel = reservoir_release(tw, rain)
    if rel is not None:
        outlet = reservoir_outlet(tw)
        x, y = _inflow_point(tw, outlet)
        idx = fm.add_inflow(fm.grid_cells(_cells_near(tw, x, y, 3 * tw.terrain.cell_size)), hydrograph=rel)
        tw.forcing["reservoir_release"] = rel
        tw.forcing["reservoir_inflow_index"] = idx


def _build_traffic(tw: Twin) -> None:
    from twin.traffic import TrafficModel
    from twin.traffic.demand import background_trips

    sc = tw.scenario
    tr = sc.traffic
    assert tr is not None          # built only for a scenario with a traffic section
    net = tw.city.roads
    if net is None:
        raise ValueError(f"traffic: the city bundle {tw.scenario.city!r} has no road network; "
                         "disable the traffic section (traffic: null) or give a city with roads")
    if tr.largest_component_only:
        net = net.largest_strongly_connected()
    tw.traffic_network = net
    tm = TrafficModel(net, dt=tr.dt, seed=tw.rngs["traffic"], informed_share=tr.informed_share,
                      reroute_interval_s=tr.reroute_interval if tr.informed_share > 0 else None,
                      stall_depth_m=tr.stall_depth_m or None, record_links=tr.record_link_log,
                      time_to_teleport_s=tr.time_to_teleport_s,
                      accel_mps2=(tr.accel_mps2 or "default") if tr.acceleration else None)
    tw.traffic = tm
    L = net.n_links
    tw.link_sampler = LinkDepthSampler(net.links, tw.terrain.transform, tw.terrain.shape,
                                       tr.depth_sample_spacing_m, valid=tw.terrain.valid)
    if tw.initial_depth is not None:
        # roads over rivers and the lagoon are bridges or bank roads: not the channel depth
        tw.road_water = RoadWaterLevel(tw.terrain.elevation, tw.initial_depth >= 0.05, tw.terrain.valid,
                                       tw.initial_depth)
    tw.manual_closed = np.zeros(L, bool)
    tw.link_depth = np.zeros(L)
    if tr.background_trips_per_day > 0:
        start_hour = sc.start.hour + sc.start.minute / 60.0
        if tr.demand_calibration is not None:     # calibrated from traffic-camera counts
            from twin.traffic.calibration import DemandCalibration, calibrated_background_trips

            cal = DemandCalibration.load(tr.demand_calibration)
            cal.zones = cal.zones_for(net, f"traffic.demand_calibration {str(tr.demand_calibration)!r}")
            cal.node_ids = net.node_ids.copy()
            trips = calibrated_background_trips(net, tr.background_trips_per_day, 0.0, sc.duration, tw.rngs["demand"],
                                                cal, start_hour=start_hour, class_share=tr.vehicle_mix or None)
        else:
            trips = background_trips(net, tr.background_trips_per_day, 0.0, sc.duration, tw.rngs["demand"],
                                     start_hour=start_hour, class_share=tr.vehicle_mix or None)
        if len(trips):
            tm.add_trips(trips)


def _build_time(iv) -> bool:
    """Scenario decisions applied while building: they change the city or the fleet before
    anything moves (a shelter opened at t = 0, units in service from t = 0), or are schedules that
    the flood forcing integrates from the start (reservoir releases, breaches)."""
    bt = getattr(iv, "build_time", None)
    return iv.type in ("reservoir_release", "breach") or (bt is not None and bt())


def _apply_build_time_decisions(tw: Twin) -> None:
    """Shelters opened and units in service from t = 0 (before people and services are built)."""
    sc = tw.scenario
    for i, iv in enumerate(sc.interventions):
        if iv.type == "shelter_open" and _build_time(iv):
            pl = tw.city.places
            hit = (pl["place_id"].astype(str) == str(iv.place)) | (pl["name"].map(_norm) == _norm(iv.place))
            if not hit.any():
                raise ValueError(f"interventions.{i}.place: {iv.place!r} not found in the city's places")
            pl = pl.copy()
            pl.loc[hit, "kind"] = "shelter"
            pl.loc[hit, "capacity"] = iv.capacity
            _replace_city_attr(tw, "places", pl)
        elif iv.type == "extra_units" and _build_time(iv):
            tw.forcing.setdefault("extra_units", []).append((iv.unit, iv.count))


def _replace_city_attr(tw: Twin, name: str, value) -> None:
    import copy as _copy

    city = _copy.copy(tw.city)
    try:
        setattr(city, name, value)
    except AttributeError:  # a frozen dataclass
        import dataclasses

        city = dataclasses.replace(city, **{name: value})
    tw.city = city


def _section[S](value: S | None, name: str) -> S:
    """A scenario section a builder needs (the builders run only when it is given)."""
    if value is None:
        raise ValueError(f"{name}: this scenario has no {name} section")
    return value


def _build_people(tw: Twin) -> None:
    from twin.agents import PeopleModel

    sc = tw.scenario
    people = _section(sc.people, "people")
    params = dict(people.params)
    params.setdefault("sample_fraction", people.sample_fraction)
    params.setdefault("agents_per_household", people.agents_per_household)
    # local clock hour at t = 0: the people model reduces warning reach at night
    params.setdefault("start_hour_local", sc.start.hour + sc.start.minute / 60.0 + sc.start.second / 3600.0)
    city = _people_city_view(tw)
    tw.people = PeopleModel(city, params, tw.rngs["people"], traffic=tw.traffic)


def _people_city_view(tw: Twin):
    """The people model codes wards by the integers of ``city.ward_raster``. Current city bundles
    give ``population.ward`` (int code) + ``ward_name``; older ones named the ward in ``ward`` and
    numbered it in ``ward_id``: then hand the people model a view with integer ``ward`` columns.
    Either way ``tw.ward_codes`` maps names to codes (warning areas by ward name)."""
    city = tw.city
    pop = getattr(city, "population", None)
    if pop is not None and "ward_name" in pop.columns and pd.api.types.is_numeric_dtype(pop["ward"]):
        tw.ward_codes = {str(n): int(i) for n, i in zip(pop["ward_name"], pop["ward"])}  # names -> codes
        if "legacy_wards" in pop.columns:  # e.g. Tam Kỳ's 13 wards before the 2020 and 2025 mergers
            tw.legacy_ward_codes = {leg.strip(): int(i) for names, i in zip(pop["legacy_wards"], pop["ward"])
                                    if isinstance(names, str) for leg in names.split(";") if leg.strip()}
    if pop is None or "ward_id" not in pop.columns or pd.api.types.is_numeric_dtype(pop["ward"]):
        return city
    codes = {_norm(n): int(i) for n, i in zip(pop["ward"], pop["ward_id"])}
    tw.ward_codes = {str(n): int(i) for n, i in zip(pop["ward"], pop["ward_id"])}
    pop = pop.copy()
    pop["ward_name"] = pop["ward"]
    pop["ward"] = pop["ward_id"].astype(np.int64)
    import copy as _copy

    view = _copy.copy(city)
    object.__setattr__(view, "population", pop) if not hasattr(view, "__dict__") else setattr(view, "population", pop)
    pl = getattr(city, "places", None)
    if pl is not None and "ward" in pl.columns and not pd.api.types.is_numeric_dtype(pl["ward"]):
        pl = pl.copy()
        pl["ward_name"] = pl["ward"]
        pl["ward"] = pl["ward"].map(lambda n: codes.get(_norm(n), -1)).astype(np.int64)
        view.places = pl
    return view


def _build_services(tw: Twin) -> None:
    from twin.agents import EmergencyServices

    sc = tw.scenario
    params = dict(_section(sc.services, "services").params)
    for unit, count in tw.forcing.get("extra_units", []):
        pl = tw.city.places
        if unit == "boat":
            n_st = int((pl["kind"] == "fire_station").sum())
            base = params.get("n_boats") or params.get("boats_per_station", 2) * max(n_st, 1)
            params["n_boats"] = int(base) + int(count)
        else:  # ambulances are based at hospitals: spread the extra ones over them
            n_h = max(int((pl["kind"] == "hospital").sum()), 1)
            params["ambulances_per_hospital"] = int(params.get("ambulances_per_hospital", 3)) + int(math.ceil(count / n_h))
    tw.services = EmergencyServices(tw.city, params, tw.rngs["services"],
                                    traffic=tw.traffic, people=tw.people)


def _build_sensors(tw: Twin) -> None:
    from twin.sensors.assimilation import Assimilator

    sc = tw.scenario
    sensors = _section(sc.sensors, "sensors")
    if sensors.store is None:
        raise ValueError("sensors.store: give the DuckDB file of observations to assimilate")
    tw.assimilator = Assimilator(str(sensors.store), dict(sensors.assimilation), tw.terrain, sc.start)
    tw.input_files.append(sensors.store)
    lake, res = tw.reservoir_footprint, sc.flood.reservoir
    if lake is not None and res is not None:
        # a water-level gauge in the lumped reservoir's lake would pull water into drained cells
        st = tw.assimilator.level_streams()
        for row in st.itertuples(index=False):
            if row.x is None or row.y is None or not (np.isfinite(row.x) and np.isfinite(row.y)):
                continue
            r, c = tw.terrain.rowcol(float(row.x), float(row.y))
            if 0 <= r < lake.shape[0] and 0 <= c < lake.shape[1] and lake[r, c]:
                tw.assimilator.close()
                raise ValueError(
                    f"sensors.assimilation: datastream {row.datastream_id!r} at ({row.x:.0f}, {row.y:.0f}) lies in "
                    f"the lake of the lumped reservoir (flood.reservoir {res.name!r}), which the flood "
                    "grid does not hold (its level is the level pool's): leave it out of the nudging/enkf "
                    "datastreams")


def _queue_scenario_decisions(tw: Twin) -> None:
    """Every intervention of the scenario becomes a decision: the build-time ones are logged as
    applied at their time (they are part of the built twin), the others validated now (a bad one
    stops the build with its index, field and value) and queued at their ``at``."""
    sc = tw.scenario
    q = tw.decisions
    for i, iv in enumerate(sc.interventions):
        if _build_time(iv):
            if iv.type == "breach":
                _build_breach(tw, i, iv)
            p = q.push(iv, iv.at, "scenario", "scenario")
            q.pending.remove(p)
            what = {"shelter_open": f"shelter open for {getattr(iv, 'capacity', '')} persons from the start",
                    "extra_units": f"{getattr(iv, 'count', '')} {getattr(iv, 'unit', '')}(s) in service from the start",
                    "reservoir_release": "part of the reservoir's release hydrograph",
                    "breach": f"breach scheduled from t = {iv.at:g} s"}[iv.type]
            q.record(p, float(iv.at), "applied", f"built into the twin: {what}")
            continue
        try:
            iv.validate(tw)
        except DecisionError as exc:
            raise ValueError(f"interventions.{i}.{exc}") from None
        q.push(iv, iv.at, "scenario", "scenario")


def _build_breach(tw: Twin, i: int, iv) -> None:
    if tw.flood is None or getattr(tw.flood, "add_breach", None) is None:
        raise ValueError(f"interventions.{i}.breach: needs a FloodModel with add_breach()")
    try:
        iv._plan(tw)(float(iv.at))
    except DecisionError as exc:
        raise ValueError(f"interventions.{i}.{exc}") from None
