"""Real wards and census population of Tam Kỳ (the bundle's ``wards`` and ``population`` layers).

Sources (shipped in ``twin/data/tamky/sources/``, each with its SOURCE note):

* ``census2009_tamky_wards.geojson``: generalised polygons of the 13 pre-2020 wards/communes of the
  former Tam Kỳ city with their 2009 census population (GSO counts; polygons from the censusVN2009 R
  package, MIT per the package, upstream provenance of the polygons unverified: "generalised,
  provenance unverified").
* ``tamky_legacy_wards_to_2025.csv``: the 2025 ward each legacy unit merged into (vietnamadminunits,
  MIT; agrees with Báo Quảng Nam 23/04/2025). Phước Hòa, merged into An Xuân in 2020, is not in that
  table; it belongs to ward Tam Kỳ (An Mỹ + An Xuân + Trường Xuân + Phước Hòa = 8.2 km² against the
  official 8.36 km² of the 2025 ward).
* ``wards_2025_tamky.csv``: the four 2025 wards' GSO codes and official areas (names, codes and areas
  only; that package's coordinates are geocoded approximations and are not used).

Population is the 2009 census count scaled to the 2019 census total of the former city (122,374;
GSO 2019) by one factor, :data:`SCALE_2009_TO_2019` = 122,374 / 92,714 = 1.320, stated in the
layer's ``source``. Households are persons / :data:`PERSONS_PER_HOUSEHOLD` (3.5, the 2019 census
national mean). The other shares of the population table (elderly, children, vehicles, storeys) stay
synthetic and are labelled so.
"""
from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

#: 2009 census total of the 13 units of the former Tam Kỳ city (GSO), and the 2019 census total
CENSUS_2009_TOTAL = 92_714
CENSUS_2019_TOTAL = 122_374
SCALE_2009_TO_2019 = CENSUS_2019_TOTAL / CENSUS_2009_TOTAL
#: mean household size of the 2019 census (Việt Nam, persons per household)
PERSONS_PER_HOUSEHOLD = 3.5
#: Phước Hòa (merged into An Xuân in 2020) is missing from the 2025 mapping table
EXTRA_LEGACY = {"Phước Hòa": "Tam Kỳ"}
#: the order (and codes 1..4) of the bundle's wards, as before the real layer (scenarios keep working)
WARD_ORDER = ("Tam Kỳ", "Bàn Thạch", "Hương Trà", "Quảng Phú")
CENSUS_SOURCE = ("2009 census (GSO) by legacy ward × 1.320 (= 122,374 / 92,714, the 2019 census total of the "
                 "former Tam Kỳ city); households = persons / 3.5 (2019 census mean household size)")

SOURCES = Path(__file__).resolve().parents[1] / "data" / "tamky" / "sources"


def _strip_prefix(name: str) -> str:
    for p in ("Phường ", "Xã ", "Thị trấn "):
        if name.startswith(p):
            return name[len(p):]
    return name


def fold(name: str) -> str:
    """A name for matching: NFC, lower case, ward/commune prefix dropped (``"Phường An Mỹ"`` → ``"an mỹ"``)."""
    return _strip_prefix(unicodedata.normalize("NFC", str(name)).strip()).casefold()


