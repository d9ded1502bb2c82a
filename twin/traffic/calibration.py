"""Calibrating the background traffic demand from link counts (traffic cameras).

The background demand (:func:`twin.traffic.demand.background_trips`) starts ``trips_per_day ×
share(h)`` trips in local hour ``h``, from origins uniform over the network's nodes to uniform
destinations. Grouping the nodes into origin zones ``z`` (default :func:`grid_zones`), the prior trips of
zone ``z`` in hour ``h`` are ``T0[z, h] = trips_per_day · share(h) · n_z / N``.

Counts ``c[l, h]`` (vehicles per hour on camera link ``l``) relate to the trips by the assignment matrix
``A[l, z]``: the probability that a trip from zone ``z`` (origin uniform in the zone, destination
uniform over the nodes) passes link ``l`` on its free-flow shortest path (the route the traffic model
gives it). Then ``c[:, h] ≈ A T[:, h]`` (a trip is counted in the hour it departs: trips in a city of
this size last minutes, not hours). Per counted hour, the calibrated trips solve the bounded, regularised
least-squares problem

    min_T ||A T − c||² + λ ||T − T0||²   subject to  T ≥ 0,

with ``λ = regularization · mean(diag(AᵀA))`` (a zone no camera sees keeps its prior), solved by
``scipy.optimize.lsq_linear`` (bounded-variable least squares). The demand multipliers are
``M[z, h] = T[z, h] / T0[z, h]`` (1 in hours without counts). Applied by
:func:`calibrated_background_trips` (scenario key ``traffic.demand_calibration``: a JSON file written by
:meth:`DemandCalibration.save`), so the live twin and forecasts built from the scenario follow the counts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.traffic.demand import TAMKY_CLASS_SHARE, _sample_classes, daily_profile

__all__ = ["DemandCalibration", "grid_zones", "assignment_matrix", "calibrate_background_demand",
           "calibrated_background_trips"]


def grid_zones(network, nx: int = 3, ny: int | None = None) -> np.ndarray:
    """Origin zone (0..nx·ny−1) of every node (row order of ``network.nodes``): an ``nx × ny`` grid over the
    nodes' bounding box, row 0 in the south-west. Empty zones are dropped and the rest renumbered."""
    ny = nx if ny is None else ny
    if nx < 1 or ny < 1:
        raise ValueError(f"grid_zones: nx and ny must be >= 1, got {nx}, {ny}")
    x = network.nodes["x"].to_numpy(float)
    y = network.nodes["y"].to_numpy(float)

    def bins(v, n):
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            return np.zeros(v.size, np.int64)
        return np.minimum((n * (v - lo) / (hi - lo)).astype(np.int64), n - 1)

    z = bins(y, ny) * nx + bins(x, nx)
    _, dense = np.unique(z, return_inverse=True)
    return dense.astype(np.int64)


