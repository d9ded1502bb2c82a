// Local-inertial flood kernel (Bates et al. 2010; de Almeida et al. 2012 theta weighting) on a
// staggered raster. Free functions over flat C-contiguous arrays, templated on float/double.
//
// Layout (row 0 = north edge, as GeoTIFF):
//   cells   (ny, nx)        z, h, manning, maxima
//   qx      (ny, nx+1)      unit discharge [m2/s] on west/east faces, positive eastward (+col);
//                           face c of row r lies between cells (r, c-1) and (r, c); c = 0 and c = nx
//                           are the west and east domain edges
//   qy      (ny+1, nx)      unit discharge on north/south faces, positive southward (+row);
//                           face r lies between cells (r-1, c) and (r, c); r = 0 and r = ny are the
//                           north and south domain edges
// Walls (nodata) carry z >= kWallZ and depth 0: every face touching them has zero flow.
//
// One call advances one sub-step dt in a single fused sweep over rows:
//   face fluxes (theta-weighted inertial momentum, semi-implicit Manning friction, LISFLOOD-FP's
//   fallback to theta = 1 when the centred flux runs against the head drop), a positivity limiter
//   that scales each cell's outgoing fluxes to the water it holds (no clipping), continuity,
//   rainfall and losses, and the tracked maxima (max depth, max speed, first wetting).
// Threads own contiguous row ranges and recompute the one-row halo they need into private
// buffers (old and new state are separate arrays), so every written value is the same whatever
// the thread count; reductions go to per-row slots summed serially by the caller.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "inv_cbrt.hpp"

#ifdef TWIN_HAVE_OPENMP
#include <omp.h>
#endif

namespace twin::flood {

// The row kernels are inlined into one per-thread sweep, compiled once per instruction set
// (flood_sweep_*.cpp): AVX-512, AVX2 or the baseline, chosen at load time. No FMA contraction
// (-ffp-contract=off) and no approximate instructions, so every variant gives the same bits.
// Internal linkage (static): each flood_sweep_*.cpp keeps its own copy compiled for its ISA, so
// the linker never merges an AVX-512 instantiation into the baseline build or the reverse.
#ifndef TWIN_FLOOD_MASKED_STORES
#define TWIN_FLOOD_MASKED_STORES 0
#endif
#if defined(__GNUC__)
#define TWIN_FLOOD_INLINE static inline __attribute__((always_inline))
#else
#define TWIN_FLOOD_INLINE static inline
#endif

// Rows of the new state go out with non-temporal (streaming) stores where the ISA has them and the
// grid is larger than the caches: no read-for-ownership of lines that are entirely overwritten.
#if defined(__AVX512F__) || defined(__AVX2__)
#define TWIN_FLOOD_HAVE_STREAM 1
}  // namespace twin::flood
#include <immintrin.h>
namespace twin::flood {
template <class T>
TWIN_FLOOD_INLINE void stream_row(T* dst, const T* src, std::int64_t n) {
#if defined(__AVX512F__)
    constexpr std::size_t kAlign = 64;
#else
    constexpr std::size_t kAlign = 32;
#endif
    constexpr std::int64_t V = static_cast<std::int64_t>(kAlign / sizeof(T));
    std::int64_t i = 0;
    while (i < n && (reinterpret_cast<std::uintptr_t>(dst + i) % kAlign) != 0) {
        dst[i] = src[i];
        ++i;
    }
    for (; i + V <= n; i += V) {
        if constexpr (sizeof(T) == 4) {
#if defined(__AVX512F__)
            _mm512_stream_ps(reinterpret_cast<float*>(dst + i), _mm512_loadu_ps(reinterpret_cast<const float*>(src + i)));
#else
            _mm256_stream_ps(reinterpret_cast<float*>(dst + i), _mm256_loadu_ps(reinterpret_cast<const float*>(src + i)));
#endif
        } else {
#if defined(__AVX512F__)
            _mm512_stream_pd(reinterpret_cast<double*>(dst + i), _mm512_loadu_pd(reinterpret_cast<const double*>(src + i)));
#else
            _mm256_stream_pd(reinterpret_cast<double*>(dst + i), _mm256_loadu_pd(reinterpret_cast<const double*>(src + i)));
#endif
        }
    }
    for (; i < n; ++i) dst[i] = src[i];
}
TWIN_FLOOD_INLINE void stream_fence() { _mm_sfence(); }
#else
#define TWIN_FLOOD_HAVE_STREAM 0
template <class T>
TWIN_FLOOD_INLINE void stream_row(T* dst, const T* src, std::int64_t n) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
}
TWIN_FLOOD_INLINE void stream_fence() {}
#endif

constexpr double kWallZ = 1.0e29;        // z at or above this is a wall (nodata) cell
constexpr double kGravity = 9.81;
constexpr double kDepthThresh = 1.0e-3;  // LISFLOOD-FP's DepthThresh: no flow through shallower faces
constexpr double kSpeedDepth = 1.0e-2;   // speeds are reported where depth exceeds this
constexpr double kArrivalDepth = 0.1;    // first wetting: depth above this
constexpr std::int64_t kTrackSeg = 128;  // cells per tracker segment (see StepArgs::seg_maxh_min)
// Faces are computed in chunks of kFluxChunk columns (chunk j: columns [j K, j K + K)); a chunk with no
// face deeper than the threshold gets zero fluxes without the momentum arithmetic (face_flux returns
// exactly 0 there), as LISFLOOD-FP skips dry faces. A chunk of cells whose every face was skipped
// and that has no source is "quiet": its update is a copy (exact, see update_row).
constexpr std::int64_t kFluxChunk = 64;

// Edge-face kinds (one per boundary face: west ny, east ny, north nx, south nx).
enum EdgeKind : std::uint8_t { kEdgeWall = 0, kEdgeFree = 1, kEdgeStage = 2 };

