"""The run folder's schema is code (twin/output/schema.py): a real run's folder matches it file by
file, the recorders refuse what does not match, readers read through it, and fields.nc carries
correct CF attributes (no sea-floor standard name on the flood depth)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.build import build_twin
from twin.output import schema as S
from twin.output.writers import ParquetPartsWriter
from twin.scenario import load_scenario
from twin.simulation import Simulation

from .helpers import small_city, write_scenario

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
# the coupled Tam Kỳ twin, all four components, coarse and short (as tests/sim/test_coupled_tamky.py)
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=1h", "coupling_step=5min",
        "flood.rain.time_shift=3h", "flood.rain.rain_scale=3", "outputs.fields_every=30min",
        "outputs.tables_every=10min", "outputs.kpis_every=30min", "outputs.checkpoint_every=null",
        "outputs.png=true", "interventions.0.at=0", "interventions.1.at=10min",
        "services.params={medical_rate_per_1000_per_day: 20}", "traffic.background_trips_per_day=5000"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("schema") / "run"
    sim = Simulation(build_twin(load_scenario(MOLAVE, FAST)), out_dir=out)
    sim.run()
    assert sim.twin.component_names() == ["flood", "traffic", "people", "services"]
    return out


def test_a_real_run_folder_validates_file_by_file(run_dir):
    seen = set()
    for f in sorted(run_dir.iterdir()):
        name = f.name
        if name in S.TABLES:
            df = S.read_table(run_dir, name)           # validates columns and dtypes
            assert list(df.columns) and set(df.columns) == set(S.TABLES[name].names)
        elif name in S.JSON_FILES:
            S.validate_json(name, json.loads(f.read_text(encoding="utf-8")))
        elif name == "fields.nc":
            S.validate_netcdf(f)
        elif name.endswith(".tif"):
            S.raster_for(name)
        else:
            assert name in S.OTHER_FILES, f"{name}: a run-folder file the schema does not declare"
        seen.add(name)
    # every table the recorders always write, the JSON files, the grids
    assert {"links.parquet", "people.parquet", "units.parquet", "trips.parquet", "incidents.parquet",
            "unit_actions.parquet", "manifest.json", "kpis.json", "fields.nc", "max_depth.tif",
            "scenario.yaml", "max_depth.png"} <= seen
    # the tables are not trivially empty: the dtype checks saw real rows
    for name in ("links", "people", "units", "trips", "incidents", "unit_actions"):
        assert len(S.read_table(run_dir, name)) > 0, name
    assert json.loads((run_dir / "manifest.json").read_text())["schema_version"] == S.SCHEMA_VERSION


def test_fields_nc_cf_attributes(run_dir, tmp_path):
    import netCDF4

    with netCDF4.Dataset(run_dir / "fields.nc") as ds:
        assert set(ds.variables) == set(S.FIELDS_NC)
        for name, var in ds.variables.items():
            attrs = var.ncattrs()
            assert "long_name" in attrs, name
            if name != "spatial_ref":   # the grid mapping holds the CRS, not a quantity
                assert "units" in attrs, name
            # the old attribute: sea-floor depth is not the depth of water over the ground
            assert getattr(var, "standard_name", None) != "sea_floor_depth_below_sea_surface", name
        assert "standard_name" not in ds["depth"].ncattrs() and "standard_name" not in ds["speed"].ncattrs()
        assert ds["depth"].units == "m" and ds["speed"].units == "m s-1"
        assert ds["hazard"].units == "1" and "FD2321" in ds["hazard"].long_name
        assert ds["elevation"].standard_name == "ground_level_altitude"
        assert ds["depth"].grid_mapping == "spatial_ref" and "UTM zone 49N" in ds["spatial_ref"].crs_wkt
        assert ds["time"].units.startswith("seconds since 2020-10-28 08:00:00+07:00")
    # a file carrying the old standard_name is refused, by variable and name
    old = tmp_path / "fields.nc"
    shutil.copy(run_dir / "fields.nc", old)
    with netCDF4.Dataset(old, "a") as ds:
        ds["depth"].standard_name = "sea_floor_depth_below_sea_surface"
        ds["hazard"].delncattr("units")
    with pytest.raises(S.RunSchemaError) as e:
        S.validate_netcdf(old)
    msg = str(e.value)
    assert "'depth' has standard_name 'sea_floor_depth_below_sea_surface'" in msg
    assert "'hazard' lacks attribute 'units'" in msg and str(old) in msg


def test_geotiff_band_has_units_and_description(run_dir):
    import rasterio

    with rasterio.open(run_dir / "max_depth.tif") as src:
        assert src.units == ("m",)
        assert src.descriptions[0].startswith("maximum water depth")
        assert src.nodata == -9999.0 and src.crs.to_epsg() == 32649


def _links(n=3) -> pd.DataFrame:
    return pd.DataFrame({
        "t_s": np.zeros(n), "link_id": np.arange(n, dtype=np.int64), "depth_m": np.zeros(n),
        "speed_factor": np.ones(n), "closed": np.zeros(n, bool), "closed_by_water": np.zeros(n, bool),
        "flow_veh_per_s": np.zeros(n), "density_veh_per_m": np.zeros(n), "speed_mps": np.full(n, 10.0),
        "queue_veh": np.zeros(n)})


def test_validate_frame_names_file_column_and_dtypes():
    S.validate_frame("links", _links())
    bad = _links().astype({"link_id": "int32"})
    with pytest.raises(S.RunSchemaError, match=r"links\.parquet: column 'link_id' has dtype int32, expected int64"):
        S.validate_frame("links.parquet", bad)
    with pytest.raises(S.RunSchemaError, match=r"links\.parquet: column 'closed' is missing \(expected bool"):
        S.validate_frame("links", _links().drop(columns="closed"))
    with pytest.raises(S.RunSchemaError, match=r"column 'vehicles' is not in the schema"):
        S.validate_frame("links", _links().assign(vehicles=1.0))
    with pytest.raises(S.RunSchemaError, match=r"column 'closed' has dtype object \(mixed"):
        S.validate_frame("links", _links().assign(closed=[True, None, "x"]))
    with pytest.raises(S.RunSchemaError, match="not a table of the run folder"):
        S.validate_frame("vehicles", _links())


def test_writer_refuses_a_bad_frame_and_writes_nothing(tmp_path):
    w = ParquetPartsWriter(tmp_path / "links.parquet")
    with pytest.raises(S.RunSchemaError, match="'speed_mps' has dtype float32, expected float64"):
        w.write(_links().astype({"speed_mps": "float32"}))
    assert w.n_written == 0 and not (tmp_path / "links.parts").exists()
    with pytest.raises(S.RunSchemaError, match="'t_s' is missing"):
        ParquetPartsWriter(tmp_path / "links.parquet").finish(final_df=_links().drop(columns="t_s"))
    assert not (tmp_path / "links.parquet").exists()
    with pytest.raises(S.RunSchemaError, match="impacts.parquet: not a table of the run-folder schema"):
        ParquetPartsWriter(tmp_path / "impacts.parquet")
    ParquetPartsWriter(tmp_path / "impacts.parquet", validate=False).finish(final_df=pd.DataFrame({"a": [1]}))


def test_recorder_refuses_a_table_that_breaks_the_schema(tmp_path, monkeypatch):
    """The recorders validate what they write: a links table with a renamed column stops the run
    with the file and column named (it is not written under a name no reader knows)."""
    sc = load_scenario(write_scenario(tmp_path), ["duration=4min"])
    tw = build_twin(sc, city=small_city())
    from twin.output import tables

    real = tables.links_table
    monkeypatch.setattr(tables, "links_table", lambda tw, t: real(tw, t).rename(columns={"density_veh_per_m": "density"}))
    with pytest.raises(S.RunSchemaError, match=r"links\.parquet: column 'density_veh_per_m' is missing.*"
                                               r"column 'density' is not in the schema"):
        Simulation(tw, out_dir=tmp_path / "run").run()
    assert not (tmp_path / "run" / "links.parquet").exists()


def test_empty_tables_of_absent_components_are_typed(tmp_path):
    """A flood-only run writes every table with the schema's columns and dtypes, no rows."""
    sc = load_scenario(write_scenario(tmp_path), ["traffic=null", "duration=2min"])
    Simulation(build_twin(sc, city=small_city()), out_dir=tmp_path / "run").run()
    for name, table in S.TABLES.items():
        if name in ("decisions.parquet", "injects.parquet"):   # injects.parquet: exercise runs only
            continue
        df = pd.read_parquet(tmp_path / "run" / name)
        assert list(df.columns) == list(table.names) and len(df) == 0, name
        S.validate_frame(name, df)


