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
#include <vector>

#ifdef TWIN_HAVE_OPENMP
#include <omp.h>
#endif

namespace twin::flood {

constexpr double kWallZ = 1.0e29;        // z at or above this is a wall (nodata) cell
constexpr double kGravity = 9.81;
constexpr double kDepthThresh = 1.0e-3;  // LISFLOOD-FP's DepthThresh: no flow through shallower faces
constexpr double kSpeedDepth = 1.0e-2;   // speeds are reported where depth exceeds this
constexpr double kArrivalDepth = 0.1;    // first wetting: depth above this

// Edge-face kinds (one per boundary face: west ny, east ny, north nx, south nx).
enum EdgeKind : std::uint8_t { kEdgeWall = 0, kEdgeFree = 1, kEdgeStage = 2 };

// Per-row reduction slots (double), summed serially by the caller.
enum RowSlot { kRain = 0, kLost = 1, kBndIn = 2, kBndOut = 3, kBad = 4, kRowSlots = 5 };

// x^(-1/3) for x > 0 by Newton iterations on a bit-level first guess: only multiplications,
// so it vectorises, and it is the same on every thread. Used for h^(-7/3) = (h^(-1/3))^7 in the
// friction term instead of pow(h, 7/3).
inline float inv_cbrt(float x) {
    std::uint32_t i;
    std::memcpy(&i, &x, 4);
    i = 0x54a2fa8cu - i / 3u;
    float r;
    std::memcpy(&r, &i, 4);
    const float third = 1.0f / 3.0f;
    r = r * (4.0f - x * r * r * r) * third;
    r = r * (4.0f - x * r * r * r) * third;
    r = r * (4.0f - x * r * r * r) * third;
    return r;
}
inline double inv_cbrt(double x) {
    std::uint64_t i;
    std::memcpy(&i, &x, 8);
    i = 0x553ef0ff289dd796ull - i / 3ull;
    double r;
    std::memcpy(&r, &i, 8);
    const double third = 1.0 / 3.0;
    r = r * (4.0 - x * r * r * r) * third;
    r = r * (4.0 - x * r * r * r) * third;
    r = r * (4.0 - x * r * r * r) * third;
    r = r * (4.0 - x * r * r * r) * third;
    return r;
}

// New unit discharge through one face from left (L) to right (R): the inertial momentum update.
//   hf: flow depth max(eta) - max(z); qc: old flux on this face; qs: sum of the two neighbouring
//   same-direction faces' old fluxes; n2: Manning n squared on the face.
template <class T>
inline T face_flux(T etaL, T etaR, T hf, T qc, T qs, T n2, T g_dt, T inv_dx, T theta) {
    const T hfs = hf > T(kDepthThresh) ? hf : T(1);  // keeps the arithmetic finite on dry faces
    const T r = inv_cbrt(hfs);
    const T r2 = r * r;
    const T r7 = r2 * r2 * r2 * r;  // hf^(-7/3)
    const T denom = T(1) + g_dt * n2 * std::fabs(qc) * r7;
    const T drive = g_dt * hfs * (etaR - etaL) * inv_dx;  // g dt hf d(eta)/dx
    const T qtheta = theta * qc + T(0.5) * (T(1) - theta) * qs;
    T q = (qtheta - drive) / denom;
    // LISFLOOD-FP: where the centred flux runs against the head drop, fall back to theta = 1.
    const T qb = (qc - drive) / denom;
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
    T* maxspeed;
    T* arrival;
    double* row_sums;  // ny * kRowSlots
    T dx, dt, theta, t_end;
    int threads;
};

template <class T>
struct Workspace {
    std::vector<T> fx, fy, fac;  // ring buffers: 4 rows of qx (nx+1), qy (nx), factor (nx)
    std::vector<T> eta0, eta1;   // scratch
};

template <class T>
inline Workspace<T>& thread_workspace(std::int64_t nx) {
    static thread_local Workspace<T> ws;
    const std::size_t need = static_cast<std::size_t>(4 * (nx + 1));
    if (ws.fx.size() < need) {
        ws.fx.assign(need, T(0));
        ws.fy.assign(need, T(0));
        ws.fac.assign(need, T(0));
        ws.eta0.assign(need, T(0));
        ws.eta1.assign(need, T(0));
    }
    return ws;
}

// Flux of a boundary face whose inside cell has (eta, z, h); outward sign s = +1 (east/south) or
// -1 (west/north). Returns the flux in the array's sign convention.
template <class T>
inline T edge_flux(std::uint8_t kind, T value, T eta, T zc, T qc_arr, T s, T n2, T g_dt, T inv_dx) {
    if (kind == kEdgeWall || zc >= T(kWallZ)) return T(0);
    const T qc = s * qc_arr;  // outward-positive old flux
    if (kind == kEdgeFree) {
        const T hf = eta - zc;
        if (!(hf > T(kDepthThresh))) return T(0);
        // ghost water surface one cell outside, lower by slope * dx
        T q = face_flux<T>(eta, eta - value / inv_dx, hf, qc, T(2) * qc, n2, g_dt, inv_dx, T(1));
        q = q > T(0) ? q : T(0);  // outflow only
        return s * q;
    }
    // stage: ghost cell with the same bed and the prescribed water level
    const T hf = std::max(eta, value) - zc;
    if (!(hf > T(kDepthThresh))) return T(0);
    const T q = face_flux<T>(eta, value, hf, qc, T(2) * qc, n2, g_dt, inv_dx, T(1));
    return s * q;
}

template <class T>
inline T face_n2(const StepArgs<T>& a, std::int64_t i0, std::int64_t i1) {
    if (!a.manning_per_cell) return a.manning[0] * a.manning[0];
    const T n = T(0.5) * (a.manning[i0] + a.manning[i1]);
    return n * n;
}

// Raw (unlimited) new fluxes of row k's x faces (fx: nx+1) and of y face k (fy: nx), from the
// old state. k in [0, ny]; for k == ny only the south edge y faces are computed.
template <class T>
void flux_row(const StepArgs<T>& a, std::int64_t k, T* fx, T* fy) {
    const std::int64_t ny = a.ny, nx = a.nx;
    const T g_dt = T(kGravity) * a.dt, inv_dx = T(1) / a.dx, theta = a.theta;
    const T n2u = a.manning[0] * a.manning[0];
    if (k < ny) {
        const T* z = a.z + k * nx;
        const T* h = a.h + k * nx;
        const T* q = a.qx + k * (nx + 1);
        const T* mn = a.manning_per_cell ? a.manning + k * nx : nullptr;
        // interior x faces c = 1..nx-1 between cells c-1 and c
        if (mn) {
            for (std::int64_t c = 1; c < nx; ++c) {
                const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                const T hf = std::max(eL, eR) - std::max(z[c - 1], z[c]);
                const T n = T(0.5) * (mn[c - 1] + mn[c]);
                fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], n * n, g_dt, inv_dx, theta);
            }
        } else {
            for (std::int64_t c = 1; c < nx; ++c) {
                const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                const T hf = std::max(eL, eR) - std::max(z[c - 1], z[c]);
                fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], n2u, g_dt, inv_dx, theta);
            }
        }
        // levee faces on this row: recompute with the crest
        if (a.lev_x_ptr) {
            for (std::int64_t p = a.lev_x_ptr[k]; p < a.lev_x_ptr[k + 1]; ++p) {
                const std::int64_t c = a.lev_x_idx[p] - k * (nx + 1);
                if (c <= 0 || c >= nx) continue;
                const T eL = z[c - 1] + h[c - 1], eR = z[c] + h[c];
                const T hf = std::max(eL, eR) - std::max(std::max(z[c - 1], z[c]), a.lev_x_crest[p]);
                fx[c] = face_flux<T>(eL, eR, hf, q[c], q[c - 1] + q[c + 1], face_n2(a, k * nx + c - 1, k * nx + c),
                                     g_dt, inv_dx, theta);
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
    const T* q = a.qy + k * nx;
    if (k == 0 || k == ny) {
        const std::int64_t r = (k == 0) ? 0 : ny - 1;
        const std::int64_t e0 = (k == 0) ? 2 * ny : 2 * ny + nx;
        const T s = (k == 0) ? T(-1) : T(1);
        const T* z = a.z + r * nx;
        const T* h = a.h + r * nx;
        for (std::int64_t c = 0; c < nx; ++c) {
            const T n2 = a.manning_per_cell ? a.manning[r * nx + c] * a.manning[r * nx + c] : n2u;
            fy[c] = edge_flux<T>(a.edge_kind[e0 + c], a.edge_value[e0 + c], z[c] + h[c], z[c], q[c], s, n2, g_dt,
                                 inv_dx);
        }
        return;
    }
    const T* zU = a.z + (k - 1) * nx;
    const T* hU = a.h + (k - 1) * nx;
    const T* zD = a.z + k * nx;
    const T* hD = a.h + k * nx;
    const T* qU = a.qy + (k - 1) * nx;
    const T* qD = a.qy + (k + 1) * nx;
    if (a.manning_per_cell) {
        const T* mU = a.manning + (k - 1) * nx;
        const T* mD = a.manning + k * nx;
        for (std::int64_t c = 0; c < nx; ++c) {
            const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
            const T hf = std::max(eL, eR) - std::max(zU[c], zD[c]);
            const T n = T(0.5) * (mU[c] + mD[c]);
            fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], n * n, g_dt, inv_dx, theta);
        }
    } else {
        for (std::int64_t c = 0; c < nx; ++c) {
            const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
            const T hf = std::max(eL, eR) - std::max(zU[c], zD[c]);
            fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], n2u, g_dt, inv_dx, theta);
        }
    }
    if (a.lev_y_ptr) {
        for (std::int64_t p = a.lev_y_ptr[k]; p < a.lev_y_ptr[k + 1]; ++p) {
            const std::int64_t c = a.lev_y_idx[p] - k * nx;
            if (c < 0 || c >= nx) continue;
            const T eL = zU[c] + hU[c], eR = zD[c] + hD[c];
            const T hf = std::max(eL, eR) - std::max(std::max(zU[c], zD[c]), a.lev_y_crest[p]);
            fy[c] = face_flux<T>(eL, eR, hf, q[c], qU[c] + qD[c], face_n2(a, (k - 1) * nx + c, k * nx + c), g_dt,
                                 inv_dx, theta);
        }
    }
}

// Limiter factor of row k: the share of each cell's outgoing fluxes it can supply from its depth.
template <class T>
void factor_row(const StepArgs<T>& a, std::int64_t k, const T* fx, const T* fyN, const T* fyS, T* fac) {
    const std::int64_t nx = a.nx;
    const T* h = a.h + k * nx;
    const T dt_dx = a.dt / a.dx;
    for (std::int64_t c = 0; c < nx; ++c) {
        const T out = std::max(-fx[c], T(0)) + std::max(fx[c + 1], T(0)) + std::max(-fyN[c], T(0)) +
                      std::max(fyS[c], T(0));
        const T od = out * dt_dx;  // depth that would leave
        const T hc = std::max(h[c], T(0));
        fac[c] = od > hc ? hc / od : T(1);
    }
}

// Limited fluxes, continuity, sources and tracked maxima for row k. facU/facD: factors of the
// rows above/below (all ones outside the domain). Writes qx row k, qy face k (and face ny on the
// last row). Returns the row's maximum depth.
template <class T>
T update_row(const StepArgs<T>& a, std::int64_t k, const T* fx, const T* fyN, const T* fyS, const T* facU,
             const T* fac, const T* facD, double* sums) {
    const std::int64_t ny = a.ny, nx = a.nx;
    const T* z = a.z + k * nx;
    const T* h = a.h + k * nx;
    T* ho = a.h_out + k * nx;
    T* qxo = a.qx_out + k * (nx + 1);
    T* qyo = a.qy_out + k * nx;
    T* mh = a.maxh + k * nx;
    T* ms = a.maxspeed + k * nx;
    T* ar = a.arrival + k * nx;
    const T dt_dx = a.dt / a.dx;
    // limited x fluxes of the row (donor = upwind cell; outside the domain the factor is 1)
    {
        const T f0 = fx[0];
        qxo[0] = f0 < T(0) ? f0 * fac[0] : f0;
        for (std::int64_t c = 1; c < nx; ++c) {
            const T f = fx[c];
            qxo[c] = f * (f > T(0) ? fac[c - 1] : fac[c]);
        }
        const T fn = fx[nx];
        qxo[nx] = fn > T(0) ? fn * fac[nx - 1] : fn;
    }
    // limited y fluxes of face k (north of the row) and, on the last row, face ny
    for (std::int64_t c = 0; c < nx; ++c) {
        const T f = fyN[c];
        qyo[c] = f * (f > T(0) ? facU[c] : fac[c]);
    }
    T* qyS = a.qy_out + (k + 1) * nx;
    const bool last = (k == ny - 1);
    double bnd_in = 0.0, bnd_out = 0.0;
    // the south faces' limited values: written by the next row's owner, recomputed here
    const T rain_scale = a.rain_scale, w0 = T(1) - a.rain_w, w1 = a.rain_w;
    const T rain_u = a.rain0 ? rain_scale * (w0 * a.rain0[0] + w1 * a.rain1[0]) : T(0);
    const T loss_u = a.loss ? a.loss_scale * a.loss[0] : T(0);
    const T t_end = a.t_end;
    T hmax = T(0);
    double rain_sum = 0.0, lost_sum = 0.0;
    int bad = 0;
    for (std::int64_t c = 0; c < nx; ++c) {
        const T fS = fyS[c];
        const T qS = fS * (fS > T(0) ? fac[c] : facD[c]);
        if (last) qyS[c] = qS;
        const T qW = qxo[c], qE = qxo[c + 1], qN = qyo[c];
        T hn = h[c] + dt_dx * ((qW - qE) + (qN - qS));
        const bool wall = z[c] >= T(kWallZ);
        T rain = a.rain0 ? (a.rain_per_cell ? rain_scale * (w0 * a.rain0[k * nx + c] + w1 * a.rain1[k * nx + c])
                                            : rain_u)
                         : T(0);
        rain = wall ? T(0) : rain;
        hn += rain;
        const T lcap = a.loss ? (a.loss_per_cell ? a.loss_scale * a.loss[k * nx + c] : loss_u) : T(0);
        const T l = wall ? T(0) : std::min(std::max(hn, T(0)), lcap);
        hn -= l;
        rain_sum += static_cast<double>(rain);
        lost_sum += static_cast<double>(l);
        bad |= !(hn == hn) || !(z[c] == z[c]);
        ho[c] = hn;
        hmax = std::max(hmax, hn);
        // tracked maxima: first wetting read off the old maximum
        const T mold = mh[c];
        ar[c] = (mold <= T(kArrivalDepth) && hn > T(kArrivalDepth)) ? t_end : ar[c];
        mh[c] = std::max(mold, hn);
        if (hn > T(kSpeedDepth)) {
            const T inv = T(0.5) / hn;
            const T u = (qW + qE) * inv, v = (qN + qS) * inv;
            const T sp = std::sqrt(u * u + v * v);
            ms[c] = std::max(ms[c], sp);
        }
    }
    // boundary flow volumes per unit dx*dt: west/east edges of this row, north/south edges
    {
        const T w = qxo[0], e = qxo[nx];
        if (w > T(0)) bnd_in += w; else bnd_out -= w;
        if (e < T(0)) bnd_in -= e; else bnd_out += e;
        if (k == 0)
            for (std::int64_t c = 0; c < nx; ++c) {
                const T f = qyo[c];
                if (f > T(0)) bnd_in += f; else bnd_out -= f;
            }
        if (last)
            for (std::int64_t c = 0; c < nx; ++c) {
                const T f = qyS[c];
                if (f < T(0)) bnd_in -= f; else bnd_out += f;
            }
    }
    sums[kRain] = rain_sum;
    sums[kLost] = lost_sum;
    sums[kBndIn] = bnd_in;
    sums[kBndOut] = bnd_out;
    sums[kBad] = bad ? 1.0 : 0.0;
    return hmax;
}