// Per-row reduction slots (double), summed serially by the caller.
enum RowSlot { kRain = 0, kLost = 1, kBndIn = 2, kBndOut = 3, kBad = 4, kRowSlots = 5 };
// Bits of the kBad slot (the binding names the input behind each): a non-finite new depth or bed; an
// input depth below -kNegDepth; a per-cell rain depth or loss capacity that is negative or not finite;
// a new depth below -kNegDepth. kNegDepth: a depth below -1 mm cannot come from rounding (the
// positivity limiter keeps depths >= 0 up to a few ulps), it is an input error.
enum BadBits { kBadNonFinite = 1, kBadNegInput = 2, kBadSource = 4, kBadNegOutput = 8 };
constexpr double kNegDepth = 1.0e-3;

// inv_cbrt (x^(-1/3), for h^(-7/3) = (h^(-1/3))^7 in the friction term): core_cpp/inv_cbrt.hpp

// New unit discharge through one face from left (L) to right (R): the inertial momentum update.
//   hf: flow depth max(eta) - max(z); qc: old flux on this face; qs: sum of the two neighbouring
//   same-direction faces' old fluxes; qp: mean old flux of the four perpendicular faces around it;
//   n2: Manning n squared on the face.
template <class T>
TWIN_FLOOD_INLINE T face_flux(T etaL, T etaR, T hf, T qc, T qs, T qp, T n2, T g_dt, T inv_dx, T theta) {
    const T hfs = hf > T(kDepthThresh) ? hf : T(1);  // keeps the arithmetic finite on dry faces
    const T r = inv_cbrt(hfs);
    const T r2 = r * r;
    const T r7 = r2 * r2 * r2 * r;  // hf^(-7/3)
    // friction on the magnitude of the unit discharge vector (LISFLOOD-FP's 2-D friction): qp is
    // the mean of the four perpendicular faces around this one
    const T inv_denom = T(1) / (T(1) + g_dt * n2 * std::sqrt(qc * qc + qp * qp) * r7);
    const T drive = g_dt * hfs * (etaR - etaL) * inv_dx;  // g dt hf d(eta)/dx
    const T qtheta = theta * qc + T(0.5) * (T(1) - theta) * qs;
    T q = (qtheta - drive) * inv_denom;
    // LISFLOOD-FP: where the centred flux runs against the head drop, fall back to theta = 1.
    const T qb = (qc - drive) * inv_denom;
    q = (q * (etaL - etaR) < T(0)) ? qb : q;
    return hf > T(kDepthThresh) ? q : T(0);
}

template <class T>
struct StepArgs {
    std::int64_t ny, nx;
    const T* z;
    const T* h;
    const T* qx;
    const T* qy;
    T* h_out;
    T* qx_out;
    T* qy_out;
    const T* manning;       // 1 value (uniform) or ny*nx
    bool manning_per_cell;
    // levee faces in CSR by row: x faces (flat qx index) with crests, rows 0..ny-1; y faces
    // (flat qy index) rows 0..ny
    const std::int64_t* lev_x_ptr;  // ny+1, or null
    const std::int64_t* lev_x_idx;
    const T* lev_x_crest;
    const std::int64_t* lev_y_ptr;  // ny+2, or null
    const std::int64_t* lev_y_idx;
    const T* lev_y_crest;
    const std::uint8_t* edge_kind;  // 2ny + 2nx
    const T* edge_value;            // free: outward slope; stage: water level [m]
    // rain depth this sub-step per cell = rain_scale * ((1-w) * rain0 + w * rain1); rain0/rain1
    // hold 1 value (uniform) or ny*nx; null = no rain
    const T* rain0;
    const T* rain1;
    bool rain_per_cell;
    T rain_w, rain_scale;
    const T* loss;  // loss depth capacity this sub-step = loss_scale * loss (1 value or ny*nx); null = none
    bool loss_per_cell;
    T loss_scale;
    T* maxh;
    T* maxspeed;  // maximum of speed squared [m2/s2]
    T* arrival;
    // Tracker summaries, (ny, nseg) with nseg = ceil(nx / kTrackSeg): a lower bound of min(maxh) and of
    // min(maxspeed) over each row segment of kTrackSeg cells. A segment whose new depths (speeds) all
    // stay at or below its bound cannot change a maximum or an arrival time, so its trackers are
    // neither read nor written this sub-step (exact, not an approximation). Null: always update.
    // Any write that lowers a tracker outside the kernel must lower the bound (-inf resets it).
    T* seg_maxh_min = nullptr;
    T* seg_maxs_min = nullptr;
    double* row_sums;  // ny * kRowSlots
    T dx, dt, theta, t_end;
    int threads;
    bool stream = false;  // write the new state with non-temporal stores (large grids, set by the sweep)
};

template <class T>
struct Workspace {
    std::vector<T> fx, fy, fac;  // ring buffers: 4 rows of qx (nx+1), qy (nx), factor (nx)
    std::vector<T> eta0, eta1;   // scratch: ones; rain row, loss row, 3 scratch rows
    // ring buffers of per-chunk flags (4 rows of nchunks): 1 = the chunk's faces were skipped as dry
    // (exact +0 fluxes); quiet: per chunk of the row being updated
    std::vector<std::uint8_t> xskip, yskip, quiet;
};

template <class T>
static inline Workspace<T>& thread_workspace(std::int64_t nx) {
    static thread_local Workspace<T> ws;
    const std::size_t need = static_cast<std::size_t>(4 * (nx + 1));
    if (ws.fx.size() < need) {
        ws.fx.assign(need, T(0));
        ws.fy.assign(need, T(0));
        ws.fac.assign(need, T(0));
        ws.eta0.assign(need, T(0));
        ws.eta1.assign(2 * need, T(0));
        const std::size_t nch = static_cast<std::size_t>(nx / kFluxChunk + 2);
        ws.xskip.assign(4 * nch, 0);
        ws.yskip.assign(4 * nch, 0);
        ws.quiet.assign(nch, 0);
    }
    return ws;
}

