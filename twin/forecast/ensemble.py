"""``run_forecast``: K members from a run's checkpoint on Dask, aggregated into the forecast folder.

Flow: check every input (run folder, checkpoint, horizon, members, rules, output folder) before
anything runs; draw the perturbations (:mod:`twin.forecast.perturb`); submit one task per member
(:func:`twin.forecast.members.run_member`) to a LocalCluster (default) or to the scheduler given;
aggregate the members as they finish (counts per threshold, maxima, impacts: the full member
fields are never all held at once); write the products into a temporary folder beside ``out`` and
move it into place at the end, so a failed forecast leaves nothing half-written and an existing
folder is never touched.

The city travels to no task: a named city bundle is loaded by each worker once
(``twin.city.load_city_cached``); a city object handed in (tests, notebooks) is scattered to every
worker once (``Client.scatter(broadcast=True)``) and the tasks receive a reference to it.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from twin.forecast.errors import ForecastError
from twin.forecast.members import COMPONENT_SETS, parse_components, run_member
from twin.forecast.perturb import draw_perturbations

__all__ = ["run_forecast", "forecast_checkpoint", "DEPTH_THRESHOLDS", "PLACE_FLOOD_THRESHOLD_M", "ForecastError"]

DEPTH_THRESHOLDS = (0.1, 0.3, 0.5, 1.0)
#: water above the floor of a place's ground floor that counts as the place flooded [m]
PLACE_FLOOD_THRESHOLD_M = 0.3
MAX_FORECAST_MEMBERS = 1000


def forecast_checkpoint(run_dir: Path, at: str | float | None, dt: float) -> tuple[Path, float]:
    """(checkpoint file, its model time) for ``at`` ('latest', None or a time in s since start).
    The time of ``ckpt-<iteration>.npz`` is iteration x the coupling step ``dt`` (the file is read
    by the members, not here: a coupled state can be large)."""
    import re

    from twin.output.recorders import checkpoints

    run_dir = Path(run_dir)
    cps = checkpoints(run_dir)
    if not cps:
        raise ForecastError(f"{run_dir}: no checkpoint to forecast from (checkpoints/ is empty or missing); "
                            "run the scenario with outputs.checkpoint_every set (a run then leaves one at its end)")
    times = []
    for p in cps:
        m = re.fullmatch(r"ckpt-(\d+)\.npz", p.name)
        if m is None:
            raise ForecastError(f"{p}: not a checkpoint name (expected ckpt-<iteration>.npz)")
        times.append(int(m.group(1)) * float(dt))
    if at is None or at == "latest":
        i = int(np.argmax(times))
        return cps[i].resolve(), times[i]
    t = float(at)
    for p, tc in zip(cps, times):
        if abs(tc - t) < 1e-6:
            return p.resolve(), tc
    raise ForecastError(f"--at {t:g} s: {run_dir} has no checkpoint at that time (checkpoints at "
                        f"{', '.join(f'{v:g}' for v in sorted(times))} s); use one of them or 'latest'")


def _check_sizes(members: Any, horizon_s: float) -> None:
    if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 2:
        raise ForecastError(f"--members {members!r}: a forecast ensemble needs at least 2 members")
    if members > MAX_FORECAST_MEMBERS:
        raise ForecastError(f"--members {members}: at most {MAX_FORECAST_MEMBERS}")
    if not isinstance(horizon_s, int | float) or not math.isfinite(horizon_s) or horizon_s <= 0:
        raise ForecastError(f"--horizon {horizon_s!r} s: must be > 0")


def _check(members: Any, horizon_s: float, every_s: float, dt: float) -> None:
    _check_sizes(members, horizon_s)
    for name, v in (("--horizon", horizon_s), ("--every", every_s)):
        n = v / dt
        if v <= 0 or abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ForecastError(f"{name} {v:g} s: must be a positive whole number of the run's coupling step ({dt:g} s)")
    n = horizon_s / every_s
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ForecastError(f"--every {every_s:g} s must divide --horizon {horizon_s:g} s")


def _client(scheduler: str | None, n_workers: int | None, members: int):
    from dask.distributed import Client

    from twin.workflows.dask_local import local_cluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ForecastError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        return client, None, scheduler
    nw = n_workers or max(1, min(members, os.cpu_count() or 1))
    cluster = local_cluster(nw)
    return Client(cluster), cluster, f"LocalCluster({nw} workers)"


def run_forecast(run_dir, members: int, horizon_s: float, out, *, at: str | float | None = "latest",
                 every_s: float | None = None, scheduler: str | None = None, n_workers: int | None = None,
                 components: str | list[str] = "flood,roads", rules=None, seed: int | None = None,
                 previous=None, serial: bool = False, city=None, sender: str | None = None,
                 progress: bool = False) -> dict:
    """Run the forecast and write ``out`` (see :mod:`twin.forecast`); returns forecast.json's dict.

    ``rules``: a rules file path or parsed :class:`twin.forecast.rules.Rules` (alerts into
    ``out/alerts``); ``previous``: an earlier forecast folder whose alerts these update or cancel;
    ``serial``: run the members in this process (tests, debugging) instead of on Dask."""
    from twin.forecast import products
    from twin.forecast.rules import Rules, load_rules
    from twin.scenario import load_scenario

    t_wall = time.perf_counter()
    run_dir = Path(run_dir)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ForecastError(f"{out}: the forecast folder exists and is not empty; nothing was changed "
                            "(give a new --out)")
    if not run_dir.is_dir():
        raise ForecastError(f"{run_dir}: no such run folder")
    _check_sizes(members, horizon_s)
    comps = parse_components(components) if isinstance(components, str) else list(components)
    if not (run_dir / "scenario.yaml").is_file():
        raise ForecastError(f"{run_dir}: not a run folder (no scenario.yaml)")
    base = load_scenario(run_dir / "scenario.yaml", check_paths=False)
    ckpt, t0 = forecast_checkpoint(run_dir, at, float(base.coupling_step))
    every = float(every_s) if every_s is not None else min(1800.0, float(horizon_s))
    if every_s is None and abs(horizon_s / every - round(horizon_s / every)) > 1e-9:
        every = float(horizon_s)
    _check(members, float(horizon_s), every, float(base.coupling_step))
    missing = [c for c in ("people", "services") if c in comps and getattr(base, c) is None]
    if missing:
        raise ForecastError(f"--components {','.join(comps)}: the run has no {' and no '.join(missing)} "
                            f"(its scenario {run_dir / 'scenario.yaml'} lacks the section); use flood,roads")
    rules_obj = None
    if rules is not None:
        rules_obj = rules if isinstance(rules, Rules) else load_rules(rules)
    prev_alerts = products.previous_alerts(previous) if previous is not None else None
    if city is None:
        from twin.build import city_resolution_m
        from twin.forecast.members import _city

        city = _city(base.city, city_resolution_m(base))
        ship_city = False
    else:
        ship_city = True
    if "roads" in comps and getattr(city, "roads", None) is None:
        raise ForecastError(f"--components {','.join(comps)}: the city {base.city!r} has no road network; use flood")
    if rules_obj is not None:
        rules_obj.check_areas(city, source=str(rules))
    seed = int(base.seed if seed is None else seed)
    perts = draw_perturbations(int(members), seed)
    share_thr = sorted(set(DEPTH_THRESHOLDS) | ({r.threshold_m for r in rules_obj.rules} if rules_obj else set()))
    base_d = base.to_dict()
    specs = [{"perturbation": p.to_dict(), "components": comps, "base_scenario": base_d, "checkpoint": str(ckpt),
              "t0_s": t0, "horizon_s": float(horizon_s), "every_s": every, "share_thresholds": share_thr}
             for p in perts]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        agg = products.Aggregator(int(members), city, base, t0, share_thr, PLACE_FLOOD_THRESHOLD_M)
        if serial:
            where = "serial"
            for sp in specs:
                agg.add(run_member(sp, city=city))
        else:
            from dask.distributed import as_completed

            client, cluster, where = _client(scheduler, n_workers, int(members))
            try:
                city_ref = client.scatter(city, broadcast=True) if ship_city else None
                futs = [client.submit(run_member, sp, city_ref, key=f"forecast-member-{i:03d}-{os.getpid()}-{id(specs)}",
                                      pure=False) for i, sp in enumerate(specs)]
                for fut in as_completed(futs):
                    agg.add(fut.result())
                    fut.release()
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        issue_local = base.start + _dt.timedelta(seconds=t0)
        meta = {"base_run": str(run_dir.resolve()), "checkpoint": str(ckpt.resolve()), "scenario": base.name,
                "issue_time_s": t0, "issue_time_local": issue_local.isoformat(),
                "issue_time_utc": issue_local.astimezone(_dt.UTC).isoformat(), "horizon_s": float(horizon_s),
                "every_s": every, "components": comps, "components_available": list(COMPONENT_SETS),
                "scheduler": where, "seed": seed}
        doc = products.write_all(tmp, agg, meta, rules_obj, prev_alerts, sender=sender)
        doc["wall_time_s"] = time.perf_counter() - t_wall
        products.write_json(tmp / "forecast.json", doc)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc
