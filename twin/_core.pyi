# Type stub of the private C++ module twin._core (kernel families add their signatures here).
has_openmp: bool

def max_threads() -> int: ...

# --- finite-volume shallow-water kernels (core_cpp/fv_*.cpp; twin.flood.fv) ---
# float64 and float32 overloads; arrays C-contiguous of the exact dtype (no conversion).
import numpy as np
from numpy.typing import NDArray

def fv_step(z: NDArray, manning: NDArray, active: NDArray[np.uint8], h: NDArray, hu: NDArray, hv: NDArray,
            out_h: NDArray, out_hu: NDArray, out_hv: NDArray, bc_kind: NDArray[np.int8], bc_stage: NDArray,
            bc_q: NDArray, work: NDArray, *, dx: float, dt: float, g: float = 9.81, h_dry: float = 1e-6,
            order: int = 1, limiter: int = 0, face_z_x: NDArray | None = None, face_z_y: NDArray | None = None,
            threads: int = 0, check_static: bool = True) -> float: ...
def fv_max_wave_speed(h: NDArray, hu: NDArray, hv: NDArray, active: NDArray[np.uint8], *, g: float = 9.81,
                      h_dry: float = 1e-6, threads: int = 0) -> float: ...