// Flux of a boundary face whose inside cell has (eta, z, h); outward sign s = +1 (east/south) or
// -1 (west/north). Returns the flux in the array's sign convention.
template <class T>
TWIN_FLOOD_INLINE T edge_flux(std::uint8_t kind, T value, T eta, T zc, T qc_arr, T s, T n2, T g_dt, T inv_dx) {
    if (kind == kEdgeWall || zc >= T(kWallZ)) return T(0);
    const T qc = s * qc_arr;  // outward-positive old flux
    if (kind == kEdgeFree) {
        const T hf = eta - zc;
        if (!(hf > T(kDepthThresh))) return T(0);
        // ghost water surface one cell outside, lower by slope * dx
        T q = face_flux<T>(eta, eta - value / inv_dx, hf, qc, T(2) * qc, T(0), n2, g_dt, inv_dx, T(1));
        q = q > T(0) ? q : T(0);  // outflow only
        return s * q;
    }
    // stage: ghost cell with the same bed and the prescribed water level
    const T hf = std::max(eta, value) - zc;
    if (!(hf > T(kDepthThresh))) return T(0);
    const T q = face_flux<T>(eta, value, hf, qc, T(2) * qc, T(0), n2, g_dt, inv_dx, T(1));
    return s * q;
}

template <class T>
TWIN_FLOOD_INLINE T face_n2(const StepArgs<T>& a, std::int64_t i0, std::int64_t i1) {
    if (!a.manning_per_cell) return a.manning[0] * a.manning[0];
    const T n = T(0.5) * (a.manning[i0] + a.manning[i1]);
    return n * n;
}


// any x face c in [c0, c1) (between cells c-1 and c) with flow depth above the threshold
template <class T>
TWIN_FLOOD_INLINE bool any_wet_x(const T* __restrict z, const T* __restrict h, std::int64_t c0, std::int64_t c1) {
    int any = 0;
    #pragma GCC ivdep
    for (std::int64_t c = c0; c < c1; ++c) {
        const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
        const T hf = std::max(eL, eR) - std::max(z[c - 1], z[c]);
        any |= (hf > T(kDepthThresh)) ? 1 : 0;
    }
    return any != 0;
}

// any y face in columns [c0, c1) between the rows (zU, hU) and (zD, hD) with flow depth above the threshold
template <class T>
TWIN_FLOOD_INLINE bool any_wet_y(const T* __restrict zU, const T* __restrict hU, const T* __restrict zD,
                                 const T* __restrict hD, std::int64_t c0, std::int64_t c1) {
    int any = 0;
    #pragma GCC ivdep
    for (std::int64_t c = c0; c < c1; ++c) {
        const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
        const T hf = std::max(eL, eR) - std::max(zU[c], zD[c]);
        any |= (hf > T(kDepthThresh)) ? 1 : 0;
    }
    return any != 0;
}

