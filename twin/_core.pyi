# Type stub of the private C++ module twin._core (kernel families add their signatures here).
has_openmp: bool

def max_threads() -> int: ...

# --- flood (core_cpp/flood_inertial.cpp) ---
from typing import overload

import numpy as np
from numpy.typing import NDArray

FLOOD_WALL_Z: float
FLOOD_DEPTH_THRESHOLD: float
FLOOD_SPEED_DEPTH: float
FLOOD_ARRIVAL_DEPTH: float
FLOOD_ROW_SLOTS: int
FLOOD_TRACK_SEGMENT: int

def flood_isa() -> str: ...

def flood_inertial_step(
    z: NDArray[np.floating], h: NDArray[np.floating], qx: NDArray[np.floating], qy: NDArray[np.floating],
    h_out: NDArray[np.floating], qx_out: NDArray[np.floating], qy_out: NDArray[np.floating],
    manning: NDArray[np.floating], edge_kind: NDArray[np.uint8], edge_value: NDArray[np.floating],
    max_depth: NDArray[np.floating], max_speed: NDArray[np.floating], arrival_time: NDArray[np.floating],
    row_sums: NDArray[np.float64], *, dx: float, dt: float, theta: float, t_end: float,
    rain0: NDArray[np.floating] | None = None, rain1: NDArray[np.floating] | None = None,
    rain_w: float = 0.0, rain_scale: float = 0.0, loss: NDArray[np.floating] | None = None,
    loss_scale: float = 0.0, lev_x_ptr: NDArray[np.int64] | None = None, lev_x_idx: NDArray[np.int64] | None = None,
    lev_x_crest: NDArray[np.floating] | None = None, lev_y_ptr: NDArray[np.int64] | None = None,
    lev_y_idx: NDArray[np.int64] | None = None, lev_y_crest: NDArray[np.floating] | None = None,
    threads: int = 0, seg_max_depth_min: NDArray[np.floating] | None = None,
    seg_max_speed_min: NDArray[np.floating] | None = None,
) -> float: ...

# ---- flood, subgrid topography (core_cpp/flood_subgrid.cpp; float64 only) ----
FLOOD_SUBGRID_ROW_SLOTS: int

def flood_subgrid_check_tables(
    cells: NDArray[np.float64], faces_x: NDArray[np.float64], faces_y: NDArray[np.float64]) -> None: ...

def flood_subgrid_downscale_sheet(
    z: NDArray[np.float64], film_scale: NDArray[np.float64], h: NDArray[np.float64], q: NDArray[np.float64],
    manning: NDArray[np.float64], level: NDArray[np.float64], out: NDArray[np.float64], *,
    max_out: NDArray[np.float64] | None = None, factor: int, threads: int = 0) -> None: ...

def flood_subgrid_levels_of_rows(rows: NDArray[np.float64], h: NDArray[np.float64]) -> NDArray[np.float64]: ...

def flood_subgrid_depths_of_rows(rows: NDArray[np.float64], level: NDArray[np.float64]) -> NDArray[np.float64]: ...

def flood_subgrid_step(
    z: NDArray[np.float64], h: NDArray[np.float64], qx: NDArray[np.float64], qy: NDArray[np.float64],
    h_out: NDArray[np.float64], qx_out: NDArray[np.float64], qy_out: NDArray[np.float64],
    cells: NDArray[np.float64], faces_x: NDArray[np.float64], faces_y: NDArray[np.float64],
    manning: NDArray[np.float64], edge_kind: NDArray[np.uint8], edge_value: NDArray[np.float64],
    max_depth: NDArray[np.float64], max_speed: NDArray[np.float64], arrival_time: NDArray[np.float64],
    max_level: NDArray[np.float64], row_sums: NDArray[np.float64], *, dx: float, dt: float, theta: float,
    t_end: float, rain0: NDArray[np.float64] | None = None, rain1: NDArray[np.float64] | None = None,
    rain_w: float = 0.0, rain_scale: float = 0.0, loss: NDArray[np.float64] | None = None,
    loss_scale: float = 0.0, threads: int = 0, level_cache: NDArray[np.float64] | None = None,
    depth_cache: NDArray[np.float64] | None = None, level_segment: NDArray[np.int32] | None = None,
    face_weight: float = 0.5, lts_mask: NDArray[np.uint8] | None = None, lts_substeps: int = 1,
    lts_deep_depth: float = ..., lts_sources: NDArray[np.int64] | None = None,
    lts_source_depth: NDArray[np.float64] | None = None, count_depths: NDArray[np.float64] | None = None,
    depth_counts: NDArray[np.float64] | None = None,
) -> float: ...
# ---- traffic (core_cpp/traffic_*.cpp) ----

