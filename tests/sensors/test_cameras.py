"""Traffic cameras: the synthetic Tam Kỳ replay fixture ingested like every observation, counts per link and
hour, the counted class mix, and the background demand calibrated from them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.sensors import SensorStore
from twin.sensors.adapters import load_csv
from twin.sensors.cameras import camera_counts, camera_datastreams, counted_class_share, hourly_link_counts

FIX = Path(__file__).parent / "fixtures" / "cameras"


@pytest.fixture(scope="module")
def tamky_net():
    from twin.city import load_city

    return load_city("tamky").roads.largest_strongly_connected()


def test_tamky_camera_fixture_ingested_counts_per_link_and_hour(tmp_path, tamky_net):
    from shapely.geometry import Point

    with SensorStore(tmp_path / "cams.duckdb") as st:
        res, n_rej = load_csv(st, FIX / "tamky_camera_counts.csv", FIX / "tamky_cameras.yaml")
        assert n_rej == 0
        assert st.count() == 52 * 24                       # 52 quarter-hours x 24 datastreams
        meta = camera_datastreams(st)
        assert len(meta) == 24 and set(meta["vehicle_class"]) == {"motorbike", "car", "bus_truck"}
        assert meta["link_id"].nunique() == 8
        stations = st.stations().set_index("station_id")
        counts = camera_counts(st)
    # every camera sits on its links (the fixture's link ids are the shipped network's)
    for r in meta.itertuples():
        s = stations.loc[r.station_id]
        assert tamky_net.links.at[r.link_id, "geometry"].distance(Point(s.x, s.y)) < 30.0
    raw = pd.read_csv(FIX / "tamky_camera_counts.csv", comment="#")
    # an hour's vehicles on a link: the class streams added, the four quarter-hours ending 08:15..09:00
    hourly = hourly_link_counts(counts)
    assert sorted(hourly.columns) == list(range(6, 19))
    lk = int(meta["link_id"].iloc[0])
    ids = meta.loc[meta["link_id"] == lk, "datastream_id"]
    sel = raw["time"].between("2020-10-27 08:15", "2020-10-27 09:00")
    want = sum(raw.loc[sel, f"{i} [veh]"].sum() for i in ids)
    assert hourly.loc[lk, 8] == pytest.approx(want)
    share = counted_class_share(counts)
    assert share["motorbike"] == pytest.approx(0.82, abs=0.04) and share["car"] == pytest.approx(0.13, abs=0.04)


def test_camera_stream_without_link_is_refused(tmp_path):
    from twin.sensors import Datastream, Station

    with SensorStore(tmp_path / "c.duckdb") as st:
        st.register([Station("C1", x=0.0, y=0.0)], [Datastream("c1-all", "C1", "traffic_count", "veh")])
        with pytest.raises(ValueError, match="traffic_count datastream 'c1-all': no link_id"):
            camera_datastreams(st)
        st.register([], [Datastream("c1-all", "C1", "traffic_count", "veh",
                                    properties={"link_id": 3, "vehicle_class": "tractor"})])
        with pytest.raises(ValueError, match="vehicle_class 'tractor' is not one of"):
            camera_datastreams(st)


def test_cli_calibrate_demand_writes_what_the_scenario_key_reads(tmp_path, tamky_net, capsys):
    from twin.cli import main
    from twin.traffic.calibration import DemandCalibration, calibrated_background_trips

    store = tmp_path / "cams.duckdb"
    with SensorStore(store) as st:
        load_csv(st, FIX / "tamky_camera_counts.csv", FIX / "tamky_cameras.yaml")
    out = tmp_path / "cal.json"
    assert main(["sensors", "calibrate-demand", "--store", str(store), "--out", str(out), "--max-pairs", "300"]) == 0
    cal = DemandCalibration.load(out)
    assert cal.hours == list(range(6, 19)) and cal.n_zones == 9
    assert cal.class_share["motorbike"] == pytest.approx(0.82, abs=0.04)
    # the fit to the counts is at least as good as the prior's in every hour
    for h in cal.hours:
        assert cal.fit[str(h)]["rmse_vph"] <= cal.fit[str(h)]["rmse_prior_vph"] + 1e-9
    assert np.isfinite(cal.multipliers).all() and (cal.multipliers >= 0).all()
    trips = calibrated_background_trips(tamky_net, 20000.0, 0.0, 3600.0, np.random.default_rng(0), cal,
                                        start_hour=8.0)
    assert len(trips) > 0 and set(trips["origin"]).issubset(set(tamky_net.node_ids))
    capsys.readouterr()
    assert main(["sensors", "calibrate-demand", "--store", str(tmp_path / "none.duckdb"), "--out", str(out)]) == 2
    assert "--store: sensor store" in capsys.readouterr().err