// Raw (unlimited) new fluxes of row k's x faces (fx: nx+1) and of y face k (fy: nx), from the
// old state. k in [0, ny]; for k == ny only the south edge y faces are computed.
template <class T>
TWIN_FLOOD_INLINE void flux_row(const StepArgs<T>& a, std::int64_t k, T* __restrict fx, T* __restrict fy,
                                std::uint8_t* __restrict xs, std::uint8_t* __restrict ys) {
    const std::int64_t ny = a.ny, nx = a.nx;
    const T g_dt = T(kGravity) * a.dt, inv_dx = T(1) / a.dx, theta = a.theta;
    const T n2u = a.manning[0] * a.manning[0];
    if (k < ny) {
        const T* __restrict z = a.z + k * nx;
        const T* __restrict h = a.h + k * nx;
        const T* __restrict q = a.qx + k * (nx + 1);
        const T* __restrict mn = a.manning_per_cell ? a.manning + k * nx : nullptr;
        const T* __restrict pT = a.qy + k * nx;        // y faces north of the row
        const T* __restrict pB = a.qy + (k + 1) * nx;  // and south of it
        // interior x faces c = 1..nx-1 between cells c-1 and c; after a chunk with a wet face the next
        // chunk is computed without the dry check (in wet areas the check would be wasted work)
        int wet_prev = 0;
        for (std::int64_t j = 0; j * kFluxChunk < nx; ++j) {
            const std::int64_t c0 = std::max<std::int64_t>(j * kFluxChunk, 1);
            const std::int64_t c1 = std::min(nx, j * kFluxChunk + kFluxChunk);
            xs[j] = 1;
            if (c0 >= c1) continue;
            if (!wet_prev && !any_wet_x(z, h, c0, c1)) {
                std::fill(fx + c0, fx + c1, T(0));
                continue;
            }
            xs[j] = 0;
            int wet = 0;
            if (mn) {
                #pragma GCC ivdep
                for (std::int64_t c = c0; c < c1; ++c) {
                    const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                    const T hf = std::max(eL, eR) - std::max(z[c - 1], z[c]);
                    const T n = T(0.5) * (mn[c - 1] + mn[c]);
                    const T qp = T(0.25) * ((pT[c - 1] + pT[c]) + (pB[c - 1] + pB[c]));
                    fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], qp, n * n, g_dt, inv_dx, theta);
                    wet |= (hf > T(kDepthThresh)) ? 1 : 0;
                }
            } else {
                #pragma GCC ivdep
                for (std::int64_t c = c0; c < c1; ++c) {
                    const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                    const T hf = std::max(eL, eR) - std::max(z[c - 1], z[c]);
                    const T qp = T(0.25) * ((pT[c - 1] + pT[c]) + (pB[c - 1] + pB[c]));
                    fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], qp, n2u, g_dt, inv_dx, theta);
                    wet |= (hf > T(kDepthThresh)) ? 1 : 0;
                }
            }
            wet_prev = wet;
        }
        // levee faces on this row: recompute with the crest
        if (a.lev_x_ptr) {
            for (std::int64_t p = a.lev_x_ptr[k]; p < a.lev_x_ptr[k + 1]; ++p) {
                const std::int64_t c = a.lev_x_idx[p] - k * (nx + 1);
                if (c <= 0 || c >= nx) continue;
                const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                const T hf = std::max(eL, eR) - std::max(std::max(z[c - 1], z[c]), a.lev_x_crest[p]);
                const T qp = T(0.25) * ((pT[c - 1] + pT[c]) + (pB[c - 1] + pB[c]));
                fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], qp,
                                     face_n2(a, k * nx + c - 1, k * nx + c), g_dt, inv_dx, theta);
            }
        }
        // west and east edges
        const T n2w = a.manning_per_cell ? mn[0] * mn[0] : n2u;
        const T n2e = a.manning_per_cell ? mn[nx - 1] * mn[nx - 1] : n2u;
        fx[0] = edge_flux<T>(a.edge_kind[k], a.edge_value[k], z[0] + h[0], z[0], q[0], T(-1), n2w, g_dt, inv_dx);
        fx[nx] = edge_flux<T>(a.edge_kind[ny + k], a.edge_value[ny + k], z[nx - 1] + h[nx - 1], z[nx - 1], q[nx],
                              T(1), n2e, g_dt, inv_dx);
    }
    // y face k between rows k-1 and k
    const T* __restrict q = a.qy + k * nx;
    if (k == 0 || k == ny) {
        for (std::int64_t j = 0; j * kFluxChunk < nx; ++j) ys[j] = 0;  // edge faces: not skipped
        const std::int64_t r = (k == 0) ? 0 : ny - 1;
        const std::int64_t e0 = (k == 0) ? 2 * ny : 2 * ny + nx;
        const T s = (k == 0) ? T(-1) : T(1);
        const T* __restrict z = a.z + r * nx;
        const T* __restrict h = a.h + r * nx;
        #pragma GCC ivdep
        for (std::int64_t c = 0; c < nx; ++c) {
            const T n2 = a.manning_per_cell ? a.manning[r * nx + c] * a.manning[r * nx + c] : n2u;
            fy[c] = edge_flux<T>(a.edge_kind[e0 + c], a.edge_value[e0 + c], z[c] + h[c], z[c], q[c], s, n2, g_dt,
                                 inv_dx);
        }
        return;
    }
    const T* __restrict zU = a.z + (k - 1) * nx;
    const T* __restrict hU = a.h + (k - 1) * nx;
    const T* __restrict zD = a.z + k * nx;
    const T* __restrict hD = a.h + k * nx;
    const T* __restrict qU = a.qy + (k - 1) * nx;
    const T* __restrict qD = a.qy + (k + 1) * nx;
    const T* __restrict pU = a.qx + (k - 1) * (nx + 1);  // x faces of the row above
    const T* __restrict pD = a.qx + k * (nx + 1);        // and of the row below
    int wet_prev = 0;  // as for the x faces
    for (std::int64_t j = 0; j * kFluxChunk < nx; ++j) {
        const std::int64_t c0 = j * kFluxChunk;
        const std::int64_t c1 = std::min(nx, c0 + kFluxChunk);
        if (!wet_prev && !any_wet_y(zU, hU, zD, hD, c0, c1)) {
            std::fill(fy + c0, fy + c1, T(0));
            ys[j] = 1;
            continue;
        }
        ys[j] = 0;
        int wet = 0;
        if (a.manning_per_cell) {
            const T* __restrict mU = a.manning + (k - 1) * nx;
            const T* __restrict mD = a.manning + k * nx;
            #pragma GCC ivdep
            for (std::int64_t c = c0; c < c1; ++c) {
                const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
                const T hf = std::max(eL, eR) - std::max(zU[c], zD[c]);
                const T n = T(0.5) * (mU[c] + mD[c]);
                const T qp = T(0.25) * ((pU[c] + pU[c + 1]) + (pD[c] + pD[c + 1]));
                fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], qp, n * n, g_dt, inv_dx, theta);
                wet |= (hf > T(kDepthThresh)) ? 1 : 0;
            }
        } else {
            #pragma GCC ivdep
            for (std::int64_t c = c0; c < c1; ++c) {
                const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
                const T hf = std::max(eL, eR) - std::max(zU[c], zD[c]);
                const T qp = T(0.25) * ((pU[c] + pU[c + 1]) + (pD[c] + pD[c + 1]));
                fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], qp, n2u, g_dt, inv_dx, theta);
                wet |= (hf > T(kDepthThresh)) ? 1 : 0;
            }
        }
        wet_prev = wet;
    }
    if (a.lev_y_ptr) {
        for (std::int64_t p = a.lev_y_ptr[k]; p < a.lev_y_ptr[k + 1]; ++p) {
            const std::int64_t c = a.lev_y_idx[p] - k * nx;
            if (c < 0 || c >= nx) continue;
            const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
            const T hf = std::max(eL, eR) - std::max(std::max(zU[c], zD[c]), a.lev_y_crest[p]);
            const T qp = T(0.25) * ((pU[c] + pU[c + 1]) + (pD[c] + pD[c + 1]));
            fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], qp, face_n2(a, (k - 1) * nx + c, k * nx + c), g_dt,
                                 inv_dx, theta);
        }
    }
}

