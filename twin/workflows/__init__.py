"""Workflows over runs: run, resume, fork, replay (``runs``), compare, ensemble, and their CLI.

These compose the core (scenario → build → Simulation → run folder) into what users do with runs;
nothing in the core imports them.
"""
from __future__ import annotations

from twin.workflows.runs import fork_run, replay_run, resume_run

__all__ = ["resume_run", "fork_run", "replay_run"]
