"""City bundles: terrain, land cover, roads, places, wards and population of a city, with provenance.

    from twin import load_city
    city = load_city("tamky")            # the shipped Tam Kỳ bundle at 30 m
    city = load_city("tamky", 10)        # 10 m: generated once, deterministically, into the cache
    city = load_city("danang")           # the real-terrain Đà Nẵng case (SRTM 30 m)
    city = load_city("/path/to/bundle")  # a folder made by `twin city import`

Every layer says where it comes from (``city.manifest["layers"][name]``: source, licence, resolution,
synthetic flag); ``twin city info NAME`` prints them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.city.bundle import available_cities, cache_dir, find_bundle, user_city_dir
from twin.geo import normalise_name
from twin.roads import RoadNetwork
from twin.terrain import Terrain

__all__ = ["City", "load_city", "read_wards", "available_cities", "cache_dir", "user_city_dir", "LANDCOVER_NAMES"]

LANDCOVER_NAMES = {1: "sea", 2: "water", 3: "urban_dense", 4: "urban_sparse", 5: "paddy", 6: "forest", 7: "sand"}
PLACE_KINDS = ("hospital", "school", "shelter", "hotel", "fire_station", "police", "dispatch", "pumping_station",
               "gauge_stage", "gauge_rain", "gauge_tide", "public_building", "industrial_zone", "tourism")


@dataclass
class City:
    """A loaded city bundle (see docs/architecture.md, "City bundle")."""

    name: str
    manifest: dict
    terrain: Terrain
    manning: np.ndarray                  # (ny, nx) Manning n [s m^-1/3]
    landcover: np.ndarray                # (ny, nx) int codes
    landcover_classes: dict              # code -> name
    building_fraction: np.ndarray        # (ny, nx) [-]
    water_depth0: np.ndarray             # (ny, nx) initial water depth [m]
    roads: RoadNetwork | None            # None when the bundle has no road layer
    places: pd.DataFrame                 # place_id, name, kind, x, y, capacity, ward, source, ...
    wards: pd.DataFrame                  # GeoDataFrame: ward (int code), ward_name, area_km2, geometry (EPSG:32649)
    ward_raster: np.ndarray              # (ny, nx) int: 0 outside, else the ward code
    population: pd.DataFrame             # per ward
    sea_cells: np.ndarray                # (ny, nx) bool: where the sea / tide boundary applies
    inflows: pd.DataFrame                # name, x, y, kind, ...
    path: Path | None = None
    resolution_m: float = 30.0
    extras: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.landcover.shape

    def places_of(self, kind: str) -> pd.DataFrame:
        return self.places[self.places["kind"] == kind]

    def ward_of(self, x, y) -> np.ndarray:
        """Ward ids at points (0 outside every ward)."""
        r, c = self.terrain.rowcol(np.asarray(x, float), np.asarray(y, float))
        ny, nx = self.shape
        ok = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
        out = np.zeros(np.shape(r), int)
        out[ok] = self.ward_raster[r[ok], c[ok]]
        return out

    def place_xy(self, name_or_id) -> tuple[float, float]:
        """``(x, y)`` of one place: by exact ``place_id``, else by name without diacritics or case
        (``"benh vien da khoa"`` finds ``Bệnh viện Đa khoa``), else by a unique part of the name.

        Several matches or none raise ValueError naming them (or the places there are).
        """
        return lookup_xy(self.places, name_or_id, city=self.name, what="place", plural="places", by_id="place_id")

    def inflow_xy(self, name) -> tuple[float, float]:
        """``(x, y)`` of one inflow point (snapped to the channel at the loaded resolution): by name
        without diacritics or case, else by a unique part of the name; several or none raise ValueError."""
        return lookup_xy(self.inflows, name, city=self.name, what="inflow point", plural="inflows", by_id=None)

    def layer_table(self) -> pd.DataFrame:
        """One row per layer: name, synthetic, resolution_m, source, licence, file."""
        rows = []
        for name, d in self.manifest.get("layers", {}).items():
            rows.append({"layer": name, "kind": "synthetic" if d.get("synthetic") else "real",
                         "resolution_m": d.get("resolution_m", ""), "source": d.get("source", ""),
                         "licence": d.get("licence", ""), "file": d.get("file") or f"(derived from {d.get('derived_from', '?')})"})
        return pd.DataFrame(rows)


def lookup_xy(table, key, *, city: str, what: str, plural: str, by_id: str | None) -> tuple[float, float]:
    """``(x, y)`` of the row of ``table`` (places, inflows) that ``key`` names: by exact ``by_id``, else by
    name without diacritics or case, else by a unique part of a name; several or none raise ValueError."""
    if table is None or len(table) == 0:
        raise ValueError(f"{what} {key!r}: the city bundle {city!r} has no {plural}")
    want = normalise_name(key)
    if not want:
        raise ValueError(f"{what} {key!r}: give a name{' or ' + by_id if by_id else ''}")
    names = table["name"].map(normalise_name)
    hit = names == want
    if by_id is not None and by_id in table:
        hit |= table[by_id].astype(str) == str(key)
    m = table[hit]
    if len(m) == 0:
        m = table[names.map(lambda n: want in n)]
    if len(m) > 1:
        raise ValueError(f"{what} {key!r} matches several {plural}: {', '.join(map(str, m['name']))}")
    if len(m) == 0:
        have = [str(n) for n in table["name"]]
        more = f" and {len(have) - 20} more" if len(have) > 20 else ""
        by = f" (by {by_id} or name)" if by_id else ""
        raise ValueError(f"{what} {key!r} not found in city {city!r}{by} (have: {', '.join(have[:20])}{more})")
    return float(m.iloc[0]["x"]), float(m.iloc[0]["y"])


_LOADED: dict[tuple[str, float], City] = {}


def load_city_cached(name: str, resolution_m: float) -> City:
    """:func:`load_city`, kept for the process (at most two bundles: a worker of a forecast or review
    builds many twins of one city; building a twin from a loaded city does not change the city)."""
    key = (str(name), float(resolution_m))
    if key not in _LOADED:
        while len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_city(name, resolution_m=resolution_m)
    return _LOADED[key]


def load_city(name_or_path="tamky", resolution_m: float = 30) -> City:
    """Load a city bundle by name (``tamky``, ``danang``, or one made by ``twin city import``) or folder.

    ``resolution_m`` other than the bundle's native resolution resamples the rasters (mean for elevation,
    fractions and depths, majority for land cover, nearest for wards). The grid keeps the bundle's
    north-west corner; when ``resolution_m`` does not divide the extent the last partial row/column is
    dropped (e.g. Tam Kỳ at 90 m: 290 × 286 cells). For the Tam Kỳ bundle a finer grid (10 m) is
    regenerated from the shipped generator and sources (once, into :func:`cache_dir`).
    """
    from twin.city import bundle as B

    folder = find_bundle(name_or_path)
    import json
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    name = manifest.get("name", folder.name)
    try:
        resolution_m = float(resolution_m)
    except (TypeError, ValueError):
        raise ValueError(f"load_city: resolution_m must be a number of metres, got {resolution_m!r}") from None
    if not resolution_m > 0:
        raise ValueError(f"load_city: resolution_m must be > 0, got {resolution_m!r}")
    layers = manifest["layers"]
    native = float(manifest.get("native_resolution_m", layers["terrain"].get("resolution_m", 30)))
    crs = manifest.get("crs", "EPSG:32649")
    x0, y0, x1, y1 = manifest["bounds"]
    classes_meta = layers["landcover"].get("classes", {})
    classes = {int(k): (v["name"] if isinstance(v, dict) else str(v)) for k, v in classes_meta.items()} or dict(LANDCOVER_NAMES)

    def _grid_ok(r):
        nx, ny = (x1 - x0) / r, (y1 - y0) / r
        return abs(nx - round(nx)) < 1e-6 and abs(ny - round(ny)) < 1e-6

    if not _grid_ok(resolution_m):
        # keep the north-west corner; the grid ends at the last whole cell inside the bundle extent
        nx_ = int(np.floor((x1 - x0) / resolution_m + 1e-9))
        ny_ = int(np.floor((y1 - y0) / resolution_m + 1e-9))
        if nx_ < 2 or ny_ < 2:
            raise ValueError(f"load_city({name!r}): resolution_m={resolution_m:g} is coarser than the bundle "
                             f"extent {x1 - x0:.0f} x {y1 - y0:.0f} m")
        x1, y0 = x0 + nx_ * resolution_m, y1 - ny_ * resolution_m

    generated = None
    if abs(resolution_m - native) > 1e-9 and layers["terrain"].get("generator") == "tamky" and resolution_m < native:
        b = manifest["bounds"]
        if not (abs(x1 - b[2]) < 1e-6 and abs(y0 - b[1]) < 1e-6):
            raise ValueError(f"load_city({name!r}): a resolution finer than {native:g} m is generated and must divide "
                             f"the domain {b[2] - b[0]:.0f} x {b[3] - b[1]:.0f} m exactly (e.g. 10, 15, 5); "
                             f"got {resolution_m:g}")
        generated = _tamky_generated(folder, resolution_m)

    def raster(key, resampling, file_key="file"):
        f = layers[key].get(file_key) if key in layers else None
        if f is None:
            return None
        a, _, _ = B.read_raster(folder / f, resolution_m=None if resolution_m == native else resolution_m,
                                resampling=resampling, bounds=(x0, y0, x1, y1) if resolution_m != native else None,
                                crs=crs if resolution_m != native else None)
        return a

    if generated is not None:
        elev = generated["elevation"]
        lc = generated["landcover"].astype(np.int16)
        bfrac = generated["building_fraction"]
        depth0 = generated["water_depth0"]
        wr = raster("wards", "nearest", "raster")
    else:
        elev = raster("terrain", "average")
        integer_depth0 = None
        k = resolution_m / native
        if resolution_m > native and abs(k - round(k)) < 1e-9 and layers["landcover"].get("file"):
            # integer coarsening: block majority with water priority (narrow rivers stay continuous)
            from twin.city.synth import block_mode
            full, _, _ = B.read_raster(folder / layers["landcover"]["file"])
            full = np.where(np.isfinite(full), full, 0).astype(np.int16)
            k = int(round(k))
            water = [c for c, n in classes.items() if n == "water"]
            lc = block_mode(full, k, water_code=water[0] if water else None)[: elev.shape[0], : elev.shape[1]]
            if water:   # channel burning, as when the bundle was made (synth.coarsen_elevation)
                from twin.city.synth import coarsen_elevation
                zfull, _, _ = B.read_raster(folder / layers["terrain"]["file"])
                elev = coarsen_elevation(zfull, full, lc, k, water_code=water[0])[: elev.shape[0], : elev.shape[1]]
                if layers.get("water_depth0", {}).get("file"):
                    dfull, _, _ = B.read_raster(folder / layers["water_depth0"]["file"])
                    depth_burned = coarsen_elevation(np.nan_to_num(dfull), full, lc, k, water_code=water[0])
                    integer_depth0 = depth_burned[: elev.shape[0], : elev.shape[1]]
        else:
            lcf = raster("landcover", "mode")
            lc = np.where(np.isfinite(lcf), lcf, 0).astype(np.int16)
        bfrac = raster("building_fraction", "average")
        depth0 = raster("water_depth0", "average")
        if integer_depth0 is not None:
            depth0 = integer_depth0
        wr = raster("wards", "nearest", "raster")
    shape = elev.shape
    if bfrac is None:
        bfrac = np.zeros(shape)
    if depth0 is None:
        depth0 = np.zeros(shape)
    bfrac = np.nan_to_num(bfrac, nan=0.0)
    depth0 = np.nan_to_num(depth0, nan=0.0)
    wr = np.zeros(shape, np.int32) if wr is None else np.nan_to_num(wr, nan=0).astype(np.int32)

    manning = np.full(shape, np.nan)
    for k, v in classes_meta.items():
        if isinstance(v, dict) and "manning_n" in v:
            manning[lc == int(k)] = float(v["manning_n"])
    if generated is None and layers.get("manning", {}).get("file"):
        m_file = raster("manning", "average")
        manning = np.where(np.isfinite(m_file) & (m_file > 0), m_file, manning)
    default_n = float(layers.get("manning", {}).get("default", 0.035))
    manning[~np.isfinite(manning)] = default_n

    terrain = Terrain.from_array(elev, resolution_m, origin=(x0, y1), crs=crs, nodata=None)

    sea_class = [int(k) for k, v in classes.items() if v == "sea"]
    water_class = [int(k) for k, v in classes.items() if v == "water"]
    sea = np.isin(lc, sea_class)
    if manifest.get("sea_below_m") is not None:
        sea |= np.isfinite(elev) & (elev < float(manifest["sea_below_m"]))
    edge = np.zeros(shape, bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    sea |= edge & np.isin(lc, water_class) & np.isfinite(elev) & (elev < 1.0)

    if "roads" in layers and layers["roads"].get("file"):
        nodes, links = B.read_roads(folder)
        roads = RoadNetwork.from_frames(nodes, links)
    else:
        roads = None

    def table(key, reader=pd.read_csv):
        f = layers.get(key, {}).get("file")
        return reader(folder / f) if f and (folder / f).exists() else None

    places = table("places")
    if places is None:
        places = pd.DataFrame(columns=["place_id", "name", "kind", "x", "y", "capacity", "ward", "source"])
    places["ward"] = pd.to_numeric(places["ward"], errors="coerce").fillna(0).astype(int)
    if "ward_name" in places:
        places["ward_name"] = places["ward_name"].astype(object).where(places["ward_name"].notna(), "").astype(str)
    population = table("population")
    if population is None:
        population = pd.DataFrame(columns=["ward", "ward_name", "households", "persons", "share_elderly", "share_children",
                                           "share_motorbike", "share_car", "share_no_vehicle", "mean_storeys"])
    inflows = table("inflows")
    if inflows is None:
        inflows = pd.DataFrame(columns=["name", "x", "y", "kind"])
    inflows = _snap_inflows(inflows, terrain, lc, classes)
    wards = None
    if layers.get("wards", {}).get("file"):
        wards = read_wards(folder / layers["wards"]["file"], crs)
    if wards is None:
        wards = pd.DataFrame(columns=["ward", "ward_name", "geometry"])

    return City(name=name, manifest=manifest, terrain=terrain, manning=manning, landcover=lc,
                landcover_classes=classes, building_fraction=bfrac, water_depth0=depth0, roads=roads,
                places=places, wards=wards, ward_raster=wr, population=population, sea_cells=sea,
                inflows=inflows, path=folder, resolution_m=resolution_m)


def read_wards(path: Path, crs: str) -> pd.DataFrame:
    """The wards layer in ``crs``: a GeoDataFrame when geopandas (the ``[osm]`` extra) is installed, else
    a DataFrame with shapely geometries read from the GeoJSON (a bundle's ``wards.geojson``) directly,
    so that a base install (no extras) loads every shipped city."""
    try:
        import geopandas as gpd
    except ImportError:
        pass
    else:
        return gpd.read_file(path).to_crs(crs)
    import json

    import shapely
    from pyproj import CRS, Transformer
    from shapely.geometry import shape

    if path.suffix.lower() not in (".geojson", ".json"):   # only GeoJSON is read without geopandas
        from twin.city.bundle import require_geopandas
        require_geopandas(f"reading the wards layer {path}")
    doc = json.loads(path.read_text(encoding="utf-8"))
    src = doc.get("crs", {}).get("properties", {}).get("name", "OGC:CRS84")   # RFC 7946: lon/lat WGS 84
    to_crs = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(crs), always_xy=True)
    rows = []
    for feat in doc.get("features", []):
        geom = shapely.transform(shape(feat["geometry"]), lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))
        rows.append({**feat.get("properties", {}), "geometry": geom})
    return pd.DataFrame(rows)


def _snap_inflows(inflows: pd.DataFrame, terrain, lc: np.ndarray, classes: dict) -> pd.DataFrame:
    """Move each inflow point to the lowest valid cell within max(2 cells, 60 m), preferring water cells,
    so that it sits in the channel at the loaded resolution (``row``/``col`` added, ``x``/``y`` = cell centre)."""
    if len(inflows) == 0:
        return inflows.assign(row=pd.Series(dtype=int), col=pd.Series(dtype=int))
    z = np.asarray(terrain.elevation, float)
    ny, nx = z.shape
    d = terrain.cell_size
    rad = max(2, int(np.ceil(60.0 / d)))
    water = np.isin(lc, [c for c, n in classes.items() if n in ("water", "sea")])
    out = inflows.copy()
    rows, cols = [], []
    for _i, (x, y) in enumerate(zip(out["x"].to_numpy(float), out["y"].to_numpy(float))):
        r0, c0 = terrain.rowcol(x, y)
        r0, c0 = int(np.clip(r0, 0, ny - 1)), int(np.clip(c0, 0, nx - 1))
        rs, cs = slice(max(r0 - rad, 0), min(r0 + rad + 1, ny)), slice(max(c0 - rad, 0), min(c0 + rad + 1, nx))
        win = np.where(np.isfinite(z[rs, cs]), z[rs, cs], np.inf) - 1000.0 * water[rs, cs]
        rr, cc = np.unravel_index(np.argmin(win), win.shape)
        rows.append(rs.start + rr)
        cols.append(cs.start + cc)
    out["row"], out["col"] = rows, cols
    out["x"], out["y"] = terrain.xy(np.array(rows), np.array(cols))
    return out


def _tamky_generated(folder: Path, resolution_m: float) -> dict:
    """Finer-than-shipped Tam Kỳ rasters: generated once from the shipped sources into the cache."""
    from twin.city import bundle as B
    from twin.city import synth
    tag = f"r{resolution_m:g}m"
    cdir = cache_dir() / "tamky" / tag
    files = {k: cdir / f"{k}.tif" for k in ("elevation", "landcover", "building_fraction", "water_depth0")}
    if not all(p.exists() for p in files.values()):
        warnings.warn(f"generating the Tam Kỳ {resolution_m:g} m terrain into {cdir} (once, ~10 s)", UserWarning,
                      stacklevel=3)
        R = synth.synthesize_rasters(folder / "sources", resolution_m)
        cdir.mkdir(parents=True, exist_ok=True)
        crs = f"EPSG:{synth.CRS_EPSG}"
        for k, p in files.items():
            a = R[k].astype(np.uint8 if k == "landcover" else np.float32)
            tmp = p.with_suffix(".tmp.tif")
            B.write_raster(tmp, a, R["transform"], crs)
            tmp.replace(p)
    out = {}
    for k, p in files.items():
        a, _, _ = B.read_raster(p)
        out[k] = a
    return out
