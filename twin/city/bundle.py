"""Reading and writing city bundles (a folder with ``manifest.json`` and its layers)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
LANDCOVER_CLASSES_DEFAULT = {1: "sea", 2: "water", 3: "urban_dense", 4: "urban_sparse", 5: "paddy", 6: "forest",
                             7: "sand"}

TAMKY_FACTS = [
    "Phú Ninh reservoir: normal water level 32 m, design flood level 35.4 m, dam crest 37.6 m, spillways "
    "1,053 + 853 m³/s, catchment 235 km², capacity 344 million m³ (public descriptions of the "
    "Phú Ninh irrigation reservoir, e.g. Vietnamese Wikipedia 'Hồ Phú Ninh'; not independently verified here)",
    "Tam Kỳ: about 120,000 inhabitants (order of magnitude of the 2019 census for the former city); since the 2025 "
    "merger of Quảng Nam into Đà Nẵng, the wards Tam Kỳ, Bàn Thạch, Hương Trà and Quảng Phú of Đà Nẵng city",
    "Tam Kỳ and Bàn Thạch rivers flow east through the city into the Trường Giang, a lagoon-river behind the "
    "coastal dunes that reaches the sea at the An Hòa estuary (south) and toward Cửa Đại (north)",
    "QL1A crosses the city north-west to south-east; the coastal road (ĐT129 / Võ Chí Công) runs along the dunes; "
    "Nguyễn Hoàng street leads east to Tam Thanh beach",
]


def user_city_dir() -> Path:
    """Where ``twin city import`` writes bundles (``$TWIN_CITY_DIR`` or ``~/.local/share/tamky-twin/cities``)."""
    return Path(os.environ.get("TWIN_CITY_DIR", Path.home() / ".local" / "share" / "tamky-twin" / "cities"))


def cache_dir() -> Path:
    """Cache for generated layers (``$TWIN_CACHE_DIR`` or ``~/.cache/tamky-twin``)."""
    return Path(os.environ.get("TWIN_CACHE_DIR", Path.home() / ".cache" / "tamky-twin"))


def find_bundle(name_or_path) -> Path:
    p = Path(name_or_path)
    if p.is_dir() and (p / "manifest.json").exists():
        return p
    if p.is_dir():
        raise FileNotFoundError(f"{p}: not a city bundle (no manifest.json)")
    for base in (DATA_DIR, user_city_dir()):
        q = base / str(name_or_path)
        if (q / "manifest.json").exists():
            return q
    raise FileNotFoundError(f"city {name_or_path!r} not found; available: {', '.join(available_cities()) or 'none'} "
                            f"(searched {DATA_DIR} and {user_city_dir()})")


def available_cities() -> list[str]:
    out = []
    for base in (DATA_DIR, user_city_dir()):
        if base.is_dir():
            out += sorted(p.name for p in base.iterdir() if (p / "manifest.json").exists())
    return out


# ----------------------------------------------------------------------------- rasters
def write_raster(path, array, transform, crs, nodata=None) -> Path:
    import rasterio
    a = np.asarray(array)
    profile = dict(driver="GTiff", height=a.shape[0], width=a.shape[1], count=1, dtype=a.dtype.name, crs=crs,
                   transform=transform, compress="deflate", tiled=True, blockxsize=256, blockysize=256,
                   predictor=3 if a.dtype.kind == "f" else 2)
    if nodata is not None:
        profile["nodata"] = nodata
    if a.dtype.kind == "f" and nodata is not None:
        a = np.where(np.isfinite(a), a, nodata).astype(a.dtype)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)
    return Path(path)


def read_raster(path, *, resolution_m=None, resampling="average", bounds=None, crs=None):
    """Read band 1 as float64 (NaN for nodata), optionally warped to ``resolution_m`` over ``bounds``.

    Returns (array, transform, crs).
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    with rasterio.open(path) as src:
        src_crs = src.crs
        if src_crs is None:
            raise ValueError(f"{path}: raster has no CRS (field 'crs' is empty); write one with "
                             "`gdal_edit.py -a_srs EPSG:xxxx` or pass a GeoTIFF with a CRS")
        dst_crs = crs or src_crs
        if resolution_m is None and (crs is None or crs == src_crs) and bounds is None:
            a = src.read(1).astype(np.float64)
            if src.nodata is not None:
                a[a == src.nodata] = np.nan
            return a, src.transform, src_crs
        if bounds is None:
            from rasterio.warp import transform_bounds
            bounds = transform_bounds(src_crs, dst_crs, *src.bounds)
        r = float(resolution_m or abs(src.transform.a))
        x0, y0, x1, y1 = bounds
        nx = int(round((x1 - x0) / r))
        ny = int(round((y1 - y0) / r))
        transform = Affine(r, 0, x0, 0, -r, y1)
        out = np.full((ny, nx), np.nan)
        src_a = src.read(1).astype(np.float64)
        if src.nodata is not None:
            src_a[src_a == src.nodata] = np.nan
        reproject(src_a, out, src_transform=src.transform, src_crs=src_crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=dst_crs, dst_nodata=np.nan,
                  resampling=getattr(Resampling, resampling))
        return out, transform, dst_crs


