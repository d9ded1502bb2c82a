"""The flood-solver registry and SolverInputs: solvers are looked up by name and built without a FloodModel."""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain
from twin.flood import solvers as S
from twin.flood.solvers import (
    SOLVERS,
    FVFloodSolver,
    InertialSolver,
    Solver,
    SolverInputs,
    SubstepForcing,
    get_solver,
    register_solver,
)


def test_registry_lists_the_built_in_solvers():
    assert SOLVERS == {"inertial": InertialSolver, "fv": FVFloodSolver, "fv2": S.FV2FloodSolver}
    assert get_solver("fv") is FVFloodSolver
    assert all(issubclass(c, Solver) for c in SOLVERS.values())
    assert [SOLVERS[k].name for k in ("inertial", "fv", "fv2")] == ["inertial", "fv", "fv2"]


def test_unknown_solver_error_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown flood solver 'godunov'; known solvers: fv, fv2, inertial"):
        get_solver("godunov")
    t = Terrain.from_array(np.zeros((4, 4)), 10.0)
    with pytest.raises(ValueError, match=r"unknown flood solver 'FV'; known solvers: fv, fv2, inertial"):
        FloodModel(t, solver="FV")


def test_register_solver_plugs_a_new_solver_into_flood_model(monkeypatch):
    monkeypatch.setattr(S, "SOLVERS", dict(SOLVERS))      # leave the real registry as it was

    class Renamed(InertialSolver):
        """The inertial solver, registered under another name (a plug-in in miniature)."""

    assert register_solver("renamed", Renamed) is Renamed
    assert Renamed.name == "renamed" and S.get_solver("renamed") is Renamed
    m = FloodModel(Terrain.from_array(np.zeros((5, 5)), 10.0), solver="renamed")
    assert isinstance(m._solver, Renamed)
    m.set_rainfall([0.0, 3600.0], [36.0, 36.0])
    m.run_one_step(100.0)
    np.testing.assert_allclose(m.depth, 1e-3, rtol=0, atol=1e-15)

    @register_solver("decorated")
    class Decorated(InertialSolver):
        pass

    assert S.SOLVERS["decorated"] is Decorated
    with pytest.raises(ValueError, match=r"the name 'fv' is taken by twin.flood.solvers.fv.FVFloodSolver"):
        register_solver("fv", Renamed)
    register_solver("fv", Renamed, replace=True)
    assert S.SOLVERS["fv"] is Renamed and FVFloodSolver.name == "fv"
    with pytest.raises(TypeError, match="expected a subclass of twin.flood.solvers.Solver"):
        register_solver("dict", dict)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        register_solver("", Renamed)


def test_solver_takes_solver_inputs_not_a_model():
    with pytest.raises(TypeError, match="expected a twin.flood.solvers.SolverInputs, got FloodModel"):
        InertialSolver(FloodModel(Terrain.from_array(np.zeros((3, 3)), 10.0)))


def _inputs(z, dtype, manning=0.03):
    ny, nx = z.shape
    zz = np.ascontiguousarray(z, dtype)
    return SolverInputs(z=zz, valid=np.ones(z.shape, bool), manning=np.array([manning], dtype), cell_size=10.0,
                        dtype=np.dtype(dtype), edge_kind=np.zeros(2 * ny + 2 * nx, np.uint8),
                        edge_value=np.zeros(2 * ny + 2 * nx, dtype), threads=1)


@pytest.mark.parametrize("solver", ["inertial", "fv", "fv2"])
def test_a_solver_built_from_inputs_alone_matches_the_model_bit_for_bit(solver):
    """The solver needs nothing but SolverInputs: stepped by hand, it gives FloodModel's depths exactly."""
    n = 24
    yy, xx = np.mgrid[0:n, 0:n]
    z = 0.2 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    h0 = np.where(np.hypot(yy - 12, xx - 8) < 5, 1.5, 0.0)
    m = FloodModel(Terrain.from_array(z, 10.0), manning=0.03, solver=solver, threads=1)
    m.set_depth(h0)
    m.run_one_step(60.0)

    inp = _inputs(z, "float64")
    s = get_solver(solver)(inp)
    assert not hasattr(s, "model")
    s.h[...] = h0
    f = SubstepForcing(edge_kind=inp.edge_kind, edge_value=inp.edge_value, max_depth=h0.copy(),
                       max_speed=np.zeros((n, n)), arrival_time=np.where(h0 > 0.1, 0.0, np.nan),
                       row_sums=np.zeros_like(m._row_sums))
    t, hmax, steps = 0.0, float(h0.max()), 0
    while t < 60.0:
        dt = s.stable_dt(hmax)                     # the model's sub-step rule (see FloodModel.run_one_step)
        if dt >= (60.0 - t) * (1.0 - 1e-12):
            t1 = 60.0
        else:
            t1 = t + (0.5 * (60.0 - t) if dt > 0.5 * (60.0 - t) else dt)
        hmax = s.substep(t1 - t, t1, f)
        t, steps = t1, steps + 1
    assert steps == m.n_steps > 3
    assert np.array_equal(s.h, m._solver.h)
    assert np.array_equal(f.max_depth, m.max_depth)


def test_solver_inputs_share_the_models_arrays():
    """FloodModel hands the solver its own arrays; walls, breaches and edge values reach it in place."""
    z = np.zeros((6, 6))
    z[0, 0] = np.nan
    m = FloodModel(Terrain.from_array(z, 10.0), solver="fv")
    inp = m._solver.inputs
    assert isinstance(inp, SolverInputs) and inp.shape == (6, 6) and inp.dtype == np.float64
    assert inp.z is m._z and inp.edge_kind is m._edge_kind and inp.edge_value is m._edge_value
    assert m._solver.core.z is m._z
    assert inp.edited_cells is None and inp.source_cells is None
    m.add_pump((2, 2), 0.1)
    m.set_boundary(None, "stage", stage_m=0.5, cells=[(4, 4), (4, 5)])
    m.run_one_step(1.0)                                      # the model syncs the cells before stepping
    assert [a.tolist() for a in inp.edited_cells] == [[2, 4, 4], [2, 4, 5]]
    edited, source = inp.edited_cells, inp.source_cells
    m.run_one_step(1.0)
    assert inp.edited_cells is edited and inp.source_cells is source     # unchanged lists: same tuples
    m.add_inflow([(1, 3)], hydrograph=([0.0], [1.0]))
    m.run_one_step(1.0)
    assert inp.edited_cells is edited                       # inflows add water: not an "edited" cell
    assert [a.tolist() for a in inp.source_cells] == [[2, 4, 4, 1], [2, 4, 5, 3]]
    m.set_boundary("west", "free")
    assert inp.edge_kind[:6].tolist() == [1] * 6


def test_old_import_paths_still_work():
    import twin.flood.fv as old
    from twin.flood.fv import FVSolver, reservoir_fill  # noqa: F401

    assert old is S.fv and FVSolver is S.fv.FVSolver
