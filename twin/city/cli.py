"""``twin city``: import a city from real data and show a bundle's layers with provenance."""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("city", help="city bundles: import real data, show layers and provenance",
                              description="City bundles (terrain, land cover, roads, places, population).")
    sub = p.add_subparsers(dest="city_command", metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="list a bundle's layers with source, licence, resolution, real/synthetic")
    info.add_argument("name", help="bundle name (tamky, danang, an imported one) or a bundle folder")
    info.add_argument("--json", action="store_true", help="print the manifest's layer table as JSON")
    info.add_argument("--load", action="store_true", help="also load the bundle and print sizes")
    info.set_defaults(func=_info)

    ls = sub.add_parser("list", help="list the available bundles")
    ls.set_defaults(func=_list)

    imp = sub.add_parser("import", help="build a bundle from a real DEM and OSM extract",
                         description="Build a city bundle from a GeoTIFF DEM (any CRS) and an OSM extract "
                                     "(.osm.pbf/.osm), GeoJSON or GraphML road file.")
    imp.add_argument("--name", required=True)
    imp.add_argument("--dem", required=True, help="GeoTIFF DEM, any CRS (reprojected)")
    imp.add_argument("--osm", required=True, help="roads: .osm.pbf, .osm, .geojson or .graphml")
    imp.add_argument("--places", help="CSV: name, kind, lon, lat (or x, y), capacity")
    imp.add_argument("--landcover", help="land cover: GeoTIFF of class codes, or polygons with 'class'/'manning_n'")
    imp.add_argument("--resolution", type=float, default=30.0, help="grid resolution in metres (default 30)")
    imp.add_argument("--crs", default="EPSG:32649", help="target CRS (default EPSG:32649, UTM 49N)")
    imp.add_argument("--out", help="parent folder (default $TWIN_CITY_DIR or ~/.local/share/tamky-twin/cities)")
    imp.add_argument("--dem-licence", default="as supplied")
    imp.add_argument("--osm-licence", default="ODbL-1.0 (© OpenStreetMap contributors)")
    imp.add_argument("--overwrite", action="store_true")
    imp.add_argument("--merge", default="auto", metavar="BUNDLE|auto|none",
                     help="merge a shipped bundle's real layers (wards, census population, places, reservoir and "
                          "river inflow points) where they lie on the DEM; auto: every shipped bundle that overlaps "
                          "it (Tam Kỳ); none: the import alone")
    imp.set_defaults(func=_import)

    rnd = sub.add_parser("render", help="draw a PNG map of a bundle (hillshade, water, roads, places)")
    rnd.add_argument("name")
    rnd.add_argument("--out", required=True)
    rnd.add_argument("--resolution", type=float, default=30.0)
    rnd.set_defaults(func=_render)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _info(args) -> int:
    from twin.city.bundle import find_bundle
    try:
        folder = find_bundle(args.name)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for name, d in m.get("layers", {}).items():
        rows.append({"layer": name, "kind": "synthetic" if d.get("synthetic") else
                     ("real (generalised)" if d.get("generalised") else "real"),
                     "resolution_m": d.get("resolution_m"), "file": d.get("file") or f"derived from {d.get('derived_from')}",
                     "source": d.get("source", ""), "licence": d.get("licence", "")})
    if args.json:
        print(json.dumps({"name": m.get("name"), "title": m.get("title"), "crs": m.get("crs"), "bounds": m.get("bounds"),
                          "path": str(folder), "layers": rows}, ensure_ascii=False, indent=2))
        return 0
    print(f"{m.get('title', m.get('name'))}  [{m.get('name')}]  {folder}")
    print(f"CRS {m.get('crs')}  bounds {m.get('bounds')}  native resolution {m.get('native_resolution_m')} m")
    if m.get("resolutions_m"):
        print("resolutions: " + "; ".join(f"{k} m: {v}" for k, v in m["resolutions_m"].items()))
    for r in rows:
        res = f"{r['resolution_m']:g} m" if isinstance(r["resolution_m"], (int, float)) else "vector"
        print(f"\n  {r['layer']:<18} {r['kind'].upper():<10} {res:<8} {r['file']}")
        print(f"      source:  {r['source']}")
        print(f"      licence: {r['licence']}")
    if m.get("facts"):
        print("\npublic facts used:")
        for f in m["facts"]:
            print(f"  - {f}")
    if args.load:
        from twin.city import load_city
        c = load_city(folder)
        print(f"\nloaded: grid {c.shape}, {c.roads.n_nodes} road nodes, {c.roads.n_links} links, "
              f"{len(c.places)} places, {int(c.population['persons'].sum()) if len(c.population) else 0} persons")
    return 0


def _list(args) -> int:
    from twin.city.bundle import available_cities
    for n in available_cities():
        print(n)
    return 0


def _import(args) -> int:
    from twin.city.importer import import_city
    try:
        out = import_city(args.name, args.dem, args.osm, places=args.places, landcover=args.landcover,
                          resolution_m=args.resolution, out_dir=args.out, crs=args.crs, dem_licence=args.dem_licence,
                          osm_licence=args.osm_licence, overwrite=args.overwrite,
                          merge=None if args.merge == "none" else args.merge)
    except (ValueError, FileNotFoundError, ImportError) as exc:   # ImportError: an optional extra is missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _render(args) -> int:
    from twin.city import load_city
    from twin.city.plot import render_city
    print(render_city(load_city(args.name, args.resolution), args.out))
    return 0
