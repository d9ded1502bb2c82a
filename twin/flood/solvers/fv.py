"""Shock-capturing finite-volume shallow-water solver (``FloodModel(..., solver="fv")``).

First-order Godunov finite volumes on the raster: HLLC fluxes (Toro 2001), hydrostatic
reconstruction (Audusse et al. 2004) for well-balancing and positivity over wet/dry beds,
semi-implicit Manning friction, CFL-limited time step. ``order=2`` adds MUSCL reconstruction of
(h, η, u, v) with a minmod or van Leer limiter and Heun (SSP-RK2) time stepping. The kernels are
``twin._core.fv_step`` / ``fv_max_wave_speed`` (C++, OpenMP, bit-identical for any thread count).

:class:`FVSolver` holds the conserved state ``h, hu, hv`` (``hu`` eastward, ``hv`` northward unit
discharge, m²/s) on an ``(ny, nx)`` raster with row 0 at the north edge, the boundary faces and
optional face crests (levees and dams on cell faces). It knows nothing of forcing: the flood
component adds rain, losses, inflows and pumps between steps.
"""
from __future__ import annotations

import math

import numpy as np

from twin import _core
from twin.constants import GRAVITY as G
from twin.flood.solvers.base import Solver, SolverInputs, SubstepForcing

__all__ = ["FVSolver", "FVFloodSolver", "FV2FloodSolver", "reservoir_fill"]

EDGES = ("west", "east", "north", "south")
_BC_KINDS = {"wall": 0, "free": 1, "stage": 2}
_LIMITERS = {"minmod": 0, "vanleer": 1, "van_leer": 1}


