"""The solver contract: what :class:`twin.flood.FloodModel` hands a flood solver, and what it calls.

A solver owns only the hydrodynamic state and its update; :class:`~twin.flood.FloodModel` owns forcing,
boundaries, structures, tracked outputs and the volume book-keeping, and calls the solver once per
sub-step. The model builds one :class:`SolverInputs` (grid, bed, roughness, edge tables, the cells it
edits between sub-steps, numerics) and hands it to the solver class; a solver never reads the model.
A new solver subclasses :class:`Solver` and is registered by name (:func:`twin.flood.solvers.register_solver`).

The contract a solver fulfils (all arrays in ``inputs.dtype``, ``(ny, nx)`` C-contiguous):

- ``__init__(inputs)``: allocate the state; keep ``inputs`` (its arrays are shared with the model,
  which edits them in place: walls and breaches in ``z``, edge values every sub-step; the edited
  and source cells are new tuples when structures were added, checked by identity).
- ``h``: the current depth array; the model edits it in place between sub-steps (point sources,
  pumps, prescribed-stage cells), so a solver must read it afresh each sub-step.
- ``stable_dt(hmax)``: the largest stable sub-step for the current state.
- ``substep(dt, t_end, f)``: advance by ``dt`` with the forcing ``f`` (:class:`SubstepForcing`),
  updating ``f.max_depth``/``f.max_speed`` (speed, or its square when the class sets
  ``max_speed_squared``)/``f.arrival_time`` and filling ``f.row_sums``
  (per row: rain depth, lost depth, boundary inflow and outflow in m2/s·(1/dt)); return the
  maximum depth.
- ``cell_discharge()`` -> ``(2, ny, nx)`` unit discharge [m2/s], east and north components;
  ``face_discharge()`` -> ``(qx (ny, nx+1) east-positive, qy (ny+1, nx) south-positive)``.
- ``get_state()`` / ``set_state(d)``: the solver's arrays, copied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Solver", "SolverInputs", "SubstepForcing"]


@dataclass(eq=False)
class SolverInputs:
    """Everything a solver is built from; :class:`~twin.flood.FloodModel` fills it and keeps it current.

    Arrays are the model's own (shared, not copied) and in ``dtype`` unless said otherwise.
    """

    #: (ny, nx) bed elevation [m]; nodata cells hold ``_core.FLOOD_WALL_Z``; breaches lower it in place
    z: np.ndarray
    #: (ny, nx) bool, False where the terrain has no data (walls)
    valid: np.ndarray
    #: Manning n [s m^-1/3]: shape (1,) (uniform) or (ny, nx); replaced, never edited, when it changes
    manning: np.ndarray
    #: cell size [m] (square cells)
    cell_size: float
    #: float32 or float64, the dtype of every state array
    dtype: np.dtype
    #: (2 ny + 2 nx,) uint8 edge-face kinds, faces ordered west, east, north, south: 0 wall, 1 free, 2 stage
    edge_kind: np.ndarray
    #: (2 ny + 2 nx,) free: outflow slope; stage: water level [m] (the model updates it every sub-step)
    edge_value: np.ndarray
    #: CFL factor in (0, 1]
    alpha: float = 0.5
    #: inertial-scheme weighting theta in [0, 1]
    theta: float = 0.8
    #: OpenMP threads, None for the runtime default
    threads: int | None = None
    #: (rows, cols) int64 of the cells where the model removes or sets water between sub-steps (pumps,
    #: then prescribed cells), or None; before each step the model replaces the tuple if the list changed
    edited_cells: tuple[np.ndarray, np.ndarray] | None = None
    #: (rows, cols) int64 of every cell the model changes between sub-steps (edited cells, point and line
    #: inflows, breaches), or None; before each step the model replaces the tuple if the list changed
    source_cells: tuple[np.ndarray, np.ndarray] | None = None
    #: subgrid tables (:class:`twin.flood.subgrid.SubgridTables`) when the model solves on a coarse grid
    #: with subgrid topography (``FloodModel(..., subgrid=...)``), else None
    subgrid: Any = None
    #: subgrid face level weight in (0, 1] (``FloodModel(..., subgrid_face_weight=...)``; see the kernel)
    subgrid_face_weight: float = 0.3

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape


@dataclass
class SubstepForcing:
    """What the model hands a solver for one sub-step (arrays are reused, never reallocated)."""

    rain0: Any = None
    rain1: Any = None
    rain_w: float = 0.0
    rain_scale: float = 0.0
    loss: Any = None
    loss_scale: float = 0.0
    edge_kind: Any = None
    edge_value: Any = None
    #: levee and wall crests on faces, or None: ``x_ptr, x_idx, x_crest`` (x faces, per row) and the same
    #: for y faces; the model replaces the dict when levees are added and lowers crests in place (breaches)
    levees: dict | None = None
    max_depth: Any = None
    max_speed: Any = None
    arrival_time: Any = None
    row_sums: Any = None
    #: optional per-row-segment lower bounds of the trackers' minima (see FloodModel), kept by kernels
    #: that skip untouched segments; a solver that ignores them must leave them alone
    seg_max_depth_min: Any = None
    seg_max_speed_min: Any = None


class Solver:
    """Base class of the flood solvers (see the module docstring for the contract)."""

    name = "base"
    #: True when the kernel tracks the maximum of speed squared in ``f.max_speed`` (the model
    #: takes the root at output); False when it tracks the speed itself.
    max_speed_squared = False

    def __init__(self, inputs: SolverInputs) -> None:
        if not isinstance(inputs, SolverInputs):
            raise TypeError(f"{type(self).__name__}: expected a twin.flood.solvers.SolverInputs, "
                            f"got {type(inputs).__name__}")
        self.inputs = inputs

    @property
    def h(self) -> np.ndarray:
        raise NotImplementedError

    def stable_dt(self, hmax: float) -> float:
        raise NotImplementedError

    def substep(self, dt: float, t_end: float, f: SubstepForcing) -> float:
        raise NotImplementedError

    def cell_discharge(self) -> np.ndarray:
        raise NotImplementedError

    def face_discharge(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, d: dict) -> None:
        raise NotImplementedError
