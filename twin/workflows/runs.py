"""Checkpoint, resume and fork.

A checkpoint (``<run>/checkpoints/ckpt-<iteration>.npz``, data only: ``twin.output.state_io``) holds the simulation clock, every
component's ``get_state()``, the states of every random generator the twin handed out, which events
were applied, and the output writers' positions. Because all randomness flows from seeded
generators and all state is captured, ``resume`` ends bit-identical to an uninterrupted run.

``fork`` starts a what-if from a run's state at a time: it restores the latest checkpoint at or
before that time (or starts from the beginning), runs the *original* scenario up to the fork time,
then switches to the scenario with the overrides applied and runs it to its end in a new folder.
Decisions before the fork time are history: every decision the run received (API, dashboard,
exercise seats and injects) that acted before the fork time acts again at the same model time, with
its source and issuer, so the fork's past is the run's (``decisions.parquet`` lists them); those
that acted at or after the fork time are left out unless asked for (``later_decisions``).
Interventions of the new scenario timed before the fork that the original scenario did not have act
at the fork time, and their log row says so.

:func:`restart_from_run` is the restart both ``fork`` and ``twin review``'s counterfactual forks
(``twin.review.forks``) use: a checkpoint restored into a new folder with the run's outputs up to it,
and the run's received decisions queued again.

``replay`` re-runs a run's scenario with the decisions its ``decisions.parquet`` recorded (those
submitted during the run: API, dashboard, exercise), each at the model time it acted: same
scenario, seed and decisions give bit-identical fields and KPIs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from twin.output.recorders import checkpoints, latest_checkpoint, load_checkpoint

__all__ = ["resume_run", "fork_run", "replay_run", "latest_checkpoint", "load_checkpoint", "scenario_of_run",
           "submitted_decisions", "restart_from_run", "Restart"]


def scenario_of_run(run_dir: Path):
    """The scenario of run folder ``run_dir`` (its ``scenario.yaml``); FileNotFoundError if none."""
    from twin.scenario import load_scenario

    path = Path(run_dir) / "scenario.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no scenario.yaml)")
    return load_scenario(path)


def resume_run(run_dir: str | Path, progress: bool = False, city=None):
    """Continue an interrupted run in its own folder from its latest checkpoint.

    A finished run is refused (resuming it would rewrite its tables from a mid-run checkpoint):
    fork it to continue with changes."""
    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    man = run_dir / "manifest.json"
    if man.is_file():
        try:
            status = json.loads(man.read_text(encoding="utf-8")).get("status")
        except (ValueError, AttributeError):
            status = None
        if status == "completed":
            raise ValueError(f"{run_dir}: the run is finished (manifest status 'completed'); nothing to resume "
                             "and nothing is changed. Use `twin fork` to continue with changes")
    ck = latest_checkpoint(run_dir)
    if ck is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from (checkpoints/ is empty)")
    state = load_checkpoint(ck)
    scenario = scenario_of_run(run_dir)
    twin = build_twin(scenario, city=city)
    sim = Simulation(twin, out_dir=run_dir, wall_time_limit=scenario.outputs.wall_time_limit)
    sim.set_state(state)
    sim.run(progress=progress)
    return sim


# scenario keys a fork applies from the fork time on; any other change is refused by name, because
# the state restored at the fork (units, agents, vehicles, generators, the grid) would override it
FORKABLE = ("name", "description", "duration", "outputs", "interventions", "flood.rain", "flood.inflows",
            "flood.sea", "flood.loss_rate_mm_per_h", "flood.boundaries")


def _changed_keys(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _changed_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def fork_overrides_check(base, new) -> list[str]:
    """The keys that differ between ``base`` and ``new`` (scenarios); raises ValueError naming every
    changed key a fork cannot apply after its fork time."""
    changed = _changed_keys(base.to_dict(), new.to_dict())
    bad = [k for k in changed if not any(k == f or k.startswith(f + ".") for f in FORKABLE)]
    if bad:
        raise ValueError(
            "fork: cannot apply " + ", ".join(bad) + " after the fork time: the state restored at the fork "
            "(units, agents, vehicles, random generators, the grid) would override it. Keys a fork applies: "
            + ", ".join(FORKABLE) + ". Give a change during the run as a decision (e.g. extra_units, "
            "shelter_open, road_closure) or run the changed scenario from the start")
    return changed


def _history_frame(run_dir: Path, name: str, t_max: float):
    """Rows of ``run_dir``'s table ``name`` with ``t_s <= t_max`` (merged file, or parts if unfinished)."""
    import pandas as pd

    f = run_dir / f"{name}.parquet"
    parts = sorted((run_dir / f"{name}.parts").glob("part-*.parquet"))
    if f.is_file():
        df = pd.read_parquet(f)
    elif parts:
        df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    else:
        return None
    return df[df["t_s"] <= t_max + 1e-9] if "t_s" in df.columns else None


