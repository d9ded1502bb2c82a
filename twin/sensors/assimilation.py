"""Assimilation of observations into the flood model (coupling step 6).

Plain functions over arrays, and one class that ties them to the store and a ``FloodModel``:

* rain gauges -> rain field: :func:`idw_field` (inverse distance, power ``p``; exact at a gauge)
  or :func:`thiessen_field` (nearest gauge = Thiessen polygons). Cells farther than
  ``max_distance_m`` from every gauge get the *background* (0, or a typhoon R-CLIPER field).
* upstream stage gauge -> inflow: :class:`RatingCurve` ``Q = a (h - h0)^b`` (h > h0, else 0), the
  standard power-law rating; or the stage itself as a stage boundary on the inflow cells.
* tide gauge -> sea boundary stage (``set_boundary(edge|cells, kind="stage")``), plus ``offset_m``
  between the gauge datum and the model datum.
* water-level gauges inside the domain -> **nudging** (Newtonian relaxation): around each gauge
  the depth relaxes toward the depth the observed water level implies,
  ``h <- h + min(Δt/τ, 1) · w(r) · (max(η_obs - z, 0) - h)`` with Cressman weights
  ``w = (R² - r²)/(R² + r²)`` inside the radius ``R`` (several gauges: weights normalised so that
  their sum is at most 1). ``τ`` is the relaxation time. Model-minus-observation statistics at
  the gauges before and after each nudge are kept in :attr:`Assimilator.history` and summarised by
  :meth:`Assimilator.statistics`.
* or, with ``method: enkf``, the same gauges -> a **localised ensemble Kalman filter**
  (:class:`twin.assimilation.EnsembleKalmanFilter`): ``members`` copies of the flood model run in
  this process beside it (forced like it, rain scaled per member), are analysed at every step with
  observations, and the model takes the ensemble mean (see :meth:`Assimilator.enkf_analysis`).
  With ``enkf.dask`` the members live on Dask workers instead (one slice per worker, shipped once;
  only the localisation windows travel to the analysis and back; :mod:`twin.assimilation.dask_members`):
  the same analysis, to round-off.

Only observations without a flag in :data:`twin.sensors.model.BAD_MASK` are used, and only the
latest one at or before the model time (causal: the same in a hindcast as live), no older than
``max_age_s``.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from twin.sensors.model import BAD_MASK

if TYPE_CHECKING:
    from twin.assimilation import EnsembleKalmanFilter
    from twin.assimilation.dask_members import DaskMembers

from twin.assimilation.held import hold_inflow, hold_stage, relink_held  # noqa: F401  (re-exported)

LOCAL_TZ = "Asia/Ho_Chi_Minh"
HOLD_S = 10.0 * 365 * 86400.0   # a forcing set at t is held until the next apply (constant series)


# ------------------------------------------------------------------------------ functions
def idw_field(gx, gy, values, x, y, *, power: float = 2.0, max_distance_m: float | None = None,
              background=0.0) -> np.ndarray:
    """Inverse-distance-weighted field at points ``x, y`` (broadcast together) from gauges at
    ``gx, gy`` with ``values``. A point on a gauge takes its value exactly. Points farther than
    ``max_distance_m`` from every gauge take ``background`` (scalar or array like the output)."""
    gx, gy, v = (np.asarray(a, dtype=np.float64).ravel() for a in (gx, gy, values))
    if not (gx.size == gy.size == v.size):
        raise ValueError(f"idw_field: gx ({gx.size}), gy ({gy.size}) and values ({v.size}) lengths differ")
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    shape = x.shape
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), shape).ravel()
    if v.size == 0:
        return bg.reshape(shape).copy()
    px, py = x.ravel(), y.ravel()
    out = np.empty(px.size)
    chunk = 65536
    for s in range(0, px.size, chunk):
        d = np.hypot(px[s:s + chunk, None] - gx[None, :], py[s:s + chunk, None] - gy[None, :])
        on = d < 1e-9
        with np.errstate(divide="ignore"):
            w = np.where(on, 0.0, 1.0 / np.maximum(d, 1e-9) ** power)
        if max_distance_m is not None:
            w = np.where(d <= max_distance_m, w, 0.0)
        wsum = w.sum(axis=1)
        val = np.where(wsum > 0, (w @ v) / np.where(wsum > 0, wsum, 1.0), bg[s:s + chunk])
        hit = on.any(axis=1)
        if hit.any():
            val[hit] = v[np.argmax(on[hit], axis=1)]
        out[s:s + chunk] = val
    return out.reshape(shape)


def thiessen_field(gx, gy, values, x, y, *, max_distance_m: float | None = None, background=0.0) -> np.ndarray:
    """Nearest-gauge (Thiessen polygon) field; beyond ``max_distance_m``: ``background``."""
    from scipy.spatial import cKDTree

    gx, gy, v = (np.asarray(a, dtype=np.float64).ravel() for a in (gx, gy, values))
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    shape = x.shape
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), shape).ravel()
    if v.size == 0:
        return bg.reshape(shape).copy()
    d, i = cKDTree(np.column_stack([gx, gy])).query(np.column_stack([x.ravel(), y.ravel()]))
    out = v[i]
    if max_distance_m is not None:
        out = np.where(d <= max_distance_m, out, bg)
    return out.reshape(shape)


@dataclass(frozen=True)
class RatingCurve:
    """Power-law stage-discharge rating ``Q = a (h - h0)^b`` for ``h > h0`` (0 below).

    ``a`` [m^(3-b)/s], ``h0`` stage of zero flow [m], ``b`` exponent (1.5-2.5 for natural channels)."""

    a: float
    h0: float
    b: float

    def __post_init__(self):
        if not (self.a > 0 and self.b > 0):
            raise ValueError(f"rating curve needs a > 0 and b > 0, got a={self.a!r}, b={self.b!r}")

    def discharge(self, stage_m) -> np.ndarray:
        h = np.asarray(stage_m, dtype=np.float64) - self.h0
        return self.a * np.maximum(h, 0.0) ** self.b

    def stage(self, discharge_m3_per_s) -> np.ndarray:
        q = np.maximum(np.asarray(discharge_m3_per_s, dtype=np.float64), 0.0)
        return self.h0 + (q / self.a) ** (1.0 / self.b)


def cressman_weights(xc, yc, gx: float, gy: float, radius_m: float) -> np.ndarray:
    """Cressman weights ``(R² - r²)/(R² + r²)`` (0 outside ``R``) at points ``xc, yc``."""
    r2 = (np.asarray(xc) - gx) ** 2 + (np.asarray(yc) - gy) ** 2
    R2 = float(radius_m) ** 2
    return np.where(r2 < R2, (R2 - r2) / (R2 + r2), 0.0)


def nudge_depth(depth, elevation, gauges, *, dt_s: float, relaxation_time_s: float, radius_m: float,
                cell_x, cell_y) -> np.ndarray:
    """Nudged copy of ``depth`` (ny, nx). ``gauges``: iterable of ``(x, y, water_level_obs_m)``.

    ``h + min(dt/τ, 1) · Σ_i ŵ_i (max(η_i - z, 0) - h)``, ``ŵ_i = w_i / max(1, Σ_j w_j)``."""
    if relaxation_time_s <= 0:
        raise ValueError(f"nudging relaxation_time_s must be > 0, got {relaxation_time_s!r}")
    h = np.asarray(depth, dtype=np.float64)
    z = np.asarray(elevation, dtype=np.float64)
    X, Y = np.meshgrid(np.asarray(cell_x), np.asarray(cell_y))
    gauges = list(gauges)
    if not gauges:
        return h.copy()
    ws = [cressman_weights(X, Y, gx, gy, radius_m) for gx, gy, _ in gauges]
    wsum = np.maximum(1.0, np.sum(ws, axis=0))
    alpha = min(float(dt_s) / float(relaxation_time_s), 1.0)
    inc = np.zeros_like(h)
    valid = np.isfinite(z)
    for (_gx, _gy, eta), w in zip(gauges, ws):
        target = np.where(valid, np.maximum(eta - np.where(valid, z, 0.0), 0.0), h)
        inc += (w / wsum) * (target - h)
    out = h + alpha * inc
    out = np.where(valid, np.maximum(out, 0.0), h)
    return out


def misfit_stats(model, obs) -> dict:
    """Model-minus-observation statistics: n, bias, mae, rmse (metres)."""
    d = np.asarray(model, np.float64) - np.asarray(obs, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0, "bias_m": float("nan"), "mae_m": float("nan"), "rmse_m": float("nan")}
    return {"n": int(d.size), "bias_m": float(d.mean()), "mae_m": float(np.abs(d).mean()),
            "rmse_m": float(np.sqrt((d ** 2).mean()))}


# ------------------------------------------------------------------------------ helpers
def to_utc(dt_like, tz: str = LOCAL_TZ) -> pd.Timestamp:
    """Naive -> local ``tz`` (the scenario convention: Asia/Ho_Chi_Minh) -> UTC (naive)."""
    ts = pd.Timestamp(dt_like)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz)
    return ts.tz_convert("UTC").tz_localize(None)


def grid_centres(terrain) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates ``x (nx,)``, ``y (ny,)`` (y decreasing: row 0 is north)."""
    if hasattr(terrain, "cell_centers"):
        x, y = terrain.cell_centers()
        return np.asarray(x, np.float64), np.asarray(y, np.float64)
    t = terrain.transform
    ny, nx = terrain.shape
    x = t.c + (np.arange(nx) + 0.5) * t.a
    y = t.f + (np.arange(ny) + 0.5) * t.e
    return x, y


