# Type stub of the private C++ module twin._core (kernel families add their signatures here).
has_openmp: bool

def max_threads() -> int: ...

# --- flood (core_cpp/flood_inertial.cpp) ---
import numpy as np
from numpy.typing import NDArray

FLOOD_WALL_Z: float
FLOOD_DEPTH_THRESHOLD: float
FLOOD_SPEED_DEPTH: float
FLOOD_ARRIVAL_DEPTH: float
FLOOD_ROW_SLOTS: int

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
    threads: int = 0,
) -> float: ...

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
            row_sums: NDArray[np.float64] | None = None) -> float: ...
def fv_max_wave_speed(z: NDArray, h: NDArray, hu: NDArray, hv: NDArray, active: NDArray[np.uint8], *, g: float = 9.81,
                      h_dry: float = 1e-6, threads: int = 0) -> float: ...
