"""Population synthesis for the people model: places, households, persons and destinations.

Everything here is built once, before the first step, from the city bundle and the parameters:

- shelters (capacity scaled with the sampled population) and hotels (``_build_places``);
- households placed in their ward's cells weighted by building fraction, never in permanent water,
  with members, ages, vehicles and storeys from the ward table; tourist parties at hotels
  (``_build_population``); the FD2321 land use of each cell for the debris factor;
- walking and driving trees to shelters and to "relatives" nodes outside the hazard area
  (``_build_destinations``).

:class:`PopulationSynthesis` is a mixin of :class:`twin.agents.people.PeopleModel`: it writes the
static arrays (``home_x``, ``n_members``, ``p_age``, ``shelter_node``, ...) that the behaviour in
``people.py`` reads. The random draws happen in this order with the model's generator, so a seed
gives the same population as before the split.
"""
from __future__ import annotations

import numpy as np

from twin.couplings import RoadWaterLevel
from twin.hazard import land_use_indices

VEHICLES = ("none", "motorbike", "car")
AGE_GROUPS = ("child", "adult", "elderly")
KINDS = ("household", "tourist")

__all__ = ["PopulationSynthesis", "VEHICLES", "AGE_GROUPS", "KINDS"]


class PopulationSynthesis:
    """Builds the static population arrays of a people model from ``city`` (see the module notes).

    Expects ``self.params`` (PeopleParams), ``self.rng``, ``self.terrain``, ``self.shape``,
    ``self._inv`` (inverse grid transform) and ``self.graph`` (RoadGraph) to be set.
    """
    def _cell_of(self, x, y):
        c, r = _apply_affine(self._inv, x, y)
        ny, nx = self.shape
        r = np.clip(np.floor(r).astype(np.int64), 0, ny - 1)
        c = np.clip(np.floor(c).astype(np.int64), 0, nx - 1)
        return r * nx + c

    def _build_places(self, city):
        places = city.places
        def sel(kind):
            return places[places["kind"] == kind].reset_index(drop=True)
        self.shelters = places[places["kind"].isin(self.params.shelter_kinds)].reset_index(drop=True)
        cap = self.shelters["capacity"].to_numpy(dtype=float) if len(self.shelters) else np.zeros(0)
        cap = np.where(np.isfinite(cap) & (cap > 0), cap, 500.0)
        # a sampled population gets the same share of shelter places
        self.shelter_capacity = np.maximum(np.round(cap * self.params.sample_fraction), 1).astype(np.int64)
        self.shelter_node = self.graph.nearest_node(self.shelters["x"], self.shelters["y"]) if len(
            self.shelters) else np.zeros(0, np.int64)
        self.shelter_cell = self._cell_of(self.shelters["x"], self.shelters["y"]) if len(
            self.shelters) else np.zeros(0, np.int64)
        self.hotels = sel("hotel")
        self.shelter_x = self.shelters["x"].to_numpy(float)
        self.shelter_y = self.shelters["y"].to_numpy(float)

    def _build_population(self, city):
        p, rng = self.params, self.rng
        pop = city.population
        ny, nx = self.shape
        wr = np.asarray(city.ward_raster).ravel()
        valid = np.asarray(self.terrain.valid).ravel()
        bf = getattr(city, "building_fraction", None)
        weight_all = (np.asarray(bf, float).ravel() if bf is not None else np.ones(ny * nx))
        weight_all = np.where(valid, np.nan_to_num(weight_all) + 1e-3, 0.0)
        # nobody lives in the sea, a river or the lagoon: cells of permanent water (land cover water/sea,
        # or initial water deeper than 5 cm) get no homes, unless a ward has no other cell
        wet = np.zeros(ny * nx, bool)
        lc, classes = getattr(city, "landcover", None), getattr(city, "landcover_classes", None) or {}
        water_codes = [k for k, v in classes.items() if str(v) in ("water", "sea")]
        if lc is not None and water_codes:
            wet |= np.isin(np.asarray(lc).ravel(), water_codes)
        w0 = getattr(city, "water_depth0", None)
        w0 = np.zeros(ny * nx) if w0 is None else np.nan_to_num(np.asarray(w0, float).ravel())
        wet |= w0 > 0.05
        self._wet_cells = wet
        # FD2321 land use of each cell for the debris factor: the same rule as the map (Twin.hazard)
        lu = land_use_indices(lc, classes)   # (indices: read per step without sorting names)
        self._land_use = np.asarray(lu).ravel() if isinstance(lu, np.ndarray) else lu
        # on bridges and bank roads in those cells people meet the water above the banks only
        self._road_water = RoadWaterLevel(np.asarray(self.terrain.elevation, float), wet.reshape(ny, nx),
                                          np.asarray(self.terrain.valid), np.where(wet, w0, 0.0).reshape(ny, nx))
        # ward codes as in ward_raster (the bundle's ward_id; names map to them for warnings)
        wcol = "ward_id" if "ward_id" in pop.columns else "ward"
        wcode = pop[wcol].to_numpy()
        ncol = "ward_name" if "ward_name" in pop.columns else ("ward" if wcol == "ward_id" else None)
        self._ward_names = dict(zip(pop[ncol].astype(str), wcode)) if ncol else {}
        hh_tot = pop["households"].to_numpy(float) * p.population_scale
        ps_tot = pop["persons"].to_numpy(float) * p.population_scale
        if p.n_households is not None:
            hh_tot = hh_tot * (p.n_households / hh_tot.sum())
        if p.n_persons is not None:
            ps_tot = ps_tot * (p.n_persons / ps_tot.sum())
        hh_tot, ps_tot = hh_tot * p.sample_fraction, ps_tot * p.sample_fraction
        self._represents = 1.0 / p.sample_fraction
        H = _round_preserving(hh_tot)
        P = np.maximum(_round_preserving(ps_tot), H)
        hx, hy, hst, hveh, hward, hsize = [], [], [], [], [], []
        ages = []
        for k, row in enumerate(pop.itertuples(index=False)):
            n_h, n_p = int(H[k]), int(P[k])
            if n_h == 0:
                continue
            code = wcode[k]
            cells = np.flatnonzero((wr == code) & (weight_all > 0) & ~wet)
            if cells.size == 0:
                cells = np.flatnonzero((wr == code) & (weight_all > 0))
            if cells.size == 0:
                raise ValueError(f"city population: ward {code!r} has no valid cells in ward_raster")
            w = weight_all[cells]
            pick = cells[rng.choice(cells.size, size=n_h, p=w / w.sum())]
            r, c = np.divmod(pick, nx)
            cx = self.terrain.transform.c + (c + rng.random(n_h)) * self.terrain.transform.a
            cy = self.terrain.transform.f + (r + rng.random(n_h)) * self.terrain.transform.e
            hx.append(cx); hy.append(cy)
            size = 1 + rng.multinomial(n_p - n_h, np.full(n_h, 1.0 / n_h))
            hsize.append(size)
            sh_v = np.array([row.share_no_vehicle, row.share_motorbike, row.share_car], float)
            hveh.append(rng.choice(3, size=n_h, p=sh_v / sh_v.sum()))
            ms = max(float(row.mean_storeys), 1.0)
            hst.append(np.clip(1 + rng.poisson(ms - 1.0, n_h), 1, p.max_storeys))
            hward.append(np.full(n_h, code))
            sc, se = float(row.share_children), float(row.share_elderly)
            ages.append(rng.choice(3, size=int(size.sum()), p=[sc, 1.0 - sc - se, se]))
        cat = lambda lst, dt: np.concatenate(lst).astype(dt) if lst else np.zeros(0, dt)  # noqa: E731
        self.n_households = int(sum(len(a) for a in hx))
        # tourists at hotels
        tx, ty, tsize, thotel, tveh = [], [], [], [], []
        hotel_tourists = (self.hotels["tourists"].to_numpy(float) if "tourists" in self.hotels.columns
                          else np.full(len(self.hotels), np.nan))
        if p.n_tourists is not None:
            n_tourists = p.n_tourists
        elif np.nansum(hotel_tourists) > 0:
            n_tourists = float(np.nansum(hotel_tourists))
        else:
            n_tourists = float(pop["tourists"].sum()) if "tourists" in pop.columns else 0.0
        n_tour = int(round(n_tourists * p.population_scale * p.sample_fraction))
        if n_tour > 0 and len(self.hotels):
            q = np.clip((p.tourist_party_mean - 1.0) / 3.0, 0.0, 1.0)
            sizes = 1 + rng.binomial(3, q, size=n_tour)
            cs = np.cumsum(sizes)
            n_par = int(np.searchsorted(cs, n_tour) + 1)
            sizes = sizes[:n_par]
            sizes[-1] -= cs[n_par - 1] - n_tour
            cap = self.hotels["capacity"].to_numpy(float)
            if np.nansum(hotel_tourists) > 0:
                cap = hotel_tourists
            cap = np.where(np.isfinite(cap) & (cap > 0), cap, 1e-9)
            hotel = rng.choice(len(cap), size=n_par, p=cap / cap.sum())
            tx = self.hotels["x"].to_numpy(float)[hotel]
            ty = self.hotels["y"].to_numpy(float)[hotel]
            tsize, thotel = sizes, hotel
            tveh = np.where(rng.random(n_par) < p.tourist_vehicle_share, 1, 0)
        n_t = len(tsize)
        self.n_agents = self.n_households + n_t
        self.kind = np.concatenate([np.zeros(self.n_households, np.int8), np.ones(n_t, np.int8)])
        self.home_x = np.concatenate([cat(hx, float), np.asarray(tx, float)])
        self.home_y = np.concatenate([cat(hy, float), np.asarray(ty, float)])
        self.n_members = np.concatenate([cat(hsize, np.int64), np.asarray(tsize, np.int64)])
        self.vehicle = np.concatenate([cat(hveh, np.int8), np.asarray(tveh, np.int8)])
        if "storeys" in self.hotels.columns and len(self.hotels):
            hotel_storeys = np.nan_to_num(self.hotels["storeys"].to_numpy(float), nan=4.0).astype(np.int64)
        else:
            hotel_storeys = np.full(len(self.hotels), 4, np.int64)
        self.storeys = np.concatenate([cat(hst, np.int64),
                                       hotel_storeys[np.asarray(thotel, np.int64)] if n_t else np.zeros(0, np.int64)])
        t_cell = self._cell_of(np.asarray(tx, float), np.asarray(ty, float))
        self.ward = np.concatenate([cat(hward, wcode.dtype if wcode.dtype.kind in "iu" else object),
                                    wr[t_cell].astype(wcode.dtype if wcode.dtype.kind in "iu" else object)])
        self.hotel = np.concatenate([np.full(self.n_households, -1, np.int64), np.asarray(thotel, np.int64)])
        a, b = p.awareness_mean * p.awareness_concentration, (1 - p.awareness_mean) * p.awareness_concentration
        self.awareness = np.concatenate([rng.beta(a, b, self.n_households), np.full(n_t, p.tourist_awareness)])
        # persons
        self.p_hh = np.repeat(np.arange(self.n_agents), self.n_members)
        self.p_age = np.concatenate([cat(ages, np.int8), np.ones(int(np.sum(tsize)), np.int8)])
        self.n_persons = len(self.p_hh)
        self.vulnerable = np.bincount(self.p_hh, weights=(self.p_age != 1), minlength=self.n_agents) > 0
        self.home_cell = self._cell_of(self.home_x, self.home_y)
        self.home_node = self.graph.nearest_node(self.home_x, self.home_y)
        self.walk_speed = np.where(self.vulnerable, p.walk_speed_vulnerable_mps, p.walk_speed_mps)
        self.walk_stop = np.where(self.vulnerable, p.walk_stop_depth_vulnerable_m, p.walk_stop_depth_m)
        wards = np.unique(wcode)
        self._ward_codes = wards
        pos = np.clip(np.searchsorted(wards, self.ward), 0, max(len(wards) - 1, 0))
        known = (wards[pos] == self.ward) if len(wards) else np.zeros(self.n_agents, bool)
        self._ward_ix = np.where(known, pos, len(wards))

    def _build_destinations(self):
        """Walking and fallback-driving trees to shelters and to nodes outside the hazard area."""
        p, g = self.params, self.graph
        elev = np.asarray(self.terrain.elevation, float).ravel()
        node_cell = self._cell_of(g.node_x, g.node_y)
        z = np.nan_to_num(elev[node_cell], nan=-1e9)
        thr = np.quantile(z, p.safe_elevation_quantile) if len(z) else 0.0
        cand = np.flatnonzero(z >= thr)
        k = min(p.n_relatives_nodes, cand.size)
        rel = np.sort(self.rng.choice(cand, size=k, replace=False)) if k else np.zeros(0, np.int64)
        self.relatives_node = rel
        self.n_shelters = len(self.shelter_node)
        self.dest_node = np.concatenate([self.shelter_node, rel]).astype(np.int64)
        (self.walk_cost, self.walk_next, self.drive_cost, self.drive_next, self.walk_len, self.drive_len,
         self.drive_speed) = self.destination_tables(self.dest_node)
        self.node_cell = node_cell
        self._relatives_cells = np.unique(node_cell[rel]) if k else np.zeros(0, np.int64)

    def destination_tables(self, dest_nodes):
        """Per (destination, node): walking and driving tree (cost, next node) to each destination,
        the length of the next edge on each, and the driving speed on it (one row per destination;
        rows are independent, so a destination added later gets the same row it would have had)."""
        g = self.graph
        walk_cost, walk_next = g.trees_to(dest_nodes, g.length_m, undirected=True)
        drive_cost, drive_next = g.trees_to(dest_nodes, g.length_m / g.free_speed_mps)
        D, N = len(dest_nodes), g.n_nodes
        node = np.broadcast_to(np.arange(N), (D, N)).ravel()
        wn = walk_next.ravel()
        lk = np.where(wn >= 0, g.link_between(node, np.maximum(wn, 0)), -1)
        lk = np.where((lk < 0) & (wn >= 0), g.link_between(np.maximum(wn, 0), node), lk)
        walk_len = np.where(lk >= 0, g.length_m[np.maximum(lk, 0)], 1.0).reshape(D, N)
        dn = drive_next.ravel()
        lk = np.where(dn >= 0, g.link_between(node, np.maximum(dn, 0)), -1)
        drive_len = np.where(lk >= 0, g.length_m[np.maximum(lk, 0)], 1.0).reshape(D, N)
        drive_speed = np.where(lk >= 0, g.free_speed_mps[np.maximum(lk, 0)], 1.0).reshape(D, N)
        return walk_cost, walk_next, drive_cost, drive_next, walk_len, drive_len, drive_speed

def _apply_affine(a, x, y):
    """(col, row) = a · (x, y) for an ``affine.Affine`` (no deprecated ``*`` on tuples)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f


def _round_preserving(x) -> np.ndarray:
    """Round non-negative reals to integers preserving the rounded total (largest remainders)."""
    x = np.asarray(x, float)
    fl = np.floor(x).astype(np.int64)
    short = int(round(x.sum())) - int(fl.sum())
    if short > 0:
        fl[np.argsort(-(x - fl), kind="stable")[:short]] += 1
    return fl