// Limiter factor of row k: the share of each cell's outgoing fluxes it can supply from its depth.
// Returns 1 when an input depth of the row is below -kNegDepth (checked here, where every depth is read).
template <class T>
TWIN_FLOOD_INLINE int factor_row(const StepArgs<T>& a, std::int64_t k, const T* __restrict fx, const T* __restrict fyN,
                const T* __restrict fyS, T* __restrict fac) {
    const std::int64_t nx = a.nx;
    const T* __restrict h = a.h + k * nx;
    const T dt_dx = a.dt / a.dx;
    const T neg = T(-kNegDepth);
    int need = 0, negin = 0;
    #pragma GCC ivdep
    for (std::int64_t c = 0; c < nx; ++c) {
        const T out = std::max(-fx[c], T(0)) + std::max(fx[c + 1], T(0)) + std::max(-fyN[c], T(0)) +
                      std::max(fyS[c], T(0));
        const T od = out * dt_dx;  // depth that would leave
        const T hc = std::max(h[c], T(0));
        fac[c] = od;
        need |= (od > hc) ? 1 : 0;
        negin |= (h[c] < neg) ? 1 : 0;
    }
    if (need) {  // only rows with a draining cell pay for the division
        #pragma GCC ivdep
        for (std::int64_t c = 0; c < nx; ++c) {
            const T od = fac[c];
            const T hc = std::max(h[c], T(0));
            fac[c] = od > hc ? hc / od : T(1);
        }
    } else {
        for (std::int64_t c = 0; c < nx; ++c) fac[c] = T(1);
    }
    return negin;
}

// Deterministic sums and maxima over a row: fixed lanes (independent of threads and of the
// vector width), so the compiler may vectorise without reassociating.
constexpr int kLanes = 8;

template <class T>
TWIN_FLOOD_INLINE double lane_sum(const T* x, std::int64_t n) {
    double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(x[c + l]);
    double s = 0.0;
    for (int l = 0; l < kLanes; ++l) s += acc[l];
    for (; c < n; ++c) s += static_cast<double>(x[c]);
    return s;
}

// Scan of one segment of new depths h and speeds squared s: whether any exceeds the trackers' bounds
// (bh, bs), the row's running maximum depth in fixed lanes (hm), and a non-finite flag over h and the
// bed z in fixed lanes (x - x is NaN for NaN/inf). Maxima do not depend on the order, so lanes of one
// 64-byte vector vectorise without changing any value. L = kVecLanes<T>.
template <class T>
constexpr int kVecLanes = static_cast<int>(64 / sizeof(T));

template <class T>
TWIN_FLOOD_INLINE void seg_scan(const T* __restrict h, const T* __restrict s, const T* __restrict z, std::int64_t n,
                                T bh, T bs, T* __restrict hm, T* __restrict bad, T* __restrict lo, bool* need_h,
                                bool* need_s) {
    constexpr int L = kVecLanes<T>;
    int nh[L], ns[L];
    for (int l = 0; l < L; ++l) nh[l] = ns[l] = 0;
    std::int64_t c = 0;
    for (; c + L <= n; c += L)
        for (int l = 0; l < L; ++l) {
            const T v = h[c + l], w = s[c + l], y = z[c + l];
            hm[l] = hm[l] < v ? v : hm[l];
            lo[l] = lo[l] > v ? v : lo[l];
            bad[l] += (v - v) + (y - y);
            nh[l] |= (v > bh) ? 1 : 0;
            ns[l] |= (w > bs) ? 1 : 0;
        }
    int a = 0, b = 0;
    for (int l = 0; l < L; ++l) {
        a |= nh[l];
        b |= ns[l];
    }
    for (; c < n; ++c) {
        hm[0] = hm[0] < h[c] ? h[c] : hm[0];
        lo[0] = lo[0] > h[c] ? h[c] : lo[0];
        bad[0] += (h[c] - h[c]) + (z[c] - z[c]);
        a |= (h[c] > bh) ? 1 : 0;
        b |= (s[c] > bs) ? 1 : 0;
    }
    *need_h = a != 0;
    *need_s = b != 0;
}

// Minimum of a segment (the trackers, just updated: in L1).
template <class T>
TWIN_FLOOD_INLINE T seg_min(const T* __restrict x, std::int64_t n) {
    constexpr int L = static_cast<int>(64 / sizeof(T));
    // a NaN wins (v != v) and then yields -inf: a bound that never skips
    T a[L];
    for (int l = 0; l < L; ++l) a[l] = x[0];
    std::int64_t c = 0;
    for (; c + L <= n; c += L)
        for (int l = 0; l < L; ++l) {
            const T v = x[c + l];
            a[l] = ((v < a[l]) | (v != v)) ? v : a[l];
        }
    T m = a[0];
    for (int l = 1; l < L; ++l) m = ((a[l] < m) | (a[l] != a[l])) ? a[l] : m;
    for (; c < n; ++c) m = ((x[c] < m) | (x[c] != x[c])) ? x[c] : m;
    return m == m ? m : -std::numeric_limits<T>::infinity();
}

