"""Recorders: schedule-driven, buffered, chunked outputs of a run folder.

``RunOutput`` is what :class:`twin.simulation.Simulation` drives when it has a run folder. It owns

- a field recorder (``TimeInterval(outputs.fields_every)``) → ``fields.nc`` (depth, speed, hazard);
- table recorders (``TimeInterval(outputs.tables_every)``) → ``links.parquet``, ``people.parquet``,
  ``units.parquet`` (emergency units: place last reached, phase, incident);
- a KPI series recorder (``TimeInterval(outputs.kpis_every)``) → the time series in ``kpis.json``;
- a checkpointer (``TimeInterval(outputs.checkpoint_every)`` if set, and then also at the end; also on
  Ctrl-C, on the wall-time limit and on a numerical failure) → ``checkpoints/``;
- at the end: ``trips.parquet``, ``incidents.parquet``, ``unit_actions.parquet``, ``max_depth.tif``, ``kpis.json``,
  ``max_depth.png`` and the final ``manifest.json``.

Records are buffered in memory and written every ``outputs.chunk_records`` records. The fields of a
record (float32 depth, speed, hazard from the step's read-only fields) and the writes themselves run on
one background thread, in order, while the model steps on; a write's error is
raised in the main thread at the next record, checkpoint or the end. A checkpoint, ``get_state`` and
the end of the run wait for every write, so a checkpoint always matches the files.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from twin.output import kpis as K
from twin.output import schema as S
from twin.output import tables
from twin.output.schedules import TimeInterval
from twin.output.state_io import CheckpointError, load_state, save_state
from twin.output.writers import NetCDFGridWriter, ParquetPartsWriter, write_geotiff, write_json

__all__ = ["RunOutput", "git_hash", "file_sha256", "latest_checkpoint", "load_checkpoint"]

CHECKPOINT_DIR = "checkpoints"


def git_hash() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            h = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return h + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def latest_checkpoint(run_dir: Path) -> Path | None:
    cps = checkpoints(run_dir)
    return cps[-1] if cps else None


def checkpoints(run_dir: Path) -> list[Path]:
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.exists():
        return []
    cps = sorted(d.glob("ckpt-*.npz"))
    if not cps and any(d.glob("ckpt-*.pkl")):
        raise CheckpointError(f"{d}: only pickled checkpoints (ckpt-*.pkl) of an older version; they are not "
                              "opened (unpickling can execute code). Re-run the scenario with this version")
    return cps


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state (data only: ``twin.output.state_io``); CheckpointError when unreadable."""
    state = load_state(path)
    for key in ("time_s", "iteration", "dt", "twin"):
        if key not in state:
            raise CheckpointError(f"{path}: damaged checkpoint (no {key!r})")
    return state


# writes queued at most (each holds a record's fields or a chunk): the model waits beyond this
_MAX_PENDING = 8