def _seed_history(sim, run_dir: Path, state: dict) -> None:
    """Write the base run's outputs up to the checkpoint ``state`` into ``sim``'s (empty) run folder
    and point the checkpoint's output state at them, so the fork's tables and KPIs cover the whole run."""
    import xarray as xr

    out = sim.output
    t_ck = float(state["time_s"])
    ost = dict(state["output"])
    nc = 0
    if out.nc is not None and (run_dir / "fields.nc").is_file():
        with xr.open_dataset(run_dir / "fields.nc", decode_times=False) as ds:
            keep = ds["time"].values <= t_ck + 1e-9
            nc = int(keep.sum())
            if nc:
                out.nc.write(ds["time"].values[keep], {v: ds[v].values[keep] for v in out.field_vars})
    ost["nc_written"] = nc
    for name, w, key in (("links", out.links_w, "links_parts"), ("people", out.people_w, "people_parts"),
                         ("units", out.units_w, "units_parts")):
        df = _history_frame(run_dir, name, t_ck)
        w.n_written = 0
        if df is not None and len(df):
            w.write(df.reset_index(drop=True))
        ost[key] = w.n_written
    state["output"] = ost


def submitted_decisions(log):
    """The rows of a ``decisions.parquet`` log (a DataFrame) that a restart queues again: decisions
    received during the run (not the scenario's own, not a follow-up such as a closure's reopening,
    which its decision queues again when it acts) that were applied."""
    return log[(log["source"] != "scenario") & (log["outcome"] == "applied") & (log["parent_id"] < 0)]


@dataclass
class Restart:
    """What :func:`restart_from_run` did."""

    from_checkpoint_s: float | None     # the checkpoint restored (None: from the beginning)
    requeued: int                       # decisions of the log queued again
    kept_pending: int                   # received decisions still pending in the checkpoint, kept


def restart_from_run(sim, run_dir: str | Path, start_s: float, *, decisions_before: float = math.inf,
                     drop=(), source: str | None = "replay") -> Restart:
    """Prepare ``sim`` (new, recording into an empty folder, built from ``run_dir``'s scenario) to
    re-run ``run_dir``: restore its latest checkpoint at or before ``start_s`` (none: from the
    beginning), with the run's outputs up to there copied in, then queue again every decision the
    run received (:func:`submitted_decisions`) that acted at or after that checkpoint and before
    ``decisions_before`` — except the decision ids in ``drop`` — for the model time it was asked
    for, in the original order, with its issuer and ``source`` (None: the recorded source).

    Received decisions still pending in the checkpoint stay queued when they act before
    ``decisions_before`` and are not dropped; follow-ups and scenario interventions always stay.
    A dropped decision that acted before the checkpoint is history: ValueError."""
    from twin.output.schema import read_table

    run = Path(run_dir)
    path = run / "decisions.parquet"
    log = read_table(run, "decisions")
    todo = submitted_decisions(log)
    drop = {int(i) for i in drop}
    usable = [p for p in checkpoints(run) if load_checkpoint(p)["time_s"] <= start_s + 1e-9]
    t_ck: float | None = None
    kept = 0
    pending: set[int] = set()
    if usable:
        st = load_checkpoint(usable[-1])
        t_ck = float(st["time_s"])
        early = todo[todo["decision_id"].isin(drop) & (todo["t_s"] < t_ck - 1e-9)]
        if len(early):
            raise ValueError(f"decision {int(early['decision_id'].iloc[0])} acted at {early['t_s'].iloc[0]:g} s, "
                             f"before the checkpoint at {t_ck:g} s")
        assert sim.output is not None       # a recorded run (out_dir given)
        sim.output.initialize(sim)
        _seed_history(sim, run, st)
        sim.set_state(st)
        q = sim.twin.decisions

        def stays(p) -> bool:
            if p.source == "scenario" or p.parent_id >= 0:
                return True
            return p.seq not in drop and sim.acts_at(p.at) < decisions_before - 1e-9

        q.pending = [p for p in q.pending if stays(p)]
        pending = {int(p.seq) for p in q.pending}
        kept = sum(p.source != "scenario" and p.parent_id < 0 for p in q.pending)
        later = todo[todo["t_s"] >= t_ck - 1e-9]
    else:
        later = todo
    later = later[(later["t_s"] < decisions_before - 1e-9) & ~later["decision_id"].isin(drop | pending)]
    n = 0
    for row in later.sort_values(["at_s", "decision_id"], kind="stable").itertuples(index=False):
        d = _decision(json.loads(row.params), path)
        sim.twin.decisions.push(d, float(row.at_s), str(row.source) if source is None else source, str(row.issuer))
        n += 1
    return Restart(t_ck, n, kept)