// Limited fluxes, continuity, sources and tracked maxima for row k. facU/facD: factors of the
// rows above/below (all ones outside the domain). Writes qx row k, qy face k (and face ny on the
// last row). rrow/lrow: this row's rain depth and loss capacity (filled by the caller); s0/s1:
// scratch rows. Returns the row's maximum depth.
template <class T, bool SRC>
TWIN_FLOOD_INLINE T update_row(const StepArgs<T>& a, std::int64_t k, const T* __restrict fx, const T* __restrict fyN,
             const T* __restrict fyS, const T* __restrict facU, const T* __restrict fac, const T* __restrict facD,
             const T* __restrict rrow, const T* __restrict lrow, T* __restrict s0, T* __restrict s1, T* __restrict s2,
             T* __restrict sx, T* __restrict sy, T* __restrict sh, T* __restrict sp,
             const std::uint8_t* __restrict xs, const std::uint8_t* __restrict ysN, const std::uint8_t* __restrict ysS,
             std::uint8_t* __restrict quiet, double* sums) {
    const std::int64_t ny = a.ny, nx = a.nx;
    const std::int64_t nseg = (nx + kTrackSeg - 1) / kTrackSeg;
    const T* __restrict z = a.z + k * nx;
    const T* __restrict h = a.h + k * nx;
    // with streaming the row is built in L1 scratch (sx, sy, sh) and streamed out at the end
    T* __restrict ho = a.stream ? sh : a.h_out + k * nx;
    T* __restrict qxo = a.stream ? sx : a.qx_out + k * (nx + 1);
    T* __restrict qyo = a.stream ? sy : a.qy_out + k * nx;
    T* __restrict mh = a.maxh + k * nx;
    T* __restrict ms = a.maxspeed + k * nx;
    T* __restrict ar = a.arrival + k * nx;
    const T dt_dx = a.dt / a.dx;
    const std::int64_t nch = (nx + kFluxChunk - 1) / kFluxChunk;
    // Quiet chunks: no source, and every face of its cells was skipped as dry (+0 fluxes). Their limited
    // fluxes are +0, and their new depth is h + 0 (the same bits as the full update, signed zeros
    // included), their speed 0: filled without the arithmetic.
    int any_quiet = 0;
    for (std::int64_t j = 0; j < nch; ++j) {
        const std::int64_t c0 = j * kFluxChunk, c1 = std::min(nx, c0 + kFluxChunk);
        quiet[j] = (!SRC && xs[j] && ysN[j] && ysS[j] && fx[c0] == T(0) && fx[c1] == T(0)) ? 1 : 0;
        any_quiet |= quiet[j];
    }
    // a row without quiet chunks (wet areas) runs each loop over the whole row in one go
    const std::int64_t nloop = any_quiet ? nch : 1;
    const std::int64_t step = any_quiet ? kFluxChunk : nx;
    // limited x fluxes of the row (donor = upwind cell; outside the domain the factor is 1)
    {
        const T f0 = fx[0];
        qxo[0] = f0 < T(0) ? f0 * fac[0] : f0;
        for (std::int64_t j = 0; j < nloop; ++j) {
            const std::int64_t c0 = std::max<std::int64_t>(j * step, 1), c1 = std::min(nx, j * step + step);
            if (any_quiet && quiet[j]) {
                for (std::int64_t c = c0; c < c1; ++c) qxo[c] = T(0);
                continue;
            }
            #pragma GCC ivdep
            for (std::int64_t c = c0; c < c1; ++c) {
                const T f = fx[c], fl = fac[c - 1], fr = fac[c];
                qxo[c] = f * (f > T(0) ? fl : fr);
            }
        }
        const T fn = fx[nx];
        qxo[nx] = fn > T(0) ? fn * fac[nx - 1] : fn;
    }
    // limited y fluxes of face k (north of the row) and of face k+1 (south; s0)
    for (std::int64_t j = 0; j < nloop; ++j) {
        const std::int64_t c0 = j * step, c1 = std::min(nx, c0 + step);
        if (any_quiet && quiet[j]) {
            for (std::int64_t c = c0; c < c1; ++c) qyo[c] = s0[c] = T(0);
            continue;
        }
        #pragma GCC ivdep
        for (std::int64_t c = c0; c < c1; ++c) {
            const T f = fyN[c], fu = facU[c], fc = fac[c];
            qyo[c] = f * (f > T(0) ? fu : fc);
            const T g = fyS[c], gc = fac[c], gd = facD[c];
            s0[c] = g * (g > T(0) ? gc : gd);
        }
    }
    const T t_end = a.t_end;
    const T wallz = T(kWallZ);
    // continuity and sources; speeds squared into sp (scratch)
    for (std::int64_t j = 0; j < nloop; ++j) {
        const std::int64_t c0 = j * step, c1 = std::min(nx, c0 + step);
        if (any_quiet && quiet[j]) {
            for (std::int64_t c = c0; c < c1; ++c) {
                ho[c] = h[c] + T(0);
                sp[c] = T(0);
            }
            continue;
        }
        #pragma GCC ivdep
        for (std::int64_t c = c0; c < c1; ++c) {
            const T qW = qxo[c], qE = qxo[c + 1], qN = qyo[c], qS = s0[c];
            T hn = h[c] + dt_dx * ((qW - qE) + (qN - qS));
            if constexpr (SRC) {
                const bool wall = z[c] >= wallz;
                const T rr = rrow[c];
                const T rain = wall ? T(0) : rr;
                hn += rain;
                const T hp = hn > T(0) ? hn : T(0);
                const T lc = lrow[c];
                const T l0 = hp < lc ? hp : lc;
                const T l = wall ? T(0) : l0;
                hn -= l;
                s1[c] = rain;
                s2[c] = l;
            }
            ho[c] = hn;
            const T wet = hn > T(kSpeedDepth) ? T(1) : T(0);
            const T inv = wet * (T(0.5) / (hn > T(kSpeedDepth) ? hn : T(1)));
            const T u = (qW + qE) * inv, v = (qN + qS) * inv;
            sp[c] = u * u + v * v;
        }
    }
    // tracked maxima by segment: a segment whose new values stay within its bound is not touched
    constexpr int L = kVecLanes<T>;
    T hml[L], badl[L], lol[L];
    for (int l = 0; l < L; ++l) hml[l] = badl[l] = lol[l] = T(0);
    T* __restrict smh = a.seg_maxh_min ? a.seg_maxh_min + k * nseg : nullptr;
    T* __restrict sms = a.seg_maxs_min ? a.seg_maxs_min + k * nseg : nullptr;
    const T ninf = -std::numeric_limits<T>::infinity();
    for (std::int64_t sg = 0; sg < nseg; ++sg) {
        const std::int64_t c0 = sg * kTrackSeg, n = std::min(kTrackSeg, nx - c0);
        bool need_h, need_s;
        seg_scan(ho + c0, sp + c0, z + c0, n, smh ? smh[sg] : ninf, sms ? sms[sg] : ninf, hml, badl, lol, &need_h,
                 &need_s);
        if (need_h) {
            const T* __restrict hs = ho + c0;
            T* __restrict mhs = mh + c0;
            T* __restrict ars = ar + c0;
            #pragma GCC ivdep
            for (std::int64_t c = 0; c < n; ++c) {
                const T hn = hs[c];
                // first wetting read off the old maximum
                const T mold = mhs[c];
#if TWIN_FLOOD_MASKED_STORES
                // masked stores (AVX2/AVX-512): a line is written back only where a maximum changed
                if ((mold <= T(kArrivalDepth)) & (hn > T(kArrivalDepth))) ars[c] = t_end;
                if (mold < hn) mhs[c] = hn;
#else
                const T aold = ars[c];
                ars[c] = ((mold <= T(kArrivalDepth)) & (hn > T(kArrivalDepth))) ? t_end : aold;
                mhs[c] = mold < hn ? hn : mold;
#endif
            }
            if (smh) smh[sg] = seg_min(mhs, n);
        }
        if (need_s) {
            const T* __restrict ss = sp + c0;
            T* __restrict mss = ms + c0;
            // max speed is tracked squared (the caller takes the root once, at output)
            #pragma GCC ivdep
            for (std::int64_t c = 0; c < n; ++c) {
                const T sp2 = ss[c];
                const T mso = mss[c];
#if TWIN_FLOOD_MASKED_STORES
                if (mso < sp2) mss[c] = sp2;
#else
                mss[c] = mso < sp2 ? sp2 : mso;
#endif
            }
            if (sms) sms[sg] = seg_min(mss, n);
        }
    }
    T* qyS = a.qy_out + (k + 1) * nx;
    const bool last = (k == ny - 1);
    if (last) std::memcpy(qyS, s0, static_cast<std::size_t>(nx) * sizeof(T));
    if (a.stream) {
        stream_row(a.h_out + k * nx, sh, nx);
        stream_row(a.qx_out + k * (nx + 1), sx, nx + 1);
        stream_row(a.qy_out + k * nx, sy, nx);
    }
    T hmax = T(0), badf = T(0), lof = T(0);
    for (int l = 0; l < L; ++l) {
        hmax = hmax < hml[l] ? hml[l] : hmax;
        badf += badl[l];
        lof = lof > lol[l] ? lol[l] : lof;
    }
    const int bad_bits = (!(badf == T(0)) ? kBadNonFinite : 0) | (lof < T(-kNegDepth) ? kBadNegOutput : 0);
    // boundary flow per unit dx: west/east edges of this row, north/south edges
    double bnd_in = 0.0, bnd_out = 0.0;
    {
        const T w = qxo[0], e = qxo[nx];
        if (w > T(0)) bnd_in += w; else bnd_out -= w;
        if (e < T(0)) bnd_in -= e; else bnd_out += e;
        if (k == 0)
            #pragma GCC ivdep
            for (std::int64_t c = 0; c < nx; ++c) {
                const T f = qyo[c];
                if (f > T(0)) bnd_in += f; else bnd_out -= f;
            }
        if (last)
            #pragma GCC ivdep
            for (std::int64_t c = 0; c < nx; ++c) {
                const T f = qyS[c];
                if (f < T(0)) bnd_in -= f; else bnd_out += f;
            }
    }
    sums[kRain] = SRC ? lane_sum(s1, nx) : 0.0;
    sums[kLost] = SRC ? lane_sum(s2, nx) : 0.0;
    sums[kBndIn] = bnd_in;
    sums[kBndOut] = bnd_out;
    sums[kBad] = static_cast<double>(bad_bits);
    return hmax;
}

