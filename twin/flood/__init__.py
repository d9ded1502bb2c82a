"""The flood component: :class:`FloodModel` (local inertial by default) and its solvers."""
from __future__ import annotations

from .model import FloodModel
from .solvers import SOLVERS, InertialSolver, Solver, register_solver

__all__ = ["FloodModel", "Solver", "InertialSolver", "register_solver", "SOLVERS"]