class RunOutput:
    def __init__(self, sim, out_dir: Path):
        self.dir = Path(out_dir)
        tw = sim.twin
        sc = tw.scenario
        self.outputs = sc.outputs
        self.field_schedule = TimeInterval(self.outputs.fields_every)
        self.table_schedule = TimeInterval(self.outputs.tables_every)
        self.kpi_schedule = TimeInterval(self.outputs.kpis_every)
        self.ckpt_schedule = TimeInterval(self.outputs.checkpoint_every) if self.outputs.checkpoint_every else None
        for s in (self.field_schedule, self.table_schedule, self.kpi_schedule, self.ckpt_schedule):
            if s is not None:
                s.check(sim.dt)
        self.field_vars = list(self.outputs.fields) if tw.flood is not None else []
        self.nc = None
        if self.field_vars:
            x, y = tw.terrain.cell_centers()
            self.nc = NetCDFGridWriter(
                self.dir / "fields.nc", x=x, y=y, crs=tw.terrain.crs, start=sc.start, variables=self.field_vars,
                dtype=self.outputs.fields_dtype, title=f"Tam Kỳ Twin run of scenario {sc.name}",
                history=f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} twin run",
                nodata_mask=tw.valid,
                static={  # attributes: twin.output.schema.FIELDS_NC
                    "elevation": np.where(tw.valid, tw.terrain.elevation, np.nan).astype("float32"),
                    "land": tw.land.astype("int8"),
                },
            )
        self.links_w = ParquetPartsWriter(self.dir / "links.parquet")
        self.people_w = ParquetPartsWriter(self.dir / "people.parquet")
        self.units_w = ParquetPartsWriter(self.dir / "units.parquet")
        self._ubuf: list[pd.DataFrame] = []
        self._fbuf: list[tuple[float, dict]] = []   # (filled by the output thread)
        self._n_fields = 0                           # records queued since the last fields write
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._lbuf: list[pd.DataFrame] = []
        self._pbuf: list[pd.DataFrame] = []
        self._dec_written = -1
        self.series: dict[str, list] = {"t_s": [], "flooded_area_m2": [], "links_closed_share": [],
                                        "volume_m3": [], "people_states": []}

    # -- lifecycle ------------------------------------------------------------------------------
    def initialize(self, sim) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "scenario.yaml").write_text(sim.twin.scenario.to_yaml(), encoding="utf-8")
        self.write_manifest(sim, status="running")

    def write_decisions(self, sim) -> None:
        """``decisions.parquet``: every decision that acted or was refused when due, in order (the
        whole log is rewritten, atomically: it is small)."""
        log = sim.twin.decisions
        if len(log.log) == self._dec_written:
            return
        df = log.frame()
        S.validate_frame("decisions.parquet", df)
        tmp = self.dir / "decisions.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.dir / "decisions.parquet")
        self._dec_written = len(log.log)

    def record(self, sim) -> None:
        tw = sim.twin
        t = sim.time
        self.write_decisions(sim)
        if self.nc is not None and self.field_schedule(sim):
            # the step's fields (read-only or this record's own: nobody changes them) to the output thread
            names = self.field_vars
            need_d = "depth" in names or "hazard" in names
            need_v = "speed" in names or "hazard" in names
            self._submit(self._prepare_fields, t, tw.depth() if need_d else None, tw.speed() if need_v else None,
                         tw.land_use_index() if "hazard" in names else None)
            self._n_fields += 1
            if self._n_fields >= self.outputs.chunk_records:
                self._flush_fields()
        if self.table_schedule(sim):
            if tw.traffic is not None:
                self._lbuf.append(tables.links_table(tw, t))
            if tw.people is not None:
                self._pbuf.append(tables.people_table(tw, t))
            if tw.services is not None:
                self._ubuf.append(tables.units_table(tw, t))
            if max(len(self._lbuf), len(self._pbuf), len(self._ubuf)) >= self.outputs.chunk_records:
                self._flush_tables()
        if self.kpi_schedule(sim):
            self._record_series(sim)
        if self.ckpt_schedule is not None and sim.iteration > 0 and self.ckpt_schedule(sim) and not sim.finished:
            self.checkpoint(sim)

    def _record_series(self, sim) -> None:
        from twin.couplings import depth_class_areas

        tw = sim.twin
        s = self.series
        s["t_s"].append(float(sim.time))
        d = tw.depth()
        s["flooded_area_m2"].append(depth_class_areas(d, tw.cell_area, tw.land) if d is not None else {})
        s["links_closed_share"].append(float(np.mean(tw.closed)) if tw.traffic is not None and len(tw.closed) else None)
        if tw.flood is not None:
            s["volume_m3"].append(float(tw.flood.volume_balance().get("volume_m3", np.nan)))
        else:
            s["volume_m3"].append(None)
        s["people_states"].append(tables.people_state_counts(tw) if tw.people is not None else None)

    # -- the output thread ----------------------------------------------------------------------------
    def _submit(self, fn, *args) -> None:
        """Queue ``fn(*args)`` on the output thread (jobs run one at a time, in order). A finished job's
        error is raised here; beyond :data:`_MAX_PENDING` queued jobs the oldest is waited for."""
        self._reap()
        while len(self._pending) >= _MAX_PENDING:
            self._pending.pop(0).result()
        if self._pool is None:
            # (normal priority: a lower one saved little of the flood's time and could starve the writes of
            # an ensemble member while the others keep the cores; docs/design/coupled-output-thread.md)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin-output")
        self._pending.append(self._pool.submit(fn, *args))

    def _reap(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()

    def settle(self, raise_errors: bool = True) -> None:
        """Wait for every queued write. ``raise_errors=False`` (the run is failing anyway): a write's
        error is reported on stderr instead of replacing the failure being raised."""
        while self._pending:
            f = self._pending.pop(0)
            try:
                f.result()
            except Exception as exc:
                if raise_errors:
                    self._pending.clear()
                    raise
                print(f"warning: {self.dir}: an output write failed: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Write every buffered record, wait for it and stop the output thread (a later write starts a
        new one)."""
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _prepare_fields(self, t: float, depth, speed, land_use) -> None:
        from twin.build import grid_fields_of

        self._fbuf.append((t, grid_fields_of(self.field_vars, depth, speed, land_use)))

    def _write_fields(self) -> None:
        buf, self._fbuf = self._fbuf, []
        if not buf or self.nc is None:
            return
        times = np.array([t for t, _ in buf])
        data = {v: np.stack([f[v] for _, f in buf]) for v in self.field_vars}
        self.nc.write(times, data)

    def _write_tables(self, links: list, people: list, units: list) -> None:
        for frames, writer in ((links, self.links_w), (people, self.people_w), (units, self.units_w)):
            if frames:
                writer.write(pd.concat(frames, ignore_index=True))

    def _flush_fields(self) -> None:
        if self.nc is None or self._n_fields == 0:
            return
        self._n_fields = 0
        self._submit(self._write_fields)

    def _flush_tables(self) -> None:
        if self._lbuf or self._pbuf or self._ubuf:
            bufs = (self._lbuf, self._pbuf, self._ubuf)
            self._lbuf, self._pbuf, self._ubuf = [], [], []
            self._submit(self._write_tables, *bufs)

    def flush(self) -> None:
        """Write every buffered record and wait until it is written."""
        self._flush_fields()
        self._flush_tables()
        self.settle()

    # -- checkpoints --------------------------------------------------------------------------------
    def checkpoint(self, sim) -> Path:
        self.flush()
        self.write_decisions(sim)
        d = self.dir / CHECKPOINT_DIR
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"ckpt-{sim.iteration:09d}.npz"
        state = sim.get_state()
        state["time_s"] = sim.time
        state["scenario_yaml"] = sim.twin.scenario.to_yaml()
        save_state(path, state)
        self.write_manifest(sim, status="checkpointed")
        return path

    def get_state(self) -> dict:
        self.settle()   # (the counts below are the output thread's)
        return {
            "nc_written": self.nc.n_written if self.nc is not None else 0,
            "links_parts": self.links_w.n_written,
            "people_parts": self.people_w.n_written,
            "units_parts": self.units_w.n_written,
            "series": {k: list(v) for k, v in self.series.items()},
            "buffers_empty": not (self._fbuf or self._lbuf or self._pbuf or self._ubuf),
        }

    def set_state(self, state: dict) -> None:
        if not state.get("buffers_empty", True):
            raise ValueError("checkpoint taken with unflushed output buffers")
        self.settle()
        self._fbuf, self._lbuf, self._pbuf, self._ubuf = [], [], [], []
        self._n_fields = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.nc is not None:
            self.nc.open_for_resume(int(state["nc_written"]))
        self.links_w.open_for_resume(int(state["links_parts"]))
        self.people_w.open_for_resume(int(state["people_parts"]))
        self.units_w.open_for_resume(int(state.get("units_parts", 0)))  # absent in older checkpoints
        self.series = {k: list(v) for k, v in state["series"].items()}

    # -- end of run -----------------------------------------------------------------------------------
    def finish(self, sim) -> dict:
        tw = sim.twin
        if self.ckpt_schedule is not None:  # the state at the end: what `twin forecast` starts from
            self.checkpoint(sim)
        self.close()   # every record written, the output thread stopped
        self.write_decisions(sim)
        trips = tables.trips_table(tw) if tw.traffic is not None else None
        incidents = tables.incidents_table(tw) if tw.services is not None else None
        # every table is validated against twin.output.schema; a component that did not run
        # leaves the schema's typed empty table
        self.links_w.finish()
        self.people_w.finish()
        self.units_w.finish()
        ParquetPartsWriter(self.dir / "trips.parquet").finish(final_df=trips)
        ParquetPartsWriter(self.dir / "incidents.parquet").finish(final_df=incidents)
        # the people model's shelter list: people.parquet's `shelter` is an index into it, not a place id
        ParquetPartsWriter(self.dir / "shelters.parquet").finish(
            final_df=tables.shelters_table(tw) if tw.people is not None else None)
        # every unit's moves and calls (dispatched, on_scene, drop_off, at_station, ...; x, y EPSG:32649):
        # where the ambulances and boats went, for maps and replays
        actions = tw.services.action_table() if tw.services is not None else None
        ParquetPartsWriter(self.dir / "unit_actions.parquet").finish(final_df=actions)
        if tw.flood is not None:
            write_geotiff(self.dir / "max_depth.tif", np.where(tw.valid, tw.max_depth(), np.nan),
                          tw.terrain.transform, tw.terrain.crs)
        kp = self.compute_kpis(sim, trips=trips, incidents=incidents)
        write_json(self.dir / "kpis.json", S.validate_json("kpis.json", kp))
        if self.outputs.png and tw.flood is not None:
            try:
                self.write_png(sim)
            except Exception as exc:  # a map is a convenience; never lose a run for it
                print(f"warning: PNG map not written: {exc}")
        self.write_manifest(sim, status="completed")
        return kp

    def compute_kpis(self, sim, trips=None, incidents=None) -> dict:
        from twin.couplings import depth_class_areas
        from twin.output.damage import direct_damage

        tw = sim.twin
        sc = tw.scenario
        people = pd.read_parquet(self.dir / "people.parquet") if (self.dir / "people.parquet").exists() else None
        links = pd.read_parquet(self.dir / "links.parquet") if (self.dir / "links.parquet").exists() else None
        s = self.series
        out: dict = {
            "scenario": sc.name,
            "start_local": sc.start.isoformat(),
            "end_time_s": float(sim.time),
            "definitions": "see twin/output/kpis.py",
            "series_t_s": s["t_s"],
            "flooded_area_m2": s["flooded_area_m2"],
            "volume_m3": s["volume_m3"],
        }
        if tw.flood is not None:
            d = tw.depth()
            out["flooded_area_final_m2"] = depth_class_areas(d, tw.cell_area, tw.land)
            out["flooded_area_max_m2"] = float(sum(depth_class_areas(tw.max_depth(), tw.cell_area, tw.land).values()))
            out["land_area_m2"] = float(tw.land.sum() * tw.cell_area)
            out["volume_balance"] = {k: float(v) for k, v in tw.flood.volume_balance().items()}
            out["max_depth_at_places"] = tables.max_depth_at_places(tw)
            out["places_in_water"] = tables.places_in_water(tw)
            ops = tw.forcing.get("reservoir_ops")
            if ops is not None:  # an operated reservoir (flood.reservoir.operation rule or manual)
                out["reservoir"] = ops["run"].summary()
            out["economy_exposure"] = K.economy_exposure(out["max_depth_at_places"],
                                                         getattr(tw.city, "places", None) if tw.city is not None else None)
            out["direct_damage"] = direct_damage(
                np.where(tw.land, tw.max_depth(), 0.0),
                getattr(tw.city, "landcover", None) if tw.city is not None else None,
                getattr(tw.city, "landcover_classes", None) if tw.city is not None else None,
                tw.cell_area,
                getattr(tw.city, "building_fraction", None) if tw.city is not None else None,
            )
        if tw.people is not None:
            out["people_exposure_person_hours"] = K.exposure_person_hours(people, self.outputs.tables_every)
            out["evacuation_clearance_s"] = K.clearance_times(people)
            out["evacuated_before_water"] = K.evacuated_before_water(people)
            out["people_states"] = [x for x in s["people_states"]]
            out["people_model"] = tw.people.kpis() if hasattr(tw.people, "kpis") else None
        if tw.services is not None:
            out["ambulance_response_s"] = K.response_times(incidents)
            out["services_model"] = tw.services.kpis() if hasattr(tw.services, "kpis") else None
        if tw.traffic is not None:
            closed = K.links_closed_share(links)
            out["road_links_closed_share"] = closed
            out["road_links_closed_share_max"] = max((c["share"] for c in closed), default=0.0)
            out["travel_time_index"] = K.travel_time_index(trips)
        return out

    def write_png(self, sim) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LightSource

        tw = sim.twin
        z = np.where(tw.valid, tw.terrain.elevation, np.nan)
        md = np.where(tw.land & (tw.max_depth() >= 0.05), tw.max_depth(), np.nan)
        sea = tw.sea_full if tw.sea_full is not None else tw.sea_mask
        b = tw.terrain.bounds
        ext = (b[0], b[2], b[1], b[3]) if len(b) == 4 else None
        fig, ax = plt.subplots(figsize=(8, 8 * z.shape[0] / max(z.shape[1], 1) + 0.6), dpi=110)
        ls = LightSource(azdeg=315, altdeg=45)
        zz = np.nan_to_num(z, nan=np.nanmin(z) if np.isfinite(z).any() else 0.0)
        ax.imshow(ls.hillshade(zz, vert_exag=2, dx=tw.terrain.cell_size, dy=tw.terrain.cell_size),
                  cmap="gray", extent=ext, alpha=0.8)
        if sea is not None:
            ax.imshow(np.where(sea, 1.0, np.nan), cmap="Blues", vmin=0, vmax=3, extent=ext, alpha=0.6)
        water = tw.valid & ~tw.land
        if sea is not None:
            water = water & ~sea
        ax.imshow(np.where(water, 1.0, np.nan), cmap="Blues", vmin=0, vmax=2, extent=ext, alpha=0.7)
        vmax = max(1.0, float(np.nanpercentile(md, 99))) if np.isfinite(md).any() else 1.0
        im = ax.imshow(md, cmap="turbo", vmin=0, vmax=vmax, extent=ext, alpha=0.85)
        fig.colorbar(im, ax=ax, shrink=0.7, label="maximum water depth [m]")
        sc = tw.scenario
        ax.set_title(f"{sc.name}: maximum flood depth on land (≥ 5 cm)\n{sc.start:%Y-%m-%d %H:%M} local + "
                     f"{sim.time / 3600:.1f} h; blue: sea and permanent water", fontsize=10)
        ax.set_xlabel("easting [m] (EPSG:32649)")
        ax.set_ylabel("northing [m]")
        fig.tight_layout()
        fig.savefig(self.dir / "max_depth.png")
        plt.close(fig)

    def write_manifest(self, sim, status: str) -> None:
        import twin as _twin

        tw = sim.twin
        sc = tw.scenario
        inputs = {}
        for p in sc.input_files():
            try:
                inputs[str(p)] = file_sha256(p) if p.is_file() else None
            except OSError:
                inputs[str(p)] = None
        for p in getattr(tw, "input_files", []) or []:
            p = Path(p)
            if p.is_file() and str(p) not in inputs:
                inputs[str(p)] = file_sha256(p)
        files = sorted(str(p.relative_to(self.dir)) for p in self.dir.glob("*") if p.is_file())
        write_json(self.dir / "manifest.json", S.validate_json("manifest.json", {
            "scenario": sc.to_dict(),
            "scenario_name": sc.name,
            "status": status,
            "stop_reason": sim.stop_reason,
            "seed": sc.seed,
            "seed_entropy": str(tw.seed_sequence.entropy),
            "seed_spawn_key": list(tw.seed_sequence.spawn_key),
            "package": "tamky-twin",
            "package_version": _twin.__version__,
            "git_hash": git_hash(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "input_checksums_sha256": inputs,
            "components": tw.component_names(),
            "warnings": list(getattr(tw, "warnings", [])),
            "coupling_step_s": sim.dt,
            "iteration": sim.iteration,
            "time_s": sim.time,
            "stop_time_s": sim.stop_time,
            "wall_time_s": sim.wall_time,
            "phase_wall_s": {k: round(v, 3) for k, v in getattr(sim, "phase_wall_s", {}).items()},
            "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "files": files,
            "schema_version": S.SCHEMA_VERSION,
        }))