def legacy_to_2025(sources: Path = SOURCES) -> dict[str, str]:
    """Legacy ward name (without prefix) → 2025 ward name, for the 13 units of the former city."""
    out: dict[str, str] = {}
    key_to_name = {"phuongtamky": "Tam Kỳ", "phuongbanthach": "Bàn Thạch", "phuongquangphu": "Quảng Phú",
                   "phuonghuongtra": "Hương Trà"}
    with open(sources / "tamky_legacy_wards_to_2025.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out[_strip_prefix(row["ward_old"])] = key_to_name[row["ward_2025_key"]]
    out.update(EXTRA_LEGACY)
    return out


def wards_2025(sources: Path = SOURCES) -> pd.DataFrame:
    """The four 2025 wards: ward_name, ward_code (GSO), area_km2_official."""
    df = pd.read_csv(sources / "wards_2025_tamky.csv", dtype={"ward_code": str})
    return pd.DataFrame({"ward_name": [_strip_prefix(w) for w in df["ward"]], "ward_code": df["ward_code"],
                         "area_km2_official": df["area_km2"].astype(float)})


def legacy_wards(sources: Path = SOURCES, crs: str = "EPSG:32649") -> pd.DataFrame:
    """The 13 legacy units: legacy_name, ward_name (2025), population_2009, geometry (in ``crs``)."""
    import shapely
    from shapely.geometry import shape

    from twin.geo import to_utm

    mapping = legacy_to_2025(sources)
    with open(sources / "census2009_tamky_wards.geojson", encoding="utf-8") as f:
        gj = json.load(f)
    rows = []
    for feat in gj["features"]:
        p = feat["properties"]
        name = _strip_prefix(p["commune_vn"])
        if name not in mapping:
            raise ValueError(f"{sources / 'census2009_tamky_wards.geojson'}: legacy ward {name!r} has no 2025 ward "
                             "in tamky_legacy_wards_to_2025.csv")
        rows.append({"legacy_name": name, "ward_name": mapping[name], "population_2009": int(p["population_2009"]),
                     "commune_id": str(p["commune_id"]), "geometry": shapely.transform(shape(feat["geometry"]), lambda xy: to_utm(xy, "EPSG:4326", crs))})
    return pd.DataFrame(rows)


def real_wards(sources: Path = SOURCES, crs: str = "EPSG:32649") -> pd.DataFrame:
    """The four 2025 wards dissolved from the legacy polygons, with census population.

    Columns: ward (1..4, :data:`WARD_ORDER`), ward_name, ward_code (GSO 2025), legacy_names (``"; "``-joined),
    area_km2 (of the generalised polygon), area_km2_official, population_2009, persons (× the 2019 factor),
    households, source, geometry.
    """
    from shapely.ops import unary_union
    leg = legacy_wards(sources, crs)
    off = wards_2025(sources).set_index("ward_name")
    rows = []
    for i, name in enumerate(WARD_ORDER, start=1):
        part = leg[leg["ward_name"] == name]
        g = unary_union(list(part["geometry"])).buffer(0)
        p09 = int(part["population_2009"].sum())
        persons = int(round(p09 * SCALE_2009_TO_2019))
        rows.append({"ward": i, "ward_name": name, "ward_code": str(off.loc[name, "ward_code"]),
                     "legacy_names": "; ".join(sorted(part["legacy_name"])), "area_km2": round(g.area / 1e6, 4),
                     "area_km2_official": float(off.loc[name, "area_km2_official"]), "population_2009": p09,
                     "persons": persons, "households": int(round(persons / PERSONS_PER_HOUSEHOLD)),
                     "source": "real (generalised; polygons: censusVN2009, provenance unverified)", "geometry": g})
    return pd.DataFrame(rows)


#: the strip of beach and dunes between a ward and the sea narrower than this joins the nearest ward (the
#: coast of the generalised polygons lies up to ~500 m inland of the GSHHG shoreline along Tam Thanh)
COAST_FILL_M = 800.0


def rasterize_wards(wards: pd.DataFrame, shape: tuple[int, int], transform, land: np.ndarray | None = None,
                    sea: np.ndarray | None = None, coast_fill_m: float = COAST_FILL_M) -> np.ndarray:
    """Ward code per cell (0 outside every ward, and on ``~land`` where given), int16.

    The generalised polygons leave slivers between neighbours and are ~100 m off along rivers and the
    coast: a cell inside the outline of the wards' union (its holes filled) but outside every polygon
    takes the nearest ward, and so does a land cell within ``coast_fill_m`` of both a ward and the
    ``sea`` (the beach strip). The outer border is not widened.
    """
    from rasterio.features import rasterize
    from scipy import ndimage
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    wr = rasterize([(g, int(w)) for g, w in zip(wards["geometry"], wards["ward"])], out_shape=shape,
                   transform=transform, fill=0, dtype="int16")
    union = unary_union(list(wards["geometry"]))
    outline = [Polygon(p.exterior) for p in getattr(union, "geoms", [union])]
    inside = rasterize([(g, 1) for g in outline], out_shape=shape, transform=transform, fill=0,
                       dtype="uint8").astype(bool)
    dist, (ri, ci) = ndimage.distance_transform_edt(wr == 0, return_indices=True)
    fill = (wr == 0) & inside
    if sea is not None and coast_fill_m > 0:
        to_sea = ndimage.distance_transform_edt(~sea) * abs(transform.a)
        fill |= (wr == 0) & ~sea & (dist * abs(transform.a) <= coast_fill_m) & (to_sea <= coast_fill_m)
    wr = np.where(fill, wr[ri, ci], wr).astype(np.int16)
    if land is not None:
        wr = np.where(land, wr, 0).astype(np.int16)
    return wr


def resolve_ward_name(name: str, known: dict[str, object]) -> tuple[object | None, str | None]:
    """(code, note) for a ward name given as a 2025 name or a legacy ward of the former Tam Kỳ city.

    ``known`` maps the bundle's 2025 ward names to their codes. A legacy name ("An Mỹ", "Phường Tân Thạnh")
    resolves to the 2025 ward it merged into, with a note saying so; an unknown name gives (None, None).
    """
    folded = {fold(k): v for k, v in known.items()}
    f = fold(name)
    if f in folded:
        return folded[f], None
    try:
        mapping = legacy_to_2025()
    except OSError:
        return None, None
    for legacy, new in mapping.items():
        if fold(legacy) == f and fold(new) in folded:
            return folded[fold(new)], f"legacy ward {name!r} is part of the 2025 ward {new!r} since 2025"
    return None, None