// Rain depth and loss capacity of row k this sub-step into rrow/lrow.
// Returns 1 when a per-cell rain depth or loss capacity of the row is negative or not finite (the
// uniform values are checked by the binding).
template <class T>
TWIN_FLOOD_INLINE int source_rows(const StepArgs<T>& a, std::int64_t k, T* rrow, T* lrow, bool per_cell_only) {
    const std::int64_t nx = a.nx;
    const T w0 = T(1) - a.rain_w, w1 = a.rain_w, sc = a.rain_scale;
    const T big = std::numeric_limits<T>::max();
    int bad = 0;
    if (a.rain0 && a.rain_per_cell) {
        const T* r0 = a.rain0 + k * nx;
        const T* r1 = a.rain1 + k * nx;
        #pragma GCC ivdep
        for (std::int64_t c = 0; c < nx; ++c) {
            const T v = sc * (w0 * r0[c] + w1 * r1[c]);
            rrow[c] = v;
            bad |= ((v >= T(0)) & (v <= big)) ? 0 : 1;
        }
    } else if (!per_cell_only) {
        const T ru = a.rain0 ? sc * (w0 * a.rain0[0] + w1 * a.rain1[0]) : T(0);
        for (std::int64_t c = 0; c < nx; ++c) rrow[c] = ru;
    }
    if (a.loss && a.loss_per_cell) {
        const T* l = a.loss + k * nx;
        const T ls = a.loss_scale;
        #pragma GCC ivdep
        for (std::int64_t c = 0; c < nx; ++c) {
            const T v = ls * l[c];
            lrow[c] = v;
            bad |= ((v >= T(0)) & (v <= big)) ? 0 : 1;
        }
    } else if (!per_cell_only) {
        const T lu = a.loss ? a.loss_scale * a.loss[0] : T(0);
        for (std::int64_t c = 0; c < nx; ++c) lrow[c] = lu;
    }
    return bad;
}

