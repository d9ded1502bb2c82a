"""Tam Kỳ's wards and population come from the real data (twin.city.census), not from a synthetic partition.

The 13 legacy wards of the former city (2009 census polygons, generalised) dissolve into the four 2025
wards; their areas match the official 2025 areas within 5 %; population is the 2009 count × 122,374 /
92,714 (the 2019 census total); legacy names in a scenario mean the 2025 ward they are part of.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin.city import census, load_city

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wards():
    return census.real_wards()


def test_legacy_wards_dissolve_into_the_2025_wards(wards):
    assert list(wards["ward_name"]) == ["Tam Kỳ", "Bàn Thạch", "Hương Trà", "Quảng Phú"]
    legacy = dict(zip(wards["ward_name"], wards["legacy_names"]))
    # the published mapping (Báo Quảng Nam 23/04/2025), Phước Hòa with Tam Kỳ (merged into An Xuân in 2020)
    assert legacy["Tam Kỳ"] == "An Mỹ; An Xuân; Phước Hòa; Trường Xuân"
    assert legacy["Bàn Thạch"] == "Hòa Thuận; Tam Thăng; Tân Thạnh"
    assert legacy["Hương Trà"] == "An Sơn; Hòa Hương; Tam Ngọc"
    assert legacy["Quảng Phú"] == "An Phú; Tam Phú; Tam Thanh"
    # generalised polygons: areas within 5 % of the official 2025 areas (8.36, 34.77, 14.64, 36.21 km²)
    rel = (wards["area_km2"] / wards["area_km2_official"] - 1.0).abs()
    assert (rel < 0.05).all(), wards[["ward_name", "area_km2", "area_km2_official"]]
    assert list(wards["ward_code"]) == ["20341", "20335", "20350", "20356"]
    # the wards do not overlap (a dissolve of a partition)
    g = list(wards["geometry"])
    for i in range(4):
        for j in range(i + 1, 4):
            assert g[i].intersection(g[j]).area < 0.01 * min(g[i].area, g[j].area)


def test_population_is_the_census_scaled_to_2019(wards):
    assert wards["population_2009"].sum() == census.CENSUS_2009_TOTAL == 92_714
    assert census.SCALE_2009_TO_2019 == pytest.approx(1.3199, abs=1e-4)
    assert wards["persons"].sum() == pytest.approx(census.CENSUS_2019_TOTAL, abs=2)
    np.testing.assert_array_equal(wards["persons"], np.round(wards["population_2009"] * census.SCALE_2009_TO_2019))
    # Tam Kỳ ward: An Mỹ 7,090 + An Xuân 9,243 + Trường Xuân 5,259 + Phước Hòa 5,762 (2009)
    assert int(wards.loc[wards["ward_name"] == "Tam Kỳ", "population_2009"].iloc[0]) == 27_354


def test_bundle_layers_are_the_real_ones():
    c = load_city("tamky")
    pop = c.population
    assert pop["persons"].sum() == pytest.approx(122_374, abs=2)
    assert pop["source"].str.contains("2009 census").all()
    assert pop["legacy_wards"].str.contains("Phước Hòa").any()
    # the ward raster follows the real polygons: a point inside each legacy ward lies in its 2025 ward
    names = dict(zip(pop["ward"], pop["ward_name"]))
    for leg in census.legacy_wards().itertuples():
        p = leg.geometry.representative_point()
        r, col = c.terrain.rowcol(p.x, p.y)
        assert names[int(c.ward_raster[int(r), int(col)])] == leg.ward_name, leg.legacy_name
    # cells per ward ~ the official area (the beach strip between the generalised coast and the sea joins
    # Quảng Phú: up to +15 %)
    cell_km2 = c.terrain.cell_size ** 2 / 1e6
    official = dict(zip(census.wards_2025()["ward_name"], census.wards_2025()["area_km2_official"]))
    for code, name in zip(pop["ward"], pop["ward_name"]):
        raster_km2 = float((c.ward_raster == code).sum() * cell_km2)
        assert 0.9 * official[name] < raster_km2 < 1.15 * official[name], (name, raster_km2)
    # industry and tourism are places with their own kinds
    kinds = set(c.places["kind"])
    assert {"industrial_zone", "tourism"} <= kinds
    names = set(c.places["name"])
    assert {"Khu công nghiệp Tam Thăng", "Cụm công nghiệp Thuận Yên", "Làng bích họa Tam Thanh"} <= names


def test_city_info_marks_the_layers_real_generalised():
    r = subprocess.run([sys.executable, "-m", "twin", "city", "info", "tamky"], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr
    for layer in ("wards", "population"):
        line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(layer + " "))
        assert "REAL (GENERALISED)" in line, line
    assert "provenance unverified" in r.stdout


class _Tw:  # what twin.decisions._ward_codes reads
    ward_codes = {"Tam Kỳ": 1, "Bàn Thạch": 2, "Hương Trà": 3, "Quảng Phú": 4}
    legacy_ward_codes = {"An Mỹ": 1, "An Xuân": 1, "Phước Hòa": 1, "Trường Xuân": 1, "Tân Thạnh": 2, "Tam Thăng": 2,
                         "Hòa Thuận": 2, "Tam Thanh": 4}


def test_legacy_ward_names_in_decisions_map_to_the_2025_wards():
    from twin.decisions import DecisionError, Warning_, _ward_codes
    d = Warning_(type="warning", at=0, area=["An Mỹ"])
    assert _ward_codes(d, _Tw(), ["An Mỹ", "Phường Tân Thạnh", "tam thanh", "Bàn Thạch", "xã Tam Thăng"],
                       "wards") == [1, 2, 4, 2, 2]
    with pytest.raises(DecisionError, match="Hội An"):
        _ward_codes(d, _Tw(), ["Hội An"], "wards")


def test_legacy_names_accepted_in_a_scenario_run():
    """A warning for the legacy ward "An Mỹ" reaches households of today's ward Tam Kỳ only."""
    from twin.build import build_twin
    from twin.decisions import parse_decision
    from twin.scenario import load_scenario
    sc = load_scenario(REPO / "scenarios" / "tamky_molave_2020.yaml",
                       overrides=["resolution_m=300", "duration=10min", "interventions=[]", "services=null"])
    tw = build_twin(sc)
    assert tw.legacy_ward_codes["An Mỹ"] == tw.ward_codes["Tam Kỳ"]
    assert tw.legacy_ward_codes["Tam Thanh"] == tw.ward_codes["Quảng Phú"]
    people = tw.people
    before = np.isfinite(people.recv_s).any(axis=1)
    d = parse_decision({"type": "warning", "at": 0, "area": ["An Mỹ"], "channel": "loudspeaker"})
    d.apply(tw, 0.0)
    assert people.pending_warnings
    while people.pending_warnings:  # what PeopleModel.step does with the warnings due
        people._apply_warning(*people.pending_warnings.pop(0))
    got = np.isfinite(people.recv_s).any(axis=1) & ~before
    assert got.sum() > 0
    assert set(np.unique(people.ward[got])) == {tw.ward_codes["Tam Kỳ"]}