def fork_run(run_dir: str | Path, at_s: float, overrides: list[str] | None, out_dir: str | Path,
             progress: bool = False, city=None, later_decisions: bool = False):
    """Start a what-if from run ``run_dir`` at ``at_s`` seconds with scenario ``overrides``.

    The fork folder is a whole run: the base run's outputs up to its latest checkpoint at or before
    ``at_s`` are copied in, the base scenario is re-run from that checkpoint (or from the start) to
    ``at_s`` recording into the fork folder, and the new scenario takes over from there. So its
    tables and KPIs cover the shared history too, and a fork that changes nothing reproduces its
    parent's KPIs. Overrides a fork cannot apply are refused by name (:data:`FORKABLE`).

    Decisions are history: every decision the run received (API, dashboard, exercise seats and
    injects; ``decisions.parquet``) that acted before ``at_s`` acts again at the same model time
    with its source and issuer (:func:`restart_from_run`), so the fork's past is the run's.
    ``later_decisions``: those that acted at or after ``at_s`` are queued too (for the model time
    they were asked for, with their source and issuer); by default the fork's future has none of
    them (a what-if of the decisions still to take). They are not checked against the new scenario
    until they act: one that cannot act then is logged ``rejected`` with the reason."""
    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    base = scenario_of_run(run_dir)
    dt = base.coupling_step
    n = at_s / dt
    if abs(n - round(n)) > 1e-9 * max(1.0, n) or at_s < 0 or at_s > base.duration:
        raise ValueError(f"fork time {at_s:g} s must be a multiple of the coupling step {dt:g} s "
                         f"within [0, {base.duration:g}] s")
    new = base.with_overrides(list(overrides or []), source=f"fork of {run_dir}")
    changed = fork_overrides_check(base, new)
    new = new.with_overrides({"name": f"{base.name}-fork"}) if new.name == base.name else new
    if new.coupling_step != base.coupling_step:
        raise ValueError("fork: coupling_step cannot change at a fork")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir}: the fork's folder exists and is not empty")
    # 1. the base scenario up to the fork time, recorded into the fork folder, with the decisions the
    #    run received before it (as they happened) and, if asked, after it
    twin0 = build_twin(base, city=city)
    sim0 = Simulation(twin0, out_dir=out_dir, wall_time_limit=None)
    rs = restart_from_run(sim0, run_dir, at_s, decisions_before=math.inf if later_decisions else at_s,
                          source=None)
    sim0.run(until=at_s)
    sim0.output.flush()
    state = sim0.get_state()
    twin0.close()  # its assimilator's store and Dask cluster, when it has them: the state is taken
    # 2. the new scenario from that state, in the same folder (pending received decisions stay queued)
    twin1 = build_twin(new, city=city)
    sim = Simulation(twin1, out_dir=out_dir, wall_time_limit=new.outputs.wall_time_limit)
    sim.set_state(state, fork_at=float(at_s), base_scenario=base)
    sim.output.initialize(sim)
    sim.output.series["fork"] = [{"from_run": str(run_dir), "at_s": at_s, "overrides": list(overrides or []),
                                  "changed_keys": changed, "from_checkpoint_s": rs.from_checkpoint_s,
                                  "decisions_requeued": rs.requeued, "later_decisions": bool(later_decisions),
                                  "note": "decisions that acted before the fork time are history (they act again "
                                          "as they did); changes act from the fork on"}]
    sim.run(progress=progress)
    return sim


def replay_run(run_dir: str | Path, out_dir: str | Path, progress: bool = False, city=None):
    """Re-run ``run_dir``'s scenario into ``out_dir`` with the decisions it recorded.

    Every decision of ``decisions.parquet`` that was submitted during the run (not a scenario
    intervention, which the scenario holds, nor a follow-up such as a closure's reopening, which
    its decision queues again) and that acted is submitted again, source ``replay`` with its
    issuer, for the model time it acted."""
    import pandas as pd

    from twin.build import build_twin
    from twin.simulation import Simulation

    run_dir = Path(run_dir)
    scenario = scenario_of_run(run_dir)
    path = run_dir / "decisions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no decisions.parquet (not a run folder of this version?)")
    log = pd.read_parquet(path)
    missing = {"t_s", "source", "issuer", "params", "outcome", "parent_id"} - set(log.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing")
    todo = submitted_decisions(log)
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
