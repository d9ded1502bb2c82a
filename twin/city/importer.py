"""``twin city import``: build a city bundle from a user's real DEM, OSM extract and places.

The same loaders a user with survey data uses: any-CRS GeoTIFF DEM (reprojected to EPSG:32649, nodata
handled, small interior holes filled with a warning, large ones rejected), roads from OSM PBF/XML, GeoJSON
or GraphML (largest strongly connected component kept, with a warning), land cover from a raster of
class codes or from polygons with a ``class`` (or ``manning_n``) property, places from CSV.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from twin.city import LANDCOVER_NAMES, PLACE_KINDS
from twin.city import bundle as B
from twin.roads import RoadNetwork
from twin.terrain import Terrain

MANNING_BY_NAME = {"sea": 0.020, "water": 0.030, "urban_dense": 0.080, "urban_sparse": 0.050, "paddy": 0.060,
                   "forest": 0.100, "sand": 0.025}
CODE_BY_NAME = {v: k for k, v in LANDCOVER_NAMES.items()}


class CityImportError(ValueError):
    """An input that cannot become a bundle: the message names the file, field and value."""


def fill_dem_holes(z: np.ndarray, *, path="DEM", max_hole_cells: int = 2500) -> tuple[np.ndarray, int]:
    """Fill nodata holes (NaN regions not touching the grid edge) by harmonic (Laplace) interpolation.

    The filled surface solves Laplace's equation with the surrounding valid cells as boundary values:
    smooth, no new extrema, exact for planes.

    Holes larger than ``max_hole_cells`` raise :class:`CityImportError`; nodata touching the edge (outside
    the survey) is left NaN (a wall for the flood model).  Returns (filled, n_cells_filled).
    """
    from scipy import ndimage
    nan = ~np.isfinite(z)
    if not nan.any():
        return z, 0
    if nan.all():
        raise CityImportError(f"{path}: every cell is nodata")
    lab, n = ndimage.label(nan)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    sizes = np.bincount(lab.ravel())
    holes = [k for k in range(1, n + 1) if k not in edge]
    big = [k for k in holes if sizes[k] > max_hole_cells]
    if big:
        k = big[0]
        r, c = np.argwhere(lab == k)[0]
        raise CityImportError(f"{path}: nodata hole of {sizes[k]} cells at row {r}, col {c} is larger than "
                              f"max_hole_cells={max_hole_cells}; fill it with survey data or raise the limit")
    if not holes:
        return z, 0
    mask = np.isin(lab, holes)
    out = z.copy()
    out[mask] = _harmonic_fill(z, mask)
    return out, int(mask.sum())


def _harmonic_fill(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values at ``mask`` cells solving the 5-point Laplace equation, valid neighbours as Dirichlet data."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve
    ny, nx = z.shape
    idx = -np.ones(z.shape, np.int64)
    rr, cc = np.nonzero(mask)
    n = len(rr)
    idx[rr, cc] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    b = np.zeros(n)
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        r2, c2 = rr + dr, cc + dc
        inside = (r2 >= 0) & (r2 < ny) & (c2 >= 0) & (c2 < nx)
        vals[0] = vals[0] + inside            # diagonal: number of neighbours in the grid
        r2c, c2c = np.clip(r2, 0, ny - 1), np.clip(c2, 0, nx - 1)
        nb = idx[r2c, c2c]
        unk = inside & (nb >= 0)
        rows.append(np.arange(n)[unk])
        cols.append(nb[unk])
        vals.append(-np.ones(unk.sum()))
        known = inside & (nb < 0)
        b[known] += z[r2c[known], c2c[known]]
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    return spsolve(A, b)


def _read_roads(path: Path, crs):
    name = path.name.lower()
    if name.endswith((".pbf", ".osm", ".xml")):
        return RoadNetwork.from_osm(path, crs=crs)
    if name.endswith((".geojson", ".json")):
        return RoadNetwork.from_geojson(path, crs=crs)
    if name.endswith(".graphml"):
        return RoadNetwork.from_graphml(path, crs=crs)
    raise CityImportError(f"{path}: unknown road format (expected .osm.pbf, .osm, .geojson or .graphml)")


def _landcover(path: Path | None, z, transform, crs, sea_level_m):
    """(codes, manning or None, description)."""
    from scipy import ndimage
    shape = z.shape
    if path is None:
        low, _ = ndimage.label(np.nan_to_num(z, nan=1e9) <= sea_level_m)
        edge = np.unique(np.concatenate([low[0], low[-1], low[:, 0], low[:, -1]]))
        lc = np.full(shape, CODE_BY_NAME["urban_sparse"], np.uint8)
        lc[np.isin(low, edge[edge > 0])] = CODE_BY_NAME["sea"]
        lc[~np.isfinite(z)] = 0
        return lc, None, (f"default: 'sea' where ≤ {sea_level_m} m and connected to the edge, "
                          "'urban_sparse' elsewhere (no land-cover file given)"), True
    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        a, _, _ = B.read_raster(path, resolution_m=transform.a, resampling="mode",
                                bounds=(transform.c, transform.f + shape[0] * transform.e,
                                        transform.c + shape[1] * transform.a, transform.f), crs=crs)
        codes = np.unique(a[np.isfinite(a)]).astype(int)
        bad = [c for c in codes if c not in LANDCOVER_NAMES and c != 0]
        if bad:
            raise CityImportError(f"{path}: land-cover code {bad[0]} is not one of {LANDCOVER_NAMES}")
        return np.nan_to_num(a, nan=0).astype(np.uint8), None, f"raster {path.name} (class codes)", False
    gpd = B.require_geopandas(f"reading the land-cover polygons {path}")
    from rasterio.features import rasterize
    gdf = gpd.read_file(path)
    if gdf.crs is None:
        raise CityImportError(f"{path}: polygons have no CRS (field 'crs')")
    gdf = gdf.to_crs(crs)
    lc = np.full(shape, CODE_BY_NAME["urban_sparse"], np.uint8)
    manning = None
    if "class" in gdf:
        bad = sorted(set(gdf["class"]) - set(CODE_BY_NAME))
        if bad:
            raise CityImportError(f"{path}: field 'class' has value {bad[0]!r}; expected one of {sorted(CODE_BY_NAME)}")
        lc = rasterize([(g, CODE_BY_NAME[c]) for g, c in zip(gdf.geometry, gdf["class"])], out_shape=shape,
                       transform=transform, fill=CODE_BY_NAME["urban_sparse"], dtype="uint8")
    if "manning_n" in gdf:
        vals = pd.to_numeric(gdf["manning_n"], errors="coerce")
        if (~(vals > 0) | (vals > 1)).any():
            raise CityImportError(f"{path}: field 'manning_n' has value {gdf['manning_n'][~(vals > 0) | (vals > 1)].iloc[0]!r}"
                                  " (expected 0 < n ≤ 1)")
        manning = rasterize([(g, float(v)) for g, v in zip(gdf.geometry, vals)], out_shape=shape, transform=transform,
                            fill=np.nan, dtype="float64")
    if "class" not in gdf and "manning_n" not in gdf:
        raise CityImportError(f"{path}: polygons need a 'class' or 'manning_n' field")
    return lc, manning, f"polygons {path.name}", False


def import_city(name: str, dem, osm, *, places=None, landcover=None, resolution_m: float = 30.0,
                out_dir=None, crs: str = "EPSG:32649", sea_level_m: float = 0.0, max_hole_cells: int = 2500,
                dem_licence: str = "as supplied", osm_licence: str = "ODbL-1.0 (© OpenStreetMap contributors)",
                overwrite: bool = False, merge: str | None = "auto") -> Path:
    """Build ``<out_dir>/<name>/`` (default :func:`twin.city.user_city_dir`) and return its path.

    ``merge``: a shipped bundle whose REAL vector layers (wards, population, places, inflows: for Tam Kỳ
    the 2025 wards and census population, the places and the Phú Ninh release point) are merged into the
    imported city where they lie on its DEM; "auto" merges every shipped bundle whose extent overlaps the
    DEM, None (``--merge none``) keeps the import alone. Places given with ``places`` come first.
    """
    if not name or any(ch in name for ch in "/\\ "):
        raise CityImportError(f"--name {name!r}: use a simple name without spaces or slashes")
    dem, osm = Path(dem), Path(osm)
    for p, what in ((dem, "--dem"), (osm, "--osm")):
        if not p.exists():
            raise FileNotFoundError(f"{what}: file not found: {p}")
    out = Path(out_dir or B.user_city_dir()) / name
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CityImportError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)

    # terrain: the team's DEM loader (any CRS, reprojected bilinear, nodata -> NaN)
    import rasterio

    with rasterio.open(dem) as src:
        if src.crs is None:
            raise CityImportError(f"{dem}: GeoTIFF has no CRS (field 'crs'); cannot place it on the map")
    r = float(resolution_m)
    terr = Terrain.from_geotiff(dem, dst_crs=crs, resolution=r)
    z, transform = np.array(terr.elevation, dtype=np.float64), terr.transform
    ny, nx = z.shape
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + nx * r, y1 - ny * r
    z, n_filled = fill_dem_holes(z, path=dem, max_hole_cells=max_hole_cells)
    if n_filled:
        warnings.warn(f"{dem}: filled {n_filled} nodata cells in interior holes by interpolation", UserWarning,
                      stacklevel=2)

    roads = _read_roads(osm, crs)
    nx_, ny_ = roads.nodes["x"].to_numpy(), roads.nodes["y"].to_numpy()
    inside = (nx_ >= x0) & (nx_ <= x1) & (ny_ >= y0) & (ny_ <= y1)
    if not inside.any():
        raise CityImportError(f"{osm}: no road node lies inside the DEM {dem} (bounds {x0:.0f},{y0:.0f},{x1:.0f},"
                              f"{y1:.0f} in {crs}): different places or a wrong CRS")
    if inside.mean() < 0.5:
        warnings.warn(f"{osm}: only {100 * inside.mean():.0f} % of road nodes lie on the DEM", UserWarning, stacklevel=2)

    lc, manning, lc_desc, lc_synth = _landcover(Path(landcover) if landcover else None, z, transform, crs, sea_level_m)
    bfrac = np.vectorize(lambda c: {3: 0.45, 4: 0.18, 5: 0.01, 7: 0.02}.get(int(c), 0.0), otypes=[float])(lc)
    depth0 = np.where(lc == CODE_BY_NAME["sea"], np.maximum(sea_level_m - np.nan_to_num(z), 0.0), 0.0)
    wr = np.where(np.isfinite(z), 1, 0).astype(np.int16)

    B.write_raster(out / "terrain.tif", z.astype(np.float32), transform, crs, nodata=-9999.0)
    B.write_raster(out / "landcover.tif", lc, transform, crs, nodata=0)
    B.write_raster(out / "building_fraction.tif", bfrac.astype(np.float32), transform, crs)
    B.write_raster(out / "water_depth0.tif", depth0.astype(np.float32), transform, crs)
    B.write_raster(out / "wards.tif", wr, transform, crs, nodata=-1)
    if manning is not None:
        B.write_raster(out / "manning.tif", manning.astype(np.float32), transform, crs, nodata=-9999.0)
    B.write_roads(out, roads.nodes, roads.links)

    gpd = B.require_geopandas("writing the wards layer of an imported city")
    from shapely.geometry import box
    wards = gpd.GeoDataFrame([{"ward": 1, "ward_name": name, "area_km2": float(np.isfinite(z).sum() * r * r / 1e6),
                               "source": "extent of the DEM", "geometry": box(x0, y0, x1, y1)}],
                             geometry="geometry", crs=crs)
    wards.to_crs(4326).to_file(out / "wards.geojson", driver="GeoJSON")

    n_places = 0
    if places:
        pl = _read_places(Path(places), crs, z, transform)
        pl.to_csv(out / "places.csv", index=False)
        n_places = len(pl)

    classes = {str(k): {"name": v, "manning_n": MANNING_BY_NAME[v]} for k, v in LANDCOVER_NAMES.items()}
    L = B.layer
    manifest = {
        "name": name, "title": f"{name} (imported)", "crs": crs,
        "bounds": [float(x0), float(y0), float(x1), float(y1)], "native_resolution_m": r,
        "sea_level_m": sea_level_m, "generator": {"script": "twin city import"},
        "layers": {
            "terrain": L("terrain.tif", resolution_m=r, synthetic=False, licence=dem_licence,
                         source=f"{dem.name} reprojected to {crs} at {r:g} m (bilinear); {n_filled} hole cells filled"),
            "landcover": L("landcover.tif", resolution_m=r, synthetic=lc_synth, source=lc_desc, classes=classes,
                           licence="as supplied" if not lc_synth else "derived"),
            "manning": L("manning.tif" if manning is not None else None, resolution_m=r, synthetic=lc_synth,
                         derived_from=None if manning is not None else "landcover", default=0.035,
                         source="polygons' manning_n" if manning is not None else "land-cover class → Manning n",
                         licence="derived"),
            "building_fraction": L("building_fraction.tif", resolution_m=r, synthetic=True,
                                   source="class defaults", licence="derived"),
            "water_depth0": L("water_depth0.tif", resolution_m=r, synthetic=False, derived_from="terrain",
                              source=f"sea cells filled to {sea_level_m} m", licence="derived"),
            "wards": L("wards.geojson", resolution_m=r, synthetic=True, raster="wards.tif",
                       source="one ward covering the DEM", licence="derived"),
            "roads": L("roads_links.parquet", synthetic=False, nodes_file="roads_nodes.parquet", licence=osm_licence,
                       source=f"{osm.name} ({roads.n_links} links, {roads.n_nodes} nodes)"),
            "places": L("places.csv" if places else None, synthetic=False, licence="as supplied",
                        source=f"{Path(places).name} ({n_places} places)" if places else "none given"),
            "sea_cells": L(None, synthetic=lc_synth, derived_from="landcover", source="land cover 'sea'",
                           licence="derived"),
        },
    }
    for src in _bundles_to_merge(merge, (x0, y0, x1, y1), crs):
        _merge_real_layers(out, src, manifest, z, transform, lc, crs, bool(places))
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    return out


def _bundles_to_merge(merge: str | None, bounds, crs: str) -> list[Path]:
    if merge in (None, "", "none"):
        return []
    from pyproj import Transformer
    if merge != "auto":
        return [B.find_bundle(merge)]
    out = []
    for name in ("tamky",):  # shipped bundles with real vector layers
        folder = B.find_bundle(name)
        m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        bx = m["bounds"]
        tf = Transformer.from_crs(m["crs"], crs, always_xy=True)
        xs, ys = tf.transform([bx[0], bx[2], bx[0], bx[2]], [bx[1], bx[1], bx[3], bx[3]])
        if min(xs) < bounds[2] and max(xs) > bounds[0] and min(ys) < bounds[3] and max(ys) > bounds[1]:
            out.append(folder)
    return out


def _merge_real_layers(out: Path, src: Path, manifest: dict, z, transform, lc, crs: str, user_places: bool) -> None:
    """Merge ``src``'s real wards, population, places and inflows into the imported bundle ``out``."""
    from twin.city import census, read_wards

    m = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    layers, L = m["layers"], B.layer
    tag = f"merged from the shipped bundle {m['name']!r} (twin city import)"
    ny, nx = z.shape
    sea = lc == CODE_BY_NAME["sea"]
    land = np.isfinite(z) & ~sea
    # wards: the source polygons rasterised on the imported grid (cells of the DEM only)
    wards = read_wards(src / layers["wards"]["file"], crs)
    wr = census.rasterize_wards(wards, (ny, nx), transform, land=land, sea=sea)
    codes = [int(c) for c in wards["ward"] if (wr == int(c)).any()]
    if not codes:
        return
    B.write_raster(out / "wards.tif", wr, transform, crs, nodata=-1)
    keep = wards[wards["ward"].isin(codes)].copy()
    gpd = B.require_geopandas("writing the merged wards layer")
    gpd.GeoDataFrame(keep, geometry="geometry", crs=crs).to_crs(4326).to_file(out / "wards.geojson", driver="GeoJSON")
    manifest["layers"]["wards"] = L("wards.geojson", resolution_m=manifest["native_resolution_m"], synthetic=False,
                                    generalised=bool(layers["wards"].get("generalised")), raster="wards.tif",
                                    source=f"{layers['wards']['source']}; {tag}", licence=layers["wards"]["licence"])
    # population of the wards on the DEM, scaled by the share of each ward's cells that lie on it
    pop = pd.read_csv(src / layers["population"]["file"])
    src_wr = None
    if layers["wards"].get("raster"):
        import rasterio
        with rasterio.open(src / layers["wards"]["raster"]) as f:
            src_wr = f.read(1)
    pop = pop[pop["ward"].isin(codes)].copy()
    if src_wr is not None:
        src_cell = abs(float(m.get("native_resolution_m", 30.0))) ** 2
        cell = abs(transform.a) ** 2
        for i in pop.index:
            share = min(1.0, (wr == pop.at[i, "ward"]).sum() * cell / max((src_wr == pop.at[i, "ward"]).sum() * src_cell, 1.0))
            if share < 0.999:
                pop.at[i, "persons"] = int(round(pop.at[i, "persons"] * share))
                pop.at[i, "households"] = max(1, int(round(pop.at[i, "households"] * share)))
                pop.at[i, "source"] = f"{pop.at[i, 'source']}; × {share:.3f}, the share of the ward on the imported DEM"
    pop.to_csv(out / "population.csv", index=False)
    manifest["layers"]["population"] = L("population.csv", synthetic=bool(layers["population"].get("synthetic")),
                                         generalised=bool(layers["population"].get("generalised")),
                                         source=f"{layers['population']['source']}; {tag}",
                                         licence=layers["population"]["licence"])
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + nx * transform.a, y1 + ny * transform.e
    # places and inflows on the DEM (positions from lon/lat where given)
    for key, fname in (("places", "places.csv"), ("inflows", "inflows.csv")):
        if not layers.get(key, {}).get("file"):
            continue
        df = pd.read_csv(src / layers[key]["file"])
        if m["crs"] != crs:
            from pyproj import Transformer
            xx, yy = Transformer.from_crs(m["crs"], crs, always_xy=True).transform(df["x"].to_numpy(), df["y"].to_numpy())
            df["x"], df["y"] = xx, yy
        df = df[(df["x"] > x0) & (df["x"] < x1) & (df["y"] > y0) & (df["y"] < y1)].copy()
        if key == "places":
            r = ((y1 - df["y"]) // abs(transform.e)).astype(int).clip(0, ny - 1)
            c = ((df["x"] - x0) // transform.a).astype(int).clip(0, nx - 1)
            df["ward"] = wr[r, c].astype(int)
            names = dict(zip(keep["ward"], keep["ward_name"]))
            df["ward_name"] = [names.get(int(v), "") for v in df["ward"]]
            if user_places and (out / fname).exists():
                mine = pd.read_csv(out / fname)
                df = pd.concat([mine, df[~df["name"].isin(set(mine["name"]))]], ignore_index=True)
            df["place_id"] = np.arange(len(df))
        df.to_csv(out / fname, index=False)
        prev = manifest["layers"].get(key, {})
        manifest["layers"][key] = L(fname, synthetic=bool(layers[key].get("synthetic")) and not user_places,
                                    source=(f"{prev.get('source')} + " if user_places and key == "places" else "")
                                    + f"{layers[key]['source']} ({len(df)} on the DEM); {tag}",
                                    licence=layers[key]["licence"])


def _read_places(path: Path, crs, z, transform) -> pd.DataFrame:
    from pyproj import Transformer
    df = pd.read_csv(path)
    for col in ("name", "kind"):
        if col not in df:
            raise CityImportError(f"{path}: missing column {col!r} (need name, kind and lon/lat or x/y)")
    bad = ~df["kind"].isin(PLACE_KINDS)
    if bad.any():
        raise CityImportError(f"{path}: row {int(np.argmax(bad.to_numpy())) + 2}: field 'kind' has value "
                              f"{df.loc[bad, 'kind'].iloc[0]!r}; expected one of {', '.join(PLACE_KINDS)}")
    if {"lon", "lat"} <= set(df):
        if (df["lon"].abs() > 180).any() or (df["lat"].abs() > 90).any():
            raise CityImportError(f"{path}: fields 'lon'/'lat' are not degrees (e.g. {df['lon'].iloc[0]!r}): wrong CRS?")
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(df["lon"].to_numpy(), df["lat"].to_numpy())
        df["x"], df["y"] = x, y
    elif not {"x", "y"} <= set(df):
        raise CityImportError(f"{path}: need columns lon/lat (WGS84) or x/y ({crs})")
    if "capacity" not in df:
        df["capacity"] = 0
    df.insert(0, "place_id", np.arange(len(df)))
    r_, c_ = ((transform.f - df["y"]) // transform.a).astype(int), ((df["x"] - transform.c) // transform.a).astype(int)
    inside = (r_ >= 0) & (r_ < z.shape[0]) & (c_ >= 0) & (c_ < z.shape[1])
    df["ward"] = np.where(inside, 1, 0)
    df["ward_name"] = np.where(inside, "all", "")
    df["source"] = "real"
    return df
