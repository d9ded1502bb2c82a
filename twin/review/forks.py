"""Counterfactual forks: a run re-played from a checkpoint with some of its decisions left out.

:func:`run_counterfactual` restores the run's latest checkpoint at or before the first decision it
leaves out (or starts from the beginning when there is none), seeds the new folder with the run's
outputs up to there (as ``twin fork`` does: ``twin.workflows.runs``), and re-submits every decision
the run received after the checkpoint — except the left-out ones — for the model time it was asked
for, as ``twin replay`` does (source ``replay``, the original issuer). Scenario interventions come
from the scenario as before; decisions that were still pending in the checkpoint stay queued
unless left out. With nothing left out, the counterfactual must reproduce the run bit for bit
(``twin review`` checks this: its "no-op" fork).

:func:`run_forks` runs several on Dask (``twin.workflows.ensemble.map_on_dask``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

__all__ = ["submitted_decisions", "run_counterfactual", "run_forks"]


def submitted_decisions(log: pd.DataFrame) -> pd.DataFrame:
    """The decisions a replay re-submits: received during the run (not the scenario's own, not a
    follow-up such as a closure's reopening, which its decision queues again) and applied."""
    return log[(log["source"] != "scenario") & (log["outcome"] == "applied") & (log["parent_id"] < 0)]


def run_counterfactual(run_dir: str, out_dir: str, drop: list[int], start_s: float | None = None,
                       city=None) -> dict:
    """Re-play ``run_dir`` into ``out_dir`` without the decisions ``drop`` (decision ids).

    ``start_s``: restore the latest checkpoint at or before this model time (default: the earliest
    time a left-out decision acted); None checkpoints usable → from the beginning. Returns a summary
    (``out_dir``, ``from_checkpoint_s``, ``resubmitted``, ``dropped``, ``wall_time_s``)."""
    from twin.build import build_twin
    from twin.decisions import DecisionError, parse_decision
    from twin.output.recorders import checkpoints, load_checkpoint
    from twin.output.schema import read_table
    from twin.simulation import Simulation
    from twin.workflows.runs import _scenario_of_run, _seed_history

    t0 = time.perf_counter()
    run = Path(run_dir)
    scenario = _scenario_of_run(run)
    log = read_table(run, "decisions")
    drop = sorted({int(i) for i in drop})
    todo = submitted_decisions(log)
    unknown = sorted(set(drop) - set(todo["decision_id"].astype(int)))
    if unknown:
        raise ValueError(f"{run / 'decisions.parquet'}: decisions {unknown} are not applied decisions received "
                         "during the run (nothing to leave out)")
    if start_s is None:
        acted = todo.loc[todo["decision_id"].isin(drop), "t_s"]
        start_s = float(acted.min()) if len(acted) else float(scenario.duration)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: the counterfactual's folder exists and is not empty")
    twin = build_twin(scenario, city=city)
    sim = Simulation(twin, out_dir=out, wall_time_limit=None)
    usable = [p for p in checkpoints(run) if load_checkpoint(p)["time_s"] <= start_s + 1e-9]
    t_ck = None
    pending: set[int] = set()
    if usable:
        st = load_checkpoint(usable[-1])
        t_ck = float(st["time_s"])
        assert sim.output is not None       # a recorded run (out_dir given)
        sim.output.initialize(sim)
        _seed_history(sim, run, st)
        sim.set_state(st)
        q = sim.twin.decisions
        q.pending = [p for p in q.pending if p.seq not in drop]
        pending = {int(p.seq) for p in q.pending}
        # history is kept: a decision that acted before the checkpoint cannot be left out
        early = todo[(todo["decision_id"].isin(drop)) & (todo["t_s"] < t_ck - 1e-9)]
        if len(early):
            raise ValueError(f"decision {int(early['decision_id'].iloc[0])} acted at {early['t_s'].iloc[0]:g} s, "
                             f"before the checkpoint at {t_ck:g} s")
        later = todo[todo["t_s"] >= t_ck - 1e-9]
    else:
        later = todo
    n = 0
    for row in later.sort_values(["at_s", "decision_id"], kind="stable").itertuples(index=False):
        did = int(row.decision_id)
        if did in drop or did in pending:
            continue
        try:
            d = parse_decision(json.loads(row.params))
        except DecisionError as exc:
            raise ValueError(f"{run / 'decisions.parquet'}: decision {did} does not validate: {exc}") from None
        sim.twin.decisions.push(d, float(row.at_s), "replay", str(row.issuer))
        n += 1
    sim.run()
    return {"out_dir": str(out), "from_checkpoint_s": t_ck, "resubmitted": n, "dropped": drop,
            "wall_time_s": time.perf_counter() - t0}


def run_forks(run_dir: Path, jobs: list[tuple[str, list[int], float | None]], *, scheduler: str | None = None,
              n_workers: int | None = None, serial: bool = False) -> tuple[list[dict], str]:
    """Run counterfactuals ``(out_dir, drop, start_s)`` on Dask (or serially); results in job order."""
    from twin.workflows.ensemble import map_on_dask

    args = [(str(run_dir), out, list(drop), start) for out, drop, start in jobs]
    keys = [f"review-{Path(out).name}-{Path(run_dir).name}" for out, _, _ in jobs]
    return map_on_dask(run_counterfactual, args, keys=keys, scheduler=scheduler, n_workers=n_workers,
                       serial=serial)
