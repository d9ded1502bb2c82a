#!/usr/bin/env python3
"""Build the Tam Kỳ city bundle ``twin/data/tamky/`` from the shipped sources.

    PYTHONPATH=. python tools/make_tamky.py

Inputs (all in the repository): ``twin/data/tamky/sources/gshhg_coast_rivers.geojson`` (made once by
``tools/extract_gshhg.py`` with gmt), ``twin/data/tamky/sources/vn_national_roads_rail_quangnam_region.geojson``
(QL1A, CC BY-SA 4.0) and the generator parameters in ``twin/city/synth.py`` (``TerrainParams``,
``RIVERS``, ``RESERVOIR_LONLAT``) and ``twin/city/synth_city.py`` (arterials, places, wards, population).

The 10 m terrain is generated, its 3×3 block mean is written as ``terrain_30m.tif``; land cover at 30 m is
the 3×3 majority.  The 10 m layers are not shipped (≈ 20 MB); ``load_city("tamky", resolution_m=10)``
regenerates them on first use into the cache (``twin.city.cache_dir()``).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.city import bundle, synth, synth_city  # noqa: E402

OUT = ROOT / "twin" / "data" / "tamky"
SRC = OUT / "sources"


def main() -> int:
    t0 = time.time()
    R10 = synth.synthesize_rasters(SRC, 10.0)
    R = synth.coarsen(R10, 3)
    sources = synth.load_sources(SRC)
    t1 = time.time()

    nodes, und = synth_city.build_roads(R, sources, SRC / "vn_national_roads_rail_quangnam_region.geojson")
    links = synth_city.directed_links(nodes, und, R)
    from twin.roads import repair_connectivity
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        nodes, links = repair_connectivity(nodes, links, path="synthetic Tam Kỳ roads")
    for x in w:
        print("roads:", x.message)
    nodes["source"] = "synthetic"
    real_nodes = set(links.loc[links["source"] == "real", "from"]) | set(links.loc[links["source"] == "real", "to"])
    nodes.loc[nodes["id"].isin(real_nodes), "source"] = "real"

    wr = synth_city.ward_raster(R)
    wards = synth_city.ward_polygons(wr, R["transform"])
    places = synth_city.build_places(R, wr, R10["river_lines"], sources, links)
    pop = synth_city.population_table(wards, places)
    inflows = synth_city.build_inflows(R, R10["river_lines"], sources)

    crs = f"EPSG:{synth.CRS_EPSG}"
    t = R["transform"]
    bundle.write_raster(OUT / "terrain_30m.tif", R["elevation"].astype(np.float32), t, crs, nodata=-9999.0)
    bundle.write_raster(OUT / "landcover_30m.tif", R["landcover"].astype(np.uint8), t, crs, nodata=0)
    bundle.write_raster(OUT / "building_fraction_30m.tif", np.round(R["building_fraction"], 2).astype(np.float32), t, crs)
    bundle.write_raster(OUT / "water_depth0_30m.tif", np.round(R["water_depth0"], 3).astype(np.float32), t, crs)
    bundle.write_raster(OUT / "wards_30m.tif", wr.astype(np.int16), t, crs, nodata=-1)
    bundle.write_roads(OUT, nodes, links)
    places.to_csv(OUT / "places.csv", index=False)
    pop.to_csv(OUT / "population.csv", index=False)
    inflows.to_csv(OUT / "inflows.csv", index=False)
    wards.to_crs(4326).to_file(OUT / "wards.geojson", driver="GeoJSON")

    manifest = bundle.tamky_manifest(R, synth.params_dict(), links, places)
    # checksum of the generated 10 m elevation (float32) so a regenerated cache can be verified
    manifest["layers"]["terrain"]["generated_10m_sha256"] = hashlib.sha256(
        R10["elevation"].astype(np.float32).tobytes()).hexdigest()
    (OUT / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    n_real = int((links["source"] == "real").sum())
    print(f"rasters {t1 - t0:.1f}s, total {time.time() - t0:.1f}s; nodes {len(nodes)}, links {len(links)} "
          f"({n_real} real), places {len(places)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
