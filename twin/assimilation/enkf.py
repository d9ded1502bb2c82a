"""A localised ensemble Kalman filter over :class:`twin.flood.FloodModel` members.

The state of member ``k`` is its water depth ``h_k`` on the valid cells (plus, optionally, augmented
parameters ``p_k`` such as an inflow multiplier). Observations are points ``(x, y)`` of depth or water
level (stage ``η = z + h``); the observation operator ``H`` reads the cell that holds the point.
Observations are processed one at a time (serial processing, valid for uncorrelated observation
errors ``R = σ_o² I``). For observation ``y`` with ensemble predictions ``Hx_k``:

* ``P Hᵀ`` and ``H P Hᵀ`` are the ensemble covariances (``K − 1`` in the denominator);
* the gain is localised by the Gaspari & Cohn (1999, QJRMS 125, eq. 4.10) fifth-order function
  ``ρ(r / c)`` with ``c = localization_m`` (zero beyond ``2c``):
  ``K = ρ ∘ P Hᵀ / (H P Hᵀ + σ_o²)``; only cells within ``2c`` of a gauge are touched, which is what
  keeps the analysis cheap on large grids;
* ``method="ensrf"`` (default), the serial square-root filter of Whitaker & Hamill (2002, MWR 130):
  the mean moves by ``K (y − mean Hx)`` and the perturbations by ``−α K Hx′_k`` with
  ``α = 1 / (1 + sqrt(σ_o² / (H P Hᵀ + σ_o²)))`` (no perturbed observations: deterministic);
  ``method="stochastic"``: perturbed observations (Burgers et al. 1998; Houtekamer & Mitchell 2001),
  ``x_k += K (y + ε_k − Hx_k)``, ``ε_k ~ N(0, σ_o²)`` centred, from the filter's seeded generator;
* before the analysis, perturbations of the touched cells and parameters are multiplied by
  ``inflation`` (Anderson & Anderson 1999; 1.0 = none);
* augmented parameters are updated with the same gain, without localisation, then clipped to their
  bounds.

After the analysis, depths are clipped at 0 (the water this adds is reported), the volume change of
each member is booked through ``FloodModel.set_depth`` (its volume balance counts it as an edit) and
reported in an :class:`AnalysisReport`, and the discharge is made consistent with the new depth:
**velocity is kept** (a discharge is multiplied by the ratio new/old of the depth it carries: per cell
for cell-centred discharges, the mean of the two cells' ratios for face discharges), the discharge is
**zeroed** on every face of a cell that the analysis dried (new depth ≤ 1 mm, the solvers' dry
threshold), and cells that were dry (≤ 1 mm) keep their (near-zero) discharge.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin import _core

__all__ = ["AnalysisReport", "EnsembleKalmanFilter", "gaspari_cohn", "write_member_windows"]

log = logging.getLogger(__name__)

DRY_M = float(_core.FLOOD_DEPTH_THRESHOLD)   # the solvers' dry threshold (1 mm)


def gaspari_cohn(r) -> np.ndarray:
    """Gaspari & Cohn (1999) eq. 4.10 correlation at ``r = distance / c`` (1 at 0, 0 from 2 on)."""
    z = np.abs(np.asarray(r, dtype=np.float64))
    out = np.zeros_like(z)
    a = z <= 1.0
    za = z[a]
    out[a] = -0.25 * za**5 + 0.5 * za**4 + 0.625 * za**3 - 5.0 / 3.0 * za**2 + 1.0
    b = (z > 1.0) & (z < 2.0)
    zb = z[b]
    out[b] = (zb**5 / 12.0 - 0.5 * zb**4 + 0.625 * zb**3 + 5.0 / 3.0 * zb**2 - 5.0 * zb + 4.0
              - 2.0 / 3.0 / zb)
    return np.maximum(out, 0.0)


@dataclass
class AnalysisReport:
    """What one :meth:`EnsembleKalmanFilter.assimilate` did.

    Misfits are observation-minus-ensemble-mean at the observations [m] before (prior) and after
    (posterior) the analysis; spreads are the mean ensemble standard deviation of ``Hx`` there.
    ``volume_change_m3``: per member, the water the analysis added (negative: removed), clipping
    included; ``clipped_m3``: per member, the water added by clipping negative depths at 0."""

    kind: str
    method: str
    n_obs: int
    n_cells_updated: int
    innovation_mean_m: float
    rmse_prior_m: float
    rmse_posterior_m: float
    spread_prior_m: float
    spread_posterior_m: float
    volume_change_m3: np.ndarray
    clipped_m3: np.ndarray
    cells_dried: int
    params_mean: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    #: per observation: the value, and the ensemble mean of ``Hx`` before and after the analysis [m]
    obs_m: list[float] = field(default_factory=list)
    prior_mean_m: list[float] = field(default_factory=list)
    posterior_mean_m: list[float] = field(default_factory=list)

    @property
    def mean_volume_change_m3(self) -> float:
        return float(np.mean(self.volume_change_m3))

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("kind", "method", "n_obs", "n_cells_updated", "innovation_mean_m",
                                           "rmse_prior_m", "rmse_posterior_m", "spread_prior_m",
                                           "spread_posterior_m", "cells_dried", "wall_s")}
        d["volume_change_m3"] = [float(v) for v in self.volume_change_m3]
        d["mean_volume_change_m3"] = self.mean_volume_change_m3
        d["clipped_m3"] = [float(v) for v in self.clipped_m3]
        d["params_mean"] = dict(self.params_mean)
        for k in ("obs_m", "prior_mean_m", "posterior_mean_m"):
            d[k] = list(getattr(self, k))
        return d


def _finite_positive(v, name: str, *, at_least: float | None = None) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if not math.isfinite(f) or f <= 0 or (at_least is not None and f < at_least):
        need = f">= {at_least:g}" if at_least is not None else "> 0"
        raise ValueError(f"{name}: must be finite and {need}, got {v!r}")
    return f


class EnsembleKalmanFilter:
    """Localised EnKF over ``models`` (a list of :class:`~twin.flood.FloodModel`, same terrain, same time).

    ``obs_error_m``: observation error standard deviation σ_o [m]; ``localization_m``: the
    Gaspari–Cohn half-width ``c`` [m] (cells beyond ``2c`` of every gauge are never touched);
    ``inflation``: multiplier of the prior perturbations (>= 1); ``seed``: the generator of the
    observation perturbations (``method="stochastic"``). ``params``: augmented parameters,
    ``{name: values per member}``, estimated with the state; ``param_bounds``: ``{name: (lo, hi)}``;
    ``on_params(k, model, {name: value})`` is called for every member after each analysis so the
    caller can apply them (e.g. scale an inflow hydrograph). See the module docstring for the maths.
    """

    def __init__(self, models: Sequence, obs_error_m: float = 0.05, localization_m: float = 2000.0,
                 inflation: float = 1.0, seed: int | np.random.SeedSequence | None = 0, *, method: str = "ensrf",
                 params: dict[str, Any] | None = None, param_bounds: dict[str, tuple[float, float]] | None = None,
                 on_params: Callable[[int, Any, dict[str, float]], None] | None = None) -> None:
        from twin.flood import FloodModel

        models = list(models) if models is not None else []
        if len(models) < 2:
            raise ValueError(f"models: an ensemble needs at least 2 members, got {len(models)}")
        for i, m in enumerate(models):
            if not isinstance(m, FloodModel):
                raise ValueError(f"models[{i}]: expected a twin.flood.FloodModel, got {type(m).__name__}")
        t0 = models[0].terrain
        for i, m in enumerate(models[1:], start=1):
            t = m.terrain
            if t is t0:
                continue
            why = None
            if t.shape != t0.shape:
                why = f"shape {t.shape} vs {t0.shape}"
            elif t.cell_size != t0.cell_size:
                why = f"cell size {t.cell_size:g} m vs {t0.cell_size:g} m"
            elif tuple(t.origin) != tuple(t0.origin):
                why = f"origin {t.origin} vs {t0.origin}"
            elif not np.array_equal(t.elevation, t0.elevation, equal_nan=True):
                why = "different elevations"
            if why:
                raise ValueError(f"models[{i}]: its terrain differs from models[0]'s ({why}); "
                                 "every member must be a model of the same terrain")
        times = [m.time for m in models]
        if max(times) - min(times) > 1e-6:
            raise ValueError(f"models: members are at different times ({min(times):g} .. {max(times):g} s); "
                             "advance them together")
        self.models = models
        self._setup(t0, len(models), obs_error_m, localization_m, inflation, seed, method, params, param_bounds,
                    on_params)

    def _setup(self, t0, n_members: int, obs_error_m: float, localization_m: float, inflation: float,
               seed: int | np.random.SeedSequence | None, method: str, params: dict[str, Any] | None,
               param_bounds: dict[str, tuple[float, float]] | None,
               on_params: Callable[[int, Any, dict[str, float]], None] | None) -> None:
        """Everything but the members: settings (checked), terrain geometry, parameters."""
        if method not in ("ensrf", "stochastic"):
            raise ValueError(f"method: expected 'ensrf' or 'stochastic', got {method!r}")
        self.n_members = n_members
        self.obs_error_m = _finite_positive(obs_error_m, "obs_error_m")
        self.localization_m = _finite_positive(localization_m, "localization_m")
        self.inflation = _finite_positive(inflation, "inflation", at_least=1.0)
        self.method = method
        self.rng = np.random.default_rng(seed)
        self.terrain = t0
        self.shape = t0.shape
        self.cell_size = float(t0.cell_size)
        self.cell_area = self.cell_size**2
        self._z = np.asarray(t0.elevation, np.float64)
        self._valid = np.asarray(t0.valid, bool)
        self.params: dict[str, np.ndarray] = {}
        self.param_bounds: dict[str, tuple[float, float]] = {}
        bounds = dict(param_bounds or {})
        for name, vals in (params or {}).items():
            v = np.array(vals, dtype=np.float64).ravel()
            if v.size != self.n_members:
                raise ValueError(f"params[{name!r}]: expected one value per member ({self.n_members}), got {v.size}")
            if not np.isfinite(v).all():
                raise ValueError(f"params[{name!r}]: values must be finite, got {v.tolist()}")
            lo, hi = (float(b) for b in bounds.pop(name, (-np.inf, np.inf)))
            if not lo < hi:
                raise ValueError(f"param_bounds[{name!r}]: expected (lo, hi) with lo < hi, got {(lo, hi)}")
            if ((v < lo) | (v > hi)).any():
                raise ValueError(f"params[{name!r}]: values {v.tolist()} outside param_bounds ({lo}, {hi})")
            self.params[name] = v
            self.param_bounds[name] = (lo, hi)
        if bounds:
            raise ValueError(f"param_bounds: {sorted(bounds)} name no parameter in params ({sorted(self.params)})")
        self.on_params = on_params
        self.reports: list[AnalysisReport] = []
        self._geom_cache: dict[bytes, tuple] = {}
        self._bufs: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ ensemble statistics
    @property
    def time(self) -> float:
        return float(self.models[0].time)

    def _field(self, m, name: str) -> np.ndarray:
        h = np.asarray(m.depth, np.float64)
        if name == "depth":
            return h
        if name == "stage":
            return np.where(self._valid, self._z + h, np.nan)
        raise ValueError(f"field: expected 'depth' or 'stage', got {name!r}")

    def mean(self, name: str = "depth") -> np.ndarray:
        """Ensemble mean of ``"depth"`` [m] or ``"stage"`` (water level, NaN at walls) [m], ``(ny, nx)``."""
        acc = np.zeros(self.shape)
        for m in self.models:
            acc += self._field(m, name)
        return acc / self.n_members

    def spread(self, name: str = "depth") -> np.ndarray:
        """Ensemble standard deviation (``K − 1`` in the denominator) of ``"depth"`` or ``"stage"``."""
        mu = self.mean(name)
        acc = np.zeros(self.shape)
        for m in self.models:
            acc += (self._field(m, name) - mu) ** 2
        return np.sqrt(acc / (self.n_members - 1))

    def param_mean(self, name: str) -> float:
        if name not in self.params:
            raise ValueError(f"param_mean: unknown parameter {name!r}; known {sorted(self.params)}")
        return float(self.params[name].mean())

    def advance(self, dt_s: float) -> None:
        """Run every member ``dt_s`` seconds (members in this process, one after the other)."""
        for m in self.models:
            m.run_one_step(dt_s)

    # ------------------------------------------------------------------ observations
    def _locate(self, xy, values_m, kind: str):
        if kind not in ("depth", "stage"):
            raise ValueError(f"kind: expected 'depth' or 'stage', got {kind!r}")
        p = np.asarray(xy, dtype=np.float64)
        if p.ndim == 1 and p.size == 2:
            p = p.reshape(1, 2)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"xy: expected (n, 2) observation coordinates, got shape {p.shape}")
        y = np.asarray(values_m, dtype=np.float64).ravel()
        if y.size != p.shape[0]:
            raise ValueError(f"values_m: {y.size} values for {p.shape[0]} observation points in xy")
        for i in range(y.size):
            if not np.isfinite(p[i]).all():
                raise ValueError(f"xy[{i}]: observation coordinates must be finite, got {p[i].tolist()}")
            if not math.isfinite(y[i]):
                raise ValueError(f"values_m[{i}]: observation value must be finite, got {float(y[i])!r}")
        if kind == "depth" and (y < 0).any():
            i = int(np.argmax(y < 0))
            raise ValueError(f"values_m[{i}]: an observed depth must be >= 0 m, got {float(y[i])!r}")
        x0, y0 = (float(v) for v in self.terrain.origin)
        ny, nx = self.shape
        dx = self.cell_size
        cols = np.floor((p[:, 0] - x0) / dx).astype(np.int64)
        rows = np.floor((y0 - p[:, 1]) / dx).astype(np.int64)
        for i in range(y.size):
            if not (0 <= rows[i] < ny and 0 <= cols[i] < nx):
                raise ValueError(f"xy[{i}] = ({p[i, 0]:.1f}, {p[i, 1]:.1f}) is outside the model domain "
                                 f"(x {x0:.1f} .. {x0 + nx * dx:.1f}, y {y0 - ny * dx:.1f} .. {y0:.1f})")
            if not self._valid[rows[i], cols[i]]:
                raise ValueError(f"xy[{i}] = ({p[i, 0]:.1f}, {p[i, 1]:.1f}) falls on a nodata/wall cell "
                                 f"(row {rows[i]}, col {cols[i]})")
        return p, y, rows, cols

    def _geometry(self, p: np.ndarray):
        """The window ``box`` (rows ``r0..r1``, columns ``c0..c1``) bounding every cell within ``2c`` of a
        gauge; per observation, its window of cells within ``2c`` (slices relative to ``box``) and the
        Gaspari–Cohn weights on it (0 at walls); the mask of the touched cells on ``box``. Cached per
        gauge set."""
        key = p.tobytes()
        hit = self._geom_cache.get(key)
        if hit is not None:
            return hit
        ny, nx = self.shape
        dx = self.cell_size
        x0, y0 = (float(v) for v in self.terrain.origin)
        c = self.localization_m
        reach = int(math.ceil(2.0 * c / dx)) + 1
        wins = []
        mask = np.zeros(self.shape, bool)
        for gx, gy in p:
            gc = int(math.floor((gx - x0) / dx))
            gr = int(math.floor((y0 - gy) / dx))
            r0, r1 = max(0, gr - reach), min(ny - 1, gr + reach)
            c0, c1 = max(0, gc - reach), min(nx - 1, gc + reach)
            ycen = y0 - (np.arange(r0, r1 + 1) + 0.5) * dx
            xcen = x0 + (np.arange(c0, c1 + 1) + 0.5) * dx
            rho = gaspari_cohn(np.hypot(xcen[None, :] - gx, ycen[:, None] - gy) / c)
            rho[~self._valid[r0:r1 + 1, c0:c1 + 1]] = 0.0
            mask[r0:r1 + 1, c0:c1 + 1] |= rho > 0
            wins.append(((slice(r0, r1 + 1), slice(c0, c1 + 1)), rho))
        box = (min(sl[0].start for sl, _ in wins), max(sl[0].stop for sl, _ in wins) - 1,
               min(sl[1].start for sl, _ in wins), max(sl[1].stop for sl, _ in wins) - 1)
        # the windows relative to the box
        wins = [((slice(sl[0].start - box[0], sl[0].stop - box[0]), slice(sl[1].start - box[2], sl[1].stop - box[2])),
                 rho) for sl, rho in wins]
        out = (wins, mask[box[0]:box[1] + 1, box[2]:box[3] + 1], box)
        if len(self._geom_cache) > 32:
            self._geom_cache.clear()
        self._geom_cache[key] = out
        return out

    # ------------------------------------------------------------------ the analysis
    def assimilate(self, xy, values_m, kind: str = "depth") -> AnalysisReport:
        """Update every member from observations ``values_m`` [m] at points ``xy`` (``(n, 2)``, terrain
        CRS): ``kind="depth"`` (water depth) or ``"stage"`` (water level above the model datum).
        Returns (and keeps in :attr:`reports`) an :class:`AnalysisReport`."""
        wall0 = time.perf_counter()
        p, yobs, rows, cols = self._locate(xy, values_m, kind)
        K = self.n_members
        R = self.obs_error_m**2
        denom = float(K - 1)
        wins, mask, box = self._geometry(p)
        zobs = self._z[rows, cols] if kind == "stage" else np.zeros(yobs.size)
        r0, r1, c0, c1 = box
        bsl = (slice(r0, r1 + 1), slice(c0, c1 + 1))
        bshape = (r1 - r0 + 1, c1 - c0 + 1)
        if self._bufs is None or self._bufs[0].shape != (K,) + bshape:
            self._bufs = (np.empty((K,) + bshape), np.empty((K,) + bshape))   # reused: no page faults
        old, new = self._bufs
        self._read_windows(bsl, old)
        np.copyto(new, old)
        P = {n: v.copy() for n, v in self.params.items()}
        if self.inflation != 1.0:
            # multiplicative inflation of the prior perturbations, on the touched cells only
            mu = new.mean(axis=0)
            for h in new:
                np.copyto(h, mu + self.inflation * (h - mu), where=mask)
            for n, v in P.items():
                P[n] = v.mean() + self.inflation * (v - v.mean())
        rows_b, cols_b = rows - r0, cols - c0

        def predicted(j: int) -> np.ndarray:
            return new[:, rows_b[j], cols_b[j]] + zobs[j]

        hx_prior = np.array([predicted(j) for j in range(yobs.size)])
        for j in range(yobs.size):
            (sl, rho) = wins[j]
            hx = predicted(j)
            hxm = float(hx.mean())
            hxp = hx - hxm
            hph = float(hxp @ hxp) / denom
            if hph <= 1e-16:
                continue      # no spread at this gauge: nothing to learn from it
            # gain = rho * cov(x, Hx) / (HPH + R); sum(hxp) = 0, so cov(x, Hx) = sum_k x_k hxp_k / (K - 1)
            gain = np.zeros(rho.shape)
            tmp = np.empty(rho.shape)
            for k, h in enumerate(new):
                np.multiply(h[sl], hxp[k], out=tmp)
                gain += tmp
            gain *= rho
            gain *= 1.0 / (denom * (hph + R))
            if self.method == "ensrf":
                # x_k <- x_k + gain (y - mean Hx) - alpha gain Hx'_k   (Whitaker & Hamill 2002)
                alpha = 1.0 / (1.0 + math.sqrt(R / (hph + R)))
                coef = (yobs[j] - hxm) - alpha * hxp
            else:
                eps = self.rng.normal(0.0, self.obs_error_m, K)
                eps -= eps.mean()
                coef = yobs[j] + eps - hx
            for k, h in enumerate(new):
                np.multiply(gain, coef[k], out=tmp)
                h[sl] += tmp
            for n, v in P.items():
                g = float((v - v.mean()) @ hxp) / (denom * (hph + R))
                P[n] = v + g * coef
        # positivity, volume change, then write back with consistent discharge
        clipped = np.zeros(K)
        for k in range(K):
            hb = new[k]
            clipped[k] = -float(np.minimum(hb, 0.0).sum()) * self.cell_area
            np.maximum(hb, 0.0, out=hb)
        dvol, dried = self._write_windows(bsl, box, old, new)
        for n, v in P.items():
            lo, hi = self.param_bounds[n]
            self.params[n] = np.clip(v, lo, hi)
        if self.on_params is not None and self.params:
            for k, m in enumerate(self.models):
                self.on_params(k, m, {n: float(v[k]) for n, v in self.params.items()})
        hx_post = np.array([predicted(j) for j in range(yobs.size)])
        rep = AnalysisReport(
            kind=kind, method=self.method, n_obs=int(yobs.size), n_cells_updated=int(mask.sum()),
            innovation_mean_m=float(np.mean(yobs - hx_prior.mean(axis=1))),
            rmse_prior_m=float(np.sqrt(np.mean((yobs - hx_prior.mean(axis=1)) ** 2))),
            rmse_posterior_m=float(np.sqrt(np.mean((yobs - hx_post.mean(axis=1)) ** 2))),
            spread_prior_m=float(np.mean(hx_prior.std(axis=1, ddof=1))),
            spread_posterior_m=float(np.mean(hx_post.std(axis=1, ddof=1))),
            volume_change_m3=dvol, clipped_m3=clipped, cells_dried=int(dried),
            params_mean={n: float(v.mean()) for n, v in self.params.items()},
            obs_m=[float(v) for v in yobs], prior_mean_m=[float(v) for v in hx_prior.mean(axis=1)],
            posterior_mean_m=[float(v) for v in hx_post.mean(axis=1)],
            wall_s=time.perf_counter() - wall0)
        self.reports.append(rep)
        log.info("EnKF analysis at t=%g s: %d %s obs, %d cells, rmse %.3f -> %.3f m, mean dV %.1f m3",
                 self.time, rep.n_obs, kind, rep.n_cells_updated, rep.rmse_prior_m, rep.rmse_posterior_m,
                 rep.mean_volume_change_m3)
        return rep

    # ------------------------------------------------------------------ where the members live
    def _read_windows(self, bsl: tuple[slice, slice], out: np.ndarray) -> None:
        """Every member's depth on the box ``bsl`` into ``out[k]`` (``(K, by, bx)``)."""
        for k, m in enumerate(self.models):
            m.depth_window(bsl, out=out[k])

    def _write_windows(self, bsl: tuple[slice, slice], box: tuple[int, int, int, int], old: np.ndarray,
                       new: np.ndarray) -> tuple[np.ndarray, int]:
        """Write the analysed depths ``new[k]`` (>= 0) back on the box, discharge made consistent with the
        change from ``old[k]``. Returns the volume change per member [m3] and the cells dried."""
        return write_member_windows(self.models, bsl, box, old, new)

    @staticmethod
    def _consistent_discharge(m, old: np.ndarray, new: np.ndarray, box: tuple[int, int, int, int],
                              scratch: tuple[np.ndarray, np.ndarray]) -> int:
        """Member ``m``'s discharge made consistent on ``box`` where the depth went from ``old`` to ``new``
        (see the module docstring). Returns the number of cells dried."""
        wet_before = old > DRY_M
        dried_here = new <= DRY_M
        dried_here &= wet_before
        f = scratch[0]
        f.fill(1.0)
        np.divide(new, old, out=f, where=wet_before)
        n_dried = int(dried_here.sum())
        if n_dried:
            f[dried_here] = 0.0
        _scale_discharge(m, f, box, scratch[1], n_dried > 0)
        return n_dried


