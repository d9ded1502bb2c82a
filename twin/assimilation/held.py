"""Forcing held from an observation's time on (a gauge's stage, a rated discharge), shared by the
live twin's model and the EnKF members wherever they run (this process or a Dask worker).

Lives below both ``twin.sensors.assimilation`` and ``twin.assimilation.dask_members`` so neither
imports the other.
"""
from __future__ import annotations

import numpy as np


def hold_stage(fm, held_map: dict, key: str, edge, cells, t_s: float, stage: float) -> None:
    """A stage held from ``t_s`` on. On an edge, FloodModel.set_boundary replaces the previous
    stage of those faces; on interior cells it would add a boundary per call, so the first call
    registers a one-point series (kept in ``held_map[key]``) and later calls overwrite its value in place."""
    if cells is None:
        fm.set_boundary(edge, "stage", times_s=np.array([t_s]), stage_m=np.array([stage]))
        return
    held = held_map.get(key)
    if held is None:
        arr = np.array([stage], dtype=np.float64)
        fm.set_boundary(None, "stage", times_s=np.array([0.0]), stage_m=arr, cells=cells)
        held_map[key] = arr
    else:
        held[0] = stage


def hold_inflow(fm, held_map: dict, key: str, cells, t_s: float, q: float) -> None:
    """Discharge held from ``t_s`` on: ``add_inflow`` once with a one-point hydrograph (a constant
    from then on, kept in ``held_map[key]``), later values written into that array in place (FloodModel
    keeps float64 arrays without copying; tests/sensors/test_nudging_real.py checks it)."""
    held = held_map.get(key)
    if held is None:
        arr = np.array([q], dtype=np.float64)
        fm.add_inflow(cells, hydrograph=(np.array([t_s]), arr))
        held_map[key] = arr
    else:
        held[0] = q


def relink_held(src, dst, held_src: dict, held_dst: dict) -> None:
    """Into ``held_dst``: the copies inside ``dst`` (a deep copy of ``src``) of ``src``'s held arrays
    ``held_src`` (found through deepcopy's identity of the boundary/inflow series), so later values
    reach the copy too."""
    for key, arr in held_src.items():
        for s_inf, d_inf in zip(src._inflows, dst._inflows):
            if s_inf["series"].values is arr:
                held_dst[key] = d_inf["series"].values
        for s_bc, d_bc in zip(src._cell_bcs, dst._cell_bcs):
            if s_bc["series"] is not None and s_bc["series"].values is arr:
                held_dst[key] = d_bc["series"].values