def traffic_node_model(sending: NDArray[np.float64], priority: NDArray[np.float64],
                       receiving: NDArray[np.float64]) -> NDArray[np.float64]: ...

class TrafficEngine:
    def __init__(self, from_: NDArray[np.int32], to: NDArray[np.int32], length: NDArray[np.float64],
                 lanes: NDArray[np.float64], vfree: NDArray[np.float64], cap_per_lane: NDArray[np.float64],
                 kjam_per_lane: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64],
                 sig_ptr: NDArray[np.int32], sig_dur: NDArray[np.float64], sig_offset: NDArray[np.float64],
                 group: NDArray[np.int32], dt: float, pcu: NDArray[np.float64]) -> None: ...
    def add_trips(self, origin: NDArray[np.int32], destination: NDArray[np.int32], depart_s: NDArray[np.float64],
                  vehicle_class: NDArray[np.uint8], informed: NDArray[np.uint8]) -> int: ...
    def step(self, n_steps: int) -> None: ...
    # flood impact as arrays (the rule: twin.traffic.flood.link_flood_arrays)
    def set_link_speeds(self, speeds_mps: NDArray[np.float64]) -> None: ...  # per link, in (0, free speed]
    @overload
    def set_closed(self, mask: NDArray[np.bool_]) -> None: ...  # (n_links, n_classes): flood closures
    @overload
    def set_closed(self, ids: NDArray[np.int32], closed: bool) -> None: ...  # manual closures
    def set_lanes(self, ids: NDArray[np.int32], lanes: NDArray[np.float64]) -> None: ...
    def class_cost(self, vehicle_class: int) -> NDArray[np.float64]: ...
    def shortest_path(self, origin: int, destination: int, vehicle_class: int) -> tuple[NDArray[np.int32], float]: ...
    def tree(self, destinations: NDArray[np.int32], vehicle_class: int) -> tuple[NDArray[np.float64], NDArray[np.int32], NDArray[np.int32]]: ...
    def queue_counts(self) -> tuple[NDArray[np.int32], NDArray[np.float64]]: ...
    def reroute(self, trip_ids: NDArray[np.int32]) -> None: ...
    reroute_every: int
    accel_mps2: NDArray[np.float64]  # per class, inf = no acceleration loss
    startup_lost_s: float  # time lost by the first vehicle of a queue when it starts [s]
    teleport_steps: int  # steps a blocked vehicle waits before it is teleported (0: never)
    route_on_departure: bool
    emergency_overtake: bool
    threads: int
    record: bool
    @property
    def n_vehicles(self) -> int: ...
    @property
    def n_links(self) -> int: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def step_k(self) -> int: ...
    @property
    def dt(self) -> float: ...
    def counts(self) -> dict[str, int]: ...
    def get(self, name: str) -> np.ndarray: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...

# --- finite-volume shallow-water kernels (core_cpp/fv_*.cpp; twin.flood.fv) ---
# float64 and float32 overloads; arrays C-contiguous of the exact dtype (no conversion).

def fv_step(z: NDArray, manning: NDArray, active: NDArray[np.uint8], h: NDArray, hu: NDArray, hv: NDArray,
            out_h: NDArray, out_hu: NDArray, out_hv: NDArray, bc_kind: NDArray[np.int8], bc_stage: NDArray,
            bc_q: NDArray, work: NDArray, *, dx: float, dt: float, g: float = 9.81, h_dry: float = 1e-6,
            order: int = 1, limiter: int = 0, face_z_x: NDArray | None = None, face_z_y: NDArray | None = None,
            threads: int = 0, check_static: bool = True, rain0: NDArray | None = None,
            rain1: NDArray | None = None, rain_w: float = 0.0, rain_scale: float = 0.0,
            loss: NDArray | None = None, loss_scale: float = 0.0, max_depth: NDArray | None = None,
            max_speed: NDArray | None = None, arrival_time: NDArray | None = None, t_end: float = 0.0,
            row_sums: NDArray[np.float64] | None = None, check_state: bool = True) -> tuple[float, float]: ...
def fv_max_wave_speed(z: NDArray, h: NDArray, hu: NDArray, hv: NDArray, active: NDArray[np.uint8], *, g: float = 9.81,
                      h_dry: float = 1e-6, threads: int = 0) -> float: ...
