"""Checkpoint, resume and fork.

A checkpoint (``<run>/checkpoints/ckpt-<iteration>.pkl``) holds the simulation clock, every
component's ``get_state()``, the states of every random generator the twin handed out, which events
were applied, and the output writers' positions. Because all randomness flows from seeded
generators and all state is captured, ``resume`` ends bit-identical to an uninterrupted run.

``fork`` starts a what-if from a run's state at a time: it restores the latest checkpoint at or
before that time (or starts from the beginning), runs the *original* scenario up to the fork time,
then switches to the scenario with the overrides applied and runs it to its end in a new folder.
Interventions of the new scenario whose time lies before the fork time and that the original run
never applied are applied at the fork time.
"""
from __future__ import annotations

from pathlib import Path

from twin.output.recorders import checkpoints, latest_checkpoint, load_checkpoint

__all__ = ["resume_run", "fork_run", "latest_checkpoint", "load_checkpoint"]


def _scenario_of_run(run_dir: Path):
    from twin.scenario import load_scenario

    path = Path(run_dir) / "scenario.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no scenario.yaml)")
    return load_scenario(path)


def resume_run(run_dir: str | Path, progress: bool = False, city=None):
    """Continue an interrupted run in its own folder from its latest checkpoint."""
    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    ck = latest_checkpoint(run_dir)
    if ck is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from (checkpoints/ is empty)")
    state = load_checkpoint(ck)
    scenario = _scenario_of_run(run_dir)
    twin = build_twin(scenario, city=city)
    sim = Simulation(twin, out_dir=run_dir, wall_time_limit=scenario.outputs.wall_time_limit)
    sim.set_state(state)
    sim.run(progress=progress)
    return sim


def fork_run(run_dir: str | Path, at_s: float, overrides: list[str] | None, out_dir: str | Path,
             progress: bool = False, city=None):
    """Start a what-if from run ``run_dir`` at ``at_s`` seconds with scenario ``overrides``."""
    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    base = _scenario_of_run(run_dir)
    dt = base.coupling_step
    n = at_s / dt
    if abs(n - round(n)) > 1e-9 * max(1.0, n) or at_s < 0 or at_s > base.duration:
        raise ValueError(f"fork time {at_s:g} s must be a multiple of the coupling step {dt:g} s "
                         f"within [0, {base.duration:g}] s")
    # 1. the base run's state at the fork time
    twin0 = build_twin(base, city=city)
    sim0 = Simulation(twin0, stop_time=at_s, record=False)
    usable = [p for p in checkpoints(run_dir) if load_checkpoint(p)["time_s"] <= at_s + 1e-9]
    if usable:
        st = load_checkpoint(usable[-1])
        sim0.set_state(st, restore_output=False)
    sim0.run()
    state = sim0.get_state()
    # 2. the new scenario from that state
    new = base.with_overrides(list(overrides or []), source=f"fork of {run_dir}")
    new = new.with_overrides({"name": f"{base.name}-fork"}) if new.name == base.name else new
    twin1 = build_twin(new, city=city)
    sim = Simulation(twin1, out_dir=out_dir, wall_time_limit=new.outputs.wall_time_limit)
    sim.iteration = state["iteration"]
    twin1.set_state(state["twin"], fork=True)
    sim.output.initialize(sim)
    sim._initialized = True
    sim.output.series["fork"] = [{"from_run": str(run_dir), "at_s": at_s, "overrides": list(overrides or [])}]
    sim.run(progress=progress)
    return sim