# ----------------------------------------------------------------------------- roads
def write_roads(folder: Path, nodes: pd.DataFrame, links: pd.DataFrame) -> None:
    from shapely import to_wkb
    n = nodes.copy()
    lk = links.copy()
    lk["geometry"] = to_wkb(np.asarray(lk["geometry"], dtype=object))
    n.to_parquet(folder / "roads_nodes.parquet", index=False)
    lk.to_parquet(folder / "roads_links.parquet", index=False)


def read_roads(folder: Path):
    from shapely import from_wkb
    nodes = pd.read_parquet(folder / "roads_nodes.parquet")
    links = pd.read_parquet(folder / "roads_links.parquet")
    links["geometry"] = list(from_wkb(links["geometry"].to_numpy()))
    return nodes, links


# ----------------------------------------------------------------------------- manifest
def layer(file, *, source, licence, synthetic, resolution_m=None, **extra) -> dict:
    d = {"file": file, "source": source, "licence": licence, "synthetic": bool(synthetic)}
    if resolution_m is not None:
        d["resolution_m"] = resolution_m
    d.update(extra)
    return d


def tamky_manifest(R: dict, params: dict, links: pd.DataFrame, places: pd.DataFrame) -> dict:
    from twin.city import synth
    t = R["transform"]
    ny, nx = R["landcover"].shape
    bounds = [t.c, t.f - ny * t.a, t.c + nx * t.a, t.f]
    gen = "twin.city.synth / twin.city.synth_city via tools/make_tamky.py"
    classes = {str(k): {"name": v, "manning_n": synth.MANNING_BY_CLASS[k],
                        "building_fraction": synth.BUILDING_FRACTION_BY_CLASS[k]}
               for k, v in synth.LANDCOVER_CLASSES.items()}
    n_real = int((links["source"] == "real").sum())
    return {
        "name": "tamky",
        "title": "Tam Kỳ (Đà Nẵng city, formerly Quảng Nam), Vietnam",
        "crs": f"EPSG:{synth.CRS_EPSG}",
        "bounds": bounds,
        "bounds_lonlat": [108.38, 15.45, 108.62, 15.68],
        "native_resolution_m": 30,
        "resolutions_m": {"30": "shipped", "10": "generated on first use into the cache (deterministic)"},
        "sea_level_m": 0.0,
        "generator": {"script": "tools/make_tamky.py", "module": "twin.city.synth", "params": params},
        "facts": TAMKY_FACTS,
        "layers": {
            "terrain": layer("terrain_30m.tif", resolution_m=30, synthetic=True,
                             source="synthesised from the real GSHHG coastline and WDBII rivers (GMT, gshhg-full), "
                                    "documented levels (Phú Ninh 32/35.4/37.6 m, dunes, lagoon, plain, hills) "
                                    f"and seeded noise; {gen}; 30 m = 3×3 mean of the 10 m terrain",
                             licence="CC BY-SA 4.0 (derived work; coastline/rivers GSHHG LGPL-3)",
                             units="m above mean sea level", generator="tamky"),
            "landcover": layer("landcover_30m.tif", resolution_m=30, synthetic=True,
                               source=f"synthetic zones (sea from GSHHG, water from rivers/lagoon/reservoir, urban "
                                      f"ellipses around the centre, forest on hills, sand on dunes); {gen}",
                               licence="CC BY-SA 4.0", classes=classes),
            "manning": layer(None, resolution_m=30, synthetic=True, derived_from="landcover",
                             source="land-cover class → Manning n table (Chow 1959; Arcement & Schneider 1989)",
                             licence="CC BY-SA 4.0"),
            "building_fraction": layer("building_fraction_30m.tif", resolution_m=30, synthetic=True,
                                       source=f"class fraction × seeded noise; {gen}", licence="CC BY-SA 4.0"),
            "water_depth0": layer("water_depth0_30m.tif", resolution_m=30, synthetic=True,
                                  source="rivers/lagoon at +0.3 m rising upstream, Phú Ninh at 32 m, sea at 0 m",
                                  licence="CC BY-SA 4.0", units="m"),
            "wards": layer("wards.geojson", resolution_m=30, synthetic=False, generalised=True, raster="wards_30m.tif",
                           source="the four 2025 wards (Tam Kỳ, Bàn Thạch, Hương Trà, Quảng Phú; GSO codes and official "
                                  "areas from vietnamadminunits) dissolved from the generalised polygons of the 13 legacy "
                                  "wards of the former Tam Kỳ city (censusVN2009; generalised, provenance unverified; legacy "
                                  "names in legacy_names); sources/census2009_tamky_wards.geojson, "
                                  "sources/tamky_legacy_wards_to_2025.csv; twin.city.census",
                           licence="MIT (censusVN2009 package, Marc Choisy; vietnamadminunits, Tran Ngoc Minh Hieu)"),
            "roads": layer("roads_links.parquet", synthetic=True, nodes_file="roads_nodes.parquet",
                           source=f"QL1A from the national road layer ({n_real} real links, CTU-SematX LegoCity, "
                                  "CC BY-SA 4.0); arterials placed on the known layout and local streets generated "
                                  f"per land-use zone ({len(links) - n_real} synthetic links); {gen}",
                           licence="CC BY-SA 4.0 (Road/rail data: CTU-SematX LegoCity project, CC BY-SA 4.0)",
                           real_links=n_real, synthetic_links=int(len(links) - n_real)),
            "places": layer("places.csv", synthetic=True,
                            source="names of real institutions where noted; positions and capacities synthetic",
                            licence="CC BY-SA 4.0", count=int(len(places))),
            "population": layer("population.csv", synthetic=False, generalised=True,
                                source="persons and households per 2025 ward from the 2009 census by legacy ward (GSO) "
                                       "scaled by 1.320 to the 2019 census total of 122,374; households = persons / 3.5; "
                                       "shares of elderly, children, vehicles and storeys synthetic; twin.city.census",
                                licence="census counts are public statistics (GSO); polygons MIT (censusVN2009)"),
            "inflows": layer("inflows.csv", synthetic=True,
                             source="Phú Ninh release point below the dam (spillways 1,053 + 853 m³/s), river inflow "
                                    "points at the domain edge", licence="CC BY-SA 4.0"),
            "sea_cells": layer(None, resolution_m=30, synthetic=True, derived_from="landcover",
                               source="land cover 'sea' plus water cells on the domain edge below 1 m "
                                      "(Trường Giang ends: tidal)", licence="CC BY-SA 4.0"),
            "coastline_rivers": layer("sources/gshhg_coast_rivers.geojson", synthetic=False,
                                      source="GSHHG 2.3.7 full-resolution shoreline and WDBII rivers via "
                                             "`gmt coast -R108.3/108.7/15.4/15.75 -Df -W -M` / `-Ia` "
                                             "(tools/extract_gshhg.py)",
                                      licence="LGPL-3.0-or-later (GSHHG, Wessel & Smith 1996)"),
            "national_roads": layer("sources/vn_national_roads_rail_quangnam_region.geojson", synthetic=False,
                                    source="CTU-SematX LegoCity opendata/trafic/giaothong.geojson (commit 03d2458), "
                                           "clipped to Quảng Nam / Đà Nẵng",
                                    licence="CC BY-SA 4.0"),
            "typhoon_tracks": layer("../jtwc/jtwc_wp_tracks_within300km_tamky_1945_2021.csv", synthetic=False,
                                    summary="../jtwc/storms_summary.csv",
                                    source="Joint Typhoon Warning Center best tracks within 300 km of Tam Kỳ, "
                                           "1945–2021 (via github.com/atsuyaourt/jtwc_best_track_wp)",
                                    licence="public domain (US Government work)"),
        },
    }


def require_geopandas(feature: str):
    """geopandas (installed by the ``[osm]`` extra), or an ImportError that says which extra installs it."""
    try:
        import geopandas
    except ImportError as exc:
        raise ImportError(f"{feature} needs geopandas, which a base install lacks: "
                          "pip install 'tamky-twin[osm]'") from exc
    return geopandas
