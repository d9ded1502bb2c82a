"""A map of a city bundle: hillshade, water, roads and places (matplotlib, no network)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ROAD_STYLE = {  # highway: (colour, width)
    "motorway": ("#c0392b", 2.2), "trunk": ("#e74c3c", 2.0), "primary": ("#f39c12", 1.6),
    "secondary": ("#f1c40f", 1.2), "tertiary": ("#ecf0f1", 0.8),
}
PLACE_STYLE = {  # kind: (marker, colour, label)
    "hospital": ("P", "#e60026", "hospital"), "school": ("s", "#8e44ad", "school"),
    "shelter": ("^", "#27ae60", "shelter"), "public_building": ("D", "#16a085", "public building"),
    "hotel": ("h", "#d35400", "hotel"), "industrial_zone": ("s", "#7f8c8d", "industry"),
    "tourism": ("P", "#e67e22", "tourism"), "fire_station": ("*", "#c0392b", "fire/rescue"),
    "police": ("v", "#2c3e50", "police"), "dispatch": ("X", "#000000", "dispatch"),
    "pumping_station": ("o", "#2980b9", "pump"), "gauge_stage": ("d", "#1abc9c", "stage gauge"),
    "gauge_rain": ("p", "#34495e", "rain gauge"), "gauge_tide": ("8", "#0b5394", "tide gauge"),
}


def render_city(city, path, *, dpi: int = 110, title: str | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LightSource

    z = np.array(city.terrain.elevation, dtype=float)
    x0, y0, x1, y1 = city.terrain.bounds
    ext = (x0, x1, y0, y1)
    zf = np.where(np.isfinite(z), z, 0.0)
    ls = LightSource(azdeg=315, altdeg=35)
    land = np.clip(zf, 0, None)
    from matplotlib.colors import LinearSegmentedColormap
    cmap = LinearSegmentedColormap.from_list("land", plt.get_cmap("terrain")(np.linspace(0.25, 0.82, 256)))
    # colour by elevation on a square-root stretch (the plain's metres stay visible next to the hills)
    top = max(30.0, float(np.nanpercentile(zf, 99.5)))
    stretched = np.sqrt(land / top).clip(0, 1)
    rgb = ls.shade_rgb(cmap(stretched)[..., :3], land, vert_exag=4, blend_mode="overlay",
                       dx=city.terrain.cell_size, dy=city.terrain.cell_size, fraction=1.0)
    fig, ax = plt.subplots(figsize=(9.5, 9.5))
    ax.imshow(rgb, extent=ext, origin="upper", interpolation="bilinear")
    water_codes = [k for k, v in city.landcover_classes.items() if v in ("water", "sea")]
    water = np.isin(city.landcover, water_codes) | city.sea_cells
    wimg = np.zeros(z.shape + (4,))
    wimg[water] = (0.16, 0.45, 0.80, 0.85)
    wimg[city.sea_cells] = (0.05, 0.25, 0.55, 0.9)
    for name, alpha in (("urban_dense", 0.45), ("urban_sparse", 0.2)):
        codes = [k for k, v in city.landcover_classes.items() if v == name]
        uimg = np.zeros(z.shape + (4,))
        uimg[np.isin(city.landcover, codes)] = (0.45, 0.42, 0.42, alpha)
        ax.imshow(uimg, extent=ext, origin="upper", interpolation="nearest")
    ax.imshow(wimg, extent=ext, origin="upper", interpolation="nearest")
    if getattr(city, "roads", None) is not None:
        links = city.roads.links
        for hw in ["local", "tertiary", "secondary", "primary", "trunk", "motorway"]:
            if hw == "local":
                sel = ~links["highway"].isin(list(ROAD_STYLE)) if "highway" in links else np.ones(len(links), bool)
                col, w = "#4d4d4d", 0.3
            else:
                if "highway" not in links:
                    continue
                sel = links["highway"] == hw
                col, w = ROAD_STYLE[hw]
            segs = [np.asarray(g.coords) for g in links.loc[sel, "geometry"]]
            if segs:
                ax.add_collection(LineCollection(segs, colors=col, linewidths=w, alpha=0.9, zorder=3))
    if len(city.places):
        for kind, (m, c, label) in PLACE_STYLE.items():
            p = city.places[city.places["kind"] == kind]
            if len(p):
                ax.scatter(p["x"], p["y"], marker=m, c=c, s=55, edgecolors="white", linewidths=0.6, zorder=5,
                           label=f"{label} ({len(p)})")
        ax.legend(loc="lower left", fontsize=7, framealpha=0.85, ncol=2)
    if len(city.inflows):
        ax.scatter(city.inflows["x"], city.inflows["y"], marker=">", c="#00e5ff", s=70, edgecolors="k", zorder=6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(f"x [m] ({city.manifest.get('crs', '')})")
    ax.set_ylabel("y [m]")
    ax.set_title(title or f"{city.manifest.get('title', city.name)} — {city.resolution_m:g} m", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
