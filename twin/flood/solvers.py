"""Flood solvers: the numerical core behind :class:`twin.flood.FloodModel`.

A solver owns only the hydrodynamic state and its update; :class:`FloodModel` owns forcing,
boundaries, structures, tracked outputs and the volume book-keeping, and calls the solver once
per sub-step. A second solver plugs in by subclassing :class:`Solver` and registering it::

    @register_solver("fv")
    class FVSolver(Solver): ...

The contract a solver fulfils (all arrays in the model's dtype, ``(ny, nx)`` C-contiguous):

- ``__init__(model)``: allocate the state from ``model._z`` (walls at ``FLOOD_WALL_Z``),
  ``model._manning`` (1 value or per cell), ``model.dtype``, ``model.threads``, ``model.alpha``.
- ``h``: the current depth array; the model edits it in place between sub-steps (point sources,
  pumps, prescribed-stage cells), so a solver must read it afresh each sub-step.
- ``stable_dt(hmax)``: the largest stable sub-step for the current state.
- ``substep(dt, t_end, f)``: advance by ``dt`` with the forcing ``f`` (:class:`SubstepForcing`),
  updating ``f.max_depth``/``f.max_speed`` (speed, or its square when the class sets
  ``max_speed_squared``)/``f.arrival_time`` and filling ``f.row_sums``
  (per row: rain depth, lost depth, boundary inflow and outflow in m2/s·(1/dt)); return the
  maximum depth.
- ``cell_discharge()`` -> ``(2, ny, nx)`` unit discharge [m2/s], east and north components.
- ``get_state()`` / ``set_state(d)``: the solver's arrays, copied.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.constants import GRAVITY

from .. import _core

__all__ = ["Solver", "InertialSolver", "SubstepForcing", "register_solver", "get_solver", "SOLVERS"]

SOLVERS: dict[str, type] = {}


def register_solver(name: str):
    def deco(cls):
        SOLVERS[name] = cls
        cls.name = name
        return cls

    return deco


def get_solver(name: str) -> type:
    if name not in SOLVERS and name == "fv":
        try:  # the finite-volume solver lives in its own module once it exists
            import importlib

            importlib.import_module("twin.flood.fv")
        except ImportError:
            pass
    if name not in SOLVERS:
        raise ValueError(f"solver: unknown flood solver {name!r}; available: {sorted(SOLVERS)}")
    return SOLVERS[name]


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
    name = "base"
    #: True when the kernel tracks the maximum of speed squared in ``f.max_speed`` (the model
    #: takes the root at output); False when it tracks the speed itself.
    max_speed_squared = False

    def __init__(self, model) -> None:
        self.model = model

    def stable_dt(self, hmax: float) -> float:
        raise NotImplementedError

    def substep(self, dt: float, t_end: float, f: SubstepForcing) -> float:
        raise NotImplementedError

    def cell_discharge(self) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, d: dict) -> None:
        raise NotImplementedError


@register_solver("inertial")
class InertialSolver(Solver):
    """Local inertial (Bates 2010, de Almeida 2012) in ``core_cpp/flood_inertial.hpp``, double-buffered."""

    max_speed_squared = True

    def __init__(self, model) -> None:
        super().__init__(model)
        ny, nx = model.shape
        dt = model.dtype
        self._h = [np.zeros((ny, nx), dt), np.zeros((ny, nx), dt)]
        self._qx = [np.zeros((ny, nx + 1), dt), np.zeros((ny, nx + 1), dt)]
        self._qy = [np.zeros((ny + 1, nx), dt), np.zeros((ny + 1, nx), dt)]
        self._cur = 0

    @property
    def h(self) -> np.ndarray:
        return self._h[self._cur]

    @property
    def qx(self) -> np.ndarray:
        return self._qx[self._cur]

    @property
    def qy(self) -> np.ndarray:
        return self._qy[self._cur]

    def stable_dt(self, hmax: float) -> float:
        m = self.model
        h = max(hmax, _core.FLOOD_DEPTH_THRESHOLD)
        return m.alpha * m.cell_size / math.sqrt(GRAVITY * h)

    def substep(self, dt: float, t_end: float, f: SubstepForcing) -> float:
        m = self.model
        c, n = self._cur, 1 - self._cur
        lev = f.levees or {}
        hmax = _core.flood_inertial_step(
            m._z, self._h[c], self._qx[c], self._qy[c], self._h[n], self._qx[n], self._qy[n],
            m._manning, f.edge_kind, f.edge_value, f.max_depth, f.max_speed, f.arrival_time, f.row_sums,
            dx=m.cell_size, dt=dt, theta=m.theta, t_end=t_end,
            rain0=f.rain0, rain1=f.rain1, rain_w=f.rain_w, rain_scale=f.rain_scale,
            loss=f.loss, loss_scale=f.loss_scale,
            lev_x_ptr=lev.get("x_ptr"), lev_x_idx=lev.get("x_idx"), lev_x_crest=lev.get("x_crest"),
            lev_y_ptr=lev.get("y_ptr"), lev_y_idx=lev.get("y_idx"), lev_y_crest=lev.get("y_crest"),
            threads=m.threads or 0,
            seg_max_depth_min=f.seg_max_depth_min, seg_max_speed_min=f.seg_max_speed_min,
        )  # fmt: skip
        self._cur = n
        return hmax

    def face_discharge(self) -> tuple[np.ndarray, np.ndarray]:
        """Face unit discharges: ``qx`` (ny, nx+1) positive east, ``qy`` (ny+1, nx) positive south."""
        return self.qx.copy(), self.qy.copy()

    def cell_discharge(self) -> np.ndarray:
        qx, qy = self.qx, self.qy
        out = np.empty((2,) + self.h.shape, dtype=self.h.dtype)
        np.add(qx[:, :-1], qx[:, 1:], out=out[0])
        out[0] *= 0.5
        np.add(qy[:-1, :], qy[1:, :], out=out[1])
        out[1] *= -0.5  # rows run south: north-positive component
        return out

    def get_state(self) -> dict:
        return {"h": self.h.copy(), "qx": self.qx.copy(), "qy": self.qy.copy()}

    def set_state(self, d: dict) -> None:
        for key, bufs in (("h", self._h), ("qx", self._qx), ("qy", self._qy)):
            a = np.asarray(d[key])
            if a.shape != bufs[0].shape or a.dtype != bufs[0].dtype:
                raise ValueError(
                    f"state[{key!r}]: expected shape {bufs[0].shape} dtype {bufs[0].dtype}, got {a.shape} {a.dtype}"
                )
        self._cur = 0
        self._h[0][...] = d["h"]
        self._qx[0][...] = d["qx"]
        self._qy[0][...] = d["qy"]
