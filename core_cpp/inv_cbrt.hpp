// x^(-1/3) for x > 0, shared by the flood kernels (local-inertial flood_inertial.hpp and the
// finite-volume fv_solver.hpp): a bit-level first guess refined by Newton steps, multiplications
// only, so it vectorises and gives the same bits on every thread. Used for h^(-7/3) = (h^(-1/3))^7
// (and h^(-4/3)) in the friction terms instead of pow.
//
// Internal linkage (static) and always inlined: each flood_sweep_*.cpp compiles its own copy for
// its instruction set, so the linker never merges an AVX-512 copy into the baseline build.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__)
#define TWIN_INV_CBRT_INLINE static inline __attribute__((always_inline))
#else
#define TWIN_INV_CBRT_INLINE static inline
#endif

namespace twin {

// two Newton steps: relative error 3.4e-6 (2.4e-5 in h^(-7/3)), far below what Manning's n is known to
TWIN_INV_CBRT_INLINE float inv_cbrt(float x) {
    std::uint32_t i;
    std::memcpy(&i, &x, 4);
    i = 0x54a2fa8cu - i / 3u;
    float r;
    std::memcpy(&r, &i, 4);
    const float third = 1.0f / 3.0f;
    r = r * (4.0f - x * r * r * r) * third;
    r = r * (4.0f - x * r * r * r) * third;
    return r;
}

// seeded from the float iteration (64-bit integer division does not vectorise), then two Newton
// steps in double: 3.4e-6 -> 3.5e-11 -> ~1e-16
TWIN_INV_CBRT_INLINE double inv_cbrt(double x) {
    double r = static_cast<double>(inv_cbrt(static_cast<float>(x)));
    const double third = 1.0 / 3.0;
    r = r * (4.0 - x * r * r * r) * third;
    r = r * (4.0 - x * r * r * r) * third;
    return r;
}

}  // namespace twin
