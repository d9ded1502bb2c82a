"""The subgrid local-inertial solver: ``FloodModel(fine_terrain, subgrid=3)`` (see :mod:`twin.flood.subgrid`).

The state is the regular inertial solver's on the coarse grid, with ``h`` the mean depth (volume /
coarse cell area); the kernel is ``twin._core.flood_subgrid_step`` (``core_cpp/flood_subgrid.cpp``),
which reads the water level of each cell from its volume table and the face cross-section and
conveyance depth from the face tables. The solver also tracks the highest water level of each
cell (``max_level``), from which the model downscales the maximum depth onto the fine DEM.
"""
from __future__ import annotations

import math

import numpy as np

from twin import _core
from twin.constants import GRAVITY
from twin.flood.solvers.base import SolverInputs, SubstepForcing
from twin.flood.solvers.inertial import InertialSolver

__all__ = ["SubgridSolver", "Q_SAMPLE_S"]

#: model seconds between two samples of the cells' unit discharge for the maximum-depth map's films
Q_SAMPLE_S = 60.0


class SubgridSolver(InertialSolver):
    """Local inertial on subgrid tables (float64), double-buffered like :class:`InertialSolver`."""

    name = "inertial"
    max_speed_squared = True

    def __init__(self, inputs: SolverInputs) -> None:
        if inputs.subgrid is None:
            raise ValueError("SubgridSolver: inputs.subgrid must hold the SubgridTables")
        if inputs.dtype != np.float64:
            raise ValueError(f"subgrid: the subgrid kernel is float64 only, got dtype {inputs.dtype}")
        super().__init__(inputs)
        self.tables = inputs.subgrid
        t = self.tables
        _core.flood_subgrid_check_tables(t.cells, t.faces_x, t.faces_y)  # once; the kernel flags what it reads
        self.check_bed(inputs.z, "elevation")
        self.max_level = np.where(self.tables.valid, self.tables.z_min, -np.inf).astype(np.float64)
        # the kernel's level cache: the level of each cell's last depth (NaN depth: nothing cached yet)
        self._level_cache = np.zeros(inputs.shape, np.float64)
        self._depth_cache = np.full(inputs.shape, np.nan, np.float64)
        # the volume-table segment of each cell's last level: where the kernel's next inversion starts
        self._level_segment = np.zeros(inputs.shape, np.int32)
        #: each cell's unit discharge [m²/s] when its mean depth was highest (the sheet-flow film of the
        #: maximum-depth map: the state of the cell at its peak), sampled every Q_SAMPLE_S of model time
        self.peak_unit_discharge = np.zeros(inputs.shape, np.float64)
        self._peak_depth = np.zeros(inputs.shape, np.float64)
        self._q_sampled_at = -math.inf
        self._rows_tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # local time steps: the kernel's per-cell bits (fast 1, deep 2, the depth level << 2)
        self._lts_mask: np.ndarray | None = None
        self._depth_counts: np.ndarray | None = None  # per row, cells deeper than each of the counted depths
        self.depth_counts: np.ndarray | None = None

    def check_bed(self, z: np.ndarray, name: str) -> None:
        """Refuse a bed that is not the tables' lowest pixel on every cell that is not a wall: the kernel takes a
        dry cell's level from the bed, so another bed would give dry cells a level no table holds."""
        t = self.tables
        if np.shape(z) != t.shape:
            raise ValueError(f"{name}: shape {np.shape(z)} does not match the subgrid tables' {t.shape}")
        wall = z >= _core.FLOOD_WALL_Z
        bad = ~wall & ~(t.valid & (z == t.z_min))
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{name}: the bed of cell (row {r}, col {c}) is {float(z[r, c])!r} m, but its subgrid "
                             f"table's lowest pixel is {float(t.z_min[r, c])!r} m ({int(bad.sum())} cells differ): "
                             f"a subgrid bed is the tables' z_min or a wall")

    def stable_dt(self, hmax: float) -> float:
        """CFL sub-step from the largest local depth (level minus the cell's lowest pixel). Its floor is the
        regular depth threshold times ``factor**2``: a mean depth of 1 mm can stand ``factor**2`` mm deep in a
        cell's lowest pixel, and with this floor the first sub-step of a dry start is the fine solve's (the
        regular floor let the first sub-step on a dry grid pour ``factor`` times the fine solve's rain into
        the lowest pixels, which the tracked maximum level kept: Đà Nẵng CSI 0.69 instead of 0.82)."""
        m = self.inputs
        h = max(hmax, _core.FLOOD_DEPTH_THRESHOLD * self.tables.factor ** 2)
        return m.alpha * m.cell_size / math.sqrt(GRAVITY * h)

    def substep(self, dt: float, t_end: float, f: SubstepForcing, lts_substeps: int = 1,
                lts_deep_depth: float = math.inf, lts_sources: tuple | None = None,
                count_depths: np.ndarray | None = None) -> float:
        """One step of ``dt``; with ``lts_substeps`` m >= 2, local time steps on the levels m, m/2, .. (while even):
        a cell whose local depth exceeds c^2 ``lts_deep_depth`` for the sub-step counts c below a level's, or whose
        neighbour's does, takes that level's sub-steps of dt / c_l (docs/design/subgrid-local-time-steps.md)."""
        m = self.inputs
        t = self.tables
        c, n = self._cur, 1 - self._cur
        if lts_substeps > 1 and self._lts_mask is None:
            self._lts_mask = np.zeros(m.shape, np.uint8)
        counts = None
        if count_depths is not None:
            counts = self._depth_counts
            if counts is None or counts.shape[1] != count_depths.size:
                counts = self._depth_counts = np.zeros((m.shape[0], count_depths.size), np.float64)
        hmax = _core.flood_subgrid_step(
            m.z, self._h[c], self._qx[c], self._qy[c], self._h[n], self._qx[n], self._qy[n],
            t.cells, t.faces_x, t.faces_y, m.manning, f.edge_kind, f.edge_value,
            f.max_depth, f.max_speed, f.arrival_time, self.max_level, f.row_sums,
            dx=m.cell_size, dt=dt, theta=m.theta, t_end=t_end,
            rain0=f.rain0, rain1=f.rain1, rain_w=f.rain_w, rain_scale=f.rain_scale,
            loss=f.loss, loss_scale=f.loss_scale, threads=m.threads or 0,
            level_cache=self._level_cache, depth_cache=self._depth_cache, level_segment=self._level_segment,
            face_weight=m.subgrid_face_weight if t.factor > 1 else 1.0,  # one pixel per cell: nothing pools
            lts_mask=self._lts_mask if lts_substeps > 1 else None, lts_substeps=lts_substeps,
            lts_deep_depth=lts_deep_depth, lts_sources=None if lts_sources is None else lts_sources[0],
            lts_source_depth=None if lts_sources is None else lts_sources[1],
            count_depths=count_depths, depth_counts=counts,
        )  # fmt: skip
        #: the cells whose local depth exceeds each of ``count_depths`` after this step (None: not counted)
        self.depth_counts = None if counts is None else counts.sum(axis=0)
        self._cur = n
        if t_end >= self._q_sampled_at + Q_SAMPLE_S:
            self.sample_peak()
            self._q_sampled_at = t_end
        return hmax

    def lts_fast_cells(self) -> int:
        """The fast cells (deep cells and their neighbours) of the last step with local time steps."""
        return 0 if self._lts_mask is None else int(np.count_nonzero(self._lts_mask & 1))

    def sample_peak(self) -> None:
        """Where a cell's mean depth is at least its highest sampled so far, keep its unit discharge now."""
        h = self.h
        up = h >= self._peak_depth
        np.copyto(self._peak_depth, h, where=up)
        np.copyto(self.peak_unit_discharge, self.unit_discharge(), where=up)

    def unit_discharge(self) -> np.ndarray:
        """Each cell's unit discharge [m²/s]: the magnitude of the mean of its two x faces' and its two y
        faces' discharges per unit width."""
        qx, qy = self.qx, self.qy
        # sqrt(u² + v²) in place: np.hypot's overflow care costs 4x as much here, and unit discharges
        # stay many orders of magnitude from overflow (an infinite or NaN one stays so)
        u = qx[:, :-1] + qx[:, 1:]
        u *= 0.5
        v = qy[:-1] + qy[1:]
        v *= 0.5
        np.multiply(u, u, out=u)
        np.multiply(v, v, out=v)
        u += v
        return np.sqrt(u, out=u)

    def level(self) -> np.ndarray:
        """Water level [m] of each coarse cell (NaN on walls; a dry cell's level is its lowest pixel).

        The kernel leaves the level of every depth it wrote in its level cache (the same formula, the same
        bits as :meth:`SubgridTables.level_for_depth`); only the cells whose depth changed since (inflows,
        stage and drained cells, edits) or that the kernel saw as walls are inverted here: ~0.15 s on the
        748,000 cells of the coupled Tam Kỳ grid otherwise, once per coupling step."""
        h = np.maximum(self.h, 0.0)
        valid = self.tables.valid
        lc = self._level_cache
        lev = np.where(valid, lc, np.nan)
        stale = valid & ~((self._depth_cache == h) & np.isfinite(lc))
        if stale.any():
            r, c = np.nonzero(stale)
            lev[r, c] = self.tables.level_for_depth(h[r, c], r, c)
        return lev

    def local_depth_max(self, rows=None, cols=None) -> float:
        """Largest local depth (level minus the cell's lowest pixel), over all cells or the given ones."""
        t = self.tables
        if rows is None:
            h = np.maximum(self.h, 0.0)
            lev, zmin = t.level_for_depth(h), t.z_min
        else:
            h = np.maximum(self.h[rows, cols], 0.0)
            tab = self.rows_table(rows, cols)
            lev, zmin = t.level_for_depth(h, table=tab), tab[:, 0]
        d = np.where(h > 0, lev - zmin, 0.0)
        return float(np.max(d)) if d.size else 0.0

    def track_levels(self, rows=None, cols=None) -> None:
        """Raise ``max_level`` to the current level (after the model edited the depths)."""
        if rows is None:
            lev = self.level()
            np.maximum(self.max_level, np.where(np.isfinite(lev), lev, -np.inf), out=self.max_level)
            return
        lev = self.tables.level_for_depth(np.maximum(self.h[rows, cols], 0.0), table=self.rows_table(rows, cols))
        lev = np.where(np.isfinite(lev), lev, -np.inf)
        np.maximum.at(self.max_level, (rows, cols), lev)

    def rows_table(self, rows, cols) -> np.ndarray:
        """The cell tables of cells ``(rows, cols)`` (``tables.cells[rows, cols]``), kept for read-only index
        arrays (the model's inflow, boundary and pump cells: looked up every sub-step) by identity."""
        if rows.flags.writeable or cols.flags.writeable or not (rows.flags.owndata and cols.flags.owndata):
            return self.tables.cells[rows, cols]  # (a read-only view may have a writeable base)
        memo = self._rows_tables
        hit = memo.get(id(rows))
        if hit is not None and hit[0] is rows and hit[1] is cols:
            return hit[2]
        if len(memo) >= 64:
            memo.clear()
        tab = self.tables.cells[rows, cols]
        memo[id(rows)] = (rows, cols, tab)  # holds the arrays: their ids are not reused while kept
        return tab

    def get_state(self) -> dict:
        return super().get_state() | {"max_level": self.max_level.copy(),
                                      "peak_unit_discharge": self.peak_unit_discharge.copy(),
                                      "peak_depth": self._peak_depth.copy(), "q_sampled_at": self._q_sampled_at} | (
            {} if self.depth_counts is None else {"depth_counts": self.depth_counts.copy()})

    def set_state(self, d: dict) -> None:
        super().set_state(d)
        if "max_level" in d:
            self.max_level[...] = d["max_level"]
        if "peak_unit_discharge" in d:
            self.peak_unit_discharge[...] = d["peak_unit_discharge"]
            self._peak_depth[...] = d["peak_depth"]
            self._q_sampled_at = float(d["q_sampled_at"])
        # local time steps: the counts the next step's choice reads (absent: nothing counted yet)
        self.depth_counts = np.array(d["depth_counts"], np.float64) if "depth_counts" in d else None
