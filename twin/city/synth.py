"""The Tam Kỳ bundle generator: synthetic terrain, land cover, roads, places and population.

Nothing here is measured except the inputs it is built on: the real GSHHG coastline and WDBII rivers
(``sources/gshhg_coast_rivers.geojson``, extracted by ``tools/extract_gshhg.py``), the real national
road layer (QL1A, CC BY-SA 4.0) and documented public levels (Phú Ninh reservoir: normal 32 m, design
flood 35.4 m, crest 37.6 m).  Everything else is *synthetic* and said so in the manifest: the river
channels of the Tam Kỳ and Bàn Thạch rivers are placed along documented courses, the plain, dunes and
hills follow simple documented profiles (``TerrainParams``), the city arterials follow the known layout,
local streets are generated at a density per land-use zone.

The generator is deterministic: every random field comes from ``numpy.random.default_rng(seed)`` on a
fixed coarse grid that does not depend on the output resolution, so the 10 m terrain generated on first
use is the same one whose 3×3 block mean is the shipped 30 m layer.

Entry points: :func:`grid_spec`, :func:`synthesize_rasters` (any resolution that divides 30 m evenly
or 10 m), :func:`synthesize_vectors` (roads, places, wards, population, inflows from the 30 m rasters).
``tools/make_tamky.py`` calls these and writes the bundle.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from scipy import ndimage

CRS_EPSG = 32649
# Domain: ≈108.38–108.62 E, 15.45–15.68 N, snapped to a 30 m grid in EPSG:32649 (multiple of 10 m too)
X0, X1 = 218_820.0, 244_920.0      # west / east edge [m]
Y0, Y1 = 1_709_490.0, 1_735_290.0  # south / north edge [m]

# land-cover codes (shared with the loader)
LANDCOVER_CLASSES = {
    1: "sea",
    2: "water",          # rivers, Trường Giang lagoon, reservoir
    3: "urban_dense",
    4: "urban_sparse",
    5: "paddy",
    6: "forest",
    7: "sand",
}
# Manning n [s m^-1/3] per class, from Chow (1959) / Arcement & Schneider (1989, USGS WSP 2339) ranges
# and the values commonly used for urban LISFLOOD-FP runs (roads and open space 0.02–0.035, dense
# built-up areas represented by a high n of 0.08–0.10 when buildings are not resolved).
MANNING_BY_CLASS = {1: 0.020, 2: 0.030, 3: 0.080, 4: 0.050, 5: 0.060, 6: 0.100, 7: 0.025}
BUILDING_FRACTION_BY_CLASS = {1: 0.0, 2: 0.0, 3: 0.45, 4: 0.18, 5: 0.01, 6: 0.0, 7: 0.02}

_TO_UTM = Transformer.from_crs(4326, CRS_EPSG, always_xy=True)
_TO_LL = Transformer.from_crs(CRS_EPSG, 4326, always_xy=True)


def to_utm(lonlat) -> np.ndarray:
    a = np.asarray(lonlat, dtype=float)
    x, y = _TO_UTM.transform(a[..., 0], a[..., 1])
    return np.stack([x, y], axis=-1)


def to_lonlat(xy) -> np.ndarray:
    a = np.asarray(xy, dtype=float)
    lon, lat = _TO_LL.transform(a[..., 0], a[..., 1])
    return np.stack([lon, lat], axis=-1)


@dataclass(frozen=True)
class TerrainParams:
    """Documented profile parameters of the synthetic Tam Kỳ terrain (all metres)."""

    seed: int = 20251
    sea_level_m: float = 0.0              # mean sea level (EGM96 ≈ Hòn Dấu datum here, ± 0.3 m)
    beach_slope: float = 0.02             # dry beach rise per metre inland
    shoreface_slope: float = 0.006        # sea bed drop per metre offshore
    sea_bed_min_m: float = -25.0
    dune_crest_m: float = 7.0             # Tam Thanh–Tam Phú dune ridge, 5–10 m (VN coastal dune surveys)
    dune_crest_offset_m: float = 300.0    # crest distance from shoreline
    dune_width_m: float = 450.0
    dune_back_m: float = 2.2              # back-dune flat toward the lagoon
    lagoon_width_m: float = 220.0         # Trường Giang channel width (100–300 m)
    lagoon_bed_m: float = -3.0
    lagoon_water_m: float = 0.3           # mean water level in the lagoon/rivers near the sea
    plain_base_m: float = 1.6             # plain level at the lagoon bank
    plain_rise_m: float = 6.5             # additional rise over plain_decay_m inland (centre ≈ 5–8 m)
    plain_decay_m: float = 4500.0
    plain_far_slope: float = 0.0012       # extra rise per metre beyond 7 km inland
    hill_start_m: float = 8500.0          # foothills begin this far inland of the lagoon
    hill_ramp_m: float = 5000.0
    hill_amp_m: float = 95.0              # hill heights 20–120 m toward Phú Ninh
    hill_ridge_m: float = 30.0            # ridge/valley relief on the hills
    floodplain_drop_m: float = 1.0        # paddy floodplain below the plain near rivers
    floodplain_scale_m: float = 900.0
    river_bank_m: float = 0.6             # natural levee height above the floodplain
    reservoir_normal_m: float = 32.0      # Phú Ninh normal water level
    reservoir_design_flood_m: float = 35.4
    reservoir_crest_m: float = 37.6       # dam crest
    reservoir_rim_m: float = 42.0         # minimum ground level on the rim (closed basin)
    reservoir_depth_m: float = 14.0       # depth below normal level at the basin centre
    micro_relief_m: float = 0.25          # amplitude of small-scale relief


@dataclass(frozen=True)
class River:
    name: str
    lonlat: tuple          # waypoints from source to mouth
    width_mouth_m: float
    width_source_m: float
    depth_m: float         # bankfull depth below the bank
    slope: float           # water-surface slope (m/m) from the mouth upstream


RIVERS = (
    # Tam Kỳ river: from the Phú Ninh dam north-east to the south side of the centre, then east into the
    # Trường Giang (documented course; exact bends synthetic)
    River("Sông Tam Kỳ", ((108.4548, 15.5112), (108.4600, 15.5200), (108.4625, 15.5300), (108.4700, 15.5460), (108.4790, 15.5570),
                           (108.4920, 15.5610), (108.5060, 15.5570), (108.5200, 15.5560), (108.5350, 15.5540),
                           (108.5500, 15.5500), (108.5600, 15.5480)),
          width_mouth_m=120.0, width_source_m=50.0, depth_m=4.0, slope=0.00025),
    # Bàn Thạch river: from the north-west hills, through the north of the city, east into the Trường Giang
    River("Sông Bàn Thạch", ((108.3850, 15.6300), (108.4100, 15.6170), (108.4330, 15.6040), (108.4550, 15.5960),
                              (108.4720, 15.5890), (108.4900, 15.5900), (108.5050, 15.5940), (108.5200, 15.5990),
                              (108.5330, 15.5985)),
          width_mouth_m=90.0, width_source_m=25.0, depth_m=3.2, slope=0.0003),
)

# Phú Ninh reservoir shoreline at normal level (approximate, synthetic) and the main dam axis
RESERVOIR_LONLAT = ((108.4540, 15.5160), (108.4490, 15.5260), (108.4380, 15.5330), (108.4230, 15.5310),
                    (108.4080, 15.5200), (108.3950, 15.5080), (108.3790, 15.4960), (108.3790, 15.4700),
                    (108.3900, 15.4600), (108.4060, 15.4620), (108.4180, 15.4760), (108.4300, 15.4900),
                    (108.4420, 15.5000), (108.4500, 15.5080))
DAM_LONLAT = ((108.4512, 15.5072), (108.4556, 15.5162))   # along the basin's east side; the river leaves its toe
CENTRE_LONLAT = (108.4780, 15.5710)   # Phan Châu Trinh × Hùng Vương (approx.)


def grid_spec(resolution_m: float) -> tuple[Affine, tuple[int, int]]:
    nx = int(round((X1 - X0) / resolution_m))
    ny = int(round((Y1 - Y0) / resolution_m))
    if abs(nx * resolution_m - (X1 - X0)) > 1e-6 or abs(ny * resolution_m - (Y1 - Y0)) > 1e-6:
        raise ValueError(f"resolution_m={resolution_m} does not divide the Tam Kỳ domain "
                         f"({X1 - X0:.0f} x {Y1 - Y0:.0f} m); use 10, 30, 60, 90, ... ")
    return Affine(resolution_m, 0, X0, 0, -resolution_m, Y1), (ny, nx)


def _cell_centres(transform: Affine, shape):
    ny, nx = shape
    r = transform.a
    x = X0 + (np.arange(nx) + 0.5) * r
    y = Y1 - (np.arange(ny) + 0.5) * r
    return x, y


def load_sources(src_dir: Path) -> dict:
    fc = json.loads((src_dir / "gshhg_coast_rivers.geojson").read_text())
    shore: list[np.ndarray] = []
    rivers: list[np.ndarray] = []
    for f in fc["features"]:
        xy = to_utm(np.array(f["geometry"]["coordinates"]))
        (shore if f["properties"]["kind"] == "shoreline" else rivers).append(xy)
    return {"shoreline": shore, "rivers": rivers}


def _densify(xy: np.ndarray, step: float) -> np.ndarray:
    seg = np.diff(xy, axis=0)
    L = np.hypot(seg[:, 0], seg[:, 1])
    s = np.concatenate([[0], np.cumsum(L)])
    t = np.arange(0, s[-1], step)
    t = np.append(t, s[-1])
    return np.stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])], axis=1)


def _chaikin(xy: np.ndarray, n: int = 3) -> np.ndarray:
    for _ in range(n):
        q = 0.75 * xy[:-1] + 0.25 * xy[1:]
        r = 0.25 * xy[:-1] + 0.75 * xy[1:]
        mid = np.empty((2 * len(q), 2))
        mid[0::2], mid[1::2] = q, r
        xy = np.vstack([xy[:1], mid, xy[-1:]])
    return xy


def _burn_points(xy: np.ndarray, transform: Affine, shape, values=None):
    """Burn densified polyline vertices into a raster; returns (mask, value raster)."""
    ny, nx = shape
    r = transform.a
    col = np.floor((xy[:, 0] - X0) / r).astype(int)
    row = np.floor((Y1 - xy[:, 1]) / r).astype(int)
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    mask = np.zeros(shape, bool)
    mask[row[ok], col[ok]] = True
    val = None
    if values is not None:
        val = np.full(shape, np.nan)
        val[row[ok], col[ok]] = np.asarray(values)[ok]
    return mask, val


def _distance(mask: np.ndarray, r: float, return_indices=False):
    if not mask.any():
        d = np.full(mask.shape, 1e9)
        return (d, None) if return_indices else d
    out = ndimage.distance_transform_edt(~mask, sampling=r, return_indices=return_indices)
    return out


def _noise(seed: int, spacing_m: float, sigma_cells: float, x, y, salt: int) -> np.ndarray:
    """Smooth noise in [-1, 1] on a fixed grid (independent of the output resolution), sampled at x, y."""
    rng = np.random.default_rng([seed, salt])
    m = 8
    gx = int(np.ceil((X1 - X0) / spacing_m)) + 2 * m
    gy = int(np.ceil((Y1 - Y0) / spacing_m)) + 2 * m
    g = ndimage.gaussian_filter(rng.standard_normal((gy, gx)), sigma_cells, mode="reflect")
    g /= np.abs(g).max()
    cols = (x - X0) / spacing_m + m - 0.5
    rows = (Y1 - y) / spacing_m + m - 0.5
    C, R = np.meshgrid(cols, rows)
    return ndimage.map_coordinates(g, [R, C], order=1, mode="nearest")


def _polygon_mask(lonlat, transform, shape, smooth: int = 3) -> np.ndarray:
    from rasterio.features import rasterize
    from shapely.geometry import Polygon
    ring = to_utm(np.array(lonlat))
    ring = np.vstack([ring, ring[:1]])
    poly = Polygon(_chaikin(ring, smooth) if smooth else ring)
    return rasterize([(poly, 1)], out_shape=shape, transform=transform, dtype="uint8").astype(bool)


def synthesize_rasters(src_dir: Path, resolution_m: float = 10.0, params: TerrainParams = TerrainParams()):
    """Terrain, land cover, Manning n, building fraction and initial water on the Tam Kỳ grid.

    Returns a dict of (ny, nx) arrays plus ``transform``.  Deterministic for a given ``params``.
    """
    p = params
    transform, shape = grid_spec(resolution_m)
    r = float(resolution_m)
    x, y = _cell_centres(transform, shape)
    X, Y = np.meshgrid(x, y)
    src = load_sources(src_dir)

    # --- sea: flood-fill of the area seaward of the real GSHHG shoreline ------------------------
    barrier = np.zeros(shape, bool)
    for line in src["shoreline"]:
        barrier |= _burn_points(_densify(line, r / 3), transform, shape)[0]
    lab, _ = ndimage.label(~barrier)
    sea_seeds = to_utm(np.array([(108.6195, 15.6795), (108.6195, 15.62), (108.60, 15.66)]))
    sea = np.zeros(shape, bool)
    for sx, sy in sea_seeds:
        c = int((sx - X0) / r)
        rr = int((Y1 - sy) / r)
        if 0 <= rr < shape[0] and 0 <= c < shape[1] and lab[rr, c] > 0:
            sea |= lab == lab[rr, c]
    land = ~sea
    d_coast = _distance(sea, r)          # distance of land cells to the sea
    d_off = _distance(land, r)           # distance of sea cells to land

    # --- Trường Giang lagoon-river (real WDBII course) ------------------------------------------
    tg = np.zeros(shape, bool)
    for line in src["rivers"]:
        tg |= _burn_points(_densify(line, r / 3), transform, shape)[0]
    d_tg = _distance(tg, r)
    lagoon = (d_tg <= p.lagoon_width_m / 2) & land

    # inland distance: from the lagoon on the landward side (west of the Trường Giang)
    seaward = land & (d_coast < d_tg) & (d_coast < 3500)
    D = np.where(seaward, 0.0, d_tg)

    noise_big = _noise(p.seed, 270.0, 6.0, x, y, salt=1)     # hills
    noise_mid = _noise(p.seed, 90.0, 3.0, x, y, salt=2)      # plain undulation
    noise_small = _noise(p.seed, 30.0, 1.0, x, y, salt=3)    # micro relief

    # --- plain + hills ---------------------------------------------------------------------------
    z = (p.plain_base_m + p.plain_rise_m * (1 - np.exp(-D / p.plain_decay_m))
         + p.plain_far_slope * np.maximum(D - 7000.0, 0) + 0.6 * noise_mid)
    ramp = np.clip((D - p.hill_start_m) / p.hill_ramp_m, 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)
    noise_ridge = _noise(p.seed, 90.0, 4.0, x, y, salt=4)    # ridges and valleys on the hills
    z += ramp * (15.0 + p.hill_amp_m * (0.5 + 0.5 * noise_big) ** 1.5 + p.hill_ridge_m * np.abs(noise_ridge))

    # --- dunes between the sea and the lagoon ------------------------------------------------------
    dune = (p.dune_back_m + (p.dune_crest_m - p.dune_back_m)
            * np.exp(-((d_coast - p.dune_crest_offset_m) / p.dune_width_m) ** 2) * (1 + 0.15 * noise_mid))
    beach = 0.6 + p.beach_slope * d_coast
    zdune = np.minimum(beach, dune)
    z = np.where(seaward, zdune, z)

    # --- rivers: floodplain, banks and channels ---------------------------------------------------
    water = lagoon.copy()
    water_level = np.full(shape, np.nan)
    water_level[lagoon] = p.lagoon_water_m
    bed = np.where(lagoon, p.lagoon_bed_m + 0.5 * noise_mid, np.inf)
    river_lines = {}
    floodplain = np.zeros(shape)
    chan_all = np.zeros(shape, bool)
    valley_z = np.full(shape, np.inf)     # inner valley walls, re-applied after the reservoir rim
    tg_pts = np.vstack([_densify(l, 20.0) for l in src["rivers"]]) if src["rivers"] else None
    for river in RIVERS:
        line = to_utm(np.array(river.lonlat))
        if tg_pts is not None:   # join the mouth to the nearest point of the real Trường Giang course
            k = np.argmin(np.hypot(*(tg_pts - line[-1]).T))
            line = np.vstack([line, tg_pts[k]])
        line = _chaikin(line, 3)
        river_lines[river.name] = line
        pts = _densify(line, r / 3)
        seg = np.hypot(*np.diff(pts, axis=0).T)
        chain = np.concatenate([[0], np.cumsum(seg)])
        s_from_mouth = chain[-1] - chain
        mask, sval = _burn_points(pts, transform, shape, s_from_mouth)
        d, idx = _distance(mask, r, return_indices=True)
        s = sval[idx[0], idx[1]]
        frac = np.clip(s / max(chain[-1], 1.0), 0, 1)
        width = river.width_mouth_m + (river.width_source_m - river.width_mouth_m) * frac
        wl = p.lagoon_water_m + river.slope * s
        chan = (d <= np.maximum(width / 2, r)) & land & ~seaward
        floodplain = np.maximum(floodplain, np.exp(-d / p.floodplain_scale_m))
        # valley: the river cuts through the hills (valley walls at 1:8)
        bank = wl + 1.2 + p.river_bank_m
        z = np.where(d < 4000, np.minimum(z, bank + d / 8.0), z)
        valley_z = np.minimum(valley_z, np.where(d < 150, bank + d / 8.0, np.inf))
        chan_all |= chan
        # natural levee just outside the channel
        lev = (d > width / 2) & (d < width / 2 + 60) & land
        z = np.where(lev, np.maximum(z, bank), z)
        water |= chan
        water_level = np.where(chan, np.fmax(water_level, wl), water_level)
        bed = np.where(chan, np.minimum(bed, wl - river.depth_m * (1 - 0.5 * (2 * d / width) ** 2)), bed)

    z = z - p.floodplain_drop_m * floodplain * ~seaward
    z = np.where(water & np.isfinite(bed), bed, z)

    # --- Phú Ninh reservoir ---------------------------------------------------------------------------
    res = _polygon_mask(RESERVOIR_LONLAT, transform, shape)
    d_in = _distance(~res, r)
    d_out = _distance(res, r)
    rim = (~res) & (d_out < 700)
    z = np.where(rim, np.maximum(z, p.reservoir_rim_m + 4 * noise_mid), z)
    z = np.where(res, p.reservoir_normal_m - np.minimum(p.reservoir_depth_m, 1.5 + d_in / 120.0)
                 + 0.8 * noise_mid, z)
    # the rivers keep their channels through the rim (the Tam Kỳ river starts at the dam toe)
    z = np.where(res, z, np.minimum(z, valley_z))
    z = np.where(chan_all & ~res & np.isfinite(bed), bed, z)
    dam_line = _densify(to_utm(np.array(DAM_LONLAT)), r / 3)
    dam_mask = _burn_points(dam_line, transform, shape)[0]
    dam = _distance(dam_mask, r) <= max(r, 15.0)
    z = np.where(dam, p.reservoir_crest_m, z)
    water |= res
    water_level = np.where(res, p.reservoir_normal_m, water_level)

    # --- sea bed ---------------------------------------------------------------------------------------
    zsea = np.maximum(-0.5 - p.shoreface_slope * d_off, p.sea_bed_min_m)
    z = np.where(sea, zsea, z)
    z = z + p.micro_relief_m * noise_small * (~water & ~sea)

    # --- land cover --------------------------------------------------------------------------------------
    cx, cy = to_utm(np.array(CENTRE_LONLAT))
    u_dir = np.array([np.cos(np.radians(-36.0)), np.sin(np.radians(-36.0))])   # along QL1A (ESE)
    v_dir = np.array([-u_dir[1], u_dir[0]])                                     # NNE
    U = (X - cx) * u_dir[0] + (Y - cy) * u_dir[1]
    V = (X - cx) * v_dir[0] + (Y - cy) * v_dir[1]
    ell_dense = (U / 2600.0) ** 2 + (V / 1700.0) ** 2 + 0.25 * noise_mid
    ell_sparse = (U / 5200.0) ** 2 + ((V - 500) / 3400.0) ** 2 + 0.3 * noise_mid
    tamthanh = to_utm(np.array((108.5640, 15.5660)))
    d_tt = np.hypot(X - tamthanh[0], Y - tamthanh[1])
    lc = np.full(shape, 5, np.uint8)                                   # paddy by default
    lc[(ell_sparse < 1.0)] = 4
    lc[(ell_dense < 1.0)] = 3
    lc[(D > p.hill_start_m + 0.3 * p.hill_ramp_m) | (z > 25)] = 6    # forest on the hills
    lc[seaward & (z > 0)] = 7
    lc[seaward & (d_coast > 150) & (noise_mid > 0.35)] = 4            # villages behind the dunes
    lc[(d_tt < 900) & land & ~lagoon] = 4                               # Tam Thanh village
    lc[water] = 2
    lc[sea] = 1

    manning = np.zeros(shape)
    bfrac = np.zeros(shape)
    for code, n in MANNING_BY_CLASS.items():
        manning[lc == code] = n
        bfrac[lc == code] = BUILDING_FRACTION_BY_CLASS[code]
    bfrac = np.clip(bfrac * (1 + 0.3 * noise_small), 0, 0.9)
    bfrac[(lc == 3) & (ell_dense < 0.3)] = np.minimum(0.65, bfrac[(lc == 3) & (ell_dense < 0.3)] * 1.3)

    depth0 = np.zeros(shape)
    wmask = water & np.isfinite(water_level)
    depth0[wmask] = np.maximum(water_level[wmask] - z[wmask], 0.0)
    depth0[sea] = np.maximum(p.sea_level_m - z[sea], 0.0)

    return {
        "transform": transform,
        "elevation": z.astype(np.float64),
        "landcover": lc,
        "manning": manning,
        "building_fraction": bfrac,
        "water_depth0": depth0,
        "sea": sea,
        "river_lines": river_lines,
    }


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    ny, nx = a.shape
    return a.reshape(ny // k, k, nx // k, k).mean(axis=(1, 3))


def block_mode(a: np.ndarray, k: int, ncls: int = 8, water_code: int | None = 2) -> np.ndarray:
    """Majority class of k×k blocks, except that a block holding any ``water_code`` cell is water.

    A 4-connected fine channel only crosses block *edges*, so the blocks it touches are 4-connected too:
    rivers stay continuous (and, with :func:`coarsen_elevation`, draining) at every coarser resolution.
    """
    ny, nx = a.shape
    b = a[: ny // k * k, : nx // k * k].reshape(ny // k, k, nx // k, k).transpose(0, 2, 1, 3).reshape(ny // k, nx // k, k * k)
    ncls = max(ncls, int(a.max()) + 1)
    counts = np.stack([(b == c).sum(-1) for c in range(ncls)], -1)
    out = counts.argmax(-1).astype(a.dtype)
    if water_code is not None and water_code < ncls:
        out[counts[..., water_code] > 0] = water_code
    return out


def params_dict(params: TerrainParams = TerrainParams()) -> dict:
    return dataclasses.asdict(params)


def coarsen_elevation(z: np.ndarray, fine_codes: np.ndarray, coarse_codes: np.ndarray, k: int,
                      water_code: int = 2) -> np.ndarray:
    """Block mean of ``z``, except that coarse water cells take the mean of their water sub-cells
    (channel burning: a narrow river keeps its bed at the coarse resolution instead of being averaged
    with its banks)."""
    ny, nx = z.shape
    ny, nx = ny // k * k, nx // k * k
    zb = z[:ny, :nx].reshape(ny // k, k, nx // k, k)
    wb = (fine_codes[:ny, :nx] == water_code).reshape(ny // k, k, nx // k, k)
    out = zb.mean(axis=(1, 3))
    nw = wb.sum(axis=(1, 3))
    zw = np.where(wb, zb, 0.0).sum(axis=(1, 3)) / np.maximum(nw, 1)
    burn = (coarse_codes == water_code) & (nw > 0)
    out[burn] = zw[burn]
    return out


def coarsen(R: dict, k: int) -> dict:
    """Block-aggregate a raster set by ``k``: elevation/fractions/depth by mean, land cover by majority."""
    t = R["transform"]
    lc = block_mode(R["landcover"], k)
    out = {
        "transform": Affine(t.a * k, 0, t.c, 0, t.e * k, t.f),
        "elevation": coarsen_elevation(R["elevation"], R["landcover"], lc, k),
        "landcover": lc,
        "building_fraction": block_mean(R["building_fraction"], k),
        "water_depth0": coarsen_elevation(R["water_depth0"], R["landcover"], lc, k),
        "sea": lc == 1,
        "river_lines": R.get("river_lines", {}),
    }
    out["water_depth0"][lc == 1] = np.maximum(-out["elevation"][lc == 1], 0.0)
    out["manning"] = np.vectorize(MANNING_BY_CLASS.get, otypes=[float])(lc)
    return out