def _cfg(config) -> dict:
    if config is None:
        return {}
    if hasattr(config, "model_dump"):
        config = config.model_dump()
    elif hasattr(config, "__dict__") and not isinstance(config, dict):
        config = dict(vars(config))
    config = dict(config)
    return dict(config.get("assimilation", config))


class Assimilator:
    """Coupling-step-6 hook: reads the store, sets rain/boundaries/inflow and nudges depth.

    ``store_path``: a DuckDB file (opened read-only) or a :class:`~twin.sensors.store.SensorStore`
    (shared with a live ingester). ``config`` (dict, or a pydantic model with these keys, or a
    dict with an ``assimilation`` key)::

        rain:    {method: idw|thiessen, power: 2, max_distance_m: 15000, max_age_s: 1800,
                  datastreams: [ids] (default: every rain_rate stream with a location),
                  background: {typhoon: MOLAVE, year: 2020, scale: 1.0}  (optional)}
        tide:    {datastream: ID, edge: east|north|south|west|all  or  cells: [[r, c], ...],
                  offset_m: 0.0, max_age_s: 3600}
        inflow:  [{datastream: ID, cells: [[r, c], ...] (or x:, y:), mode: discharge|stage,
                   rating: {a:, h0:, b:}, offset_m: 0.0, max_age_s: 3600}, ...]
        nudging: {datastreams: [ids] (default: every water_level stream), relaxation_time_s: 1800,
                  radius_m: 300, max_age_s: 900}
        method:  nudging (default) | enkf
        enkf:    {members: 8, obs_error_m: 0.05, localization_m: 2000, inflation: 1.0, seed: 0,
                  filter: ensrf|stochastic, datastreams: [ids] (default: every water_level stream),
                  max_age_s: 900, rain_sigma: 0.3, model_error: 0.05,
                  dask: {scheduler: local|ADDRESS, workers: 2, connect_timeout_s: 10}  (optional:
                        members on Dask workers, see twin.assimilation.dask_members)}

    ``terrain``: the model's :class:`~twin.terrain.Terrain` (elevation, transform, shape).
    ``start_datetime``: scenario start, local time (naive = Asia/Ho_Chi_Minh) or tz-aware.
    ``apply(flood_model, t_s)`` does all of it for model time ``t_s`` (seconds since start) and
    returns a dict of what was applied.
    """

    def __init__(self, store_path, config, terrain, start_datetime, *, tz: str = LOCAL_TZ):
        from twin.sensors.store import SensorStore

        if isinstance(store_path, SensorStore):
            self.store = store_path
            self._own_store = False
        else:
            if not Path(store_path).exists():
                raise ValueError(f"sensor store {str(store_path)!r} does not exist")
            self.store = SensorStore(store_path, read_only=True)
            self._own_store = True
        self.config = _cfg(config)
        unknown = set(self.config) - {"rain", "tide", "inflow", "nudging", "enabled", "method", "enkf"}
        if unknown:
            raise ValueError(f"assimilation config: unknown key(s) {sorted(unknown)}; "
                             "known: rain, tide, inflow, nudging, method, enkf")
        self.method = str(self.config.get("method", "nudging"))
        if self.method not in ("nudging", "enkf"):
            raise ValueError(f"assimilation.method: expected 'nudging' or 'enkf', got {self.method!r}")
        if self.method == "enkf" and self.config.get("nudging"):
            raise ValueError("assimilation: method 'enkf' replaces nudging; remove the nudging section "
                             "(or set method: nudging)")
        if self.method == "nudging" and self.config.get("enkf"):
            raise ValueError("assimilation: an enkf section needs method: enkf")
        self.enkf_config: dict = _enkf_config(self.config.get("enkf") or {}) if self.method == "enkf" else {}
        self.ensemble: EnsembleKalmanFilter | None = None     # made at the first apply (method: enkf)
        self._dask_members: DaskMembers | None = None         # enkf.dask: the members on Dask workers
        self._dask_client = self._dask_cluster = None
        self._ens_held: list[dict[str, np.ndarray]] = []
        self._rain_mult: np.ndarray | None = None
        self.terrain = terrain
        self.start_utc = to_utc(start_datetime, tz)
        self.cx, self.cy = grid_centres(terrain)
        self.history: list[dict] = []
        self._last_t: float | None = None
        self._held: dict[str, np.ndarray] = {}
        self._meta = self.store.datastreams()
        self._background_track = None
        self.last_applied: dict | None = None
        self._con = None
        dcfg = self.enkf_config.get("dask")
        if dcfg:
            from twin.assimilation.dask_members import connect

            self._dask_client, self._dask_cluster = connect(dcfg["scheduler"], dcfg["workers"],
                                                            timeout_s=dcfg["connect_timeout_s"],
                                                            where="assimilation.enkf.dask")

    def close(self):
        if self._dask_members is not None:
            self._dask_members.close()
            self._dask_members = None
        if self._dask_client is not None:
            self._dask_client.close()
            self._dask_client = None
        if self._dask_cluster is not None:
            self._dask_cluster.close()
            self._dask_cluster = None
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._own_store:
            self.store.close()
            self._own_store = False

    # -------------------------------------------------------------- observations
    def t_utc(self, t_s: float) -> pd.Timestamp:
        return self.start_utc + pd.Timedelta(seconds=float(t_s))

    def _streams(self, ids, prop) -> pd.DataFrame:
        m = self._meta
        if ids:
            ids = [str(i) for i in ids]
            missing = sorted(set(ids) - set(m["datastream_id"]))
            if missing:
                raise ValueError(f"assimilation: datastream(s) {missing} not in the sensor store {self.store.path!r}")
            return m[m["datastream_id"].isin(ids)]
        return m[(m["observed_property"] == prop) & m["x"].notna()]

    def level_streams(self) -> pd.DataFrame:
        """The water-level datastreams that nudging or the EnKF read, with their station positions
        (``datastream_id``, ``x``, ``y``); empty when neither is configured."""
        if self.method == "enkf":
            ids = self.enkf_config.get("datastreams")
        elif self.config.get("nudging"):
            ids = (self.config.get("nudging") or {}).get("datastreams")
        else:
            return pd.DataFrame({"datastream_id": [], "x": [], "y": []})
        return self._streams(ids, "water_level")[["datastream_id", "x", "y"]].reset_index(drop=True)

    def latest(self, ids, t_s: float, max_age_s: float) -> pd.DataFrame:
        """Latest usable observation per datastream in ``(t - max_age, t]``: columns
        datastream_id, result, phenomenon_time."""
        ids = [str(i) for i in ids]
        if not ids:
            return pd.DataFrame(columns=["datastream_id", "result", "phenomenon_time"])
        t = self.t_utc(t_s).to_pydatetime()
        t0 = (self.t_utc(t_s) - pd.Timedelta(seconds=float(max_age_s))).to_pydatetime()
        if self._con is None:
            self._con = self.store.cursor()
        return self._con.execute(
            "SELECT datastream_id, arg_max(result, phenomenon_time) AS result, max(phenomenon_time) AS phenomenon_time "
            "FROM observations WHERE datastream_id IN (SELECT unnest(?::VARCHAR[])) AND phenomenon_time > ? "
            f"AND phenomenon_time <= ? AND qc_mask & {BAD_MASK} = 0 GROUP BY datastream_id "
            "ORDER BY datastream_id",
            [ids, t0, t]).fetchdf()

    # -------------------------------------------------------------- pieces
    def rain_field(self, t_s: float) -> np.ndarray | None:
        cfg = self.config.get("rain")
        if not cfg:
            return None
        st = self._streams(cfg.get("datastreams"), "rain_rate")
        obs = self.latest(st["datastream_id"], t_s, cfg.get("max_age_s", 1800)).merge(st[["datastream_id", "x", "y"]])
        X, Y = np.meshgrid(self.cx, self.cy)
        bg = 0.0
        bcfg = cfg.get("background")
        if bcfg and bcfg.get("typhoon"):
            from twin.sensors import typhoon

            if self._background_track is None:
                self._background_track = typhoon.load_track(bcfg["typhoon"], bcfg.get("year"))
            bg = typhoon.storm_rain_field(self._background_track, self.t_utc(t_s), X, Y,
                                          scale=bcfg.get("scale", 1.0))
        method = cfg.get("method", "idw")
        kw = dict(max_distance_m=cfg.get("max_distance_m"), background=bg)
        if method == "idw":
            f = idw_field(obs["x"], obs["y"], obs["result"], X, Y, power=cfg.get("power", 2.0), **kw)
        elif method == "thiessen":
            f = thiessen_field(obs["x"], obs["y"], obs["result"], X, Y, **kw)
        else:
            raise ValueError(f"assimilation.rain.method must be 'idw' or 'thiessen', got {method!r}")
        return np.maximum(f, 0.0)

    def _cells(self, spec) -> np.ndarray | None:
        if spec.get("cells") is not None:
            return np.asarray(spec["cells"], dtype=np.int64).reshape(-1, 2)
        if spec.get("x") is not None:
            c = int(np.argmin(np.abs(self.cx - float(spec["x"]))))
            r = int(np.argmin(np.abs(self.cy - float(spec["y"]))))
            return np.array([[r, c]], dtype=np.int64)
        return None

    # -------------------------------------------------------------- the hook
    def apply(self, flood_model, t_s: float) -> dict:
        """Apply every configured assimilation to ``flood_model`` at model time ``t_s``."""
        t_s = float(t_s)
        dt = (t_s - self._last_t) if self._last_t is not None else 0.0
        self._last_t = t_s
        done: dict = {"t_s": t_s, "time_utc": str(self.t_utc(t_s))}
        # rain: one frame from t on (FloodModel.set_rainfall with a single time = constant from then)
        if self.method == "enkf":
            self._ensure_ensemble(flood_model)
            # the members catch up with the model over (t_prev, t] under the forcing the model had there,
            # before this step's forcing replaces it (a one-point rain series set at t is zero before t)
            self._advance_members(t_s)
        field = self.rain_field(t_s)
        if field is not None:
            flood_model.set_rainfall(np.array([t_s]), field)
            done["rain_mean_mm_per_h"] = float(np.mean(field))
            for m, r in zip(self._members(), self._rain_mult if self._rain_mult is not None else []):
                m.set_rainfall(np.array([t_s]), field * r)
            if self._dask_members is not None and self._rain_mult is not None:
                self._dask_members.set_rain(t_s, field, self._rain_mult)
        # tide
        tcfg = self.config.get("tide")
        if tcfg:
            obs = self.latest([tcfg["datastream"]], t_s, tcfg.get("max_age_s", 3600))
            if len(obs):
                stage = float(obs["result"].iloc[0]) + float(tcfg.get("offset_m", 0.0))
                self._stage_all(flood_model, "tide", tcfg.get("edge", "east"), self._cells(tcfg), t_s, stage)
                done["tide_stage_m"] = stage
        # inflow
        for k, icfg in enumerate(self.config.get("inflow") or []):
            obs = self.latest([icfg["datastream"]], t_s, icfg.get("max_age_s", 3600))
            if not len(obs):
                continue
            stage = float(obs["result"].iloc[0]) + float(icfg.get("offset_m", 0.0))
            cells = self._cells(icfg)
            if cells is None:
                raise ValueError(f"assimilation.inflow[{k}]: give cells or x/y")
            mode = icfg.get("mode", "discharge")
            if mode == "stage":
                self._stage_all(flood_model, f"inflow{k}", None, cells, t_s, stage)
                done[f"inflow{k}_stage_m"] = stage
            elif mode == "discharge":
                rc = icfg.get("rating")
                if not rc:
                    raise ValueError(f"assimilation.inflow[{k}]: mode 'discharge' needs a rating {{a, h0, b}}")
                q = float(RatingCurve(**rc).discharge(stage))
                self._inflow_all(flood_model, k, cells, t_s, q)
                done[f"inflow{k}_q_m3_per_s"] = q
            else:
                raise ValueError(f"assimilation.inflow[{k}].mode must be 'discharge' or 'stage', got {mode!r}")
        if self.method == "enkf":
            rec = self.enkf_analysis(flood_model, t_s)
            if rec:
                done["enkf"] = {k: rec[k] for k in ("before", "after", "analysis")}
        # nudging
        ncfg = self.config.get("nudging")
        if ncfg:
            rec = self.nudge(flood_model, t_s, dt, ncfg)
            if rec:
                done["nudging"] = {k: rec[k] for k in ("before", "after")}
        self.last_applied = done
        return done

    def _set_stage(self, fm, key, edge, cells, t_s, stage, held_map=None):
        hold_stage(fm, self._held if held_map is None else held_map, key, edge, cells, t_s, stage)

    def _set_inflow(self, fm, k, cells, t_s, q, held_map=None):
        hold_inflow(fm, self._held if held_map is None else held_map, f"inflow{k}", cells, t_s, q)

    def _stage_all(self, flood_model, key, edge, cells, t_s, stage) -> None:
        """The stage on the model and every EnKF member (in this process or on Dask workers)."""
        for fm, held in self._targets(flood_model):
            self._set_stage(fm, key, edge, cells, t_s, stage, held)
        if self._dask_members is not None:
            self._dask_members.hold_stage(key, edge, cells, t_s, stage)

    def _inflow_all(self, flood_model, k, cells, t_s, q) -> None:
        for fm, held in self._targets(flood_model):
            self._set_inflow(fm, k, cells, t_s, q, held)
        if self._dask_members is not None:
            self._dask_members.hold_inflow(f"inflow{k}", cells, t_s, q)

    # -------------------------------------------------------------- EnKF (method: enkf)
    def _members(self) -> list:
        """The EnKF members in this process (none with ``enkf.dask``: those live on the workers)."""
        return [] if self.ensemble is None or self._dask_members is not None else list(self.ensemble.models)

    def _targets(self, flood_model):
        """The model and every EnKF member, each with its own held forcing arrays."""
        yield flood_model, self._held
        yield from zip(self._members(), self._ens_held)

    def _ensure_ensemble(self, flood_model) -> None:
        """At the first apply: ``members`` copies of the flood model (same terrain object, same forcing),
        their depth scaled by one lognormal factor each (``model_error``), per-member rain multipliers
        (lognormal, ``rain_sigma``)."""
        if self.ensemble is not None:
            return
        import copy

        from twin.assimilation import EnsembleKalmanFilter

        c = self.enkf_config
        rng = np.random.default_rng(c["seed"])
        if self._dask_client is not None:
            # the same copies and draws as in process, made on (and shipped to) the workers once
            from twin.assimilation.dask_members import DaskEnsembleKalmanFilter, DaskMembers

            self._rain_mult = np.exp(rng.normal(0.0, c["rain_sigma"], c["members"]) - 0.5 * c["rain_sigma"] ** 2)
            self._ens_rng = rng
            self._dask_members = DaskMembers.copies(self._dask_client, flood_model, c["members"], held=self._held,
                                                    workers=c["dask"]["workers"])
            self.ensemble = DaskEnsembleKalmanFilter(self._dask_members, obs_error_m=c["obs_error_m"],
                                                     localization_m=c["localization_m"], inflation=c["inflation"],
                                                     seed=c["seed"], method=c["filter"])
            self._perturb_members()
            return
        memo = {id(flood_model.terrain): flood_model.terrain}
        members = [copy.deepcopy(flood_model, memo=dict(memo)) for _ in range(c["members"])]
        # the held forcing arrays of the copies: the copies' own (deepcopy copied them)
        self._ens_held = [{} for _ in members]
        self._rain_mult = np.exp(rng.normal(0.0, c["rain_sigma"], c["members"]) - 0.5 * c["rain_sigma"] ** 2)
        self._ens_rng = rng
        self.ensemble = EnsembleKalmanFilter(members, obs_error_m=c["obs_error_m"], localization_m=c["localization_m"],
                                             inflation=c["inflation"], seed=c["seed"], method=c["filter"])
        self._perturb_members()
        if self._held:
            # forcing registered on the model before the copies were made: re-register on each copy
            for m, held in zip(members, self._ens_held):
                self._relink_held(flood_model, m, held)

    def _relink_held(self, src, dst, held: dict) -> None:
        relink_held(src, dst, self._held, held)

    def _perturb_members(self) -> None:
        """Model error: every member's depth times one lognormal factor (``model_error``) per analysis."""
        sig = self.enkf_config["model_error"]
        if sig <= 0:
            return
        if self._dask_members is not None:
            self._dask_members.scale_depth([float(np.exp(self._ens_rng.normal(0.0, sig) - 0.5 * sig**2))
                                            for _ in range(self._dask_members.n_members)])
            return
        for m in self._members():
            m.set_depth(m.depth * float(np.exp(self._ens_rng.normal(0.0, sig) - 0.5 * sig**2)))

    def _advance_members(self, t_s: float) -> None:
        ens = self.ensemble
        if ens is not None:
            dt = float(t_s) - ens.time
            if dt > 1e-9:
                ens.advance(dt)

    def enkf_analysis(self, flood_model, t_s: float) -> dict | None:
        """Advance the members to ``t_s``, analyse them with the latest water levels, and set the model's
        water (depth and discharge) to the ensemble mean. Returns the record kept in :attr:`history`."""
        ens = self.ensemble
        if ens is None:
            raise RuntimeError("enkf_analysis: the ensemble is made at the first apply()")
        self._advance_members(t_s)
        c = self.enkf_config
        st = self._streams(c.get("datastreams"), "water_level")
        obs = self.latest(st["datastream_id"], t_s, c["max_age_s"]).merge(st[["datastream_id", "x", "y"]])
        if obs.empty:
            return None
        self._perturb_members()
        xy = obs[["x", "y"]].to_numpy(np.float64)
        eta = obs["result"].to_numpy(np.float64)
        rep = ens.assimilate(xy, eta, kind="stage")
        # the model follows the ensemble mean: depth, and the mean of the members' discharge
        state = flood_model.get_state()
        ss = state["solver_state"]
        keys = [k for k in ("qx", "qy", "hu", "hv") if k in ss]
        if self._dask_members is not None:
            # one partial sum per worker of depth and discharge travels, not a field per member
            sums = self._dask_members.sums(keys)
            mean_depth = sums["depth"] / ens.n_members
        else:
            sums = {k: np.zeros_like(ss[k], dtype=np.float64) for k in keys}
            for m in ens.models:
                ms = m.get_state()["solver_state"]
                for k in keys:
                    sums[k] += ms[k]
            mean_depth = ens.mean("depth")
        for k in keys:
            ss[k] = (sums[k] / ens.n_members).astype(ss[k].dtype)
        flood_model.set_state(state)
        flood_model.set_depth(mean_depth.astype(np.asarray(flood_model.depth).dtype, copy=False))
        z = np.asarray(self.terrain.elevation, np.float64)
        rows = np.array([int(np.argmin(np.abs(self.cy - y))) for y in obs["y"]])
        cols = np.array([int(np.argmin(np.abs(self.cx - x))) for x in obs["x"]])
        after = z[rows, cols] + np.asarray(flood_model.depth, np.float64)[rows, cols]
        before = np.asarray(rep.prior_mean_m)
        rec = {"t_s": float(t_s), "datastreams": obs["datastream_id"].tolist(), "obs_m": eta.tolist(),
               "model_before_m": before.tolist(), "model_after_m": after.tolist(),
               "before": misfit_stats(before, eta), "after": misfit_stats(after, eta),
               "analysis": {k: v for k, v in rep.as_dict().items() if k not in ("volume_change_m3", "clipped_m3")}}
        self.history.append(rec)
        return rec

    def get_state(self) -> dict:
        return {"last_t": self._last_t, "history": [dict(h) for h in self.history],
                "held": {k: float(v[0]) for k, v in self._held.items()}}

    def set_state(self, state: dict) -> None:
        self._last_t = state.get("last_t")
        self.history = [dict(h) for h in state.get("history", [])]
        for k, v in state.get("held", {}).items():
            if k in self._held:
                self._held[k][0] = v

    def nudge(self, flood_model, t_s: float, dt_s: float, ncfg: dict | None = None) -> dict | None:
        ncfg = ncfg or self.config.get("nudging") or {}
        st = self._streams(ncfg.get("datastreams"), "water_level")
        obs = self.latest(st["datastream_id"], t_s, ncfg.get("max_age_s", 900)).merge(st[["datastream_id", "x", "y"]])
        if obs.empty:
            return None
        z = np.asarray(self.terrain.elevation, np.float64)
        h = np.asarray(flood_model.depth, np.float64)
        rows = np.array([int(np.argmin(np.abs(self.cy - y))) for y in obs["y"]])
        cols = np.array([int(np.argmin(np.abs(self.cx - x))) for x in obs["x"]])
        eta_obs = obs["result"].to_numpy(np.float64)
        before = z[rows, cols] + h[rows, cols]
        tau = float(ncfg.get("relaxation_time_s", 1800.0))
        if dt_s > 0:
            new = nudge_depth(h, z, zip(obs["x"], obs["y"], eta_obs), dt_s=dt_s, relaxation_time_s=tau,
                              radius_m=float(ncfg.get("radius_m", 300.0)), cell_x=self.cx, cell_y=self.cy)
            flood_model.set_depth(new.astype(np.asarray(flood_model.depth).dtype, copy=False))
            h_after = new
        else:
            h_after = h
        after = z[rows, cols] + h_after[rows, cols]
        rec = {"t_s": t_s, "datastreams": obs["datastream_id"].tolist(), "obs_m": eta_obs.tolist(),
               "model_before_m": before.tolist(), "model_after_m": after.tolist(),
               "before": misfit_stats(before, eta_obs), "after": misfit_stats(after, eta_obs)}
        self.history.append(rec)
        return rec

    def statistics(self) -> pd.DataFrame:
        """Per-datastream model-minus-observation stats over all nudges: before and after."""
        rows = []
        for rec in self.history:
            for i, ds in enumerate(rec["datastreams"]):
                rows.append({"datastream_id": ds, "t_s": rec["t_s"],
                             "before_m": rec["model_before_m"][i] - rec["obs_m"][i],
                             "after_m": rec["model_after_m"][i] - rec["obs_m"][i]})
        if not rows:
            return pd.DataFrame(columns=["datastream_id", "n", "bias_before_m", "rmse_before_m",
                                         "bias_after_m", "rmse_after_m"])
        df = pd.DataFrame(rows)
        g = df.groupby("datastream_id")
        return pd.DataFrame({
            "n": g.size(),
            "bias_before_m": g["before_m"].mean(), "rmse_before_m": g["before_m"].apply(lambda s: float(np.sqrt((s**2).mean()))),
            "bias_after_m": g["after_m"].mean(), "rmse_after_m": g["after_m"].apply(lambda s: float(np.sqrt((s**2).mean()))),
        }).reset_index()