// The rows [ny*tid/nth, ny*(tid+1)/nth) of one sub-step, run by thread tid; returns their max depth.
template <class T>
TWIN_FLOOD_INLINE T sweep_rows(const StepArgs<T>& args, int tid, int nth) {
    StepArgs<T> a = args;
    // stream when one state array exceeds 8 MiB (the whole state is then well beyond the caches)
    a.stream = TWIN_FLOOD_HAVE_STREAM && (args.ny * args.nx * static_cast<std::int64_t>(sizeof(T)) > (8ll << 20));
    const std::int64_t ny = a.ny, nx = a.nx;
    const std::int64_t r0 = ny * tid / nth, r1 = ny * (tid + 1) / nth;
    Workspace<T>& ws = thread_workspace<T>(nx);
    const std::int64_t W = nx + 1;
    T* FX = ws.fx.data();
    T* FY = ws.fy.data();
    T* FA = ws.fac.data();
    T* ones = ws.eta0.data();
    for (std::int64_t c = 0; c < nx; ++c) ones[c] = T(1);
    auto fxr = [&](std::int64_t k) { return FX + ((k + 4) & 3) * W; };
    const std::int64_t NCH = nx / kFluxChunk + 2;
    auto xsr = [&](std::int64_t k) { return ws.xskip.data() + ((k + 4) & 3) * NCH; };
    auto ysr = [&](std::int64_t k) { return ws.yskip.data() + ((k + 4) & 3) * NCH; };
    auto fyr = [&](std::int64_t k) { return FY + ((k + 4) & 3) * W; };
    auto far = [&](std::int64_t k) -> const T* { return (k < 0 || k >= ny) ? ones : FA + ((k + 4) & 3) * W; };
    T* rrow = ws.eta1.data();
    T* lrow = rrow + W;
    T* scratch = ws.eta0.data() + W;  // 3 rows after the ones row
    T* s0 = scratch;
    T* s1 = scratch + W;
    T* s2 = scratch + 2 * W;
    T* sx = rrow + 2 * W;  // streaming scratch: x fluxes, north y fluxes, depths of a row
    T* sy = rrow + 3 * W;
    T* sh = rrow + 4 * W;
    T* sp = rrow + 5 * W;  // speeds squared of a row
    const bool has_src = (a.rain0 != nullptr) || (a.loss != nullptr);
    if (has_src) source_rows<T>(a, 0, rrow, lrow, false);
    T local_max = T(0);
    int negin[4] = {0, 0, 0, 0};  // input-depth flags of the rows whose factors are in the ring
    // fluxes of rows j = r0-1 .. r1+1; factor of row j-1; update of row j-2
    for (std::int64_t j = r0 - 1; j <= r1 + 1; ++j) {
        if (j >= 0 && j <= ny) flux_row<T>(a, j, fxr(j), fyr(j), xsr(j), ysr(j));
        const std::int64_t kf = j - 1;
        if (kf >= r0 - 1 && kf <= r1 && kf >= 0 && kf < ny)
            negin[(kf + 4) & 3] = factor_row<T>(a, kf, fxr(kf), fyr(kf), fyr(kf + 1), FA + ((kf + 4) & 3) * W);
        const std::int64_t ku = j - 2;
        if (ku >= r0 && ku < r1) {
            T m;
            int srcbad = 0;
            if (has_src) {
                srcbad = source_rows<T>(a, ku, rrow, lrow, true);
                m = update_row<T, true>(a, ku, fxr(ku), fyr(ku), fyr(ku + 1), far(ku - 1), far(ku), far(ku + 1), rrow,
                                        lrow, s0, s1, s2, sx, sy, sh, sp, xsr(ku),
                                        ysr(ku), ysr(ku + 1), ws.quiet.data(), a.row_sums + ku * kRowSlots);
            } else {
                m = update_row<T, false>(a, ku, fxr(ku), fyr(ku), fyr(ku + 1), far(ku - 1), far(ku), far(ku + 1),
                                         rrow, lrow, s0, s1, s2, sx, sy, sh, sp, xsr(ku),
                                        ysr(ku), ysr(ku + 1), ws.quiet.data(), a.row_sums + ku * kRowSlots);
            }
            if (negin[(ku + 4) & 3] | srcbad) {
                double& b = a.row_sums[ku * kRowSlots + kBad];
                b = static_cast<double>(static_cast<int>(b) | (negin[(ku + 4) & 3] ? kBadNegInput : 0) |
                                        (srcbad ? kBadSource : 0));
            }
            local_max = std::max(local_max, m);
        }
    }
    if (a.stream) stream_fence();
    return local_max;
}

// Per-instruction-set entry points: flood_sweep_base.cpp (baseline), flood_sweep_avx2.cpp
// (x86-64-v3) and flood_sweep_avx512.cpp (x86-64-v4, 512-bit vectors), each compiled with its own
// flags; flood_inertial.cpp picks one at load time (TWIN_FLOOD_ISA=base|avx2|avx512 forces one).
float sweep_rows_base(const StepArgs<float>& a, int tid, int nth);
double sweep_rows_base(const StepArgs<double>& a, int tid, int nth);
float sweep_rows_avx2(const StepArgs<float>& a, int tid, int nth);
double sweep_rows_avx2(const StepArgs<double>& a, int tid, int nth);
float sweep_rows_avx512(const StepArgs<float>& a, int tid, int nth);
double sweep_rows_avx512(const StepArgs<double>& a, int tid, int nth);
float sweep_rows_dispatch(const StepArgs<float>& a, int tid, int nth);
double sweep_rows_dispatch(const StepArgs<double>& a, int tid, int nth);
const char* active_isa();

// One sub-step over the whole grid; returns the new maximum depth. Threads: a.threads.
template <class T>
double inertial_step(const StepArgs<T>& a) {
    const std::int64_t ny = a.ny;
    double hmax_all = 0.0;
    int nt = a.threads > 0 ? a.threads : 1;
    if (nt > ny) nt = static_cast<int>(ny);
    std::vector<double> thread_max(static_cast<std::size_t>(nt), 0.0);
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef TWIN_HAVE_OPENMP
        const int tid = omp_get_thread_num();
        const int nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        thread_max[static_cast<std::size_t>(tid)] = static_cast<double>(sweep_rows_dispatch(a, tid, nth));
    }
    for (double m : thread_max) hmax_all = std::max(hmax_all, m);
    return hmax_all;
}

}  // namespace twin::flood