def test_read_table_absent_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    df = S.read_table(run, "people")           # a run still going: no table yet
    assert len(df) == 0 and list(df.columns) == list(S.TABLES["people.parquet"].names)
    assert df["agent_id"].dtype == np.int64 and df["hazard_rating"].dtype == np.float64
    (run / "manifest.json").write_text(json.dumps({"status": "completed"}))
    with pytest.raises(S.RunSchemaError, match=r"people\.parquet: missing, but the run is completed"):
        S.read_table(run, "people")
    assert len(S.read_table(run, "units")) == 0  # older completed runs have no units table
    _links().astype({"link_id": "int32"}).to_parquet(run / "links.parquet")
    with pytest.raises(S.RunSchemaError, match=r"run/links\.parquet: column 'link_id' has dtype int32"):
        S.read_table(run, "links")
    with pytest.raises(S.RunSchemaError, match="'link_id' has dtype int32"):
        S.read_table(run, "links", columns=["t_s", "link_id"])
    (run / "trips.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(S.RunSchemaError, match="cannot be read as Parquet"):
        S.read_table(run, "trips")


def test_json_files_are_checked_by_key(run_dir):
    kp = json.loads((run_dir / "kpis.json").read_text())
    S.validate_json("kpis.json", kp)
    with pytest.raises(S.RunSchemaError, match="kpis.json: key 'end_time_s' has type string, expected number"):
        S.validate_json("kpis.json", {**kp, "end_time_s": "1h"})
    with pytest.raises(S.RunSchemaError, match="key 'flood_peak' is not in the schema"):
        S.validate_json("kpis.json", {**kp, "flood_peak": 1.0})
    man = json.loads((run_dir / "manifest.json").read_text())
    del man["seed"]
    with pytest.raises(S.RunSchemaError, match="manifest.json: key 'seed' is missing"):
        S.validate_json("manifest.json", man)


def test_decisions_table_schema():
    from twin.decisions import DecisionQueue, parse_decision

    t = S.TABLES["decisions.parquet"]
    assert [(c.name, c.dtype) for c in t.columns] == [
        ("decision_id", "int64"), ("t_s", "float64"), ("at_s", "float64"), ("wall_time", "string"),
        ("source", "string"), ("issuer", "string"), ("type", "string"), ("params", "string"),
        ("outcome", "string"), ("message", "string"), ("parent_id", "int64")]
    assert t.column("t_s").units == "s"
    q = DecisionQueue()
    S.validate_frame("decisions", q.frame())            # no decisions: a typed empty table
    p = q.push(parse_decision({"type": "shelter_open", "place": "S1", "capacity": 10}), 3600.0, "api", "duty officer")
    q.record(p, 3600.0, "applied", "opened S1")
    df = q.frame()
    S.validate_frame("decisions", df)
    assert json.loads(df["params"].iloc[0])["place"] == "S1"
    with pytest.raises(S.RunSchemaError, match="'decision_id' has dtype float64, expected int64"):
        S.validate_frame("decisions", df.astype({"decision_id": float}))


def test_schema_markdown_documents_every_file_and_column():
    md = S.schema_markdown()
    for t in S.TABLES.values():
        assert f"## {t.name}" in md
        for c in t.columns:
            assert f"| `{c.name}` | {c.dtype} |" in md
    for v in S.FIELDS_NC:
        assert f"| `{v}` |" in md
    assert "## manifest.json" in md and "## kpis.json" in md and "max_depth.tif" in md


def test_an_old_empty_table_with_fewer_columns_reads_as_typed_empty(tmp_path):
    """Runs written before the schema stored the empty people table of a run without people with 7
    of its 16 columns: no rows, nothing to misread, so it reads as the schema's empty table."""
    pd.DataFrame({"t_s": pd.Series(dtype="float64"), "agent_id": pd.Series(dtype="int64")}).to_parquet(
        tmp_path / "people.parquet")
    df = S.read_table(tmp_path, "people")
    assert len(df) == 0 and list(df.columns) == list(S.TABLES["people.parquet"].names)
