"""Flood solvers: the numerical core behind :class:`twin.flood.FloodModel`, and their registry.

``FloodModel(terrain, solver=NAME)`` looks ``NAME`` up here. The built-in solvers:

- ``"inertial"`` (default): local inertial, :class:`~twin.flood.solvers.inertial.InertialSolver`;
- ``"fv"``: first-order Godunov finite volumes (HLLC, hydrostatic reconstruction),
  :class:`~twin.flood.solvers.fv.FVFloodSolver`;
- ``"fv2"``: the same, second order (MUSCL + Heun), :class:`~twin.flood.solvers.fv.FV2FloodSolver`.

A new solver subclasses :class:`Solver` (the contract is in :mod:`twin.flood.solvers.base`), takes a
:class:`SolverInputs` in its constructor and is registered by name::

    from twin.flood.solvers import Solver, register_solver

    class MySolver(Solver): ...

    register_solver("mine", MySolver)          # then FloodModel(terrain, solver="mine")

Imports run one way: ``model -> solvers -> {inertial, fv} -> base``; no solver imports the model.
"""
from __future__ import annotations

from twin.flood.solvers.base import Solver, SolverInputs, SubstepForcing
from twin.flood.solvers.fv import FV2FloodSolver, FVFloodSolver
from twin.flood.solvers.inertial import InertialSolver

__all__ = ["Solver", "SolverInputs", "SubstepForcing", "InertialSolver", "FVFloodSolver", "FV2FloodSolver",
           "SOLVERS", "register_solver", "get_solver"]

#: solver name -> class; :func:`register_solver` adds to it
SOLVERS: dict[str, type[Solver]] = {
    "inertial": InertialSolver,
    "fv": FVFloodSolver,
    "fv2": FV2FloodSolver,
}


def register_solver(name: str, cls: type[Solver] | None = None, *, replace: bool = False):
    """Register ``cls`` as the flood solver ``name``; returns ``cls``.

    Without ``cls`` it is a class decorator (``@register_solver("mine")``). A name that is already
    taken by another class is refused unless ``replace=True``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"register_solver: name must be a non-empty string, got {name!r}")

    def add(c: type[Solver]) -> type[Solver]:
        if not (isinstance(c, type) and issubclass(c, Solver)):
            raise TypeError(f"register_solver({name!r}): expected a subclass of twin.flood.solvers.Solver, got {c!r}")
        old = SOLVERS.get(name)
        if old is not None and old is not c and not replace:
            raise ValueError(f"register_solver: the name {name!r} is taken by {old.__module__}.{old.__qualname__}; "
                             "pass replace=True to replace it")
        if "name" not in c.__dict__:   # a class naming itself keeps its name
            c.name = name
        SOLVERS[name] = c
        return c

    return add if cls is None else add(cls)


def get_solver(name: str) -> type[Solver]:
    """The solver class registered as ``name``; a ValueError lists the known names otherwise."""
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"solver: unknown flood solver {name!r}; known solvers: {', '.join(sorted(SOLVERS))}") from None
