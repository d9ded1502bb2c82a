"""Build a twin from a scenario: city bundle → terrain, flood, roads/traffic, people, services, sensors.

``build_twin(scenario)`` returns a :class:`Twin` that holds the components (any of traffic, people,
services, sensors may be absent), the couplings between them, the timed events (interventions) and
every random generator, spawned from one ``numpy.random.SeedSequence(scenario.seed)``:
children in this fixed order: ``flood, traffic, demand, people, services, sensors, events``.

Forcing built here (all before the run, so a run is a pure function of the scenario):
- rain hyetograph (design storm from an IDF relation, typhoon track replay, gauge or file series);
- sea stage at the sea cells: mean level + tide constituents + surge;
- river inflows and the Phú Ninh reservoir release (a level-pool reservoir integrated over the run,
  plus any ``reservoir_release`` schedules);
- interventions become events applied by the simulation clock (see ``twin.simulation``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.couplings import LinkDepthSampler, RoadWaterLevel
from twin.hazard import hazard_class_name, hazard_rating, land_use
from twin.scenario import Scenario

__all__ = ["build_twin", "Twin", "Event", "idf_intensity_mm_per_h", "design_hyetograph", "tide_stage",
           "TIDE_PERIODS_H", "SEED_CHILDREN"]

SEED_CHILDREN = ("flood", "traffic", "demand", "people", "services", "sensors", "events")

# periods of the main tidal constituents [h]
TIDE_PERIODS_H = {"M2": 12.4206012, "S2": 12.0, "N2": 12.65834751, "K2": 11.96723606,
                  "K1": 23.93447213, "O1": 25.81934171, "P1": 24.06589022, "Q1": 26.868350}


# ------------------------------------------------------------------------------------------------
# forcing
# ------------------------------------------------------------------------------------------------
def idf_intensity_mm_per_h(return_period_years: float, duration_s: float) -> float:
    """Mean rain intensity [mm/h] of a storm of given return period and duration.

    Sherman form i = a·T^m / (D + b)^n, D in minutes, with a = 1714, m = 0.2, b = 20, n = 0.75.
    **Illustrative** coefficients chosen for the central Vietnamese coast (100-year 6-h ≈ 300 mm,
    10-year 6-h ≈ 190 mm, 100-year 1-h ≈ 160 mm), not a fitted IDF of a station: give
    ``peak_mm_per_h`` in the scenario when a local design value is known.
    """
    d_min = duration_s / 60.0
    return 1714.0 * return_period_years**0.2 / (d_min + 20.0) ** 0.75


def design_hyetograph(storm, dt_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """(times_s, rain_mm_per_h) piecewise-constant blocks for a :class:`DesignStorm`."""
    D = storm.duration
    n = max(1, int(round(D / dt_s)))
    dt_s = D / n
    t_mid = (np.arange(n) + 0.5) * dt_s
    tp = storm.peak_fraction * D
    if storm.shape == "triangular":  # exact triangle (the flood model interpolates linearly)
        peak = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else 2.0 * idf_intensity_mm_per_h(
            storm.return_period_years, D)
        return np.array([0.0, tp, D]) + storm.start, np.array([0.0, peak, 0.0])
    if storm.shape == "uniform":
        mean = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else idf_intensity_mm_per_h(
            storm.return_period_years, D)
        rates = np.full(n, mean)
    elif storm.shape == "triangular":
        peak = storm.peak_mm_per_h if storm.peak_mm_per_h is not None else 2.0 * idf_intensity_mm_per_h(
            storm.return_period_years, D)
        rise = np.clip(t_mid / tp, 0, 1) if tp > 0 else np.ones(n)
        fall = np.clip((D - t_mid) / (D - tp), 0, 1) if tp < D else np.ones(n)
        rates = peak * np.where(t_mid <= tp, rise, fall)
    else:  # chicago: alternating blocks from the IDF depths
        T = storm.return_period_years or 10.0
        depth = np.array([idf_intensity_mm_per_h(T, k * dt_s) * k * dt_s / 3600.0 for k in range(1, n + 1)])
        inc = np.diff(np.concatenate([[0.0], depth])) / (dt_s / 3600.0)
        order = np.argsort(-inc)
        rates = np.zeros(n)
        ip = min(n - 1, int(storm.peak_fraction * n))
        left, right = ip, ip + 1
        for j, k in enumerate(order):
            if j == 0:
                rates[ip] = inc[k]
            elif (j % 2 == 1 and right < n) or left <= 0:
                rates[right] = inc[k]
                right += 1
            else:
                left -= 1
                rates[left] = inc[k]
        if storm.peak_mm_per_h is not None:
            rates *= storm.peak_mm_per_h / rates.max()
    # piecewise constant as step points: value at block start, zero after
    times = np.concatenate([np.arange(n) * dt_s, [D]]) + storm.start
    vals = np.concatenate([rates, [0.0]])
    return times, vals


def tide_stage(sea, times_s: np.ndarray) -> np.ndarray:
    """Sea level [m above MSL] at ``times_s``: mean + Σ A·cos(2πt/P − φ) + surge bell."""
    t = np.asarray(times_s, dtype=float)
    eta = np.full(t.shape, sea.mean_level_m, dtype=float)
    for c in sea.constituents:
        P = c.period_h if c.period_h is not None else TIDE_PERIODS_H.get(c.name.upper())
        if P is None:
            raise ValueError(f"flood.sea.constituents: unknown constituent {c.name!r}; give period_h")
        eta += c.amplitude_m * np.cos(2 * np.pi * t / (P * 3600.0) - np.deg2rad(c.phase_deg))
    if sea.surge is not None:
        s = sea.surge
        x = (t - s.peak_time) / s.duration
        eta += np.where(np.abs(x) < 0.5, s.peak_m * np.cos(np.pi * x) ** 2, 0.0)
    return eta


def _series_from_csv(path: Path, tcol: str, vcol: str, start) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(path)
    for c in (tcol, vcol):
        if c not in df:
            raise ValueError(f"{path}: column {c!r} not found (columns: {list(df.columns)})")
    t = df[tcol]
    if pd.api.types.is_numeric_dtype(t):
        ts = t.to_numpy(float)
    else:
        dt = pd.to_datetime(t)
        if dt.dt.tz is None:
            dt = dt.dt.tz_localize(start.tzinfo)
        ts = (dt - pd.Timestamp(start)).dt.total_seconds().to_numpy()
    v = pd.to_numeric(df[vcol], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {vcol} row {i + 2} has bad value {df[vcol].iloc[i]!r} (need a number >= 0)")
    if np.any(np.diff(ts) < 0):
        raise ValueError(f"{path}: {tcol} must be increasing")
    return ts, v


def _to_utm(xy: list | tuple, crs: str) -> np.ndarray:
    arr = np.atleast_2d(np.asarray(xy, dtype=float))
    if crs.upper().replace(" ", "") in ("EPSG:32649",):
        return arr
    from pyproj import Transformer

    tr = Transformer.from_crs(crs, "EPSG:32649", always_xy=True)
    x, y = tr.transform(arr[:, 0], arr[:, 1])
    return np.column_stack([x, y])


# ------------------------------------------------------------------------------------------------
# the twin
# ------------------------------------------------------------------------------------------------
@dataclass
class Event:
    time_s: float
    order: int
    name: str
    apply: Callable[[Twin], None]

    @property
    def key(self) -> str:
        return f"{self.order}:{self.name}@{self.time_s:g}"


@dataclass
class Twin:
    scenario: Scenario
    city: Any
    terrain: Any
    flood: Any = None
    traffic: Any = None
    people: Any = None
    services: Any = None
    assimilator: Any = None
    seed_sequence: np.random.SeedSequence = None
    rngs: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    applied: set = field(default_factory=set)
    sea_mask: np.ndarray | None = None      # sea cells in the model (the coastal stage strip)
    sea_full: np.ndarray | None = None      # every sea cell (maps)
    initial_depth: np.ndarray | None = None  # water at t = 0 (permanent water bodies)
    urban: np.ndarray | str = "urban"  # FD2321 land use per cell (twin.hazard.land_use)
    link_sampler: LinkDepthSampler | None = None
    road_water: RoadWaterLevel | None = None  # bridges and bank roads meet water above the banks only
    traffic_network: Any = None
    manual_closed: np.ndarray | None = None
    link_depth: np.ndarray | None = None
    free_flow_link_time_s: np.ndarray | None = None
    input_files: list = field(default_factory=list)
    forcing: dict = field(default_factory=dict)
    ward_codes: dict = field(default_factory=dict)
    log: list = field(default_factory=list)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def valid(self) -> np.ndarray:
        return self.terrain.valid

    @property
    def land(self) -> np.ndarray:
        """Valid cells that are neither sea nor permanent water (initial depth >= 0.1 m: rivers,
        lagoon, reservoir): where flooded area, damage and the map's colour scale count."""
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

    # -- fields ---------------------------------------------------------------------------------
    def depth(self) -> np.ndarray | None:
        return None if self.flood is None else np.asarray(self.flood.depth)

    def speed(self) -> np.ndarray | None:
        if self.flood is None:
            return None
        sp = getattr(self.flood, "speed", None)
        if sp is not None:
            return np.asarray(sp)
        v = np.asarray(self.flood.velocity)
        return np.hypot(v[0], v[1]) if v.ndim == 3 else np.abs(v)

    def hazard(self) -> np.ndarray:
        return hazard_rating(self.depth(), self.speed(), self.urban)

    def grid_fields(self, names: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for n in names:
            if n == "depth":
                out[n] = np.array(self.depth(), dtype=np.float32)
            elif n == "speed":
                out[n] = np.array(self.speed(), dtype=np.float32)
            elif n == "hazard":
                out[n] = np.array(self.hazard(), dtype=np.float32)
        return out

    @property
    def closed(self) -> np.ndarray:
        """Links closed to cars (by water or by an intervention)."""
        if self.traffic is None:
            return np.zeros(0, bool)
        return np.asarray(self.traffic.link_closed, dtype=bool)

    # -- events -----------------------------------------------------------------------------------
    def apply_events(self, t0: float, t1: float, stop_time: float) -> list[str]:
        """Apply not-yet-applied events with time < t1 (and < stop_time), in (time, order)."""
        done = []
        for ev in sorted(self.events, key=lambda e: (e.time_s, e.order)):
            if ev.time_s < t1 and ev.time_s < stop_time and ev.key not in self.applied:
                ev.apply(self)
                self.applied.add(ev.key)
                self.log.append((t0, ev.name))
                done.append(ev.name)
        return done

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
        ids = np.asarray(ids, dtype=int)
        self.manual_closed[ids] = close
        if close:
            self.traffic.close_links(ids)
        else:
            self.traffic.open_links(ids)

    def assimilate(self, t_s: float) -> None:
        if self.assimilator is not None and self.flood is not None:
            self.assimilator.apply(self.flood, t_s)

    # -- tables -------------------------------------------------------------------------------------
    def links_table(self, t_s: float) -> pd.DataFrame:
        tm = self.traffic
        L = tm.network.n_links
        depth = self.link_depth if self.link_depth is not None else np.zeros(L)
        closed = self.closed
        df = pd.DataFrame({
            "t_s": np.full(L, float(t_s)),
            "link_id": np.arange(L, dtype=np.int64),
            "depth_m": depth.astype(float),
            "speed_factor": np.asarray(tm.link_speed_factor, dtype=float),
            "closed": closed,
            "closed_by_water": closed & ~self.manual_closed,
            "flow_veh_per_s": np.asarray(tm.link_flow, dtype=float),
            "density_veh_per_m": np.asarray(tm.link_density, dtype=float),
            "speed_mps": np.asarray(tm.link_speed, dtype=float),
            "queue_veh": np.asarray(tm.link_queue, dtype=float),
        })
        return df

    def _cells_at(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = self.terrain.rowcol(np.asarray(x, float), np.asarray(y, float))
        rows, cols = np.asarray(rows, int), np.asarray(cols, int)
        ny, nx = self.terrain.shape
        ok = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        return np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1), ok

    def units_table(self, t_s: float) -> pd.DataFrame:
        """Where each emergency unit is at ``t_s`` (the place it last reached: units move between
        places in one hop after their travel time), its phase (idle, to_scene, on_scene, to_hospital,
        ...), the incident it works on (-1: none) and whether it is available."""
        us = self.services.units
        return pd.DataFrame({
            "t_s": np.full(len(us), float(t_s)),
            "unit_id": np.array([u.uid for u in us], dtype=np.int64),
            "unit_kind": [u.kind for u in us],
            "x": np.array([u.x for u in us], dtype=float),
            "y": np.array([u.y for u in us], dtype=float),
            "phase": [u.phase for u in us],
            "incident_id": np.array([u.incident for u in us], dtype=np.int64),
            "available": np.array([bool(u.available) for u in us], dtype=bool),
        })

    def people_table(self, t_s: float) -> pd.DataFrame:
        """The people model's state table with ``t_s``, the water depth at each agent's cell and the
        FD2321 hazard class of the agent's own hazard rating (which sees upper floors)."""
        df = self.people.state_table().copy()
        df.insert(0, "t_s", float(t_s))
        if self.flood is not None:
            r, c, ok = self._cells_at(df["x"].to_numpy(), df["y"].to_numpy())
            df["depth_m"] = np.where(ok, self.depth()[r, c], 0.0).astype(float)
        else:
            df["depth_m"] = 0.0
        if "hazard_rating" not in df.columns:
            r, c, ok = self._cells_at(df["x"].to_numpy(), df["y"].to_numpy())
            v = np.where(ok, self.speed()[r, c], 0.0) if self.flood is not None else 0.0
            df["hazard_rating"] = hazard_rating(df["depth_m"].to_numpy(), v)
        df["hazard_class"] = hazard_class_name(df["hazard_rating"].to_numpy(float), self.people.params.hazard_thresholds)
        for col in df.columns:
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = df[col].astype(str)
        return df

    def people_state_counts(self) -> dict:
        df = self.people.state_table()
        if "state" not in df.columns:
            return {}
        w = df["persons"] if "persons" in df.columns else pd.Series(1.0, index=df.index)
        return {str(k): float(v) for k, v in w.groupby(df["state"].astype(str)).sum().items()}

    def trips_table(self) -> pd.DataFrame:
        trips = self.traffic.trips.copy()
        trips = trips.reset_index()
        if "index" in trips.columns and "trip_id" not in trips.columns:
            trips = trips.rename(columns={"index": "trip_id"})
        if "route" in trips.columns:
            trips["route"] = trips["route"].map(lambda r: None if r is None else list(map(int, r)))
        trips["free_flow_time_s"] = self.free_flow_times(trips["origin"].to_numpy(), trips["destination"].to_numpy())
        return trips

    def free_flow_times(self, origins: np.ndarray, destinations: np.ndarray) -> np.ndarray:
        """Free-flow shortest travel time [s] between nodes (scipy Dijkstra on length / free speed)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import dijkstra

        net = self.traffic_network
        links = net.links
        n = net.n_nodes
        node_index = {nid: i for i, nid in enumerate(net.nodes.index if "id" not in net.nodes else net.nodes["id"])}
        fr = links["from"].map(node_index).to_numpy()
        to = links["to"].map(node_index).to_numpy()
        w = (links["length_m"] / links["free_speed_mps"]).to_numpy(float)
        # parallel links: keep the fastest
        g = pd.DataFrame({"f": fr, "t": to, "w": w}).groupby(["f", "t"])["w"].min().reset_index()
        A = csr_matrix((g["w"].to_numpy() + 1e-9, (g["f"].to_numpy(), g["t"].to_numpy())), shape=(n, n))
        o = pd.Series(origins).map(node_index).to_numpy()
        d = pd.Series(destinations).map(node_index).to_numpy()
        out = np.full(len(o), np.nan)
        ok = ~(pd.isna(o) | pd.isna(d))
        if ok.any():
            oo, dd = o[ok].astype(int), d[ok].astype(int)
            uo, inv_o = np.unique(oo, return_inverse=True)
            ud, inv_d = np.unique(dd, return_inverse=True)
            if len(ud) < len(uo):  # many-to-few (evacuation to shelters): search back from destinations
                dist = dijkstra(A.T.tocsr(), directed=True, indices=ud)
                out[ok] = dist[inv_d, oo]
            else:
                dist = dijkstra(A, directed=True, indices=uo)
                out[ok] = dist[inv_o, dd]
        out[~np.isfinite(out)] = np.nan
        return out

    def incidents_table(self) -> pd.DataFrame:
        return self.services.incident_table().copy()

    def max_depth_at_places(self) -> list[dict]:
        if self.city is None or self.flood is None or getattr(self.city, "places", None) is None:
            return []
        pl = self.city.places
        if len(pl) == 0:
            return []
        r, c, ok = self._cells_at(pl["x"].to_numpy(), pl["y"].to_numpy())
        md = np.asarray(self.flood.max_depth)
        at = np.asarray(self.flood.arrival_time)  # first depth > 0.1 m (NaN: never)
        out = []
        for i, (_, p) in enumerate(pl.iterrows()):
            if not ok[i]:
                continue
            out.append({"place_id": str(p.get("place_id", i)), "name": str(p.get("name", "")),
                        "kind": str(p.get("kind", "")), "x": float(p["x"]), "y": float(p["y"]),
                        "max_depth_m": float(md[r[i], c[i]]) if np.isfinite(md[r[i], c[i]]) else 0.0,
                        "arrival_time_s": (float(at[r[i], c[i]]) if np.isfinite(at[r[i], c[i]]) else None)})
        order = {"hospital": 0, "shelter": 1, "school": 2}
        out.sort(key=lambda p: (order.get(p["kind"], 9), -p["max_depth_m"]))
        return out

    # -- state --------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        st: dict = {
            "applied": sorted(self.applied),
            "rngs": {k: g.bit_generator.state for k, g in self.rngs.items()},
            "log": list(self.log),
        }
        for name in ("flood", "traffic", "people", "services", "assimilator"):
            comp = getattr(self, name)
            if comp is not None and hasattr(comp, "get_state"):
                st[name] = comp.get_state()
        if self.manual_closed is not None:
            st["manual_closed"] = self.manual_closed.copy()
            st["link_depth"] = None if self.link_depth is None else self.link_depth.copy()
        return st

    def set_state(self, st: dict, fork: bool = False) -> None:
        """Restore a state. ``fork=True``: the scenario may differ; events of this twin that the
        state never applied stay pending (applied at the next step if their time has passed)."""
        for name in ("flood", "traffic", "people", "services", "assimilator"):
            comp = getattr(self, name)
            if comp is not None and name in st:
                comp.set_state(st[name])
        for k, s in st.get("rngs", {}).items():
            if k in self.rngs:
                self.rngs[k].bit_generator.state = s
        mine = {e.key for e in self.events}
        self.applied = set(st.get("applied", [])) & mine if fork else set(st.get("applied", []))
        self.log = list(st.get("log", []))
        if "manual_closed" in st and self.manual_closed is not None:
            self.manual_closed = st["manual_closed"].copy()
            self.link_depth = None if st["link_depth"] is None else st["link_depth"].copy()


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------
def build_twin(scenario: Scenario, city=None) -> Twin:
    """Build every component the scenario asks for. ``city`` overrides ``load_city(scenario.city)``."""
    sc = scenario
    ss = np.random.SeedSequence(sc.seed)
    children = dict(zip(SEED_CHILDREN, ss.spawn(len(SEED_CHILDREN))))
    rngs = {k: np.random.default_rng(v) for k, v in children.items()}
    if city is None:
        from twin.city import load_city

        city = load_city(sc.city, resolution_m=sc.resolution_m)
    terrain = city.terrain
    tw = Twin(scenario=sc, city=city, terrain=terrain, seed_sequence=ss, rngs=rngs)
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
    _apply_build_time_interventions(tw)
    _build_flood(tw)
    if sc.traffic is not None and sc.traffic.enabled:
        _build_traffic(tw)
    if sc.people is not None and sc.people.enabled:
        _build_people(tw)
    if sc.services is not None and sc.services.enabled:
        _build_services(tw)
    if sc.sensors is not None and sc.sensors.enabled:
        _build_sensors(tw)
    _build_interventions(tw)
    return tw


def _urban_mask(tw: Twin) -> None:
    # FD2321 land use per cell (urban / woodland / pasture), the same rule the people model uses
    tw.urban = land_use(getattr(tw.city, "landcover", None), getattr(tw.city, "landcover_classes", None))


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


def rain_series(tw: Twin) -> tuple[np.ndarray, np.ndarray] | None:
    sc = tw.scenario
    rain = sc.flood.rain
    if rain.kind == "none":
        return None
    if rain.kind == "design_storm":
        return design_hyetograph(rain)
    if rain.kind == "series":
        return np.asarray(rain.times, float), np.asarray(rain.rain_mm_per_h, float)
    if rain.kind == "file":
        t, v = _series_from_csv(rain.file, "t_s", "rain_mm_per_h", sc.start)
        tw.input_files.append(rain.file)
        return t, v * rain.scale
    if rain.kind == "gauge":
        t, v = _series_from_csv(rain.file, rain.time_column, rain.value_column, sc.start)
        tw.input_files.append(rain.file)
        return t, v * rain.scale
    if rain.kind == "typhoon":
        return typhoon_rain(tw)
    raise ValueError(f"flood.rain.kind {rain.kind!r} not supported")


def typhoon_rain(tw: Twin):
    """Rain from a best-track replay (``twin.sensors.typhoon``: R-CLIPER rain, Holland wind, surge).

    Rain is a per-cell field every 30 min when the grid is small enough (cells x times <= 4e6),
    else the rate at the domain centre applied uniformly; the surge (inverse barometer + wind
    set-up at the sea cells' centre) is added to the sea stage when ``surge: true``.
    """
    from twin.sensors import typhoon as ty

    sc = tw.scenario
    r = sc.flood.rain
    if r.track_file is not None:
        raise ValueError("flood.rain.track_file: custom track files are not supported yet; use a JTWC storm name/id")
    track = ty.load_track(r.storm, r.season)
    step = 1800.0
    times = np.arange(0.0, sc.duration + step, step)
    t_utc = [pd.Timestamp(sc.start_utc).tz_convert("UTC").tz_localize(None) + pd.Timedelta(seconds=float(t + r.time_shift))
             for t in times]
    ny, nx = tw.terrain.shape
    x, y = tw.terrain.cell_centers()
    if len(times) * ny * nx <= 4_000_000:
        X, Y = np.meshgrid(x, y)
        rate = ty.storm_rain_series(track, t_utc, X, Y, crs="EPSG:32649", scale=r.rain_scale)
        rate = np.where(tw.terrain.valid[None], rate, 0.0)
    else:
        xc, yc = float(np.mean(x)), float(np.mean(y))
        rate = ty.storm_rain_series(track, t_utc, xc, yc, crs="EPSG:32649", scale=r.rain_scale).reshape(-1)
    if r.max_rain_mm_per_h is not None:
        rate = np.minimum(rate, r.max_rain_mm_per_h)
    tw.forcing["typhoon"] = {"sid": track.sid, "name": track.name}
    if r.surge and tw.sea_mask is not None:
        rows, cols = np.nonzero(tw.sea_mask)
        sx, sy = float(np.mean(x[cols])), float(np.mean(y[rows]))
        surge = np.array([float(np.asarray(ty.surge_estimate(track, t, sx, sy, crs="EPSG:32649")["surge_m"]))
                          for t in t_utc])
        tw.forcing["typhoon_surge_m"] = (times, surge)
    return times, rate


def _cells_near(tw: Twin, x: float, y: float, width_m: float) -> list[tuple[int, int]]:
    t = tw.terrain
    r, c = t.rowcol(np.array([x]), np.array([y]))
    r, c = int(np.asarray(r)[0]), int(np.asarray(c)[0])
    ny, nx = t.shape
    if not (0 <= r < ny and 0 <= c < nx):
        raise ValueError(f"point ({x:.1f}, {y:.1f}) lies outside the terrain {t.bounds}")
    k = int(max(0, round(width_m / 2 / t.cell_size)))
    cells = [(rr, cc) for rr in range(max(0, r - k), min(ny, r + k + 1))
             for cc in range(max(0, c - k), min(nx, c + k + 1)) if t.valid[rr, cc]]
    if not cells:
        raise ValueError(f"point ({x:.1f}, {y:.1f}) lies on an invalid (nodata) cell")
    return cells


def _inflow_point(tw: Twin, name: str) -> tuple[float, float]:
    inf = getattr(tw.city, "inflows", None)
    if inf is None or len(inf) == 0:
        raise ValueError(f"inflow point {name!r}: the city bundle {tw.scenario.city!r} has no inflow points")
    key = _norm(name)
    m = inf[inf["name"].map(_norm) == key]
    if len(m) == 0:
        m = inf[inf["name"].map(lambda n: key in _norm(n))]
    if len(m) > 1:
        raise ValueError(f"inflow point {name!r} matches several inflows: {', '.join(map(str, m['name']))}")
    if len(m) == 0:
        raise ValueError(f"inflow point {name!r} not found in city {tw.scenario.city!r} "
                         f"(have: {', '.join(map(str, inf['name']))})")
    return float(m.iloc[0]["x"]), float(m.iloc[0]["y"])


def _norm(s: str) -> str:
    import unicodedata

    s = unicodedata.normalize("NFKD", str(s).replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in s if not unicodedata.combining(ch)).lower().replace("_", " ").strip()


def _place_xy(tw: Twin, place: str) -> tuple[float, float]:
    pl = getattr(tw.city, "places", None)
    if pl is None or len(pl) == 0:
        raise ValueError(f"place {place!r}: the city bundle has no places")
    m = pl[(pl["place_id"].astype(str) == str(place)) | (pl["name"].map(_norm) == _norm(place))]
    if len(m) == 0:
        m = pl[pl["name"].map(lambda n: _norm(place) in _norm(n))]
    if len(m) > 1:
        raise ValueError(f"place {place!r} matches several places: {', '.join(map(str, m['name']))}")
    if len(m) == 0:
        raise ValueError(f"place {place!r} not found in city {tw.scenario.city!r} (by place_id or name)")
    return float(m.iloc[0]["x"]), float(m.iloc[0]["y"])


def reservoir_release(tw: Twin, rain: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Level-pool Phú Ninh reservoir over the run: release = scheduled releases + spill above full supply.

    Storage change = inflow − release, inflow = runoff coefficient 0.7 × rain × catchment 235 km²
    (Phú Ninh catchment), surface area 33 km² (both public figures, rounded).
    """
    sc = tw.scenario
    res = sc.flood.reservoir
    if res is not None and res.in_grid:
        res = None  # the reservoir is on the grid: no lumped level pool
    sched = [iv for iv in sc.interventions if iv.type == "reservoir_release"]
    if res is None and not sched:
        return None
    dt = 300.0
    t = np.arange(0.0, sc.duration + dt, dt)
    q_sched = np.zeros_like(t)
    for iv in sched:
        q_sched += np.interp(t, np.asarray(iv.times) , np.asarray(iv.discharge_m3_per_s), left=0.0, right=0.0) * (t >= iv.at)
    if res is None:
        return t, q_sched
    catch_m2, area_m2, cr = 235e6, 33e6, 0.7
    if rain is not None:
        tr, vr = rain
        if np.ndim(vr) > 1:  # a rain field: the reservoir sees the domain mean
            vr = np.asarray(vr).mean(axis=tuple(range(1, np.ndim(vr))))
        rate = np.interp(t, tr, vr, left=0.0, right=0.0)
    else:
        rate = np.zeros_like(t)
    level = res.initial_level_m
    q = np.zeros_like(t)
    for i in range(len(t)):
        q_in = cr * rate[i] / 1000.0 / 3600.0 * catch_m2
        spill = max(0.0, level - res.full_supply_level_m) * res.spillway_m3_per_s_per_m
        q[i] = q_sched[i] + spill
        level += (q_in - q[i]) * dt / area_m2
    tw.forcing["reservoir_level_m"] = level
    return t, q


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
    if isinstance(manning, np.ndarray):
        manning = np.where(terrain.valid, np.nan_to_num(manning, nan=0.03), 0.03)
    fm = FloodModel(terrain, **kw | {"manning": manning})
    tw.flood = fm
    # edges
    for edge in ("north", "south", "east", "west"):
        fm.set_boundary(edge, getattr(f.boundaries, edge))
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
        fm.set_boundary(None, "stage", times_s=times, stage_m=stage, cells=list(zip(rows.tolist(), cols.tolist())))
    if f.reservoir is not None and f.reservoir.in_grid:
        from twin.flood.fv import reservoir_fill

        rx, ry = _to_utm(f.reservoir.xy, f.reservoir.crs)[0]
        h0 = np.maximum(np.nan_to_num(h0), reservoir_fill(terrain, rx, ry, f.reservoir.initial_level_m))
    h0 = np.where(terrain.valid, np.clip(np.nan_to_num(h0), 0.0, None), 0.0)
    fm.set_depth(h0)
    tw.initial_depth = h0
    for inf in f.inflows:
        if inf.at is not None:
            x, y = _inflow_point(tw, inf.at)
        else:
            x, y = _to_utm(inf.xy, inf.crs)[0]
        if inf.hydrograph is not None:
            t = np.asarray(inf.hydrograph.times, float)
            q = np.asarray(inf.hydrograph.discharge_m3_per_s, float)
        elif inf.file is not None:
            t, q = _series_from_csv(inf.file, "t_s", "discharge_m3_per_s", sc.start)
            tw.input_files.append(inf.file)
        else:
            t, q = np.array([0.0, sc.duration]), np.zeros(2)
        q = q * inf.scale + inf.base_m3_per_s
        fm.add_inflow(_cells_near(tw, x, y, inf.width_m), hydrograph=(t, q))
    rel = reservoir_release(tw, rain)
    if rel is not None:
        outlets = [iv.outlet for iv in sc.interventions if iv.type == "reservoir_release" and iv.outlet]
        outlet = (f.reservoir.outlet if f.reservoir is not None and f.reservoir.outlet else None) or (
            outlets[0] if outlets else None)
        if outlet is None:
            inf = getattr(tw.city, "inflows", None)
            cand = inf[inf["kind"].astype(str).str.contains("reservoir")] if inf is not None and len(inf) else []
            if len(cand) == 0:
                raise ValueError("reservoir release: no outlet given and the city has no inflow of kind 'reservoir*'")
            outlet = str(cand.iloc[0]["name"])
        x, y = _inflow_point(tw, outlet)
        fm.add_inflow(_cells_near(tw, x, y, 3 * tw.terrain.cell_size), hydrograph=rel)
        tw.forcing["reservoir_release"] = rel


def _build_traffic(tw: Twin) -> None:
    from twin.traffic import TrafficModel
    from twin.traffic.demand import background_trips

    sc = tw.scenario
    tr = sc.traffic
    net = tw.city.roads
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
        trips = background_trips(net, tr.background_trips_per_day, 0.0, sc.duration, tw.rngs["demand"],
                                 start_hour=start_hour, class_share=tr.vehicle_mix or None)
        if len(trips):
            tm.add_trips(trips)


def _apply_build_time_interventions(tw: Twin) -> None:
    """Interventions that change the city or the services before they are built (``at: 0``):
    a shelter opened (a place becomes a shelter with the given capacity) and extra units."""
    sc = tw.scenario
    for i, iv in enumerate(sc.interventions):
        if iv.type == "shelter_open":
            if iv.at != 0:
                raise ValueError(f"interventions.{i}.at: a shelter_open is applied when the twin is built "
                                 f"(at: 0); got {iv.at:g} s")
            pl = tw.city.places
            hit = (pl["place_id"].astype(str) == str(iv.place)) | (pl["name"].map(_norm) == _norm(iv.place))
            if not hit.any():
                raise ValueError(f"interventions.{i}.place: {iv.place!r} not found in the city's places")
            pl = pl.copy()
            pl.loc[hit, "kind"] = "shelter"
            pl.loc[hit, "capacity"] = iv.capacity
            _replace_city_attr(tw, "places", pl)
        elif iv.type == "extra_units" and iv.at == 0:  # later ones join as events (_make_event)
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


def _build_people(tw: Twin) -> None:
    from twin.agents import PeopleModel

    sc = tw.scenario
    params = dict(sc.people.params)
    params.setdefault("sample_fraction", sc.people.sample_fraction)
    params.setdefault("agents_per_household", sc.people.agents_per_household)
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
    params = dict(sc.services.params)
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
    if sc.sensors.store is None:
        raise ValueError("sensors.store: give the DuckDB file of observations to assimilate")
    tw.assimilator = Assimilator(str(sc.sensors.store), dict(sc.sensors.assimilation), tw.terrain, sc.start)
    tw.input_files.append(sc.sensors.store)


def _require(comp, method: str, what: str):
    if comp is None:
        raise ValueError(f"intervention {what}: needs a component that this scenario does not enable")
    fn = getattr(comp, method, None)
    if fn is None:
        raise ValueError(f"intervention {what}: {type(comp).__name__} has no {method}()")
    return fn


def _build_interventions(tw: Twin) -> None:
    sc = tw.scenario
    for i, iv in enumerate(sc.interventions):
        name = f"interventions.{i}.{iv.type}" + (f"({iv.label})" if iv.label else "")
        ev = _make_event(tw, i, iv, name)
        for e in ev:
            tw.events.append(e)


def _make_event(tw: Twin, i: int, iv, name: str) -> list[Event]:
    t = iv.type
    if t == "levee":
        xy = _to_utm(iv.polyline, iv.crs)
        return [Event(iv.at, i, name, lambda tw, xy=xy, c=iv.crest_m: tw.flood.add_levee(xy, c))]
    if t == "pump":
        x, y = _place_xy(tw, iv.place) if iv.place else _to_utm(iv.xy, iv.crs)[0]
        cell = _cells_near(tw, x, y, 0)[0]
        to_cell = None
        if iv.to_xy is not None:
            tx, ty = _to_utm(iv.to_xy, iv.crs)[0]
            to_cell = _cells_near(tw, tx, ty, 0)[0]
        return [Event(iv.at, i, name, lambda tw, c=cell, q=iv.capacity_m3_per_s, tc=to_cell:
                      tw.flood.add_pump(c, q, to_cell=tc))]
    if t in ("road_closure", "contraflow"):
        if tw.traffic is None:
            raise ValueError(f"{name}: needs the traffic section enabled")
        ids = list(iv.links)
        net = tw.traffic_network
        if any(j >= net.n_links for j in ids):
            raise ValueError(f"{name}: link id {max(ids)} out of range (network has {net.n_links} links)")
        if iv.near is not None:
            from shapely.geometry import Point

            px, py = _to_utm(iv.near, iv.crs)[0]
            pt = Point(px, py)
            ids += [j for j, g in enumerate(net.links["geometry"]) if g is not None and g.distance(pt) <= iv.radius_m]
        ids = sorted(set(ids))
        if not ids:
            raise ValueError(f"{name}: no road link within {iv.radius_m} m of {iv.near}")
        if t == "contraflow":
            # contraflow: traffic on the reverse carriageway runs outbound; model it by closing the
            # reverse links for inbound traffic (TrafficModel.set_contraflow if it exists).
            def apply(tw, ids=ids):
                if hasattr(tw.traffic, "set_contraflow"):
                    tw.traffic.set_contraflow(ids)
                    return
                links = tw.traffic_network.links
                pairs = set(zip(links["from"], links["to"]))
                rev = [j for j, (a, b) in enumerate(zip(links["from"], links["to"]))
                       if (b, a) in pairs and any(links["from"].iloc[k] == b and links["to"].iloc[k] == a for k in ids)]
                tw.close_manual(rev, True)
            evs = [Event(iv.at, i, name, apply)]
        else:
            evs = [Event(iv.at, i, name, lambda tw, ids=ids: tw.close_manual(ids, True))]
        if iv.until is not None:
            evs.append(Event(iv.until, i, name + ".reopen", lambda tw, ids=ids: tw.close_manual(ids, False)))
        return evs
    if t in ("shelter_open", "extra_units"):
        if t == "shelter_open" and tw.people is None and tw.services is None:
            raise ValueError(f"{name}: needs the people or services section enabled")
        if t == "extra_units" and tw.services is None:
            raise ValueError(f"{name}: needs the services section enabled")
        if t == "extra_units" and iv.at > 0:  # reinforcements arriving during the run
            return [Event(iv.at, i, name, lambda tw, k=iv.unit, n=iv.count: tw.services.add_units(k, n))]
        return []  # applied when the twin was built (_apply_build_time_interventions)
    if t == "warning":
        if tw.people is None:
            raise ValueError(f"{name}: a warning needs the people section enabled")
        area = iv.area
        if area is not None:  # ward names (or codes) -> the people model's integer ward codes
            codes = {_norm(k): v for k, v in tw.ward_codes.items()}
            area = [int(a) if str(a).isdigit() else codes.get(_norm(a), a) for a in area]
            bad = [a for a in area if isinstance(a, str)]
            if bad:
                raise ValueError(f"{name}: unknown ward(s) {bad} (wards: {', '.join(tw.ward_codes) or 'none'})")

        def apply(tw, iv=iv, area=area):
            tw.people.issue_warning(iv.at, iv.channel, area=area)
        return [Event(iv.at, i, name, apply)]
    if t == "reservoir_release":
        return []  # folded into the reservoir release hydrograph at build time
    if t == "breach":
        if iv.polyline is not None:
            geom = _to_utm(iv.polyline, iv.crs)
        elif iv.place is not None:
            geom = np.atleast_2d(_place_xy(tw, iv.place))
        else:
            geom = _to_utm(iv.xy, iv.crs)
        add = getattr(tw.flood, "add_breach", None)
        if add is None:
            raise ValueError(f"{name}: this FloodModel has no add_breach() (needs the FV engineer's breach support)")
        linear = iv.method == "linear"
        add(geom, crest_start_m=iv.crest_start_m, crest_end_m=iv.crest_end_m,
            width_m=iv.width_m if iv.width_m is not None else (50.0 if linear else None),
            start_s=iv.at, formation_s=iv.formation if iv.formation is not None else (1800.0 if linear else None),
            method=iv.method, thickness_m=iv.thickness_m, side_slope=iv.side_slope,
            reservoir_volume_m3=iv.reservoir_volume_m3, failure_mode=iv.failure_mode)
        return []
    raise ValueError(f"{name}: unknown intervention type {t!r}")
