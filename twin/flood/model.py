"""FloodModel: the flood component (forcing, boundaries, structures, outputs, volume balance).

The numerical update lives in a solver (``solver="inertial"``, the default; see
:mod:`twin.flood.solvers`), built from the :class:`~twin.flood.solvers.SolverInputs` this model fills;
everything else is here and shared by every solver.

Conventions: rasters ``(ny, nx)`` with row 0 at the north edge; depth [m]; cell-centred
``discharge`` and ``velocity`` are ``(2, ny, nx)`` arrays of (east, north) components [m2/s, m/s];
time in seconds since the model's start. Within a sub-step: fluxes and the positivity limiter,
continuity, rain, losses (all in the kernel); then point inflows, pumps and prescribed-stage cells.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import _core
from ..constants import GRAVITY
from .forcing import TimeSeries, as_times, positive_scalar
from .solvers import SolverInputs, SubstepForcing, get_solver

if TYPE_CHECKING:
    from .solvers.subgrid import SubgridSolver
    from .subgrid import SubgridTables

__all__ = ["FloodModel"]

_EDGES = ("north", "south", "east", "west")
_KINDS = {"wall": 0, "free": 1, "stage": 2}
MM_PER_H = 1.0 / 3.6e6  # mm/h -> m/s


#: local time steps: what a deep cell's sub-step costs, in cells of the whole-grid pass (measured at the Tam Kỳ
#: storm's peak: a sub-cycle cell's sub-step ~3.7 cells of the pass, with 1.5 fast cells per deep one). Each step takes the
#: ratio r of sub-steps that minimises the estimated cost per unit of time
#: (N + LTS_CELL_COST Σ_l (c_l - c_{l-1}) n_deep(r / c_{l-1})) / r over the levels 1 = c_0 < c_1 < .. < c_L = r of
#: its chain (`lts_chain`; the first term c_1 n_deep(r): the sub-cycle's cells take no step of the whole-grid
#: pass), n_deep(k) the cells deeper than a step of k sub-steps allows after the last step; r = 1: N
#: (docs/design/subgrid-local-time-steps.md)
LTS_CELL_COST = 5.0


def lts_chain(n: int) -> list[int]:
    """The levels of a step of ``n`` sub-steps with local time steps, coarsest first: the sub-step counts
    n, n/2, n/4 .. while even and above 1 (8: [2, 4, 8]; 6: [3, 6]; 5: [5]), as the kernel takes them."""
    c = [int(n)]
    while c[-1] % 2 == 0 and c[-1] // 2 > 1:
        c.append(c[-1] // 2)
    return c[::-1]


def lts_substep_count(n: int, m: int) -> int:
    """The sub-steps a step needing ``n`` takes with local time steps of at most ``m``: the least count of the form
    2^k or 3·2^k from ``n`` to ``m`` (a chain of halvings: every level of sub-steps), else ``n``."""
    best = [q << k for q in (1, 3) for k in range(11) if n <= q << k <= m]
    return min(best) if best else n

class FloodModel:
    """2-D flood model on a :class:`~twin.terrain.Terrain` (local inertial by default).

    >>> import numpy as np
    >>> from twin import Terrain, FloodModel
    >>> t = Terrain.from_array(np.zeros((20, 20)), cell_size=10.0)
    >>> m = FloodModel(t, manning=0.03)
    >>> m.set_rainfall([0.0, 3600.0], [50.0, 50.0])
    >>> m.run_one_step(600.0)
    >>> round(float(m.depth.mean()), 6)   # 50 mm/h for 10 minutes
    0.008333
    """

    _name = "FloodModel"
    #: Most sub-steps one ``run_one_step`` call may take (the CFL sub-step shrinks as 1/sqrt(depth): a depth
    #: of 1e12 m on 1 m cells would need ~4e8 sub-steps for 600 s, an apparent hang). The call refuses,
    #: naming the depth, rain and boundary stage behind it, when its estimate (time left / CFL sub-step,
    #: re-estimated every sub-step) exceeds this. Raise it on purpose for very long calls on fine grids.
    max_substeps: int = 1_000_000
    _unit_agnostic = False
    _info = {
        "topographic__elevation": {
            "dtype": "float", "intent": "in", "optional": False, "units": "m", "mapping": "cell",
            "doc": "Land surface elevation (NaN/nodata cells are walls)",
        },
        "surface_water__depth": {
            "dtype": "float", "intent": "inout", "optional": False, "units": "m", "mapping": "cell",
            "doc": "Water depth",
        },
        "surface_water__discharge": {
            "dtype": "float", "intent": "out", "optional": False, "units": "m2/s", "mapping": "cell",
            "doc": "Unit discharge (east, north) at cell centres; on faces: face_discharge()",
        },
        "surface_water__velocity": {
            "dtype": "float", "intent": "out", "optional": False, "units": "m/s", "mapping": "cell",
            "doc": "Depth-averaged velocity (east, north); 0 where depth <= 0.01 m",
        },
        "surface_water__speed": {
            "dtype": "float", "intent": "out", "optional": False, "units": "m/s", "mapping": "cell",
            "doc": "Speed magnitude",
        },
        "surface_water__max_depth": {
            "dtype": "float", "intent": "out", "optional": False, "units": "m", "mapping": "cell",
            "doc": "Maximum depth reached so far (every sub-step)",
        },
        "surface_water__max_speed": {
            "dtype": "float", "intent": "out", "optional": False, "units": "m/s", "mapping": "cell",
            "doc": "Maximum speed reached so far (every sub-step, depth > 0.01 m)",
        },
        "surface_water__arrival_time": {
            "dtype": "float", "intent": "out", "optional": False, "units": "s", "mapping": "cell",
            "doc": "Time the depth first exceeded 0.1 m (NaN if never)",
        },
        "atmosphere_water__rainfall_rate": {
            "dtype": "float", "intent": "in", "optional": True, "units": "mm/h", "mapping": "cell",
            "doc": "Rainfall intensity (uniform or per cell), a time series",
        },
        "soil_water__loss_rate": {
            "dtype": "float", "intent": "in", "optional": True, "units": "mm/h", "mapping": "cell",
            "doc": "Infiltration / drainage loss rate (uniform or per cell)",
        },
        "mannings_n": {
            "dtype": "float", "intent": "in", "optional": False, "units": "s/m(1/3)", "mapping": "cell",
            "doc": "Manning roughness (uniform or per cell)",
        },
    }  # fmt: skip

    def __init__(
        self,
        terrain,
        manning=0.03,
        solver: str = "inertial",
        dtype="float64",
        alpha: float = 0.5,
        theta: float = 0.8,
        threads: int | None = None,
        subgrid=None,
        subgrid_face_weight: float = 0.3,
        local_time_steps: int = 1,
    ) -> None:
        from ..terrain import Terrain

        if not isinstance(terrain, Terrain):
            raise ValueError(f"terrain: expected a twin.Terrain, got {type(terrain).__name__}")
        #: the subgrid tables (FloodModel(fine_terrain, subgrid=factor)), or None for the regular solve
        self.subgrid = None
        self._film_scale: np.ndarray | None = None
        self._fine_max: np.ndarray | None = None    # subgrid: the fine depth's maximum at the calls' ends
        self._fine_now: dict | None = None          # subgrid: the fine depth at the last call's end, its state
        #: the terrain given (the fine DEM when solving with subgrid topography)
        self.fine_terrain = terrain
        if subgrid is not None:
            terrain, manning = self._init_subgrid(terrain, subgrid, solver, dtype, manning)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}") from None
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        a = positive_scalar(alpha, "alpha", allow_zero=False)
        if a > 1.0:
            raise ValueError(f"alpha: the CFL factor must be in (0, 1], got {alpha!r}")
        th = positive_scalar(theta, "theta")
        if th > 1.0:
            raise ValueError(f"theta: must be in [0, 1], got {theta!r}")
        fw = positive_scalar(subgrid_face_weight, "subgrid_face_weight", allow_zero=False)
        if fw > 1.0:
            raise ValueError(f"subgrid_face_weight: must be in (0, 1], got {subgrid_face_weight!r}")
        #: subgrid faces are read at max(mean of the two levels, z_face + w (upwind level - z_face));
        #: 1 = the upwind level (docs/design/subgrid-face-level.md); unused without subgrid topography and
        #: with factor 1 (one pixel per cell: the regular scheme, faces at the upwind level)
        self.subgrid_face_weight = fw
        if (isinstance(local_time_steps, bool) or not isinstance(local_time_steps, (int, np.integer))
                or not 1 <= local_time_steps <= 64):
            raise ValueError(f"local_time_steps: expected an integer in [1, 64], got {local_time_steps!r}")
        if local_time_steps > 1 and self.subgrid is None:
            raise ValueError(f"local_time_steps={local_time_steps}: local time steps need subgrid topography "
                             "(FloodModel(fine_terrain, subgrid=factor)); the regular kernels step every cell alike")
        #: the most sub-steps the deep cells take in one step of the others (subgrid; 1: one sub-step for all);
        #: docs/design/subgrid-local-time-steps.md
        self.local_time_steps = int(local_time_steps)
        #: local time steps: the finest level's sub-steps in all (``n_steps`` counts the steps of the slow cells)
        self.lts_substeps = 0
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, got {threads!r}")
        self.terrain = terrain
        self.shape = terrain.shape
        self.cell_size = float(terrain.cell_size)
        self.cell_area = self.cell_size**2
        self.alpha, self.theta = a, th
        self.threads = int(threads) if threads is not None else None
        ny, nx = self.shape
        self._valid = terrain.valid  # read-only
        self._z = np.empty(self.shape, self.dtype)
        np.copyto(self._z, terrain.elevation, casting="same_kind")
        self._z[~self._valid] = _core.FLOOD_WALL_Z
        self._manning = self._check_field(manning, "manning", allow_scalar=True)
        solver_cls = get_solver(solver)
        if self.subgrid is not None:
            from .solvers.subgrid import SubgridSolver

            solver_cls = SubgridSolver
        self.solver = solver
        # tracked outputs
        self._maxh = np.zeros(self.shape, self.dtype)
        self._maxs = np.zeros(self.shape, self.dtype)  # max of speed squared
        self._arr = np.full(self.shape, np.nan, self.dtype)
        # per row segment, a lower bound of the trackers' minimum: the kernel skips segments whose new
        # depths/speeds stay within it (exact); anything that lowers a tracker must reset these
        nseg = -(-nx // _core.FLOOD_TRACK_SEGMENT)
        self._seg_maxh_min = np.full((ny, nseg), -np.inf, self.dtype)
        self._seg_maxs_min = np.full((ny, nseg), -np.inf, self.dtype)
        self._row_sums = np.zeros((ny, _core.FLOOD_ROW_SLOTS), np.float64)
        # forcing and boundaries
        self._rain: TimeSeries | None = None
        self._rain_frames: np.ndarray | None = None
        self._rain_one = [np.zeros(1, self.dtype), np.zeros(1, self.dtype)]
        self._loss: np.ndarray | None = None
        self._inflows: list[dict] = []
        self._pumps: list[dict] = []
        self._edge_kind = np.zeros(2 * ny + 2 * nx, np.uint8)  # faces: west, east, north, south
        self._edge_value = np.zeros(2 * ny + 2 * nx, self.dtype)
        self._edge_stage: list[dict] = []  # {"idx", "series", "zmin"}
        self._cell_bcs: list[dict] = []  # {"rows","cols","kind","series"}
        self._levee_x: dict[int, float] = {}
        self._levee_y: dict[int, float] = {}
        self._levee_csr: dict | None = None
        self._breaks: np.ndarray | None = None
        self._breaches: list = []  # twin.flood.breach.Breach (add_breach)
        # clock and book-keeping
        self._time = 0.0
        self._n_steps = 0
        self._hmax = 0.0
        self._acc = dict(initial_m3=0.0, inflow_m3=0.0, outflow_m3=0.0, lost_m3=0.0, rain_m3=0.0, edits_m3=0.0)
        # what the solver is built from: the model's own arrays, kept current (see _sync_solver_cells)
        self._inputs = SolverInputs(
            z=self._z, valid=self._valid, manning=self._manning, cell_size=self.cell_size, dtype=self.dtype,
            edge_kind=self._edge_kind, edge_value=self._edge_value, alpha=self.alpha, theta=self.theta,
            threads=self.threads, subgrid=self.subgrid, subgrid_face_weight=self.subgrid_face_weight,
        )  # fmt: skip
        self._solver_cell_counts = (0, 0, 0, 0)  # pumps, prescribed cells, inflows, breaches in _inputs
        self._wetting_src: tuple | None = None   # the source_cells tuple _wetting was built from
        self._wetting: tuple = ()
        self._solver = solver_cls(self._inputs)
        self._forcing = SubstepForcing(
            edge_kind=self._edge_kind, edge_value=self._edge_value, max_depth=self._maxh,
            max_speed=self._maxs, arrival_time=self._arr, row_sums=self._row_sums,
            seg_max_depth_min=self._seg_maxh_min, seg_max_speed_min=self._seg_maxs_min,
        )  # fmt: skip

    # ------------------------------------------------------------------ subgrid
    def _init_subgrid(self, terrain, subgrid, solver, dtype, manning):
        """Tables for ``subgrid`` (a factor or SubgridTables); returns the coarse terrain and roughness."""
        from ..terrain import Terrain
        from .subgrid import SubgridTables

        if solver != "inertial":
            raise ValueError(f"subgrid: only the local-inertial solver has a subgrid path (solver='inertial'), "
                             f"got solver={solver!r}")
        if np.dtype(dtype) != np.float64:
            raise ValueError(f"subgrid: the subgrid kernel runs in float64, got dtype={dtype!r}")
        if isinstance(subgrid, SubgridTables):
            tab = subgrid
            if tab.fine_shape != terrain.shape or abs(tab.fine_cell_size - float(terrain.cell_size)) > 1e-9:
                raise ValueError(f"subgrid: the tables were built for a {tab.fine_shape} grid of "
                                 f"{tab.fine_cell_size:g} m, the terrain is {terrain.shape} of {terrain.cell_size:g} m")
            if tab.key != SubgridTables.cache_key(terrain.elevation, tab.factor, tab.n_levels):
                raise ValueError("subgrid: the tables were built from another DEM (their hash does not match the "
                                 "terrain's elevation)")
        else:
            tab = SubgridTables.from_terrain(terrain, subgrid)
        self.subgrid = tab
        zc = np.where(tab.valid, tab.z_min, np.nan)
        coarse = Terrain.from_array(zc, tab.cell_size, origin=terrain.origin, crs=terrain.crs)
        coarse.source = f"subgrid x{tab.factor} of {terrain.source}"
        m = np.asarray(manning, dtype=np.float64)
        if m.ndim == 2 and m.shape == terrain.shape:  # fine roughness: mean over each cell's valid pixels
            ok = terrain.valid & np.isfinite(m)
            s = tab.to_coarse(np.where(ok, m, 0.0), "manning")
            k = tab.to_coarse(ok.astype(np.float64), "manning")
            manning = np.where(k > 0, s / np.where(k > 0, k, 1.0), 0.0)
        return coarse, manning

    def fine_depth(self) -> np.ndarray:
        """Water depth [m] on the terrain's grid: with subgrid topography each coarse cell's volume on the
        fine DEM with the sheet-flow film of its unit discharge on every pixel
        (:meth:`SubgridTables.downscale_sheet`; without flow ``max(0, level - z_fine)``); otherwise
        :attr:`depth`."""
        if self.subgrid is None:
            return self.depth
        d, kept = self._fine_depth_now()
        return d.copy() if kept else d

    def _fine_depth_now(self) -> tuple[np.ndarray, bool]:
        """The fine depth of the state now, and whether it is the one kept from the last call's end (the
        state is still that one; not to be written into) rather than computed for this call."""
        hit = self._fine_now_if_current()
        if hit is not None:
            return hit, True
        sol, _ = self._sg()
        return self._downscale(sol.level(), sol.h, sol.unit_discharge()), False

    def _sg(self) -> tuple[SubgridSolver, SubgridTables]:
        """The subgrid solver and tables (only called with subgrid topography)."""
        from .solvers.subgrid import SubgridSolver
        from .subgrid import SubgridTables

        sol, tab = self._solver, self.subgrid
        assert isinstance(sol, SubgridSolver) and isinstance(tab, SubgridTables)
        return sol, tab

    def _fine_now_if_current(self) -> np.ndarray | None:
        """The fine depth computed at the end of the last run_one_step call, if the state is still that one
        (depths, discharges and roughness compared bit for bit: edits between calls invalidate it)."""
        c = self._fine_now
        if c is None:
            return None
        sol, _ = self._sg()
        same = (c["time"] == self._time and np.array_equal(c["h"], sol.h) and np.array_equal(c["qx"], sol.qx)
                and np.array_equal(c["qy"], sol.qy) and np.array_equal(c["manning"], self._manning))
        return c["depth"] if same else None

    def fine_max_depth(self) -> np.ndarray:
        """Maximum depth [m] so far on the terrain's grid; otherwise :attr:`max_depth`.

        Subgrid: the largest of (a) the fine depth at the end of every :meth:`run_one_step` call (every state
        a caller can see, so never below a :meth:`fine_depth` read between calls), (b) each coarse cell's
        highest level (tracked every sub-step) with the film of the unit discharge it had when its mean depth
        peaked (sampled every 60 s of model time), and (c) the fine depth now."""
        if self.subgrid is None:
            return self.max_depth
        sol, tab = self._sg()
        valid = tab.valid
        hmax = np.zeros(self.shape)
        hmax[valid] = tab.depth_for_level(sol.max_level[valid], *np.nonzero(valid))
        peak_level = np.where(valid & np.isfinite(sol.max_level), sol.max_level, np.nan)
        out = self._downscale(peak_level, hmax, sol.peak_unit_discharge)
        np.maximum(out, self._fine_depth_now()[0], out=out)
        if self._fine_max is not None:
            np.maximum(out, self._fine_max, out=out)
        return out

    def _downscale(self, level: np.ndarray, mean_depth: np.ndarray, unit_q: np.ndarray,
                   max_out: np.ndarray | None = None) -> np.ndarray:
        _, tab = self._sg()
        if self._film_scale is None:
            self._film_scale = tab.sheet_film_scale(self.fine_terrain.elevation)
        return tab.downscale_sheet(level, mean_depth, unit_q, self._manning, self.fine_terrain.elevation,
                                   self._film_scale, max_out=max_out, threads=self.threads)

    def _track_fine_max(self) -> None:
        """Raise the fine maximum to the fine depth now (end of a run_one_step call)."""
        if self._fine_max is None:
            self._fine_max = np.zeros(self.fine_terrain.shape)
        sol, _ = self._sg()
        d = self._downscale(sol.level(), sol.h, sol.unit_discharge(), max_out=self._fine_max)
        self._fine_now = {"time": self._time, "h": sol.h.copy(), "qx": sol.qx.copy(), "qy": sol.qy.copy(),
                          "manning": np.array(self._manning, copy=True), "depth": d}

    @property
    def level(self) -> np.ndarray:
        """Water level [m] on the solve grid (subgrid: from the volume tables; else bed + depth; NaN on walls)."""
        if self.subgrid is not None:
            return self._solver.level()
        return np.where(self._valid, self.terrain.elevation + self.depth, np.nan)

    def to_fine(self, a) -> np.ndarray:
        """A field on the solve grid copied onto the terrain's grid (each coarse cell to its pixels);
        the array itself without subgrid topography."""
        if self.subgrid is None:
            return np.asarray(a)
        f = self.subgrid.factor
        ny, nx = self.subgrid.fine_shape
        a = np.asarray(a)
        *lead, nyc, nxc = a.shape
        out = np.empty((*lead, nyc * f, nxc * f), dtype=a.dtype)
        # each coarse value broadcast over its f x f block in one pass (two np.repeat passes took 2.5x longer)
        out.reshape(*lead, nyc, f, nxc, f)[...] = a[..., :, None, :, None]
        return out if (nyc * f, nxc * f) == (ny, nx) else out[..., :ny, :nx]

    def grid_cells(self, cells) -> list[tuple[int, int]]:
        """Cells ``[(row, col), ...]`` of the terrain's grid as cells of the solve grid (each coarse cell
        once, in first-seen order); unchanged without subgrid topography."""
        cl = [(int(r), int(c)) for r, c in np.asarray(cells).reshape(-1, 2)]
        if self.subgrid is None:
            return cl
        f = self.subgrid.factor
        return list(dict.fromkeys((r // f, c // f) for r, c in cl))

    def _refuse_subgrid(self, what: str) -> None:
        if self.subgrid is not None:
            raise ValueError(f"{what}: not supported with subgrid topography (FloodModel(..., subgrid=...)) yet; "
                             "solve on the fine grid for levees, breaches and closed cells")

    # ------------------------------------------------------------------ helpers
    def _fits_dtype(self, a: np.ndarray, name: str) -> None:
        """Finite values (float64) that overflow the model's dtype (float32: above 3.4e38) are refused."""
        lim = float(np.finfo(self.dtype).max)
        big = np.abs(a) > lim
        if big.any():
            i = np.unravel_index(int(np.argmax(big)), a.shape) if a.ndim else ()
            raise ValueError(f"{name}: value {float(a[i])!r}{' at ' + str(tuple(int(k) for k in i)) if i else ''} "
                             f"overflows the model's dtype {self.dtype} (largest {lim:.3g})")

    def _check_field(self, v, name: str, allow_scalar: bool) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64)
        if self.subgrid is not None and a.ndim == 2 and a.shape == self.subgrid.fine_shape and a.shape != self.shape:
            bad = self.fine_terrain.valid & ~(np.isfinite(a) & (a >= 0))
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(f"{name}: value {a[r, c]!r} at (row {r}, col {c}) must be finite and >= 0")
            a = self.subgrid.to_coarse(a, name, self.fine_terrain.valid)  # per-area rate: volume kept
        if a.ndim == 0 and allow_scalar:
            if not math.isfinite(float(a)) or float(a) < 0:
                raise ValueError(f"{name}: must be finite and >= 0, got {float(a)!r}")
            self._fits_dtype(a, name)
            return np.array([a], dtype=self.dtype)
        if a.shape != self.shape:
            raise ValueError(f"{name}: expected a scalar or shape {self.shape}, got shape {a.shape}")
        bad = self._valid & ~(np.isfinite(a) & (a >= 0))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{name}: value {a[r, c]!r} at (row {r}, col {c}) must be finite and >= 0")
        self._fits_dtype(np.where(self._valid, a, 0.0), name)
        return np.ascontiguousarray(np.where(self._valid, a, 0.0), dtype=self.dtype)

    def _cells(self, cells, name: str) -> tuple[np.ndarray, np.ndarray]:
        arr = np.asarray(cells)
        if arr.ndim == 1 and arr.size == 2:
            arr = arr.reshape(1, 2)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
            raise ValueError(f"{name}: expected (row, col) or a list of (row, col), got {cells!r}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValueError(f"{name}: cell indices must be integers, got {cells!r}")
            arr = arr.astype(np.int64)
        rows, cols = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        # read-only: the model keeps these lists and the subgrid solver keeps their table rows by identity
        rows.flags.writeable = False
        cols.flags.writeable = False
        ny, nx = self.shape
        out = (rows < 0) | (rows >= ny) | (cols < 0) | (cols >= nx)
        if out.any():
            i = int(np.argmax(out))
            raise ValueError(f"{name}: cell ({rows[i]}, {cols[i]}) is outside the {ny}x{nx} grid")
        wall = ~self._valid[rows, cols]
        if wall.any():
            i = int(np.argmax(wall))
            raise ValueError(f"{name}: cell ({rows[i]}, {cols[i]}) is a nodata/wall cell")
        return rows, cols

    def _sync_solver_cells(self) -> None:
        """Tell the solver which cells this model changes between sub-steps (``SolverInputs.edited_cells``:
        pumps and prescribed cells; ``source_cells``: those, inflows and breaches). Called before the
        solver steps or restores a state; a list that changed is replaced by a new tuple, never edited."""
        counts = (len(self._pumps), len(self._cell_bcs), len(self._inflows), len(self._breaches))
        if counts == self._solver_cell_counts:
            return

        def cat(parts):
            if not parts:
                return None
            out = np.concatenate(parts).astype(np.int64)
            out.flags.writeable = False  # replaced, never edited (the subgrid solver keeps its table rows)
            return out

        rr = [np.array([p["cell"][0]]) for p in self._pumps] + [b["rows"] for b in self._cell_bcs]
        cc = [np.array([p["cell"][1]]) for p in self._pumps] + [b["cols"] for b in self._cell_bcs]
        if counts[:2] != self._solver_cell_counts[:2]:
            self._inputs.edited_cells = (cat(rr), cat(cc)) if rr else None
        rr = rr + [inf["rows"] for inf in self._inflows] + [br.rows for br in self._breaches]
        cc = cc + [inf["cols"] for inf in self._inflows] + [br.cols for br in self._breaches]
        self._inputs.source_cells = (cat(rr), cat(cc)) if rr else None
        self._solver_cell_counts = counts

    @property
    def _h(self) -> np.ndarray:
        return self._solver.h

    def _volume(self) -> float:
        return float(np.sum(self._solver.h, dtype=np.float64)) * self.cell_area

    # ------------------------------------------------------------------ setup API
    def set_depth(self, h) -> None:
        """Set the water depth [m]: a scalar or an ``(ny, nx)`` array (walls stay dry). With subgrid
        topography the depth is the mean depth (volume / cell area) of the coarse cells; an array on the
        terrain's (fine) grid is converted keeping its volume."""
        a = np.asarray(h)
        sg = self.subgrid
        if sg is not None and a.ndim == 2 and a.shape == sg.fine_shape and a.shape != self.shape:
            a = np.asarray(a, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                bad = self.fine_terrain.valid & ~(np.isfinite(a) & (a >= 0))
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(f"depth: value {float(a[r, c])!r} at (row {r}, col {c}) of the fine grid must be finite "
                                 "and >= 0")
            a = sg.to_coarse(a, "depth", self.fine_terrain.valid)
        if a.ndim == 0:
            v = float(a)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"depth: value {v!r} must be finite and >= 0")
        elif a.shape != self.shape:
            raise ValueError(f"depth: expected a scalar or shape {self.shape}, got shape {a.shape}")
        else:
            if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
                raise ValueError(f"depth: expected real numbers, got dtype {a.dtype}")
            ok = np.isfinite(a)
            ok &= a >= 0
            ok |= ~self._valid
            if not ok.all():
                r, c = np.argwhere(~ok)[0]
                raise ValueError(f"depth: value {a[r, c]!r} at (row {r}, col {c}) must be finite and >= 0")
            del ok
        if self.dtype == np.float32:
            self._fits_dtype(np.where(self._valid, a, 0.0) if a.ndim else a, "depth")
        before = self._volume()
        hs = self._solver.h
        np.copyto(hs, a, casting="unsafe")
        hs[~self._valid] = 0
        self._hmax = float(hs.max())  # the next sub-step's CFL limit
        if self.subgrid is not None:  # the CFL limit of a subgrid cell is its local depth
            self._hmax = self._solver.local_depth_max()
        delta = self._volume() - before
        if self._n_steps == 0 and self._time == 0.0:
            self._acc["initial_m3"] += delta
        else:
            self._acc["edits_m3"] += delta
        self._track_all()

    def _track_all(self) -> None:
        """Update the tracked maxima everywhere after an edit of the depths (no large temporaries)."""
        h = self._solver.h
        m = h > 0.1
        m &= self._maxh <= 0.1
        m &= np.isnan(self._arr)
        self._arr[m] = self._time
        del m
        np.maximum(self._maxh, h, out=self._maxh)
        if self.subgrid is not None:
            self._solver.track_levels()

    def _track_sparse(self, rows, cols) -> None:
        """Update the tracked maxima at cells the model edited outside the kernel."""
        h = self._solver.h
        hv = h[rows, cols]
        old = self._maxh[rows, cols]
        arr = self._arr[rows, cols]
        self._arr[rows, cols] = np.where((old <= 0.1) & (hv > 0.1) & np.isnan(arr), self._time, arr)
        self._maxh[rows, cols] = np.maximum(old, hv)
        if self.subgrid is not None:
            self._solver.track_levels(rows, cols)

    def set_rainfall(self, times_s, rate_mm_per_h) -> None:
        """Rainfall [mm/h] as a time series: ``rate_mm_per_h`` shaped ``(nt,)`` (uniform),
        ``(nt, ny, nx)`` (per cell), or ``(ny, nx)`` (a fixed pattern at a single time).

        Rates are interpolated linearly between the times and are zero before the first and after
        the last time; a single time means a constant rate from then on. ``None`` removes rain.
        """
        if times_s is None or rate_mm_per_h is None:
            self._rain, self._rain_frames, self._breaks = None, None, None
            return
        t = as_times(times_s, "rainfall")
        r = np.asarray(rate_mm_per_h, dtype=np.float64)
        ny, nx = self.shape
        if r.ndim == 0:
            r = np.full(t.shape, float(r))
        if r.shape == self.shape and t.size == 1:
            r = r[None]
        sg = self.subgrid
        if sg is not None and r.ndim == 2 and r.shape == sg.fine_shape and t.size == 1:
            r = r[None]
        if sg is not None and r.ndim == 3 and r.shape[1:] == sg.fine_shape and r.shape[1:] != self.shape:
            if not (np.isfinite(r).all() and (r >= 0).all()):
                raise ValueError("rate_mm_per_h: rainfall rates must be finite and >= 0 mm/h")
            # rain on the fine pixels, summed over each coarse cell (nodata pixels get none): volume kept
            r = np.stack([sg.to_coarse(fr, "rate_mm_per_h", self.fine_terrain.valid) for fr in r])
        elif sg is not None and r.shape == t.shape and bool((sg.valid_fraction < 1.0).any()):
            # uniform rain on coarse cells that hold nodata pixels: only the valid pixels get rain
            r = r[:, None, None] * sg.valid_fraction[None]
        if r.shape == t.shape:
            frames = r.reshape(-1, 1)
        elif r.shape == (t.size, ny, nx):
            frames = r.reshape(t.size, ny * nx)
        else:
            raise ValueError(
                f"rate_mm_per_h: expected shape ({t.size},) or ({t.size}, {ny}, {nx}) for {t.size} times, got {r.shape}"
            )
        if not (np.isfinite(frames).all() and (frames >= 0).all()):
            raise ValueError("rate_mm_per_h: rainfall rates must be finite and >= 0 mm/h")
        self._fits_dtype(frames, "rate_mm_per_h")
        self._rain = TimeSeries(t, np.arange(t.size, dtype=np.float64), "rainfall")
        self._breaks = None
        self._rain_frames = np.ascontiguousarray(frames, dtype=self.dtype)

    def set_loss_rate(self, rate_mm_per_h) -> None:
        """Infiltration / drainage loss [mm/h]: a scalar or an ``(ny, nx)`` array (0 or None: none)."""
        if rate_mm_per_h is None:
            self._loss = None
            return
        self._loss = self._check_field(rate_mm_per_h, "loss rate_mm_per_h", allow_scalar=True)
        if not self._loss.any():
            self._loss = None

    def add_inflow(self, cells, hydrograph) -> int:
        """A point or line inflow: ``cells`` (row, col) share ``hydrograph=(times_s, discharge_m3_per_s)``.

        Discharge is interpolated linearly and is zero outside the given times (one time: constant).
        Returns the inflow's index (for :meth:`set_inflow_hydrograph`).
        """
        rows, cols = self._cells(cells, "inflow cells")
        try:
            times, q = hydrograph
        except (TypeError, ValueError):
            raise ValueError("hydrograph: expected (times_s, discharge_m3_per_s)") from None
        series = TimeSeries(times, q, "inflow hydrograph")
        if series.values.ndim != 1 or (series.values < 0).any():
            raise ValueError("hydrograph: discharge must be a 1-D series of values >= 0 m3/s (use add_pump to extract)")
        distinct = np.unique(rows * self.shape[1] + cols).size == rows.size  # each cell once: np.add.at books all
        self._inflows.append({"rows": rows, "cols": cols, "series": series, "distinct": distinct})
        self._breaks = None
        return len(self._inflows) - 1

    def set_inflow_hydrograph(self, index: int, hydrograph) -> None:
        """Replace the hydrograph of inflow ``index`` (an operated reservoir's release after a gate change).

        The caller keeps the past: the new series must agree with the old one before the current time,
        which this method does not check."""
        if not 0 <= int(index) < len(self._inflows):
            raise ValueError(f"inflow index {index!r}: the model has {len(self._inflows)} inflows")
        times, q = hydrograph
        series = TimeSeries(times, q, "inflow hydrograph")
        if series.values.ndim != 1 or (series.values < 0).any():
            raise ValueError("hydrograph: discharge must be a 1-D series of values >= 0 m3/s")
        self._inflows[int(index)]["series"] = series
        self._breaks = None

    def add_pump(self, cell, capacity_m3_per_s: float, to_cell=None) -> None:
        """A pump at ``cell`` removing up to ``capacity_m3_per_s``; to ``to_cell`` or out of the domain."""
        rows, cols = self._cells(cell, "pump cell")
        if rows.size != 1:
            raise ValueError(f"pump cell: expected one (row, col), got {cell!r}")
        cap = positive_scalar(capacity_m3_per_s, "pump capacity_m3_per_s")
        dst = None
        if to_cell is not None:
            tr, tc = self._cells(to_cell, "pump to_cell")
            if tr.size != 1:
                raise ValueError(f"pump to_cell: expected one (row, col), got {to_cell!r}")
            dst = (int(tr[0]), int(tc[0]))
        self._pumps.append({"cell": (int(rows[0]), int(cols[0])), "capacity": cap, "to": dst, "pumped_m3": 0.0})

    def set_pump_capacity(self, cell, capacity_m3_per_s: float) -> int:
        """Set the capacity of the pumps at ``cell`` (0 switches them off); returns how many."""
        rows, cols = self._cells(cell, "pump cell")
        cap = positive_scalar(capacity_m3_per_s, "pump capacity_m3_per_s")
        n = 0
        for pmp in self._pumps:
            if pmp["cell"] == (int(rows[0]), int(cols[0])):
                pmp["capacity"] = cap
                n += 1
        return n

    def set_boundary(self, edge, kind: str, times_s=None, stage_m=None, cells=None, slope=None) -> None:
        """Boundary condition on a domain edge or on explicit cells.

        ``edge``: "north", "south", "east", "west", "all", or None with ``cells`` (interior cells).
        ``kind``: "wall" (no flow, the default everywhere), "free" (outflow at normal depth for the
        local slope, ``slope`` overrides it), or "stage" (prescribed water level ``stage_m`` [m],
        a scalar or a series at ``times_s``; held beyond its ends).
        With ``edge`` and ``cells``, only the edge faces of those cells are set. With ``cells``
        alone: "stage" holds the cells' water level at the stage, "free" drains them, "wall"
        closes them; the water this adds or removes counts as boundary inflow/outflow.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {sorted(_KINDS)}, got {kind!r}")
        series = None
        if kind == "stage":
            if stage_m is None:
                raise ValueError("stage_m: required for a 'stage' boundary")
            sv = np.atleast_1d(np.asarray(stage_m, dtype=np.float64))
            if not np.isfinite(sv).all():
                raise ValueError(f"stage_m: must be finite, got {stage_m!r}")
            self._fits_dtype(sv, "stage_m")
            if times_s is None:
                if sv.size != 1:
                    raise ValueError("times_s: required when stage_m is a series")
                times_s = [0.0]
            series = TimeSeries(times_s, sv, "stage boundary", outside="hold")
        ny, nx = self.shape
        if edge is None or edge == "cells":
            if cells is None:
                raise ValueError("set_boundary: give an edge or cells")
            rows, cols = self._cells(cells, "boundary cells")
            self._cell_bcs.append({"rows": rows, "cols": cols, "kind": kind, "series": series,
                                   "flat": rows * nx + cols})
            self._max_boundary_depth()
            return
        edges = list(_EDGES) if edge == "all" else [edge]
        for e in edges:
            if e not in _EDGES:
                raise ValueError(f"edge: expected one of {list(_EDGES) + ['all']} or None with cells, got {edge!r}")
        sel_mask = None
        if cells is not None:
            rows, cols = self._cells(cells, "boundary cells")
            sel_mask = np.zeros(self.shape, bool)
            sel_mask[rows, cols] = True
        z = self.terrain.elevation
        for e in edges:
            if e == "west":
                idx, rr, cc, ri, ci = np.arange(ny), np.arange(ny), np.zeros(ny, int), np.arange(ny), np.ones(ny, int)
            elif e == "east":
                idx = ny + np.arange(ny)
                rr, cc = np.arange(ny), np.full(ny, nx - 1)
                ri, ci = rr, np.full(ny, max(nx - 2, 0))
            elif e == "north":
                idx, rr, cc = 2 * ny + np.arange(nx), np.zeros(nx, int), np.arange(nx)
                ri, ci = np.full(nx, min(1, ny - 1)), cc
            else:
                idx, rr, cc = 2 * ny + nx + np.arange(nx), np.full(nx, ny - 1), np.arange(nx)
                ri, ci = np.full(nx, max(ny - 2, 0)), cc
            ci = np.minimum(ci, nx - 1)
            if sel_mask is not None:
                keep = sel_mask[rr, cc]
                idx, rr, cc, ri, ci = idx[keep], rr[keep], cc[keep], ri[keep], ci[keep]
                if idx.size == 0:
                    continue
            self._edge_kind[idx] = _KINDS[kind]
            self._edge_stage = [s for s in self._edge_stage if not np.isin(s["idx"], idx).any()]
            if kind == "free":
                if slope is not None:
                    s = positive_scalar(slope, "slope", allow_zero=False)
                    self._edge_value[idx] = s
                else:
                    zin, zb = z[ri, ci], z[rr, cc]
                    s = np.where(np.isfinite(zin) & np.isfinite(zb), (zin - zb) / self.cell_size, 0.0)
                    self._edge_value[idx] = np.maximum(s, 1e-3)
            elif kind == "stage":
                zb = z[rr, cc]
                zmin = float(np.nanmin(zb)) if np.isfinite(zb).any() else 0.0
                self._edge_stage.append({"idx": idx, "series": series, "zmin": zmin})
                self._edge_value[idx] = series(self._time)
            else:
                self._edge_value[idx] = 0.0

    def add_levee(self, xy_polyline, crest_m: float) -> int:
        """A levee or wall along a polyline ``[(x, y), ...]`` (terrain CRS) with crest elevation ``crest_m``.

        Every face whose centre-to-centre link crosses the polyline gets its crest raised to
        ``crest_m`` (the higher crest wins where levees meet). Returns the number of faces raised.
        """
        self._refuse_subgrid("add_levee")
        pts = np.asarray(xy_polyline, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2 or not np.isfinite(pts).all():
            raise ValueError(f"xy_polyline: expected at least two finite (x, y) points, got shape {pts.shape}")
        crest = float(crest_m)
        if not math.isfinite(crest):
            raise ValueError(f"crest_m: must be finite, got {crest_m!r}")
        ny, nx = self.shape
        x0, y0 = self.terrain.origin
        dx = self.cell_size
        n = 0
        for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
            cmin = int(max(0, math.floor((min(ax, bx) - x0) / dx) - 1))
            cmax = int(min(nx - 1, math.floor((max(ax, bx) - x0) / dx) + 1))
            rmin = int(max(0, math.floor((y0 - max(ay, by)) / dx) - 1))
            rmax = int(min(ny - 1, math.floor((y0 - min(ay, by)) / dx) + 1))
            if cmin > cmax or rmin > rmax:
                continue
            rr, cc = np.meshgrid(np.arange(rmin, rmax + 1), np.arange(cmin, cmax + 1), indexing="ij")
            xc, yc = x0 + (cc + 0.5) * dx, y0 - (rr + 0.5) * dx
            # x faces: link from (r, c-1) to (r, c)
            m = cc >= 1
            hit = _segments_cross(ax, ay, bx, by, xc[m] - dx, yc[m], xc[m], yc[m])
            for r, c in zip(rr[m][hit], cc[m][hit]):
                k = int(r) * (nx + 1) + int(c)
                self._levee_x[k] = max(self._levee_x.get(k, -np.inf), crest)
                n += 1
            # y faces: link from (r-1, c) to (r, c)
            m = rr >= 1
            hit = _segments_cross(ax, ay, bx, by, xc[m], yc[m] + dx, xc[m], yc[m])
            for r, c in zip(rr[m][hit], cc[m][hit]):
                k = int(r) * nx + int(c)
                self._levee_y[k] = max(self._levee_y.get(k, -np.inf), crest)
                n += 1
        self._levee_csr = self._build_levee_csr()
        self._forcing.levees = self._levee_csr
        return n

    def _build_levee_csr(self) -> dict:
        ny, nx = self.shape
        out = {}
        for key, faces, width, nrows in (("x", self._levee_x, nx + 1, ny), ("y", self._levee_y, nx, ny + 1)):
            idx = np.array(sorted(faces), dtype=np.int64)
            crest = np.array([faces[i] for i in idx], dtype=self.dtype)
            rows = idx // width
            ptr = np.zeros(nrows + 1, np.int64)
            np.add.at(ptr, rows + 1, 1)
            out[f"{key}_ptr"] = np.cumsum(ptr).astype(np.int64)
            out[f"{key}_idx"] = idx
            out[f"{key}_crest"] = crest
        return out

    def add_breach(self, xy_polyline, crest_start_m: float, crest_end_m: float, t_start_s: float | None = None,
                   duration_s: float | None = None, *, method: str = "linear", width_m: float | None = None,
                   side_slope: float | None = None, thickness_m: float | None = None, center_m: float | None = None,
                   reservoir_volume_m3: float | None = None, failure_mode: str = "overtopping",
                   start_s: float | None = None, formation_s: float | None = None):
        """A breach: the crest along ``xy_polyline`` (or at one point) lowers from ``crest_start_m``
        to ``crest_end_m`` from ``t_start_s`` over ``duration_s`` (see :mod:`twin.flood.breach`).

        ``method="linear"`` (default): the bed of the cells on the polyline (within ``thickness_m``
        of it, default one cell) falls linearly in time over a bottom ``width_m`` (default: the whole
        polyline) with ``side_slope`` (H:V, default 0). ``method="froehlich2008"``: width, side slope
        and formation time from Froehlich (2008) given ``reservoir_volume_m3`` and ``failure_mode``
        ("overtopping" or "piping"), unless given. Levee faces (``add_levee``) next to the breach
        cells are lowered alike. Works with every solver; water on lowered cells keeps its depth.
        ``start_s``/``formation_s`` are aliases of ``t_start_s``/``duration_s``. Returns the Breach.
        """
        from .breach import make_breach

        self._refuse_subgrid("add_breach")
        if t_start_s is None:
            t_start_s = start_s if start_s is not None else 0.0
        if duration_s is None:
            duration_s = formation_s
        br = make_breach(np.where(self._valid, self._z, np.nan), self.terrain.transform, xy_polyline, crest_start_m,
                         crest_end_m, t_start_s, duration_s, method=method, width_m=width_m, side_slope=side_slope,
                         thickness_m=thickness_m, center_m=center_m, reservoir_volume_m3=reservoir_volume_m3,
                         failure_mode=failure_mode)
        keep = np.isfinite(br.z_original)
        if not keep.any():
            raise ValueError("xy_polyline: the breach touches only nodata/wall cells")
        for name in ("rows", "cols", "along_m", "z_original"):
            setattr(br, name, getattr(br, name)[keep])
        # levee faces touching the breach cells, lowered with the cell elevation next to them
        ny, nx = self.shape
        cell_k = br.rows * nx + br.cols
        faces = []
        for key, table, width in (("x", self._levee_x, nx + 1), ("y", self._levee_y, nx)):
            for k, crest in table.items():
                r, c = divmod(k, width)
                nb = (r * nx + c - 1, r * nx + c) if key == "x" else ((r - 1) * nx + c, r * nx + c)
                pos = [int(np.flatnonzero(cell_k == q)[0]) for q in nb if np.any(cell_k == q)]
                if pos:
                    faces.append((key, k, crest, np.array(pos)))
        br.levee_faces = faces
        self._breaches.append(br)
        self._update_breaches(self._time)
        return br

    def _update_breaches(self, t: float) -> None:
        """Bed (and levee crests) of every breach at time t; called before each sub-step."""
        changed_levee = False
        for br in self._breaches:
            prof = br.profile_at(t)
            self._z[br.rows, br.cols] = np.minimum(br.z_original, prof).astype(self.dtype)
            for key, k, crest, pos in br.levee_faces:
                c = float(min(crest, float(np.min(prof[pos]))))
                table = self._levee_x if key == "x" else self._levee_y
                if table.get(k) != c:
                    table[k] = c
                    changed_levee = True
        if changed_levee and self._levee_csr is not None:
            for key, table in (("x", self._levee_x), ("y", self._levee_y)):
                idx = self._levee_csr[f"{key}_idx"]
                self._levee_csr[f"{key}_crest"][...] = [table[int(i)] for i in idx]

    # ------------------------------------------------------------------ stepping
    def _max_boundary_depth(self) -> float:
        """Deepest water a stage boundary can bring in at the current time (for the time step)."""
        hb = 0.0
        t = self._time
        for s in self._edge_stage:
            hb = max(hb, float(s["series"](t)) - s["zmin"])
        for b in self._cell_bcs:
            if b["kind"] == "stage":
                zc = self.terrain.elevation[b["rows"], b["cols"]]
                hb = max(hb, float(b["series"](t)) - float(np.min(zc)))
        return hb

    def run_one_step(self, dt: float) -> None:
        """Advance exactly ``dt`` seconds with adaptive sub-steps Δt = α·Δx/√(g·h_max)."""
        try:
            dt = float(dt)
        except (TypeError, ValueError):
            raise ValueError(f"dt: expected a number of seconds, got {dt!r}") from None
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt: must be finite and > 0, got {dt!r}")
        self._sync_solver_cells()
        t_start = self._time
        t_stop = t_start + dt
        f = self._forcing
        A = self.cell_area
        acc = self._acc
        breaks = self._breakpoints()
        t0 = t_start
        n_sub = 0
        m_lts = self.local_time_steps
        cands = [m_lts >> k for k in range(7) if m_lts >> k >= 2]  # sub-step ratios tried: m, m/2, .. >= 2
        # each candidate's sub-cycle work in (extra sub-steps per cell, the k whose n_deep(k) counts the cells), one
        # term per level (c_l - c_{l-1}, r / c_{l-1}; the first c_1); the depths counted after each step are those a
        # step of k sub-steps allows, for every k a term needs
        terms = []
        for r in cands:
            lv = [1, *lts_chain(r)]
            terms.append([(lv[i] - (lv[i - 1] if i > 1 else 0), r // lv[i - 1]) for i in range(1, len(lv))])
        ks = sorted({k for tr in terms for _, k in tr}, reverse=True)
        n_valid = max(int(np.count_nonzero(self._valid)), 1)
        sg = cast("SubgridSolver", self._solver)  # (local time steps: subgrid only, checked in __init__)
        while t0 < t_stop:
            remaining = t_stop - t0
            hmax = max(self._hmax, self._max_boundary_depth())
            sub = fast = self._solver.stable_dt(hmax)
            if m_lts > 1:
                # the cells that need it take sub-steps of `fast`, the others one step of r of them: the r of the
                # least estimated cost per unit of time (LTS_CELL_COST)
                counts = sg.depth_counts
                r_lts = 1  # (nothing counted yet: one sub-step for all, which counts)
                if counts is not None and counts.size == len(ks):
                    n_deep = dict(zip(ks, (float(n) for n in counts)))
                    cost = [(n_valid + LTS_CELL_COST * sum(w * n_deep[k] for w, k in tr)) / r
                            for r, tr in zip(cands, terms)]
                    k = int(np.argmin(cost))
                    r_lts = cands[k] if cost[k] < n_valid else 1
                sub = min(r_lts * fast, self._solver.stable_dt(0.0))
            # sub-step cap: NaN-safe (a NaN or zero sub-step is refused too)
            if not (sub > 0.0) or n_sub + remaining / sub > self.max_substeps:
                self._refuse_substeps(dt, remaining, sub, n_sub)
            n_sub += 1
            if sub >= remaining * (1.0 - 1e-12):
                t1 = t_stop
            else:
                if sub > 0.5 * remaining:  # two even steps rather than a long one and a sliver
                    sub = 0.5 * remaining
                t1 = t0 + sub
            # sub-steps end on the forcing's breakpoints, so the mid-point rule is exact
            if breaks.size:
                i = int(np.searchsorted(breaks, t0, side="right"))
                if i < breaks.size and breaks[i] < t1:
                    t1 = float(breaks[i])
            sub = t1 - t0
            tm = 0.5 * (t0 + t1)
            # forcing at the middle of the sub-step
            if self._rain is not None:
                i0, i1, w, active = self._rain.bracket(tm)
                if active:
                    fr = self._rain_frames
                    f.rain0, f.rain1, f.rain_w = fr[i0], fr[i1], w
                    f.rain_scale = sub * MM_PER_H
                else:
                    f.rain0 = f.rain1 = None
            else:
                f.rain0 = f.rain1 = None
            if self._loss is not None:
                f.loss, f.loss_scale = self._loss, sub * MM_PER_H
            else:
                f.loss = None
            for s in self._edge_stage:
                self._edge_value[s["idx"]] = s["series"](tm)
            if self._breaches:
                self._update_breaches(tm)
            lts_step = m_lts > 1 and sub > fast * (1.0 + 1e-9)
            # the next step's choice: the cells deeper than each candidate ratio's threshold (at this `fast`)
            count = None if m_lts == 1 else np.array([self._deep_depth(k * fast) for k in ks])
            if lts_step:
                n_fast = lts_substep_count(min(m_lts, math.ceil(sub / fast * (1.0 - 1e-9))), m_lts)
                hmax = sg.substep(sub, t1, f, lts_substeps=n_fast, lts_deep_depth=self._deep_depth(sub),
                                  lts_sources=self._lts_sources(sub, tm), count_depths=count)
                self.lts_substeps += n_fast
            elif count is not None:
                hmax = sg.substep(sub, t1, f, count_depths=count)
                self.lts_substeps += 1
            else:
                hmax = self._solver.substep(sub, t1, f)
                self.lts_substeps += 1
            sums = self._row_sums.sum(axis=0)
            acc["rain_m3"] += float(sums[0]) * A
            acc["lost_m3"] += float(sums[1]) * A
            acc["inflow_m3"] += float(sums[2]) * self.cell_size * sub
            acc["outflow_m3"] += float(sums[3]) * self.cell_size * sub
            self._time = t1  # for tracked times of the sparse sources below
            hs = self._apply_sparse(sub, tm, inflows=not lts_step)
            if self.subgrid is not None and hs > 0.0 and self._inputs.source_cells is not None:
                hs = self._solver.local_depth_max(*self._wetting_cells())
            hmax = max(hmax, hs)
            self._hmax = hmax
            self._n_steps += 1
            t0 = t1
        self._time = t_stop
        if self.subgrid is not None:
            self._track_fine_max()

    def _refuse_substeps(self, dt: float, remaining: float, sub: float, n_sub: int) -> None:
        """Raises the error of a call that would need more than ``max_substeps`` sub-steps, naming its cause."""
        h = self._solver.h
        r, c = np.unravel_index(int(np.nanargmax(h)) if np.isfinite(h).any() else 0, h.shape)
        est = n_sub + (remaining / sub if sub > 0 else math.inf)
        causes = [f"the deepest water is {float(h[r, c]):.3g} m at cell (row {r}, col {c})"]
        hb = self._max_boundary_depth()
        if hb > 0:
            causes.append(f"a stage boundary brings {hb:.3g} m of water")
        if self._rain is not None and self._rain_frames is not None and self._rain_frames.size:
            causes.append(f"the largest rain rate is {float(np.max(self._rain_frames)):.3g} mm/h")
        raise ValueError(
            f"run_one_step({dt:g} s): stopped after {n_sub} sub-steps at t = {self._time:g} s: the CFL sub-step is "
            f"{sub:.3g} s, so the call would need about {est:.3g} sub-steps, above the limit of "
            f"{self.max_substeps:.3g} per call (FloodModel.max_substeps, estimated from the CFL sub-step every "
            f"sub-step): {'; '.join(causes)}. Check set_depth, the rainfall rates, inflows and boundary stages for "
            f"values far beyond any flood (or raise max_substeps for a long call on a fine grid)"
        )

    def _breakpoints(self) -> np.ndarray:
        if self._breaks is None:
            ts = [np.empty(0)]
            if self._rain is not None:
                ts.append(self._rain.times)
            ts += [inf["series"].times for inf in self._inflows]
            self._breaks = np.unique(np.concatenate(ts))
        return self._breaks

    def _deep_depth(self, step: float) -> float:
        """Local depth above which a cell's CFL sub-step α·Δx/√(g·h) is shorter than ``step``."""
        return (self.alpha * self.cell_size / step) ** 2 / GRAVITY

    def _inflows_at(self, sub: float, tm: float):
        """Each point inflow running at ``tm``: (inflow, discharge, rows, cols, the depth each cell gains in ``sub``)."""
        for inf in self._inflows:
            q = float(inf["series"](tm))
            if q > 0:
                r, c = inf["rows"], inf["cols"]
                yield inf, q, r, c, q * sub / (r.size * self.cell_area)

    def _lts_sources(self, sub: float, tm: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The point inflows of a step with local time steps, for the kernel's sub-cycle (flat cells, the depth each
        gains over the step), booked as inflow here; None without inflows."""
        cells, depth = [], []
        A = self.cell_area
        nx = self.shape[1]
        for _, _, r, c, inc in self._inflows_at(sub, tm):
            cells.append(r.astype(np.int64) * nx + c)
            depth.append(np.full(r.size, inc))
            self._acc["inflow_m3"] += inc * r.size * A
        if not cells:
            return None
        return np.concatenate(cells), np.concatenate(depth)

    def _apply_sparse(self, sub: float, tm: float, inflows: bool = True) -> float:
        """Point inflows (unless a step with local time steps took them), pumps and prescribed-stage cells after
        the kernel; returns their max depth."""
        if not ((self._inflows and inflows) or self._pumps or self._cell_bcs):
            return 0.0
        h = self._solver.h
        A = self.cell_area
        acc = self._acc
        hmax = 0.0
        for inf, q, r, c, depth in self._inflows_at(sub, tm) if inflows else ():
            inc = np.asarray(depth, dtype=self.dtype)
            before = h[r, c].astype(np.float64)
            np.add.at(h, (r, c), inc)
            after = h[r, c].astype(np.float64)
            # book the water actually added (after rounding to the model's dtype)
            acc["inflow_m3"] += float(np.sum(after - before)) * A if inf["distinct"] else q * sub
            self._track_sparse(r, c)
            hmax = max(hmax, float(after.max()))
        for p in self._pumps:
            r, c = p["cell"]
            avail = float(h[r, c])
            want = p["capacity"] * sub / A
            take = min(max(avail, 0.0), want)
            if take <= 0:
                continue
            new = self.dtype.type(avail - take)
            taken = (avail - float(new)) * A
            h[r, c] = new
            p["pumped_m3"] += taken
            if p["to"] is None:
                acc["outflow_m3"] += taken
            else:
                tr, tc = p["to"]
                old = float(h[tr, tc])
                h[tr, tc] = self.dtype.type(old + taken / A)
                # rounding of the receiving cell is booked as inflow/outflow difference
                diff = (float(h[tr, tc]) - old) * A - taken
                acc["inflow_m3"] += diff
                self._track_sparse(np.array([tr]), np.array([tc]))
                hmax = max(hmax, float(h[tr, tc]))
        for b in self._cell_bcs:
            r, c = b["rows"], b["cols"]
            if b["kind"] == "free":
                # drain: only the cells holding water change; the maxima cannot rise, nothing to track
                # (a reservoir's footprint: tens of thousands of cells, nearly all dry each sub-step)
                hv = h.reshape(-1)[b["flat"]]  # one flat gather (4x faster than h[r, c])
                wet = hv != 0
                if wet.any():
                    rw, cw = r[wet], c[wet]
                    d = hv[wet].astype(np.float64) * A
                    h[rw, cw] = 0
                    acc["inflow_m3"] -= float(d[d < 0].sum())
                    acc["outflow_m3"] += float(d[d > 0].sum())
                continue
            before = h[r, c].astype(np.float64)
            if b["kind"] == "stage":
                level = float(b["series"](tm))
                if self.subgrid is not None:  # the mean depth at that level, from the volume tables
                    new = self.subgrid.depth_for_level(level, table=self._solver.rows_table(r, c))
                else:
                    new = np.maximum(level - self.terrain.elevation[r, c], 0.0).astype(self.dtype)
            else:  # wall: closed and dry
                new = np.zeros(r.size, self.dtype)
            h[r, c] = new
            d = (new.astype(np.float64) - before) * A
            acc["inflow_m3"] += float(d[d > 0].sum())
            acc["outflow_m3"] -= float(d[d < 0].sum())
            if b["kind"] == "wall":
                self._solver_close_cells(r, c)
            self._track_sparse(r, c)
            hmax = max(hmax, float(new.max()) if new.size else 0.0)
        return hmax

    def _wetting_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The source cells that can gain water between sub-steps (all but the drained ones), for the
        subgrid CFL depth; cached with the solver's source cell list."""
        src = self._inputs.source_cells
        assert src is not None
        if self._wetting_src is not src:
            drained = [b for b in self._cell_bcs if b["kind"] == "free"]
            if drained:
                ny, nx = self.shape
                d = np.zeros(ny * nx, bool)
                for b in drained:
                    d[b["rows"] * nx + b["cols"]] = True
                keep = ~d[src[0] * nx + src[1]]
                self._wetting = (src[0][keep], src[1][keep])
                for a in self._wetting:
                    a.flags.writeable = False
            else:
                self._wetting = src
            self._wetting_src = src
        return self._wetting

    def _solver_close_cells(self, r, c) -> None:
        if self._z[r, c].min() < _core.FLOOD_WALL_Z:
            self._z[r, c] = _core.FLOOD_WALL_Z

    # ------------------------------------------------------------------ outputs
    @property
    def time(self) -> float:
        return self._time

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def lts_fast_cells(self) -> int:
        """Local time steps: the cells that took sub-steps in the last step (deep cells and their neighbours)."""
        return self._solver.lts_fast_cells() if self.subgrid is not None else 0

    @property
    def depth(self) -> np.ndarray:
        """Water depth [m], ``(ny, nx)`` (a copy; walls 0)."""
        return np.maximum(self._solver.h, 0)

    @property
    def discharge(self) -> np.ndarray:
        """Unit discharge [m2/s] at cell centres, ``(2, ny, nx)``: east and north components."""
        return self._solver.cell_discharge()

    def face_discharge(self):
        """Face unit discharges ``(qx (ny, nx+1) east-positive, qy (ny+1, nx) south-positive)``."""
        return self._solver.face_discharge()

    @property
    def velocity(self) -> np.ndarray:
        """Depth-averaged velocity [m/s] ``(2, ny, nx)`` (east, north); 0 where depth <= 0.01 m."""
        q = self.discharge
        h = self._solver.h
        wet = h > _core.FLOOD_SPEED_DEPTH
        return np.where(wet, q / np.where(wet, h, 1), 0).astype(self.dtype)

    @property
    def speed(self) -> np.ndarray:
        """Depth-averaged speed [m/s] ``(ny, nx)``: the magnitude of :attr:`velocity`."""
        v = self.velocity
        s = np.multiply(v[0], v[0])   # sqrt(u² + v²): speeds are far from overflow (np.hypot costs 4x)
        s += v[1] * v[1]
        return np.sqrt(s, out=s)

    @property
    def max_depth(self) -> np.ndarray:
        return self._maxh.copy()

    @property
    def max_speed(self) -> np.ndarray:
        """Maximum speed [m/s] so far (the inertial kernel tracks its square; the root is taken here)."""
        if getattr(self._solver, "max_speed_squared", False):
            return np.sqrt(self._maxs)
        return self._maxs.copy()

    @property
    def arrival_time(self) -> np.ndarray:
        """Time [s] the depth first exceeded 0.1 m (NaN where it never did)."""
        return self._arr.copy()

    @property
    def elevation(self) -> np.ndarray:
        return self.terrain.elevation

    def volume_balance(self) -> dict:
        """Volumes [m3] since the start and the balance error.

        ``error_m3 = volume − initial − rain − inflow + outflow + lost`` (inflow/outflow include
        the boundaries, point sources and pumps); ``relative_error`` divides by the gross water
        (initial + rain + inflow).
        """
        a = self._acc
        v = self._volume()
        initial = a["initial_m3"] + a["edits_m3"]
        err = v - initial - a["rain_m3"] - a["inflow_m3"] + a["outflow_m3"] + a["lost_m3"]
        gross = initial + a["rain_m3"] + a["inflow_m3"]
        rel = abs(err) / gross if gross > 0 else (0.0 if err == 0 else math.inf)
        return {
            "volume_m3": v,
            "initial_m3": initial,
            "inflow_m3": a["inflow_m3"],
            "outflow_m3": a["outflow_m3"],
            "lost_m3": a["lost_m3"],
            "rain_m3": a["rain_m3"],
            "pumped_m3": float(sum(p["pumped_m3"] for p in self._pumps)),
            "error_m3": err,
            "relative_error": rel,
        }

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The whole dynamic state (arrays copied), for a bit-identical restart with :meth:`set_state`."""
        return {
            "solver": self.solver,
            "dtype": self.dtype.name,
            "shape": tuple(self.shape),
            "solver_state": self._solver.get_state(),
            "max_depth": self._maxh.copy(),
            "max_speed": self._maxs.copy(),
            "arrival_time": self._arr.copy(),
            "time": self._time,
            "n_steps": self._n_steps,
            "lts_substeps": self.lts_substeps,
            "hmax": self._hmax,
            "acc": dict(self._acc),
            "pumped_m3": [p["pumped_m3"] for p in self._pumps],
            "z": self._z.copy(),
        } | ({"fine_max_depth": self._fine_max.copy()} if self._fine_max is not None else {})

    def set_state(self, state: dict) -> None:
        for key, mine in (("solver", self.solver), ("dtype", self.dtype.name), ("shape", tuple(self.shape))):
            if state.get(key) != mine and not (key == "shape" and tuple(state.get(key, ())) == mine):
                raise ValueError(f"state[{key!r}]: {state.get(key)!r} does not match this model's {mine!r}")
        if self.subgrid is not None and "z" in state:  # before anything changes: a refused state changes nothing
            self._solver.check_bed(np.asarray(state["z"]), "state['z']")
        self._sync_solver_cells()
        self._solver.set_state(state["solver_state"])
        self._maxh[...] = state["max_depth"]
        self._maxs[...] = state["max_speed"]
        self._arr[...] = state["arrival_time"]
        self._seg_maxh_min.fill(-np.inf)  # the trackers may have been lowered
        self._seg_maxs_min.fill(-np.inf)
        self._time = float(state["time"])
        self._n_steps = int(state["n_steps"])
        self.lts_substeps = int(state.get("lts_substeps", self._n_steps))
        self._hmax = float(state["hmax"])
        self._acc = dict(state["acc"])
        if len(state.get("pumped_m3", [])) == len(self._pumps):
            for p, v in zip(self._pumps, state["pumped_m3"]):
                p["pumped_m3"] = float(v)
        if "z" in state:
            self._z[...] = state["z"]
        if self.subgrid is not None:
            fm = state.get("fine_max_depth")
            if fm is not None and np.shape(fm) != tuple(self.fine_terrain.shape):
                raise ValueError(f"state['fine_max_depth']: shape {np.shape(fm)} does not match the fine terrain's "
                                 f"{tuple(self.fine_terrain.shape)}")
            self._fine_max = None if fm is None else np.array(fm, dtype=np.float64)
        for s in self._edge_stage:
            self._edge_value[s["idx"]] = s["series"](self._time)

    def depth_window(self, window, out=None) -> np.ndarray:
        """Water depth [m] on ``window = (row_slice, col_slice)`` (a copy, into ``out`` when given)."""
        h = self._solver.h[window]
        if out is None:
            return np.maximum(h, 0).astype(np.float64, copy=False)
        return np.maximum(h, 0, out=out)

    def set_depth_window(self, window, h) -> float:
        """Set the depth [m] on ``window = (row_slice, col_slice)`` (walls stay dry), e.g. an assimilation's
        analysis: the volume change is booked as an edit (:meth:`volume_balance`) and returned [m3]."""
        view = self._solver.h[window]
        a = np.asarray(h, dtype=np.float64)
        if a.shape != view.shape:
            raise ValueError(f"depth: expected shape {view.shape} for the window, got {a.shape}")
        valid = self._valid[window]
        all_valid = bool(valid.all())
        if a.size and not (float(a.min()) >= 0 and float(a.max()) < np.inf):   # NaN fails both (fast path)
            bad = valid & ~(np.isfinite(a) & (a >= 0))
            if bad.any():
                r, c = np.argwhere(bad)[0]
                r0, c0 = window[0].start or 0, window[1].start or 0
                raise ValueError(f"depth: value {float(a[r, c])!r} at (row {r + r0}, col {c + c0}) must be finite "
                                 "and >= 0")
        if self.dtype == np.float32:
            self._fits_dtype(np.where(valid, a, 0.0), "depth")
        before = float(view.sum(dtype=np.float64))
        np.copyto(view, a, casting="unsafe")
        if not all_valid:
            view[~valid] = 0
        delta = (float(view.sum(dtype=np.float64)) - before) * self.cell_area
        self._acc["initial_m3" if self._n_steps == 0 and self._time == 0.0 else "edits_m3"] += delta
        self._hmax = max(self._hmax, float(view.max()) if view.size else 0.0)
        maxh, arr = self._maxh[window], self._arr[window]
        arr[(view > 0.1) & (maxh <= 0.1) & np.isnan(arr)] = self._time
        np.maximum(maxh, view, out=maxh)
        return delta

    def __repr__(self) -> str:
        ny, nx = self.shape
        return (
            f"FloodModel({ny}x{nx}, dx={self.cell_size:g} m, solver={self.solver!r}, dtype={self.dtype.name}, "
            f"t={self._time:g} s, steps={self._n_steps})"
        )


def _segments_cross(ax, ay, bx, by, px, py, qx, qy) -> np.ndarray:
    """Whether segment a–b meets each segment p–q (touching counts)."""

    def orient(x1, y1, x2, y2, x3, y3):
        return np.sign((x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1))

    o1 = orient(ax, ay, bx, by, px, py)
    o2 = orient(ax, ay, bx, by, qx, qy)
    o3 = orient(px, py, qx, qy, ax, ay)
    o4 = orient(px, py, qx, qy, bx, by)
    proper = (o1 * o2 <= 0) & (o3 * o4 <= 0)
    # exclude collinear-but-disjoint pairs
    col = (o1 == 0) & (o2 == 0)
    if np.any(col):
        lo_x, hi_x = np.minimum(px, qx), np.maximum(px, qx)
        lo_y, hi_y = np.minimum(py, qy), np.maximum(py, qy)
        overlap = (max(ax, bx) >= lo_x) & (min(ax, bx) <= hi_x) & (max(ay, by) >= lo_y) & (min(ay, by) <= hi_y)
        proper = np.where(col, overlap, proper)
    return proper
