"""``review_run``: the after-action review of a run folder with decisions (an exercise or a script).

1. The run's decisions (``decisions.parquet``) are sorted into roles: ``scenario`` (the scenario's
   interventions), ``inject`` (source ``exercise``, or named by ``injects.parquet``), ``follow_up``
   (queued by another decision) and ``trainee`` (everything else: ``api``, ``dashboard``,
   ``replay``).
2. Counterfactual forks (``twin.review.forks``) run on Dask: the **baseline** (every trainee
   decision left out, scenario and inject decisions kept; unless ``baseline`` is given), the
   **no-op** fork (nothing left out: must reproduce the run exactly, the check that the deltas mean
   something) and one fork **without each trainee decision** that acted.
3. KPIs (``twin.review.kpis``) of the run against each: the effect of each decision and of all of
   them; the exercise's objectives (``exercise.yaml``) scored on the run and on the baseline.
4. ``review.json`` (``twin.review.model.ReviewReport``) and a self-contained ``review.html``.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.review.model import (
    BaselineInfo,
    Curve,
    DecisionEntry,
    Effect,
    InjectEntry,
    KpiDelta,
    NoopCheck,
    ObjectiveResult,
    ReviewReport,
)

__all__ = ["ReviewError", "review_run", "check_run_folder", "check_baseline", "decision_roles"]

TRAINEE_SOURCES = ("api", "dashboard", "replay")
#: scenario keys a baseline must share with the run (same city, grid and clock)
SAME_KEYS = ("city", "resolution_m", "start", "duration", "coupling_step")


class ReviewError(ValueError):
    """Input a review cannot use; the message names the folder, file and value."""


def _manifest(run_dir: Path) -> dict:
    f = run_dir / "manifest.json"
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except OSError:
        raise ReviewError(f"{run_dir}: not a run folder (no readable manifest.json)") from None
    except ValueError as exc:
        raise ReviewError(f"{f}: not valid JSON ({exc})") from None
    if not isinstance(m, dict) or not isinstance(m.get("scenario"), dict):
        raise ReviewError(f"{f}: not a run manifest (no 'scenario' object)")
    return m


def check_run_folder(run_dir: str | Path, what: str = "run") -> dict:
    """The manifest of a finished run folder; :class:`ReviewError` naming what is wrong otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReviewError(f"{run_dir}: the {what} folder does not exist")
    if not (run_dir / "scenario.yaml").is_file():
        raise ReviewError(f"{run_dir}: not a run folder (no scenario.yaml)")
    m = _manifest(run_dir)
    if m.get("status") != "completed":
        raise ReviewError(f"{run_dir}: the {what} is not finished (manifest status {m.get('status')!r}); "
                          "resume it with `twin run --resume` first")
    if not (run_dir / "decisions.parquet").is_file():
        raise ReviewError(f"{run_dir}: no decisions.parquet (a run folder of an older version?)")
    return m


def check_baseline(run_manifest: dict, base_dir: Path) -> dict:
    """A given baseline must be a finished run of the same city, grid and clock."""
    bm = check_run_folder(base_dir, "baseline")
    a, b = run_manifest["scenario"], bm["scenario"]
    for k in SAME_KEYS:
        if a.get(k) != b.get(k):
            raise ReviewError(f"{base_dir}: the baseline's {k} is {b.get(k)!r}, the run's is {a.get(k)!r}; "
                              f"a baseline must share the run's {', '.join(SAME_KEYS)}")
    return bm