// One sub-step over the whole grid; returns the new maximum depth. Threads: a.threads.
template <class T>
double inertial_step(const StepArgs<T>& a) {
    const std::int64_t ny = a.ny, nx = a.nx;
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
        const std::int64_t r0 = ny * tid / nth, r1 = ny * (tid + 1) / nth;
        Workspace<T>& ws = thread_workspace<T>(nx);
        const std::int64_t W = nx + 1;
        T* FX = ws.fx.data();
        T* FY = ws.fy.data();
        T* FA = ws.fac.data();
        T* ones = ws.eta0.data();
        for (std::int64_t c = 0; c < nx; ++c) ones[c] = T(1);
        auto fxr = [&](std::int64_t k) { return FX + ((k + 4) & 3) * W; };
        auto fyr = [&](std::int64_t k) { return FY + ((k + 4) & 3) * W; };
        auto far = [&](std::int64_t k) -> const T* { return (k < 0 || k >= ny) ? ones : FA + ((k + 4) & 3) * W; };
        T local_max = T(0);
        // fluxes of rows j = r0-1 .. r1+1; factor of row j-1; update of row j-2
        for (std::int64_t j = r0 - 1; j <= r1 + 1; ++j) {
            if (j >= 0 && j <= ny) flux_row<T>(a, j, fxr(j), fyr(j));
            const std::int64_t kf = j - 1;
            if (kf >= r0 - 1 && kf <= r1 && kf >= 0 && kf < ny)
                factor_row<T>(a, kf, fxr(kf), fyr(kf), fyr(kf + 1), FA + ((kf + 4) & 3) * W);
            const std::int64_t ku = j - 2;
            if (ku >= r0 && ku < r1) {
                T m = update_row<T>(a, ku, fxr(ku), fyr(ku), fyr(ku + 1), far(ku - 1), far(ku), far(ku + 1),
                                    a.row_sums + ku * kRowSlots);
                local_max = std::max(local_max, m);
            }
        }
        thread_max[static_cast<std::size_t>(tid)] = static_cast<double>(local_max);
    }
    for (double m : thread_max) hmax_all = std::max(hmax_all, m);
    return hmax_all;
}

}  // namespace twin::flood