def _enkf_config(c: dict) -> dict:
    """The ``enkf`` section with defaults, checked (names the key and value it refuses)."""
    known = {"members", "obs_error_m", "localization_m", "inflation", "seed", "filter", "datastreams",
             "max_age_s", "rain_sigma", "model_error", "dask"}
    unknown = set(c) - known
    if unknown:
        raise ValueError(f"assimilation.enkf: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    out = {"members": 8, "obs_error_m": 0.05, "localization_m": 2000.0, "inflation": 1.0, "seed": 0,
           "filter": "ensrf", "datastreams": None, "max_age_s": 900.0, "rain_sigma": 0.3, "model_error": 0.05}
    out.update(c)
    m = out["members"]
    if not isinstance(m, int) or isinstance(m, bool) or m < 2:
        raise ValueError(f"assimilation.enkf.members: an ensemble needs at least 2 members, got {m!r}")
    for k in ("rain_sigma", "model_error"):
        v = out[k]
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
            raise ValueError(f"assimilation.enkf.{k}: must be a finite number >= 0, got {v!r}")
    if out["filter"] not in ("ensrf", "stochastic"):
        raise ValueError(f"assimilation.enkf.filter: expected 'ensrf' or 'stochastic', got {out['filter']!r}")
    if out.get("dask") is not None:
        out["dask"] = _dask_config(out["dask"])
    return out


def _dask_config(d) -> dict:
    """``enkf.dask``: ``{scheduler: local | ADDRESS, workers: 2, connect_timeout_s: 10}``, checked."""
    where = "assimilation.enkf.dask"
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping {{scheduler: local|ADDRESS, workers: N}}, got {d!r}")
    unknown = set(d) - {"scheduler", "workers", "connect_timeout_s"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: connect_timeout_s, scheduler, workers")
    out = {"scheduler": "local", "workers": None, "connect_timeout_s": 10.0}
    out.update(d)
    if not isinstance(out["scheduler"], str) or not out["scheduler"].strip():
        raise ValueError(f"{where}.scheduler: expected 'local' or a scheduler address (tcp://host:8786), "
                         f"got {out['scheduler']!r}")
    w = out["workers"]
    if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 1):
        raise ValueError(f"{where}.workers: expected an integer >= 1, got {w!r}")
    if out["scheduler"] == "local" and w is None:
        out["workers"] = 2
    t = out["connect_timeout_s"]
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t) and t > 0):
        raise ValueError(f"{where}.connect_timeout_s: must be a finite number > 0, got {t!r}")
    out["connect_timeout_s"] = float(t)
    return out


def now_utc() -> pd.Timestamp:
    return pd.Timestamp(_dt.datetime.now(_dt.UTC)).tz_localize(None)