class FVSolver:
    """Finite-volume state and stepping on one raster.

    Parameters
    ----------
    z : (ny, nx) bed elevation [m], finite where ``active``.
    dx : cell size [m].
    manning : scalar or (ny, nx) Manning n [s/m^(1/3)].
    active : (ny, nx) bool, False = no-flow cell (nodata, outside the model); defaults to all.
    dtype : "float64" (default) or "float32".
    order : 1 (Godunov) or 2 (MUSCL + Heun).
    limiter : "minmod" (default) or "vanleer" (second order only).
    cfl : Courant number on max(|u|, |v|) + sqrt(g h); default 0.45 (order 1) / 0.4 (order 2). The 2-D
        positivity bound of the first-order scheme is 0.5.
    h_dry : depth below which a cell has no velocity [m].
    threads : OpenMP threads (None: the runtime default).
    """

    def __init__(self, z, dx, manning=0.0, active=None, *, dtype="float64", order=1, limiter="minmod",
                 cfl=None, h_dry=1e-6, g=G, threads=None, max_dt=None):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float64, np.float32):
            raise ValueError(f"dtype: must be 'float64' or 'float32', got {dtype!r}")
        z = np.asarray(z)
        if z.ndim != 2:
            raise ValueError(f"z: expected a 2-D (ny, nx) array, got shape {z.shape}")
        self.ny, self.nx = z.shape
        if not (np.isfinite(dx) and dx > 0):
            raise ValueError(f"dx: must be finite and > 0, got {dx!r}")
        self.dx = float(dx)
        if order not in (1, 2):
            raise ValueError(f"order: must be 1 or 2, got {order!r}")
        self.order = int(order)
        if limiter not in _LIMITERS:
            raise ValueError(f"limiter: must be one of {sorted(_LIMITERS)}, got {limiter!r}")
        self.limiter = limiter
        if cfl is None:
            cfl = 0.45 if order == 1 else 0.4
        if not (0 < cfl <= 1):
            raise ValueError(f"cfl: must be in (0, 1], got {cfl!r}")
        self.cfl = float(cfl)
        self.h_dry = float(h_dry)
        self.g = float(g)
        self.threads = 0 if threads is None else int(threads)
        self.max_dt = None if max_dt is None else float(max_dt)
        shape = (self.ny, self.nx)
        if active is None:
            active = np.ones(shape, bool)
        active = np.asarray(active, bool)
        if active.shape != shape:
            raise ValueError(f"active: expected shape {shape}, got {active.shape}")
        self.active = np.ascontiguousarray(active, np.uint8)
        zz = np.where(active, z, 0.0)
        if not np.all(np.isfinite(zz)):
            r, c = np.argwhere(~np.isfinite(zz))[0]
            raise ValueError(f"z: non-finite bed elevation {z[r, c]!r} at active cell (row {r}, col {c})")
        self.z = np.ascontiguousarray(zz, self.dtype)
        self.set_manning(manning)
        self.h = np.zeros(shape, self.dtype)
        self.hu = np.zeros(shape, self.dtype)
        self.hv = np.zeros(shape, self.dtype)
        self._oh = np.empty_like(self.h)
        self._ohu = np.empty_like(self.h)
        self._ohv = np.empty_like(self.h)
        self._work = np.empty(3 * self.ny * self.nx if order == 2 else 0, self.dtype)
        nb = 2 * (self.ny + self.nx)
        self.bc_kind = np.zeros(nb, np.int8)
        self.bc_stage = np.zeros(nb, self.dtype)
        self.bc_q = np.zeros(nb, self.dtype)
        self.face_z_x = None
        self.face_z_y = None
        self._smax = None
        self._static_checked = False

    # ------------------------------------------------------------------ set-up
    def set_manning(self, manning):
        n = np.broadcast_to(np.asarray(manning, dtype=float), (self.ny, self.nx))
        if not np.all(np.isfinite(n)) or np.any(n < 0):
            bad = np.argwhere(~(np.isfinite(n) & (n >= 0)))[0]
            raise ValueError(f"manning: value {n[tuple(bad)]!r} at (row {bad[0]}, col {bad[1]}) must be finite and >= 0")
        self.manning = np.ascontiguousarray(n, self.dtype)
        self._static_checked = False

    def set_bed(self, z):
        """Replace the bed elevation (e.g. a breach lowering cells); depths are kept (mass conserved)."""
        z = np.asarray(z, float)
        if z.shape != (self.ny, self.nx):
            raise ValueError(f"z: expected shape {(self.ny, self.nx)}, got {z.shape}")
        self.z[...] = np.where(self.active.astype(bool), z, 0.0)
        self._static_checked = False

    def edge_slice(self, edge):
        ny, nx = self.ny, self.nx
        return {"west": slice(0, ny), "east": slice(ny, 2 * ny), "north": slice(2 * ny, 2 * ny + nx),
                "south": slice(2 * ny + nx, 2 * ny + 2 * nx)}[edge]

    def set_edge(self, edge, kind, stage=None, index=None):
        """Boundary of the edge faces: ``kind`` in wall/free/stage; ``index`` selects faces along the
        edge (rows for west/east, columns for north/south), default all."""
        if edge == "all":
            for e in EDGES:
                self.set_edge(e, kind, stage)
            return
        if edge not in EDGES:
            raise ValueError(f"edge: must be one of {EDGES + ('all',)}, got {edge!r}")
        if kind not in _BC_KINDS:
            raise ValueError(f"kind: must be one of {tuple(_BC_KINDS)}, got {kind!r}")
        sl = self.edge_slice(edge)
        kinds = self.bc_kind[sl]
        stages = self.bc_stage[sl]
        idx = slice(None) if index is None else index
        kinds[idx] = _BC_KINDS[kind]
        if kind == "stage":
            if stage is None or not np.all(np.isfinite(stage)):
                raise ValueError(f"stage: a finite stage [m] is needed for a stage boundary, got {stage!r}")
            stages[idx] = stage
        self._static_checked = False

    def set_face_crests(self, face_z_x=None, face_z_y=None):
        """Crest elevations on x-faces (ny, nx+1) and y-faces (ny+1, nx); -inf (or NaN) where none."""
        out = []
        for a, shape, name in ((face_z_x, (self.ny, self.nx + 1), "face_z_x"),
                               (face_z_y, (self.ny + 1, self.nx), "face_z_y")):
            if a is None:
                out.append(None)
                continue
            a = np.array(a, dtype=float)
            if a.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
            a[np.isnan(a)] = -np.inf
            out.append(a.astype(self.dtype) if np.any(np.isfinite(a)) else None)
        self.face_z_x, self.face_z_y = out
        self._static_checked = False

    def set_state(self, h, hu=None, hv=None):
        for name, a in (("h", h), ("hu", hu), ("hv", hv)):
            if a is None:
                getattr(self, name)[...] = 0
                continue
            a = np.asarray(a, float)
            if a.shape != (self.ny, self.nx):
                raise ValueError(f"{name}: expected shape {(self.ny, self.nx)}, got {a.shape}")
            if not np.all(np.isfinite(a)) or (name == "h" and np.any(a < 0)):
                raise ValueError(f"{name}: values must be finite{' and >= 0' if name == 'h' else ''}")
            getattr(self, name)[...] = a
        inactive = ~self.active.astype(bool)
        for a in (self.h, self.hu, self.hv):
            a[inactive] = 0
        self._smax = None

    # ---------------------------------------------------------------- stepping
    def wave_speed(self):
        if self._smax is None:
            self._smax = _core.fv_max_wave_speed(self.z, self.h, self.hu, self.hv, self.active, g=self.g,
                                                  h_dry=self.h_dry, threads=self.threads)
        return self._smax

    def stable_dt(self):
        """CFL time step [s] of the current state (inf when dry and still)."""
        s = self.wave_speed()
        dt = self.cfl * self.dx / s if s > 0 else math.inf
        if self.max_dt is not None:
            dt = min(dt, self.max_dt)
        return dt

    def step(self, dt):
        """Advance exactly ``dt`` seconds in one step (the caller keeps dt <= stable_dt()).
        Returns the outward boundary volume [m³] of the step (negative: inflow)."""
        smax, _ = _core.fv_step(
            self.z, self.manning, self.active, self.h, self.hu, self.hv, self._oh, self._ohu, self._ohv,
            self.bc_kind, self.bc_stage, self.bc_q, self._work, dx=self.dx, dt=float(dt), g=self.g,
            h_dry=self.h_dry, order=self.order, limiter=_LIMITERS[self.limiter], face_z_x=self.face_z_x,
            face_z_y=self.face_z_y, threads=self.threads, check_static=not self._static_checked)
        self._static_checked = True
        self.h, self._oh = self._oh, self.h
        self.hu, self._ohu = self._ohu, self.hu
        self.hv, self._ohv = self._ohv, self.hv
        self._smax = smax
        return float(np.sum(self.bc_q, dtype=np.float64)) * self.dx * float(dt)

    #: most CFL steps one ``advance`` call may take (see FloodModel.max_substeps)
    max_substeps = 1_000_000

    def advance(self, duration):
        """Advance ``duration`` seconds with CFL sub-steps (no forcing); returns (n_steps, outflow_m3)."""
        t, n, out = 0.0, 0, 0.0
        while t < duration:
            sdt = self.stable_dt()
            if not (sdt > 0) or n + (duration - t) / sdt > self.max_substeps:
                raise ValueError(
                    f"advance({duration:g} s): the CFL step is {sdt:.3g} s (largest signal speed "
                    f"{self.wave_speed():.3g} m/s, deepest water {float(np.max(self.h)):.3g} m), so the call would "
                    f"need about {n + (duration - t) / sdt if sdt > 0 else math.inf:.3g} steps, above the limit of "
                    f"{self.max_substeps:.3g} (FVSolver.max_substeps): check the depths and discharges"
                )
            dt = min(sdt, duration - t)
            out += self.step(dt)
            t = duration if dt == duration - t else t + dt
            n += 1
        return n, out

    @property
    def volume(self):
        return float(np.sum(self.h, dtype=np.float64)) * self.dx * self.dx

    @property
    def stage(self):
        return self.h + self.z


