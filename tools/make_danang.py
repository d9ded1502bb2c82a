#!/usr/bin/env python3
"""Build the Đà Nẵng real-terrain bundle ``twin/data/danang/``.

    PYTHONPATH=. python tools/make_danang.py

Terrain: the real SRTM GL1 30 m DEM of the Đà Nẵng core (``sources/srtm_gl1_danang_*.tif``, public domain),
reprojected from EPSG:4326 to EPSG:32649 at 30 m (bilinear), over the largest 30 m-aligned rectangle fully
covered by the tile.  Sea = cells below 0 m (manifest ``sea_below_m``).  Roads: the real national and
provincial roads of the region layer (CC BY-SA 4.0) plus a synthetic local-street lattice on land.
Land cover, places, wards and population are synthetic and labelled so.
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyproj import Transformer  # noqa: E402
from shapely.geometry import LineString  # noqa: E402

from twin.city import bundle, synth, synth_city  # noqa: E402
from twin.city.bundle import layer  # noqa: E402
from twin.roads import repair_connectivity  # noqa: E402

SHARED = Path("/work/shared/data")
OUT = ROOT / "twin" / "data" / "danang"
SRC = OUT / "sources"
DEM_NAME = "srtm_gl1_danang_108.08-108.32E_15.87-16.12N.tif"
CRS = "EPSG:32649"
RES = 30.0
CENTRE_LL = (108.2208, 16.0678)   # Đà Nẵng centre (Hải Châu, west bank of the Hàn river)

WARDS = [  # synthetic zones named after the former urban districts; persons order of magnitude (synthetic)
    ("Hải Châu", (108.2150, 16.0500), 200_000, 57_000, 0.12, 0.21, 0.78, 0.17, 3.0),
    ("Thanh Khê", (108.1850, 16.0650), 185_000, 52_000, 0.11, 0.22, 0.80, 0.14, 2.6),
    ("Sơn Trà", (108.2400, 16.0750), 150_000, 42_000, 0.11, 0.23, 0.80, 0.13, 2.4),
    ("Ngũ Hành Sơn", (108.2450, 16.0100), 90_000, 25_000, 0.10, 0.24, 0.81, 0.12, 2.0),
]


def main() -> int:
    SRC.mkdir(parents=True, exist_ok=True)
    dem_src = SRC / DEM_NAME
    if not dem_src.exists():
        shutil.copy(SHARED / "srtm30m_danang" / DEM_NAME, dem_src)
        shutil.copy(SHARED / "srtm30m_danang" / "SOURCE.md", SRC / "SOURCE_srtm30m_danang.md")
    roads_src = ROOT / "twin" / "data" / "tamky" / "sources" / "vn_national_roads_rail_quangnam_region.geojson"

    # inner rectangle of the tile in UTM 49N, aligned to 30 m
    tr = Transformer.from_crs(4326, CRS, always_xy=True)
    lon0, lat0, lon1, lat1 = 108.0800, 15.8702, 108.3198, 16.1200
    xs, ys = tr.transform([lon0, lon0, lon1, lon1], [lat0, lat1, lat0, lat1])
    x0 = np.ceil(max(xs[0], xs[1]) / RES) * RES
    x1 = np.floor(min(xs[2], xs[3]) / RES) * RES
    y0 = np.ceil(max(ys[0], ys[2]) / RES) * RES
    y1 = np.floor(min(ys[1], ys[3]) / RES) * RES
    z, t, _ = bundle.read_raster(dem_src, resolution_m=RES, resampling="bilinear", bounds=(x0, y0, x1, y1), crs=CRS)
    holes = int(np.isnan(z).sum())
    print(f"DEM {z.shape}, NaN cells {holes}, min {np.nanmin(z):.1f} max {np.nanmax(z):.1f}")

    # synthetic land cover from elevation
    X = x0 + (np.arange(z.shape[1]) + 0.5) * RES
    Y = y1 - (np.arange(z.shape[0]) + 0.5) * RES
    XX, YY = np.meshgrid(X, Y)
    cx, cy = tr.transform(*CENTRE_LL)
    dc = np.hypot(XX - cx, YY - cy)
    lc = np.full(z.shape, 4, np.uint8)            # urban sparse
    lc[(dc < 3500) & (z < 15)] = 3                # dense core
    lc[(z > 25)] = 6                              # hills (Sơn Trà, Ngũ Hành Sơn, western foothills): forest
    lc[(dc > 9000) & (z < 6) & (z >= 0)] = 5      # paddy on the low plain away from the core
    # sea: SRTM flattens the ocean to 0 m (a few cells below): cells <= 0.05 m connected to the tile edge
    from scipy import ndimage
    low, _ = ndimage.label(np.nan_to_num(z, nan=0.0) <= 0.05)
    edge_labels = np.unique(np.concatenate([low[0], low[-1], low[:, 0], low[:, -1]]))
    lc[np.isin(low, edge_labels[edge_labels > 0])] = 1
    lc[np.isnan(z)] = 0
    bfrac = np.vectorize(lambda c: synth.BUILDING_FRACTION_BY_CLASS.get(int(c), 0.0), otypes=[float])(lc)
    depth0 = np.where(lc == 1, np.maximum(-z, 0.0), 0.0)   # SRTM sea surface is 0 m: depth 0 there
    R = {"transform": t, "landcover": lc, "elevation": z}

    # roads: real national/provincial roads + synthetic lattice
    fc = json.loads(roads_src.read_text())
    from shapely.geometry import box
    dom = box(x0 + 1, y0 + 1, x1 - 1, y1 - 1)
    major = []
    for f in fc["features"]:
        pr = f["properties"]
        if pr["loai_duong"] == "Đường sắt":
            continue
        hw = "trunk" if pr["cap_duong"] == "Quốc Gia" else "secondary"
        for part in f["geometry"]["coordinates"]:
            xy = np.stack(tr.transform(np.array(part)[:, 0], np.array(part)[:, 1]), axis=1)
            g = LineString(xy).intersection(dom)
            for gg in (g.geoms if hasattr(g, "geoms") else [g]):
                if not gg.is_empty and gg.length > 0:
                    major.append((gg, hw, pr["ten"], "real"))
    nodes, und = synth_city.build_network(R, major, np.array([cx, cy]), np.array([1.0, 0.0]), 200.0,
                                          {3: 1, 4: 2, 5: 4, 6: 0, 7: 2})
    links = synth_city.directed_links(nodes, und, R)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        nodes, links = repair_connectivity(nodes, links, path="Đà Nẵng roads")
    for x in w:
        print("roads:", x.message)
    nodes["source"] = "synthetic"

    # wards: Voronoi of the seeds over land
    seeds = np.array([tr.transform(*w[1]) for w in WARDS])
    d = np.stack([np.hypot(XX - sx, YY - sy) for sx, sy in seeds])
    wr = (d.argmin(0) + 1).astype(np.int16)
    wr[(lc == 1) | (lc == 0) | (dc > 9000)] = 0
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape as shp_shape
    from shapely.ops import unary_union
    polys = {}
    for geom, val in shapes(wr, mask=wr > 0, transform=t):
        polys.setdefault(int(val), []).append(shp_shape(geom))
    wards = gpd.GeoDataFrame([{"ward": i, "ward_name": w[0], "area_km2": unary_union(polys.get(i, [])).area / 1e6,
                               "source": "synthetic", "geometry": unary_union(polys.get(i, []))}
                              for i, w in enumerate(WARDS, start=1)], geometry="geometry", crs=CRS)

    def P(name, kind, ll, cap=0, note="synthetic position", tourists=0):
        x, y = tr.transform(*ll)
        return {"name": name, "kind": kind, "x": x, "y": y, "capacity": cap, "tourists": tourists, "note": note}
    rn = "real institution, position approximate"
    places = pd.DataFrame([
        P("Bệnh viện Đà Nẵng", "hospital", (108.2140, 16.0720), 1500, rn),
        P("Bệnh viện C Đà Nẵng", "hospital", (108.2100, 16.0660), 400, rn),
        P("Bệnh viện Phụ sản – Nhi Đà Nẵng", "hospital", (108.2090, 16.0420), 600, rn),
        P("Trường Đại học Bách khoa – Đại học Đà Nẵng", "school", (108.1500, 16.0740), 4000, rn),
        P("Trường THPT Phan Châu Trinh", "school", (108.2180, 16.0590), 1500, rn),
        P("Cung Thể thao Tiên Sơn", "shelter", (108.2230, 16.0330), 5000, rn),
        P("Trung tâm Hành chính thành phố Đà Nẵng", "public_building", (108.2210, 16.0770), 3000, rn),
        P("Khách sạn ven biển Mỹ Khê", "hotel", (108.2470, 16.0600), 400, "synthetic", 240),
        P("Khách sạn trung tâm Hải Châu", "hotel", (108.2220, 16.0650), 200, "synthetic", 120),
        P("Phòng Cảnh sát PCCC và CNCH Đà Nẵng", "fire_station", (108.2050, 16.0600), 0),
        P("Công an thành phố Đà Nẵng", "police", (108.2200, 16.0700), 0),
        P("Trung tâm Cấp cứu 115 Đà Nẵng", "dispatch", (108.2120, 16.0700), 0),
        P("Trạm bơm tiêu Hòa Xuân", "pumping_station", (108.2230, 16.0150), 5, "synthetic; capacity m³/s"),
        P("Trạm thủy văn Cẩm Lệ (sông Cẩm Lệ / Hàn)", "gauge_stage", (108.2050, 16.0170), 0, rn),
        P("Trạm đo mưa Đà Nẵng", "gauge_rain", (108.2000, 16.0440), 0, rn),
        P("Trạm hải văn Sơn Trà", "gauge_tide", (108.2250, 16.1000), 0, rn),
    ])
    places.insert(0, "place_id", np.arange(len(places)))
    rr = np.floor((y1 - places["y"]) / RES).astype(int).clip(0, wr.shape[0] - 1)
    cc = np.floor((places["x"] - x0) / RES).astype(int).clip(0, wr.shape[1] - 1)
    names = {i: w[0] for i, w in enumerate(WARDS, start=1)}
    places["ward"] = wr[rr, cc].astype(int)
    places["ward_name"] = [names.get(int(v), "") for v in wr[rr, cc]]
    places["source"] = "synthetic"
    pop = pd.DataFrame([{"ward": i, "ward_name": w[0], "households": w[3], "persons": w[2], "share_elderly": w[4],
                         "share_children": w[5], "share_motorbike": w[6], "share_car": w[7],
                         "share_no_vehicle": round(1 - w[6] - w[7], 4), "mean_storeys": w[8],
                         "tourists": int(places.loc[(places.ward == i) & (places.kind == "hotel"), "tourists"].sum()),
                         "source": "synthetic"} for i, w in enumerate(WARDS, start=1)])
    hx, hy = tr.transform(108.1950, 15.9950)
    inflows = pd.DataFrame([{"name": "Sông Cẩm Lệ / Hàn (thượng nguồn)", "kind": "river_inflow", "x": hx, "y": hy,
                             "note": "synthetic inflow point on the low plain south-west of the centre"}])

    bundle.write_raster(OUT / "terrain_30m.tif", z.astype(np.float32), t, CRS, nodata=-9999.0)
    bundle.write_raster(OUT / "landcover_30m.tif", lc, t, CRS, nodata=0)
    bundle.write_raster(OUT / "building_fraction_30m.tif", bfrac.astype(np.float32), t, CRS)
    bundle.write_raster(OUT / "water_depth0_30m.tif", np.round(depth0, 3).astype(np.float32), t, CRS)
    bundle.write_raster(OUT / "wards_30m.tif", wr, t, CRS, nodata=-1)
    bundle.write_roads(OUT, nodes, links)
    places.to_csv(OUT / "places.csv", index=False)
    pop.to_csv(OUT / "population.csv", index=False)
    inflows.to_csv(OUT / "inflows.csv", index=False)
    wards.to_crs(4326).to_file(OUT / "wards.geojson", driver="GeoJSON")
    classes = {str(k): {"name": v, "manning_n": synth.MANNING_BY_CLASS[k],
                        "building_fraction": synth.BUILDING_FRACTION_BY_CLASS[k]}
               for k, v in synth.LANDCOVER_CLASSES.items()}
    n_real = int((links["source"] == "real").sum())
    syn = "synthetic (tools/make_danang.py)"
    manifest = {
        "name": "danang",
        "title": "Đà Nẵng core (real SRTM 30 m terrain)",
        "crs": CRS,
        "bounds": [float(x0), float(y0), float(x1), float(y1)],
        "bounds_lonlat": [lon0, lat0, lon1, lat1],
        "native_resolution_m": 30,
        "sea_level_m": 0.0,
        "generator": {"script": "tools/make_danang.py"},
        "layers": {
            "terrain": layer("terrain_30m.tif", resolution_m=30, synthetic=False,
                             source="NASA SRTM GL1 1 arc-second (OpenTopography doi:10.5069/G9445JDF), "
                                    f"{DEM_NAME}, reprojected EPSG:4326 → EPSG:32649 at 30 m (bilinear); "
                                    f"{holes} nodata cells", licence="public domain (NASA/USGS)",
                             units="m (EGM96)", original="sources/" + DEM_NAME),
            "landcover": layer("landcover_30m.tif", resolution_m=30, synthetic=True, classes=classes,
                               source=f"from elevation bands: sea = SRTM ocean (<= 0 m connected to the edge), dense core < 3.5 km of the centre, forest "
                                      f"> 25 m, paddy on the far low plain; {syn}", licence="CC BY-SA 4.0"),
            "manning": layer(None, resolution_m=30, synthetic=True, derived_from="landcover",
                             source="land-cover class → Manning n table", licence="CC BY-SA 4.0"),
            "building_fraction": layer("building_fraction_30m.tif", resolution_m=30, synthetic=True,
                                       source=f"class defaults; {syn}", licence="CC BY-SA 4.0"),
            "water_depth0": layer("water_depth0_30m.tif", resolution_m=30, synthetic=False, derived_from="terrain",
                                  source="sea cells (below 0 m) filled to 0 m", licence="public domain", units="m"),
            "wards": layer("wards.geojson", resolution_m=30, synthetic=True, raster="wards_30m.tif",
                           source=f"Voronoi zones named after the former urban districts; {syn}",
                           licence="CC BY-SA 4.0"),
            "roads": layer("roads_links.parquet", synthetic=True, nodes_file="roads_nodes.parquet",
                           source=f"national/provincial roads ({n_real} real links, CTU-SematX LegoCity, CC BY-SA 4.0) "
                                  f"+ synthetic street lattice (200 m core, 400 m elsewhere) on land ({len(links) - n_real} links)",
                           licence="CC BY-SA 4.0 (Road/rail data: CTU-SematX LegoCity project, CC BY-SA 4.0)",
                           real_links=n_real, synthetic_links=int(len(links) - n_real)),
            "places": layer("places.csv", synthetic=True, source="real institution names, approximate positions",
                            licence="CC BY-SA 4.0", count=int(len(places))),
            "population": layer("population.csv", synthetic=True, source="order-of-magnitude synthetic totals",
                                licence="CC BY-SA 4.0"),
            "inflows": layer("inflows.csv", synthetic=True, source=syn, licence="CC BY-SA 4.0"),
            "sea_cells": layer(None, resolution_m=30, synthetic=False, derived_from="terrain", source="cells at or below 0 m (SRTM ocean surface) connected to the tile edge",
                               licence="public domain"),
        },
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    print(f"nodes {len(nodes)}, links {len(links)} ({n_real} real), places {len(places)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
