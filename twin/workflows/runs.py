"""Checkpoint, resume and fork.

A checkpoint (``<run>/checkpoints/ckpt-<iteration>.npz``, data only: ``twin.output.state_io``) holds the simulation clock, every
component's ``get_state()``, the states of every random generator the twin handed out, which events
were applied, and the output writers' positions. Because all randomness flows from seeded
generators and all state is captured, ``resume`` ends bit-identical to an uninterrupted run.

``fork`` starts a what-if from a run's state at a time: it restores the latest checkpoint at or
before that time (or starts from the beginning), runs the *original* scenario up to the fork time,
then switches to the scenario with the overrides applied and runs it to its end in a new folder.
Decisions before the fork time are history: they stay as they happened (the fork's
``decisions.parquet`` lists them). Interventions of the new scenario timed before the fork that
the original scenario did not have act at the fork time, and their log row says so.

``replay`` re-runs a run's scenario with the decisions its ``decisions.parquet`` recorded (those
submitted during the run: API, dashboard, exercise), each at the model time it acted: same
scenario, seed and decisions give bit-identical fields and KPIs.
"""
from __future__ import annotations

from pathlib import Path

from twin.output.recorders import checkpoints, latest_checkpoint, load_checkpoint

__all__ = ["resume_run", "fork_run", "replay_run", "latest_checkpoint", "load_checkpoint"]


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
    twin1.set_state(state["twin"], fork_at=float(at_s), base_scenario=base)
    sim.output.initialize(sim)
    sim._initialized = True
    sim.output.series["fork"] = [{"from_run": str(run_dir), "at_s": at_s, "overrides": list(overrides or [])}]
    sim.run(progress=progress)
    return sim


def replay_run(run_dir: str | Path, out_dir: str | Path, progress: bool = False, city=None):
    """Re-run ``run_dir``'s scenario into ``out_dir`` with the decisions it recorded.

    Every decision of ``decisions.parquet`` that was submitted during the run (not a scenario
    intervention, which the scenario holds, nor a follow-up such as a closure's reopening, which
    its decision queues again) and that acted is submitted again, source ``replay`` with its
    issuer, for the model time it acted."""
    import json

    import pandas as pd

    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    scenario = _scenario_of_run(run_dir)
    path = run_dir / "decisions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no decisions.parquet (not a run folder of this version?)")
    log = pd.read_parquet(path)
    missing = {"t_s", "source", "issuer", "params", "outcome", "parent_id"} - set(log.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing")
    todo = log[(log["source"] != "scenario") & (log["outcome"] == "applied") & (log["parent_id"] < 0)]
    twin = build_twin(scenario, city=city)
    sim = Simulation(twin, out_dir=out_dir, wall_time_limit=scenario.outputs.wall_time_limit)
    # the original order: (requested time, submission); each acts at the step holding its time
    for row in todo.sort_values(["at_s", "decision_id"], kind="stable").itertuples(index=False):
        sim.twin.decisions.push(_decision(json.loads(row.params), path), float(row.at_s), "replay", str(row.issuer))
    sim.run(progress=progress)
    return sim


def _decision(params: dict, path: Path):
    from twin.decisions import DecisionError, parse_decision

    try:
        return parse_decision(params)
    except DecisionError as exc:
        raise ValueError(f"{path}: a recorded decision does not validate: {exc}") from None