# ---------------------------------------------------------------------------------------------
# FloodModel(..., solver="fv"): the adapter behind the flood component's Solver contract
# ---------------------------------------------------------------------------------------------
class FVFloodSolver(Solver):
    """``solver="fv"`` of :class:`twin.flood.FloodModel`: first-order Godunov FV (HLLC + hydrostatic
    reconstruction). ``solver="fv2"``: MUSCL (minmod) + Heun, second order.

    Shares the model's bed array (``inputs.z``: walls at ``FLOOD_WALL_Z``, breaches lower it in
    place) and face crests (levees, from the sub-step forcing's levee tables). The Courant number on
    max(|u|, |v|) + sqrt(g h) is ``0.9 · alpha`` (0.45 with the model's default alpha = 0.5; the
    2-D positivity bound of the scheme is 0.5). Edges: "wall" reflects, "free" lets water leave
    (transmissive while the flow goes out, a wall when it would come in; the normal-depth slope of
    the inertial solver is not used), "stage" puts a ghost cell at the prescribed level. Rain,
    losses and the tracked maxima are fused into the kernel's final update, as in the inertial
    kernel; point inflows, pumps and stage cells are applied by the model between sub-steps; where
    they remove water the solver keeps the cell's velocity, where they add water its momentum.
    """

    name = "fv"
    order = 1
    max_speed_squared = True  # the kernel tracks max speed squared in f.max_speed

    def __init__(self, inputs: SolverInputs) -> None:
        super().__init__(inputs)
        ny, nx = inputs.shape
        cfl = min(0.9 * inputs.alpha, 0.9)
        self.core = FVSolver(np.zeros((ny, nx)), inputs.cell_size, 0.0, active=inputs.valid, dtype=inputs.dtype,
                             order=self.order, cfl=cfl, threads=inputs.threads)
        self.core.z = inputs.z  # shared: the model (walls, breaches) edits it in place
        self._manning_src: np.ndarray | None = None
        self._levee_src = None
        self._edited_cells = None  # (rows, cols, depth after the last kernel call)
        self._edit_src = None      # the inputs.edited_cells tuple _edited_cells was built from
        self._front_src = None     # the inputs.source_cells tuple _front was built from
        self._front = None
        # the bed, roughness and edge tables are validated on the first sub-step; afterwards only
        # the model edits them, with finite values (walls at FLOOD_WALL_Z, breaches lowering z)
        self._check_static = True
        self._check_state = True
        self._n_sub = 0

    # -- model-facing contract ---------------------------------------------------------------
    @property
    def h(self) -> np.ndarray:
        return self.core.h

    def stable_dt(self, hmax: float) -> float:
        s = self.core.wave_speed()
        s = max(s, math.sqrt(G * max(hmax, 0.0)))
        # the model edits depths and beds between sub-steps (inflows, pumps, stage cells, breaches):
        # a front can start there at u + 2c, which the last step's wave speeds did not see
        nb = self._front_cells()
        if nb is not None:
            s = max(s, 2.0 * math.sqrt(G * max(float(np.max(self.core.h[nb])), 0.0)))
        return self.core.cfl * self.core.dx / s if s > 0 else math.inf

    def _front_cells(self):
        """Flat indices of the cells the model edits and their 4 neighbours (cached per list of cells)."""
        m = self.inputs
        src = m.source_cells
        if src is not self._front_src:
            self._front_src = src
            if src is None:
                self._front = None
            else:
                ny, nx = m.shape
                r = np.asarray(src[0], np.int64)
                c = np.asarray(src[1], np.int64)
                r = np.concatenate([r, r - 1, r + 1, r, r])
                c = np.concatenate([c, c, c, c - 1, c + 1])
                ok = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
                self._front = np.unique(r[ok] * nx + c[ok])
        if self._front is None:
            return None
        return np.unravel_index(self._front, m.shape)

    def _sync_static(self, levees) -> None:
        m = self.inputs
        if self._manning_src is not m.manning:
            self.core.manning = np.ascontiguousarray(np.broadcast_to(m.manning.reshape(-1) if m.manning.size == 1
                                                                     else m.manning, m.shape), dtype=m.dtype)
            self._manning_src = m.manning
            self._check_static = True
        # model edge kinds / values -> ghost cells (same layout: west, east, north, south)
        np.copyto(self.core.bc_kind, m.edge_kind, casting="unsafe")
        self.core.bc_stage[...] = np.where(m.edge_kind == 2, m.edge_value, 0.0)
        lev = levees
        if lev is not None:
            ny, nx = m.shape
            if self._levee_src is None or self.core.face_z_x is None:
                self.core.face_z_x = np.full((ny, nx + 1), -np.inf, m.dtype)
                self.core.face_z_y = np.full((ny + 1, nx), -np.inf, m.dtype)
            if self._levee_src is not lev:
                self.core.face_z_x.fill(-np.inf)
                self.core.face_z_y.fill(-np.inf)
                self._levee_src = lev
                self._check_static = True
            # crests may be lowered in place (breaches): scatter every sub-step (few faces)
            self.core.face_z_x.reshape(-1)[lev["x_idx"]] = lev["x_crest"]
            self.core.face_z_y.reshape(-1)[lev["y_idx"]] = lev["y_crest"]

    def _edit_cells(self):
        """Cells the model edits between sub-steps by removing or setting water (pumps, stage cells)."""
        src = self.inputs.edited_cells
        if src is not self._edit_src:
            self._edit_src = src
            if src is not None:
                self._edited_cells = [np.asarray(src[0], np.int64), np.asarray(src[1], np.int64), None]
            else:
                self._edited_cells = None
        return self._edited_cells

    def substep(self, dt: float, t_end: float, f: SubstepForcing) -> float:
        m = self.inputs
        core = self.core
        self._sync_static(f.levees)
        ed = self._edit_cells()
        if ed is not None and ed[2] is not None:
            r, c, h_prev = ed
            h_now = core.h[r, c]
            # water taken away keeps its velocity (momentum scales down with the depth); water
            # added (stage cells filling) comes at rest: momentum unchanged, never amplified
            ratio = np.where(h_prev > core.h_dry, np.minimum(1.0, h_now / np.where(h_prev > 0, h_prev, 1)),
                             0.0).astype(m.dtype)
            core.hu[r, c] *= ratio
            core.hv[r, c] *= ratio
        smax, hmax = _core.fv_step(
            core.z, core.manning, core.active, core.h, core.hu, core.hv, core._oh, core._ohu, core._ohv,
            core.bc_kind, core.bc_stage, core.bc_q, core._work, dx=core.dx, dt=float(dt), g=core.g,
            h_dry=core.h_dry, order=core.order, limiter=_LIMITERS[core.limiter], face_z_x=core.face_z_x,
            face_z_y=core.face_z_y, threads=core.threads, rain0=f.rain0, rain1=f.rain1, rain_w=float(f.rain_w),
            rain_scale=float(f.rain_scale), loss=f.loss, loss_scale=float(f.loss_scale), max_depth=f.max_depth,
            max_speed=f.max_speed, arrival_time=f.arrival_time, t_end=float(t_end), row_sums=f.row_sums,
            check_static=self._check_static, check_state=self._check_state,
        )  # fmt: skip
        self._check_static = False
        # the input state is validated on the first sub-step and after set_state; the kernel checks the
        # state it writes (finite, depth >= 0) on every sub-step, and in between reads that plus the
        # model's validated point edits (a non-finite edit shows in the next output)
        self._check_state = False
        self._n_sub += 1
        core.h, core._oh = core._oh, core.h
        core.hu, core._ohu = core._ohu, core.hu
        core.hv, core._ohv = core._ohv, core.hv
        core._smax = smax
        if ed is not None:
            ed[2] = core.h[ed[0], ed[1]].copy()
        return hmax

    def cell_discharge(self) -> np.ndarray:
        return np.stack([self.core.hu, self.core.hv]).astype(self.inputs.dtype)

    def face_discharge(self):
        """Face unit discharges interpolated from the cells (the FV state is cell-centred):
        qx (ny, nx+1) east-positive, qy (ny+1, nx) south-positive; zero on the domain edges."""
        hu, hv = self.core.hu, self.core.hv
        ny, nx = hu.shape
        qx = np.zeros((ny, nx + 1), hu.dtype)
        qy = np.zeros((ny + 1, nx), hu.dtype)
        qx[:, 1:-1] = 0.5 * (hu[:, :-1] + hu[:, 1:])
        qy[1:-1, :] = -0.5 * (hv[:-1, :] + hv[1:, :])
        return qx, qy

    def get_state(self) -> dict:
        st = {"h": self.core.h.copy(), "hu": self.core.hu.copy(), "hv": self.core.hv.copy(),
              "wave_speed": self.core._smax}  # the next step's CFL speed: part of a bit-identical restart
        ed = self._edited_cells
        st["edited_h"] = None if ed is None or ed[2] is None else ed[2].copy()
        return st

    def set_state(self, d: dict) -> None:
        for key in ("h", "hu", "hv"):
            a = np.asarray(d[key])
            mine = getattr(self.core, key)
            if a.shape != mine.shape or a.dtype != mine.dtype:
                raise ValueError(f"state[{key!r}]: expected shape {mine.shape} dtype {mine.dtype}, got {a.shape} {a.dtype}")
        for key in ("h", "hu", "hv"):
            getattr(self.core, key)[...] = d[key]
        self.core._smax = d.get("wave_speed")
        self._check_state = True
        ed = self._edit_cells()
        if ed is not None:
            ed[2] = None if d.get("edited_h") is None else np.array(d["edited_h"])


class FV2FloodSolver(FVFloodSolver):
    """``solver="fv2"``: second order, MUSCL reconstruction (minmod) + Heun time stepping."""

    name = "fv2"
    order = 2


def reservoir_fill(terrain, x: float, y: float, level_m: float, reference=None) -> np.ndarray:
    """Depth [m] of a reservoir at ``level_m`` on the grid: the cells 4-connected to the cell at
    (x, y) whose bed lies below the level, filled to it (zero elsewhere). For dam-break studies.
    ``reference``: a finer terrain of the same area that gives the footprint and the level–volume
    relation (see :func:`twin.flood.reservoir.fill_reservoir`, which also returns the bed with the
    barrier cells that a coarse grid lost; a fill off the relation raises ValueError)."""
    from twin.flood.reservoir import fill_reservoir

    return fill_reservoir(terrain, x, y, level_m, reference=reference).depth
