"""The local inertial solver (``FloodModel(..., solver="inertial")``, the default).

Bates et al. (2010) with the de Almeida et al. (2012) theta weighting; the kernel is
``twin._core.flood_inertial_step`` (``core_cpp/flood_inertial.hpp``), double-buffered here.
"""
from __future__ import annotations

import math

import numpy as np

from twin import _core
from twin.constants import GRAVITY
from twin.flood.solvers.base import Solver, SolverInputs, SubstepForcing

__all__ = ["InertialSolver"]


class InertialSolver(Solver):
    """Local inertial (Bates 2010, de Almeida 2012) in ``core_cpp/flood_inertial.hpp``, double-buffered."""

    name = "inertial"
    max_speed_squared = True

    def __init__(self, inputs: SolverInputs) -> None:
        super().__init__(inputs)
        ny, nx = inputs.shape
        dt = inputs.dtype
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
        m = self.inputs
        h = max(hmax, _core.FLOOD_DEPTH_THRESHOLD)
        return m.alpha * m.cell_size / math.sqrt(GRAVITY * h)

    def substep(self, dt: float, t_end: float, f: SubstepForcing) -> float:
        m = self.inputs
        c, n = self._cur, 1 - self._cur
        lev = f.levees or {}
        hmax = _core.flood_inertial_step(
            m.z, self._h[c], self._qx[c], self._qy[c], self._h[n], self._qx[n], self._qy[n],
            m.manning, f.edge_kind, f.edge_value, f.max_depth, f.max_speed, f.arrival_time, f.row_sums,
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
