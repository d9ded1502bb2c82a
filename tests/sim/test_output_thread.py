"""The run folder's fields and tables are prepared and written on one output thread while the model
steps on: the records are those of their step, a write's error reaches the caller, a failing run
waits for the writes, and a checkpoint matches the files."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from twin.build import build_twin
from twin.output.recorders import load_checkpoint
from twin.output.schedules import TimeInterval
from twin.output.writers import NetCDFGridWriter, ParquetPartsWriter
from twin.simulation import Simulation


def test_records_are_the_fields_of_their_step_written_on_the_output_thread(scenario, city, tmp_path, monkeypatch):
    threads = []
    for cls in (NetCDFGridWriter, ParquetPartsWriter):
        real = cls.write

        def spy(self, *a, _real=real, **k):
            threads.append(threading.current_thread().name)
            return _real(self, *a, **k)

        monkeypatch.setattr(cls, "write", spy)
    tw = build_twin(scenario, city=city)
    sim = Simulation(tw, out_dir=tmp_path / "run")
    seen = {}
    # the same fields computed in the main thread in the same step (callbacks run before the recorders)
    sim.add_callback("fields_now", lambda s: seen.__setitem__(s.time, tw.grid_fields(["depth", "speed", "hazard"])),
                     TimeInterval(300.0))
    sim.run()
    assert threads and all(n.startswith("twin-output") for n in threads), threads
    ds = xr.open_dataset(tmp_path / "run" / "fields.nc", decode_times=False, mask_and_scale=False)
    times = ds["time"].values
    assert list(times) == [0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0] and set(times) <= set(seen)
    valid = np.asarray(tw.valid)
    for k, t in enumerate(times):
        for v in ("depth", "speed", "hazard"):
            want = np.where(valid, seen[t][v], np.nan).astype(np.float32)
            np.testing.assert_array_equal(ds[v].values[k], want)
    assert float(np.nanmax(ds["depth"].values[-1])) > 0.1   # (water there to compare)
    ds.close()
    # every table record written and merged at the end (the last chunk is written by the end of the run)
    for name in ("links.parquet",):   # (this valley has roads; no residents, no services)
        t = pd.read_parquet(tmp_path / "run" / name)["t_s"]
        assert sorted(t.unique()) == [0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0], name


def test_a_write_that_fails_on_the_output_thread_fails_the_run(scenario, city, tmp_path, monkeypatch):
    def full(self, *a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(NetCDFGridWriter, "write", full)
    sim = Simulation(build_twin(scenario, city=city), out_dir=tmp_path / "full")
    with pytest.raises(OSError, match="No space left on device"):
        sim.run()


def test_a_failing_step_waits_for_the_writes_and_raises_its_own_error(scenario, city, tmp_path, monkeypatch):
    gate = threading.Event()
    real = NetCDFGridWriter.write

    def slow(self, *a, **k):
        gate.wait(10.0)   # held until the step has failed
        return real(self, *a, **k)

    monkeypatch.setattr(NetCDFGridWriter, "write", slow)
    tw = build_twin(scenario, city=city)
    sim = Simulation(tw, out_dir=tmp_path / "fail")

    def boom(s):
        if s.time >= 900.0:
            gate.set()
            raise RuntimeError("a component failed")

    sim.add_callback("boom", boom)
    with pytest.raises(RuntimeError, match="a component failed"):
        sim.run()
    assert not sim.output._pending   # every queued write ended before run() raised
    with xr.open_dataset(tmp_path / "fail" / "fields.nc", decode_times=False) as ds:
        assert list(ds["time"].values) == [0.0, 300.0]   # the chunk of 2 records queued before the failure


def test_a_checkpoint_matches_the_records_in_the_files(scenario, city, tmp_path):
    tw = build_twin(scenario, city=city)
    sim = Simulation(tw, out_dir=tmp_path / "ck")
    sim.run(until=1260.0)   # 5 records (0 .. 20 min): two written chunks and one record buffered
    path = sim.output.checkpoint(sim)
    st = load_checkpoint(path)
    with xr.open_dataset(tmp_path / "ck" / "fields.nc", decode_times=False) as ds:
        assert len(ds["time"]) == st["output"]["nc_written"] == 5
    assert st["output"]["buffers_empty"]


def test_a_reader_through_xarray_waits_for_a_write_in_progress(tmp_path, monkeypatch):
    """netCDF/HDF5 are not thread-safe: the writer holds xarray's lock, so a reader in another thread
    waits for the write instead of entering the library beside it."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    path = tmp_path / "f.nc"
    w = NetCDFGridWriter(path, x=np.arange(4.0) * 10, y=100 - np.arange(3.0) * 10, crs="EPSG:32649",
                         start=dt.datetime(2020, 10, 28, 6, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")), variables=["depth"])
    w.write(np.array([0.0]), {"depth": np.zeros((1, 3, 4))})
    entered, release = threading.Event(), threading.Event()
    real = NetCDFGridWriter._write

    def slow(self, *a, **k):
        entered.set()
        release.wait(10.0)
        return real(self, *a, **k)

    monkeypatch.setattr(NetCDFGridWriter, "_write", slow)
    writer = threading.Thread(target=w.write, args=(np.array([60.0]), {"depth": np.ones((1, 3, 4))}))
    writer.start()
    assert entered.wait(5.0)
    got = []

    def read():
        with xr.open_dataset(path, decode_times=False) as ds:
            got.append(ds["time"].values.tolist())

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.5)
    assert reader.is_alive()          # waiting for the write
    release.set()
    writer.join(5.0)
    reader.join(5.0)
    assert got == [[0.0, 60.0]]