def assignment_matrix(network, zones: np.ndarray, links, *, max_pairs: int = 20000, seed: int = 0,
                      vehicle_class: str = "car") -> np.ndarray:
    """``A[i, z]``: probability that a background trip from zone ``z`` passes ``links[i]`` (link ids) on its
    free-flow shortest path. Exact (every origin-destination pair) when the network has at most
    ``max_pairs`` pairs, else estimated from ``max_pairs`` pairs sampled per zone (seeded)."""
    from twin.traffic import TrafficModel

    zones = np.asarray(zones, np.int64)
    ids = network.node_ids
    n = len(ids)
    if zones.shape != (n,):
        raise ValueError(f"zones: expected one zone per node ({n}), got shape {zones.shape}")
    links = np.asarray(links, np.int64)
    bad = (links < 0) | (links >= network.n_links)
    if bad.any():
        raise ValueError(f"camera link id {int(links[bad][0])} is not a link of the road network "
                         f"(0..{network.n_links - 1})")
    pos = {int(lk): i for i, lk in enumerate(links)}
    nz = int(zones.max()) + 1
    A = np.zeros((links.size, nz))
    tm = TrafficModel(network, dt=1.0, seed=seed)
    rng = np.random.default_rng(seed)
    exact = n * (n - 1) <= max_pairs
    for z in range(nz):
        orig = np.flatnonzero(zones == z)
        if exact:
            pairs = [(o, d) for o in orig for d in range(n) if d != o]
        else:
            k = max(1, max_pairs // nz)
            o = orig[rng.integers(0, orig.size, k)]
            d = rng.integers(0, n - 1, k)
            d = d + (d >= o)          # uniform over the other nodes
            pairs = list(zip(o.tolist(), d.tolist()))
        if not pairs:
            continue
        hits = np.zeros(links.size)
        for o, d in pairs:
            _nodes, path, t = tm.shortest_path(ids[o], ids[d], vehicle_class)
            if not math.isfinite(t):
                continue
            for lk in path:
                i = pos.get(int(lk))
                if i is not None:
                    hits[i] += 1
        A[:, z] = hits / len(pairs)
    return A


@dataclass
class DemandCalibration:
    """Calibrated background demand: per origin zone and local hour, the multiplier of the prior trips."""

    node_ids: np.ndarray            #: node ids (row order of the network's nodes)
    zones: np.ndarray               #: origin zone of each node
    multipliers: np.ndarray         #: (n_zones, 24) demand multiplier (1 in hours without counts)
    prior_trips: np.ndarray         #: (n_zones, 24) trips per hour before calibration
    trips: np.ndarray               #: (n_zones, 24) calibrated trips per hour
    hours: list[int] = field(default_factory=list)      #: local hours with counts
    class_share: dict[str, float] = field(default_factory=dict)   #: counted vehicle mix (may be empty)
    fit: dict = field(default_factory=dict)             #: per hour: links, rmse of counts before/after

    @property
    def n_zones(self) -> int:
        return int(self.multipliers.shape[0])

    def to_dict(self) -> dict:
        return {"kind": "twin.demand_calibration", "version": 1,
                "node_ids": [v.item() if hasattr(v, "item") else v for v in self.node_ids],
                "zones": self.zones.tolist(), "multipliers": self.multipliers.tolist(),
                "prior_trips": self.prior_trips.tolist(), "trips": self.trips.tolist(), "hours": list(self.hours),
                "class_share": dict(self.class_share), "fit": self.fit}

    def save(self, path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

    @classmethod
    def load(cls, path) -> DemandCalibration:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"demand calibration {str(p)!r} does not exist")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"demand calibration {str(p)!r} is not JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("kind") != "twin.demand_calibration":
            raise ValueError(f"demand calibration {str(p)!r}: 'kind' must be 'twin.demand_calibration'")
        try:
            node_ids = np.asarray(d["node_ids"])
            zones = np.asarray(d["zones"], np.int64)
            mult = np.asarray(d["multipliers"], np.float64)
        except KeyError as exc:
            raise ValueError(f"demand calibration {str(p)!r}: missing field {exc}") from None
        nz = int(zones.max()) + 1 if zones.size else 0
        if zones.shape != node_ids.shape:
            raise ValueError(f"demand calibration {str(p)!r}: 'zones' ({zones.size}) and 'node_ids' "
                             f"({node_ids.size}) lengths differ")
        if mult.shape != (nz, 24) or not np.isfinite(mult).all() or (mult < 0).any():
            raise ValueError(f"demand calibration {str(p)!r}: 'multipliers' must be finite, >= 0, shape ({nz}, 24); "
                             f"got shape {mult.shape}")
        return cls(node_ids, zones, mult, np.asarray(d.get("prior_trips", np.zeros((nz, 24)))),
                   np.asarray(d.get("trips", np.zeros((nz, 24)))), list(d.get("hours", [])),
                   dict(d.get("class_share", {})), dict(d.get("fit", {})))

    def zones_for(self, network, source: str = "demand calibration") -> np.ndarray:
        """The zone of each node of ``network`` (row order); a node the calibration does not know is refused."""
        lut = pd.Series(self.zones, index=pd.Index(self.node_ids))
        ids = network.node_ids
        missing = ~pd.Index(ids).isin(lut.index)
        if missing.any():
            bad = ids[missing][0]
            raise ValueError(f"{source}: node id {bad.item() if hasattr(bad, 'item') else bad!r} of the road network has no zone in the "
                             "calibration (calibrated on another network?)")
        return lut.loc[ids].to_numpy(np.int64)


def calibrate_background_demand(network, hourly_counts: pd.DataFrame, trips_per_day: float, *,
                                zones: np.ndarray | None = None, regularization: float = 0.01,
                                max_pairs: int = 20000, seed: int = 0, class_share: dict | None = None,
                                assignment: np.ndarray | None = None) -> DemandCalibration:
    """Fit the background demand per origin zone and local hour to ``hourly_counts`` (vehicles per hour,
    rows: link ids, columns: hours 0..23, as :func:`twin.sensors.cameras.hourly_link_counts` returns).
    See the module docstring for the problem solved. ``assignment``: a precomputed ``A`` (rows in
    ``hourly_counts``' order)."""
    from scipy.optimize import lsq_linear

    if not (math.isfinite(trips_per_day) and trips_per_day > 0):
        raise ValueError(f"trips_per_day: must be finite and > 0, got {trips_per_day!r}")
    if not (math.isfinite(regularization) and regularization >= 0):
        raise ValueError(f"regularization: must be finite and >= 0, got {regularization!r}")
    if hourly_counts is None or hourly_counts.empty:
        raise ValueError("hourly_counts: no camera counts to calibrate from")
    zones = grid_zones(network) if zones is None else np.asarray(zones, np.int64)
    links = hourly_counts.index.to_numpy(np.int64)
    A = assignment_matrix(network, zones, links, max_pairs=max_pairs, seed=seed) if assignment is None \
        else np.asarray(assignment, np.float64)
    nz = int(zones.max()) + 1
    if A.shape != (links.size, nz):
        raise ValueError(f"assignment: expected shape ({links.size}, {nz}), got {A.shape}")
    frac = np.bincount(zones, minlength=nz) / zones.size
    prior = trips_per_day * frac[:, None] * daily_profile()[None, :]
    trips = prior.copy()
    lam = regularization * float(np.mean(np.sum(A * A, axis=0))) if regularization > 0 else 0.0
    fit = {}
    hours = []
    for h in sorted(int(c) for c in hourly_counts.columns):
        c = hourly_counts[h].to_numpy(float)
        ok = np.isfinite(c)
        if not ok.any():
            continue
        if (c[ok] < 0).any():
            raise ValueError(f"hourly_counts: negative count at hour {h}")
        Ah, ch = A[ok], c[ok]
        if lam > 0:
            s = math.sqrt(lam)
            M = np.vstack([Ah, s * np.eye(nz)])
            b = np.concatenate([ch, s * prior[:, h]])
        else:
            M, b = Ah, ch
        res = lsq_linear(M, b, bounds=(0.0, np.inf), method="bvls")
        trips[:, h] = res.x
        hours.append(h)
        fit[str(h)] = {"links": int(ok.sum()),
                       "rmse_prior_vph": float(np.sqrt(np.mean((Ah @ prior[:, h] - ch) ** 2))),
                       "rmse_vph": float(np.sqrt(np.mean((Ah @ res.x - ch) ** 2)))}
    with np.errstate(divide="ignore", invalid="ignore"):
        mult = np.where(prior > 0, trips / prior, 1.0)
    return DemandCalibration(network.node_ids.copy(), zones, mult, prior, trips, hours,
                             dict(class_share or {}), fit)


def calibrated_background_trips(network, trips_per_day: float, start_s: float, duration_s: float,
                                rng: np.random.Generator, calibration: DemandCalibration, *,
                                start_hour: float = 0.0, class_share: dict | None = None) -> pd.DataFrame:
    """Like :func:`twin.traffic.demand.background_trips`, with the trips of each origin zone and local hour
    multiplied by the calibration's multipliers (origins uniform in their zone, destinations uniform over
    the nodes). With all multipliers 1 the expected trips are the uncalibrated ones."""
    if duration_s <= 0:
        raise ValueError(f"calibrated_background_trips: duration_s must be > 0, got {duration_s}")
    zones = calibration.zones_for(network)
    ids = network.node_ids
    n = len(ids)
    nz = calibration.n_zones
    members = [np.flatnonzero(zones == z) for z in range(nz)]
    frac = np.array([m.size for m in members]) / n
    o_parts, t_parts = [], []
    for t0 in np.arange(0.0, duration_s, 3600.0):
        t1 = min(t0 + 3600.0, duration_s)
        hour = (start_hour + t0 / 3600.0) % 24.0
        hi = int(math.floor(hour)) % 24
        base = trips_per_day * float(daily_profile(hour)) * (t1 - t0) / 3600.0
        for z in range(nz):
            if members[z].size == 0:
                continue
            k = rng.poisson(base * frac[z] * calibration.multipliers[z, hi])
            o_parts.append(ids[members[z][rng.integers(0, members[z].size, k)]])
            t_parts.append(start_s + rng.uniform(t0, t1, k))
    o = np.concatenate(o_parts) if o_parts else np.array([], dtype=ids.dtype)
    dep = np.concatenate(t_parts) if t_parts else np.array([])
    order = np.argsort(dep, kind="stable")
    o, dep = o[order], dep[order]
    d = ids[rng.integers(0, n, o.size)]
    same = o == d
    while same.any() and n > 1:
        d[same] = ids[rng.integers(0, n, int(same.sum()))]
        same = o == d
    df = pd.DataFrame({"origin": o, "destination": d, "depart_s": dep})
    df["vehicle_class"] = _sample_classes(len(df), class_share or TAMKY_CLASS_SHARE, rng)
    return df
