"""Counterfactual forks: a run re-played from a checkpoint with some of its decisions left out.

:func:`run_counterfactual` restores the run's latest checkpoint at or before the first decision it
leaves out (or starts from the beginning when there is none), seeds the new folder with the run's
outputs up to there, and re-submits every decision the run received after the checkpoint — except
the left-out ones — for the model time it was asked for, as ``twin replay`` does (source
``replay``, the original issuer): ``twin.workflows.runs.restart_from_run``, as ``twin fork`` does. Scenario interventions come
from the scenario as before; decisions that were still pending in the checkpoint stay queued
unless left out. With nothing left out, the counterfactual must reproduce the run bit for bit
(``twin review`` checks this: its "no-op" fork).

:func:`run_forks` runs several on Dask (``twin.workflows.ensemble.map_on_dask``).
"""
from __future__ import annotations

import time
from pathlib import Path

from twin.workflows.runs import restart_from_run, scenario_of_run, submitted_decisions

__all__ = ["submitted_decisions", "run_counterfactual", "run_forks"]


def run_counterfactual(run_dir: str, out_dir: str, drop: list[int], start_s: float | None = None,
                       city=None) -> dict:
    """Re-play ``run_dir`` into ``out_dir`` without the decisions ``drop`` (decision ids).

    ``start_s``: restore the latest checkpoint at or before this model time (default: the earliest
    time a left-out decision acted); None checkpoints usable → from the beginning. Returns a summary
    (``out_dir``, ``from_checkpoint_s``, ``resubmitted``, ``dropped``, ``wall_time_s``)."""
    from twin.build import build_twin
    from twin.output.schema import read_table
    from twin.simulation import Simulation

    t0 = time.perf_counter()
    run = Path(run_dir)
    scenario = scenario_of_run(run)
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
    if city is None:        # one city bundle per process (a Dask worker runs several forks), as build_twin loads it
        from twin.build import city_resolution_m
        from twin.city import load_city_cached

        city = load_city_cached(scenario.city, city_resolution_m(scenario))
    sim = Simulation(build_twin(scenario, city=city), out_dir=out, wall_time_limit=None)
    # the checkpoint, the outputs up to it, and every decision after it but the left-out ones (replay)
    rs = restart_from_run(sim, run, start_s, drop=drop, source="replay")
    sim.run()
    return {"out_dir": str(out), "from_checkpoint_s": rs.from_checkpoint_s, "resubmitted": rs.requeued,
            "dropped": drop, "wall_time_s": time.perf_counter() - t0}


def run_forks(run_dir: Path, jobs: list[tuple[str, list[int], float | None]], *, scheduler: str | None = None,
              n_workers: int | None = None, serial: bool = False) -> tuple[list[dict], str]:
    """Run counterfactuals ``(out_dir, drop, start_s)`` on Dask (or serially); results in job order."""
    from twin.workflows.ensemble import map_on_dask

    args = [(str(run_dir), out, list(drop), start) for out, drop, start in jobs]
    keys = [f"review-{Path(out).name}-{Path(run_dir).name}" for out, _, _ in jobs]
    return map_on_dask(run_counterfactual, args, keys=keys, scheduler=scheduler, n_workers=n_workers,
                       serial=serial)
