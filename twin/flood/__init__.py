"""The flood component: :class:`FloodModel` (local inertial by default) and its solvers.

Rooms: :mod:`twin.flood.model` (the component), :mod:`twin.flood.solvers` (the registry, the solver
contract and :class:`SolverInputs`, the inertial and finite-volume solvers), :mod:`twin.flood.forcing`,
:mod:`twin.flood.breach`, :mod:`twin.flood.reference` (plain-numpy reference of the inertial kernel).
"""
from __future__ import annotations

import sys

from .model import FloodModel
from .solvers import SOLVERS, InertialSolver, Solver, SolverInputs, get_solver, register_solver
from .solvers import fv as _fv

# Deprecated alias: ``twin.flood.fv`` moved to ``twin.flood.solvers.fv``. Kept so that old imports
# (``from twin.flood.fv import FVSolver, reservoir_fill``) keep working; new code imports the new path.
sys.modules.setdefault(__name__ + ".fv", _fv)

__all__ = ["FloodModel", "Solver", "SolverInputs", "InertialSolver", "register_solver", "get_solver", "SOLVERS"]