def write_member_windows(models: Sequence, bsl: tuple[slice, slice], box: tuple[int, int, int, int],
                         old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, int]:
    """Member ``k`` of ``models`` gets the depth ``new[k]`` (>= 0) on the box ``bsl`` (booked as an edit)
    and its discharge made consistent with the change from ``old[k]``. Returns the volume change per
    member [m3] and the number of cells dried. (Also run on Dask workers, for their slice of members.)"""
    dvol = np.zeros(len(new))
    dried = 0
    scratch = (np.empty(new.shape[1:]), np.empty(new.shape[1:]))
    for k, m in enumerate(models):
        dvol[k] = m.set_depth_window(bsl, new[k])
        dried += EnsembleKalmanFilter._consistent_discharge(m, old[k], new[k], box, scratch)
    return dvol, dried


def _scale_discharge(m, f: np.ndarray, box: tuple[int, int, int, int], work: np.ndarray, zeros: bool) -> None:
    """Multiply member ``m``'s discharge by the per-cell factor ``f`` given on the cells ``box`` (rows
    ``r0..r1``, columns ``c0..c1``; 1 elsewhere). Faces take the mean of their two cells' factors, 0 if
    either is 0 (``zeros``: some factor is 0); edge faces their cell's. The inertial and finite-volume
    solvers are edited in place; any other solver through ``get_state``/``set_state`` (keys ``qx``/``qy``
    on faces, ``hu``/``hv`` on cells). ``work``: scratch of ``f``'s shape."""
    solver = getattr(m, "_solver", None)   # FloodModel's solver: its state arrays are edited in place
    if solver is not None and hasattr(solver, "qx") and hasattr(solver, "qy"):
        _scale_faces(solver.qx, solver.qy, f, box, work, zeros)
        return
    r0, r1, c0, c1 = box
    win = (slice(r0, r1 + 1), slice(c0, c1 + 1))
    core = getattr(solver, "core", None)
    if core is not None and hasattr(core, "hu") and hasattr(core, "hv"):
        core.hu[win] *= f
        core.hv[win] *= f
        return
    st = m.get_state()
    ss = st["solver_state"]
    if "qx" in ss and "qy" in ss:
        _scale_faces(ss["qx"], ss["qy"], f, box, work, zeros)
    elif "hu" in ss and "hv" in ss:
        ss["hu"][win] *= f
        ss["hv"][win] *= f
    else:
        raise ValueError(f"EnKF: solver {m.solver!r} keeps no discharge the filter knows (qx/qy or hu/hv); "
                         "cannot keep the discharge consistent with the analysed depth")
    m.set_state(st)