def _injects(run_dir: Path) -> pd.DataFrame | None:
    f = run_dir / "injects.parquet"
    if not f.is_file():
        return None
    try:
        df = pd.read_parquet(f)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise ReviewError(f"{f}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    missing = {"inject_id", "t_s", "message"} - set(df.columns)
    if missing:
        raise ReviewError(f"{f}: columns {sorted(missing)} missing (expected inject_id, t_s, message, decision_id)")
    return df


def decision_roles(log: pd.DataFrame, injects: pd.DataFrame | None) -> pd.Series:
    """Role of each decision: trainee, inject, scenario or follow_up (module docstring)."""
    inj_ids: set[int] = set()
    if injects is not None and "decision_id" in injects.columns:
        inj_ids = {int(v) for v in pd.to_numeric(injects["decision_id"], errors="coerce").dropna()}
    role = np.where(log["source"] == "scenario", "scenario",
                    np.where(log["parent_id"] >= 0, "follow_up",
                             np.where((log["source"] == "exercise") | log["decision_id"].isin(inj_ids), "inject",
                                      "trainee")))
    return pd.Series(role, index=log.index)


def _objectives_of(run_dir: Path) -> list:
    f = run_dir / "exercise.yaml"
    if not f.is_file():
        return []
    import yaml

    try:
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReviewError(f"{f}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise ReviewError(f"{f}: expected a mapping (a scenario plus roles, injects, objectives)")
    from twin.exercise.objectives import ObjectiveError, parse_objectives

    try:
        return parse_objectives(doc.get("objectives"), where=f"{f}: objectives")
    except ObjectiveError as exc:
        raise ReviewError(str(exc)) from None


def _compare_runs(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """Files compared and the differences between two run folders (outputs, not wall-clock data)."""
    from twin.output.schema import read_table

    compared, diffs = [], []
    if (a / "kpis.json").is_file():
        compared.append("kpis.json")
        ka, kb = (json.loads((d / "kpis.json").read_text(encoding="utf-8")) for d in (a, b))
        for k in sorted(set(ka) | set(kb)):
            if ka.get(k) != kb.get(k):
                diffs.append(f"kpis.json: {k}")
    for name in ("people", "incidents", "links", "units"):
        if not (a / f"{name}.parquet").is_file():
            continue
        compared.append(f"{name}.parquet")
        ta, tb = read_table(a, name), read_table(b, name)
        try:
            pd.testing.assert_frame_equal(ta.reset_index(drop=True), tb.reset_index(drop=True), check_exact=True)
        except AssertionError as exc:
            diffs.append(f"{name}.parquet: {str(exc).splitlines()[0]}")
    if (a / "fields.nc").is_file():
        import xarray as xr

        compared.append("fields.nc")
        with xr.open_dataset(a / "fields.nc", decode_times=False) as da, \
                xr.open_dataset(b / "fields.nc", decode_times=False) as db:
            for v in ("depth", "speed", "hazard"):
                if v in da.variables and not np.array_equal(da[v].values, db[v].values, equal_nan=True):
                    diffs.append(f"fields.nc: {v}")
    return compared, diffs


def _kpi_models(d: dict) -> dict[str, KpiDelta]:
    return {k: KpiDelta(**v) for k, v in d.items()}


def _curves(run_dir: Path) -> dict[str, Curve]:
    from twin.review.kpis import kpi_curves

    return {k: Curve(**v) for k, v in kpi_curves(run_dir).items()}


def review_run(run_dir: str | Path, out_dir: str | Path, baseline: str | Path | None = None, *,
               scheduler: str | None = None, n_workers: int | None = None, serial: bool = False,
               water_depth_m: float = 0.1, html: bool = True, log=None) -> ReviewReport:
    """Review ``run_dir`` into ``out_dir`` (``review.json``, ``review.html``, ``forks/``)."""
    from twin.exercise.objectives import RunData, score_objectives
    from twin.output.schema import read_table
    from twin.review.forks import run_forks, submitted_decisions
    from twin.review.kpis import kpi_deltas, run_kpis

    say = log or (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out_dir)
    man = check_run_folder(run_dir)
    if not (water_depth_m > 0 and np.isfinite(water_depth_m)):
        raise ReviewError(f"--water-depth {water_depth_m!r}: must be a depth > 0 m")
    base_given = Path(baseline) if baseline is not None else None
    if base_given is not None:
        check_baseline(man, base_given)
        if base_given.resolve() == run_dir.resolve():
            raise ReviewError(f"{base_given}: the baseline is the run itself")
    if out.exists() and any(p.name != "review.html" and p.name != "review.json" for p in out.iterdir()):
        raise ReviewError(f"{out}: the review folder exists and holds other files; give an empty or new folder")
    objectives = _objectives_of(run_dir)
    try:
        log_df = read_table(run_dir, "decisions")
    except ValueError as exc:
        raise ReviewError(str(exc)) from None
    injects = _injects(run_dir)
    roles = decision_roles(log_df, injects)
    applied = submitted_decisions(log_df)
    trainee = applied[roles.loc[applied.index] == "trainee"].sort_values(["t_s", "decision_id"], kind="stable")
    tids = [int(i) for i in trainee["decision_id"]]
    warnings: list[str] = []

    out.mkdir(parents=True, exist_ok=True)
    forks_dir = out / "forks"
    jobs: list[tuple[str, list[int], float | None]] = []
    t_first = float(trainee["t_s"].min()) if len(trainee) else None
    if tids:
        jobs.append((str(forks_dir / "noop"), [], t_first))
        if base_given is None:
            jobs.append((str(forks_dir / "baseline"), tids, t_first))
        for did in tids:
            jobs.append((str(forks_dir / f"without-{did}"), [did], None))
    say(f"review: {len(tids)} trainee decision(s); {len(jobs)} counterfactual fork(s)")
    t0 = time.perf_counter()
    results, where = run_forks(run_dir, jobs, scheduler=scheduler, n_workers=n_workers, serial=serial) \
        if jobs else ([], "none needed")
    fork_wall = time.perf_counter() - t0
    by_dir = {Path(r["out_dir"]).name: r for r in results}

    # the no-op check
    if tids:
        compared, diffs = _compare_runs(run_dir, forks_dir / "noop")
        noop = NoopCheck(identical=not diffs, fork_dir=str(forks_dir / "noop"),
                         from_checkpoint_s=by_dir["noop"]["from_checkpoint_s"], compared=compared, differences=diffs,
                         note="the fork machinery with nothing left out reproduces the run" if not diffs else
                         "the fork with nothing left out differs from the run: the deltas below mix the decisions' "
                         "effects with that difference and cannot be trusted")
        if diffs:
            warnings.append("no-op counterfactual differs from the run: " + "; ".join(diffs[:5]))
    else:
        noop = NoopCheck(identical=None, note="no trainee decision acted: no counterfactual to check")

    # the baseline
    if base_given is not None:
        base_dir = base_given
        binfo = BaselineInfo(run_dir=str(base_given), origin="given", note="given with --baseline")
    elif tids:
        base_dir = forks_dir / "baseline"
        binfo = BaselineInfo(run_dir=str(base_dir), origin="computed", from_checkpoint_s=by_dir["baseline"]["from_checkpoint_s"],
                             note="the run without its trainee decisions (scenario and inject decisions kept)")
    else:
        base_dir = run_dir
        binfo = BaselineInfo(run_dir=str(run_dir), origin="the run itself",
                             note="no trainee decision acted: the run is its own baseline")

    run_data = RunData(run_dir)
    k_run = run_kpis(run_data, water_depth_m)
    base_data = RunData(base_dir) if base_dir != run_dir else run_data
    k_base = run_kpis(base_data, water_depth_m) if base_dir != run_dir else k_run

    # decisions, with the effect of each trainee decision
    decisions = []
    for i, row in log_df.iterrows():
        did = int(row["decision_id"])
        effect = None
        if did in tids:
            name = f"without-{did}"
            k_without = run_kpis(forks_dir / name, water_depth_m)
            effect = Effect(counterfactual_dir=str(forks_dir / name), from_checkpoint_s=by_dir[name]["from_checkpoint_s"],
                            kpis=_kpi_models(kpi_deltas(k_run, k_without)))
        try:
            params = json.loads(row["params"])
        except ValueError:
            params = {"unreadable": str(row["params"])}
        decisions.append(DecisionEntry(decision_id=did, t_s=float(row["t_s"]), at_s=float(row["at_s"]),
                                       source=str(row["source"]), role=roles.loc[i], issuer=str(row["issuer"]),
                                       type=str(row["type"]), params=params, outcome=str(row["outcome"]),
                                       message=str(row["message"]), effect=effect))
    inj = []
    if injects is not None:
        for r in injects.to_dict("records"):
            d = pd.to_numeric(pd.Series([r.get("decision_id")]), errors="coerce").iloc[0]
            inj.append(InjectEntry(inject_id=str(r["inject_id"]), t_s=float(r["t_s"]), message=str(r["message"]),
                                   decision_id=None if pd.isna(d) else int(d)))

    # objectives, on the run and on the baseline
    objs: list[ObjectiveResult] = []
    if objectives:
        scored = score_objectives(run_data, objectives)
        scored_b = score_objectives(base_data, objectives) if base_dir != run_dir else None
        for k, s in enumerate(scored):
            b = None if scored_b is None else {x: scored_b[k][x] for x in ("status", "measured", "decided_at_s", "detail")}
            objs.append(ObjectiveResult(**s, baseline=b))

    curves = {"run": _curves(run_dir)}
    if base_dir != run_dir:
        curves["baseline"] = _curves(base_dir)
    sc = man["scenario"]
    report = ReviewReport(
        run_dir=str(run_dir), scenario=str(man.get("scenario_name", sc.get("name", ""))), city=str(sc.get("city", "")),
        end_time_s=float(man.get("time_s", 0.0)),
        generated_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), water_depth_m=float(water_depth_m),
        is_exercise=(run_dir / "exercise.yaml").is_file(), baseline=binfo, noop_check=noop,
        kpis=_kpi_models(kpi_deltas(k_run, k_base)), decisions=decisions, injects=inj, objectives=objs,
        curves=curves, forks={"scheduler": where, "n_forks": len(jobs), "wall_time_s": fork_wall,
                              "forks": [_jsonable(r) for r in results]},
        warnings=warnings)
    (out / "review.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    if html:
        from twin.review.html import write_html

        write_html(report, out / "review.html")
    return report


def _jsonable(r: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(r, default=str))