def _face_factor(a: np.ndarray, b: np.ndarray, out: np.ndarray, zeros: bool) -> np.ndarray:
    """``a + b`` into ``out`` (``a``, ``b``: halves of the two cells' factors), 0 where either is 0 (checked
    only when ``zeros``)."""
    np.add(a, b, out=out)
    if zeros:
        out[(a == 0) | (b == 0)] = 0.0
    return out


def _scale_faces(qx: np.ndarray, qy: np.ndarray, f: np.ndarray, box: tuple[int, int, int, int],
                 work: np.ndarray, zeros: bool) -> None:
    """Face discharges ``qx (ny, nx+1)``, ``qy (ny+1, nx)`` times the face factors of the cell factors ``f``
    on ``box``: faces between two box cells take the mean (0 if either is 0), faces on the box's border
    the mean with the factor 1 of the cell outside, or, on the domain edge, the border cell's factor.
    ``f`` is halved in place (it is scratch)."""
    r0, r1, c0, c1 = box
    ny, nx = qy.shape[0] - 1, qx.shape[1] - 1
    by, bx = f.shape
    rs, cs = slice(r0, r1 + 1), slice(c0, c1 + 1)
    edge_w, edge_e, edge_n, edge_s = f[:, 0].copy(), f[:, -1].copy(), f[0, :].copy(), f[-1, :].copy()
    f *= 0.5
    half = np.full(max(by, bx), 0.5)
    if bx > 1:
        qx[rs, c0 + 1:c1 + 1] *= _face_factor(f[:, :-1], f[:, 1:], work[:, :bx - 1], zeros)
    qx[rs, c0] *= edge_w if c0 == 0 else _face_factor(half[:by], f[:, 0], np.empty(by), zeros)
    qx[rs, c1 + 1] *= edge_e if c1 == nx - 1 else _face_factor(half[:by], f[:, -1], np.empty(by), zeros)
    if by > 1:
        qy[r0 + 1:r1 + 1, cs] *= _face_factor(f[:-1, :], f[1:, :], work[:by - 1, :], zeros)
    qy[r0, cs] *= edge_n if r0 == 0 else _face_factor(half[:bx], f[0, :], np.empty(bx), zeros)
    qy[r1 + 1, cs] *= edge_s if r1 == ny - 1 else _face_factor(half[:bx], f[-1, :], np.empty(bx), zeros)
