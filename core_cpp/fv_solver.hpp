// Godunov finite-volume shallow-water solver on a raster (solver="fv" of the flood component).
//
// Cell-centred state (h, hu, hv) on an (ny, nx) raster, row 0 at the north edge; hu is the
// eastward and hv the northward unit discharge [m^2/s]. Fluxes:
//   * HLLC approximate Riemann solver (Toro 2001) with two-rarefaction / dry-bed wave speeds,
//   * hydrostatic reconstruction (Audusse, Bouchut, Bristeau, Klein & Perthame 2004) at every face:
//     z* = max(z_L, z_R, z_face), h*_{L,R} = max(0, eta_{L,R} - z*), which makes the scheme
//     well-balanced (lake at rest, wet or partly dry, kept to round-off) and depth-positive,
//   * an optional face crest z_face (levee / dam crest on a cell face) entering z*,
//   * optional second order: MUSCL reconstruction of (h, eta, u, v) with a limiter (minmod or
//     van Leer), first order next to dry cells, walls and edges, with the centred bed source of
//     Audusse & Bristeau (2005); Heun (SSP-RK2) in time,
//   * semi-implicit Manning friction (after the flux update): q <- q / (1 + dt g n^2 |u| / h^{4/3}).
//
// Parallelism: rows are split in contiguous blocks, one per OpenMP thread; each thread streams its
// rows keeping the y-face fluxes of the previous row. Every face flux is a pure function of the
// input state, so a face computed by two threads (at block edges) has the same bits: the result is
// bit-identical whatever the thread count. The new state is written to separate output arrays.
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

namespace twin {
namespace fv {

enum BcKind : int8_t { BC_WALL = 0, BC_FREE = 1, BC_STAGE = 2 };
enum Limiter : int { LIM_MINMOD = 0, LIM_VANLEER = 1 };

// A face state in the face's frame: depth, normal and tangential velocity, bed.
template <class T>
struct FaceState {
    T h, un, ut, z;
    T c;  // sqrt(g h) when known (first order: computed once per cell), < 0 when not
};

// Face flux as seen by the two cells: mass, normal momentum for the left and for the right cell
// (they differ by the hydrostatic-reconstruction pressure corrections), tangential momentum.
template <class T>
struct FaceFlux {
    T fh, fm_l, fm_r, ft;
    T s;  // largest wave speed |S_L|, |S_R| at the face (dry fronts move at u + 2c)
};

template <class T>
inline T limit(T a, T b, int lim) {
    if (a * b <= T(0)) return T(0);
    if (lim == LIM_MINMOD) return std::fabs(a) < std::fabs(b) ? a : b;
    return T(2) * a * b / (a + b);  // van Leer
}

// HLLC flux in the face-normal frame for two (already reconstructed) states. Dry states (h <= 0)
// are handled with the dry-bed wave speeds; two dry states give zero flux.
template <class T>
inline void hllc(T hL, T uL, T vL, T hR, T uR, T vR, T g, T& fh, T& fm, T& ft, T& smax, T cL = T(-1),
                 T cR = T(-1)) {
    if (hL <= T(0) && hR <= T(0)) {
        fh = fm = ft = smax = T(0);
        return;
    }
    const T half = T(0.5);
    if (cL < T(0)) cL = std::sqrt(g * hL);
    if (cR < T(0)) cR = std::sqrt(g * hR);
    T SL, SR;
    if (hL <= T(0)) {
        uL = vL = T(0);
        SL = uR - T(2) * cR;
        SR = uR + cR;
    } else if (hR <= T(0)) {
        uR = vR = T(0);
        SL = uL - cL;
        SR = uL + T(2) * cL;
    } else {
        const T us = half * (uL + uR) + cL - cR;
        const T cs = half * (cL + cR) + T(0.25) * (uL - uR);
        SL = std::min(uL - cL, us - cs);
        SR = std::max(uR + cR, us + cs);
    }
    smax = std::max(std::fabs(SL), std::fabs(SR));
    const T qL = hL * uL, qR = hR * uR;
    if (SL >= T(0)) {
        fh = qL;
        fm = qL * uL + half * g * hL * hL;
        ft = qL * vL;
        return;
    }
    if (SR <= T(0)) {
        fh = qR;
        fm = qR * uR + half * g * hR * hR;
        ft = qR * vR;
        return;
    }
    const T fmL = qL * uL + half * g * hL * hL, fmR = qR * uR + half * g * hR * hR;
    const T inv = T(1) / (SR - SL);
    fh = (SR * qL - SL * qR + SL * SR * (hR - hL)) * inv;
    fm = (SR * fmL - SL * fmR + SL * SR * (qR - qL)) * inv;
    // contact speed S* = num / den with den = hR (uR - SR) - hL (uL - SL) < 0 whenever a side is
    // wet, so S* >= 0 exactly when num <= 0 (no division needed for the upwind tangential velocity)
    const T num = SL * hR * (uR - SR) - SR * hL * (uL - SL);
    ft = fh * (num <= T(0) ? vL : vR);
}

// Hydrostatic reconstruction + HLLC at one face. L and R carry the depth at the face (cell value at
// first order, reconstructed at second), velocities and the face bed of each side.
template <class T>
inline FaceFlux<T> face_flux(const FaceState<T>& L, const FaceState<T>& R, T zface, T g) {
    const T zs = std::max(std::max(L.z, R.z), zface);
    // the side whose bed is the face's keeps its depth (and its celerity) exactly
    const bool keepL = L.z >= zs, keepR = R.z >= zs;
    const T hLs = keepL ? L.h : std::max(T(0), L.h + L.z - zs);
    const T hRs = keepR ? R.h : std::max(T(0), R.h + R.z - zs);
    FaceFlux<T> f;
    T fm;
    hllc(hLs, L.un, L.ut, hRs, R.un, R.ut, g, f.fh, fm, f.ft, f.s, keepL ? L.c : T(-1), keepR ? R.c : T(-1));
    const T hg = T(0.5) * g;
    f.fm_l = fm + hg * (L.h * L.h - hLs * hLs);
    f.fm_r = fm + hg * (R.h * R.h - hRs * hRs);
    return f;
}

template <class T>
struct Params {
    int ny, nx;
    T dx, g, hdry;
    int order, limiter;
    const T* z;
    const T* manning;
    const uint8_t* active;
    const T* zfx;  // (ny, nx+1) face crests on x-faces or nullptr
    const T* zfy;  // (ny+1, nx) face crests on y-faces or nullptr
    const int8_t* bc_kind;  // 2*(ny+nx): west[ny], east[ny], north[nx], south[nx]
    const T* bc_stage;
};

// A cell takes part when its mask says so and its bed is not a wall (z >= kWallZ, as in the
// inertial kernel's nodata convention).
constexpr double kWallZ = 1.0e29;
template <class T>
inline bool is_active(const Params<T>& P, long i) {
    return P.active[i] && P.z[i] < T(kWallZ);
}

// Forcing and tracked outputs fused into the final update of a step (all optional).
template <class T>
struct Extras {
    const T* rain0 = nullptr;  // rain rate frames (1 or ny*nx values) before/after the step's middle
    const T* rain1 = nullptr;
    bool rain_per_cell = false;
    T rain_w = T(0), rain_scale = T(0);  // depth = rain_scale * ((1-w) rain0 + w rain1)
    const T* loss = nullptr;             // loss rate (1 or ny*nx), depth cap = loss_scale * loss
    bool loss_per_cell = false;
    T loss_scale = T(0);
    T* maxh = nullptr;  // tracked maxima and first wetting (t_end where depth first exceeds arrival_depth)
    T* maxs = nullptr;
    T* arrival = nullptr;
    T t_end = T(0), speed_depth = T(0.01), arrival_depth = T(0.1);
    double* row_sums = nullptr;  // ny * row_slots: rain depth, lost depth (sums over the row)
    int row_slots = 0;
};

template <class T>
struct View {
    const T* h;
    const T* hu;
    const T* hv;
};

// velocity with a dry threshold (no division by a vanishing depth)
template <class T>
inline T vel(T q, T h, T hdry) {
    return h > hdry ? q / h : T(0);
}

template <class T>
struct Slope {
    T dh, de, du, dv;
};

// Limited slopes (increments over one cell) of h, eta, u, v of cell (r, c) in direction dir
// (0: +column / east, 1: +row / south), in the same (east, north) velocity components.
// Zero (first order) next to a wall, an inactive or dry cell, or the domain edge.
template <class T>
inline void slopes(const Params<T>& P, const View<T>& S, int r, int c, int dir, T& dh, T& de, T& du,
                   T& dv) {
    dh = de = du = dv = T(0);
    const int nx = P.nx;
    long i = long(r) * nx + c, im, ip;
    if (dir == 0) {
        if (c == 0 || c == nx - 1) return;
        im = i - 1;
        ip = i + 1;
    } else {
        if (r == 0 || r == P.ny - 1) return;
        im = i - nx;
        ip = i + nx;
    }
    if (!is_active(P, im) || !is_active(P, ip)) return;
    const T hd = P.hdry;
    const T h0 = S.h[i], hm = S.h[im], hp = S.h[ip];
    if (h0 <= hd || hm <= hd || hp <= hd) return;
    // no reconstruction across a face crest (levee, dam): first order next to it
    const T ninf = -std::numeric_limits<T>::infinity();
    if (dir == 0) {
        if (P.zfx && (P.zfx[long(r) * (nx + 1) + c] > ninf || P.zfx[long(r) * (nx + 1) + c + 1] > ninf)) return;
    } else {
        if (P.zfy && (P.zfy[i] > ninf || P.zfy[i + nx] > ninf)) return;
    }
    const int lim = P.limiter;
    dh = limit(h0 - hm, hp - h0, lim);
    de = limit(h0 + P.z[i] - hm - P.z[im], hp + P.z[ip] - h0 - P.z[i], lim);
    const T u0 = S.hu[i] / h0, um = S.hu[im] / hm, up = S.hu[ip] / hp;
    const T v0 = S.hv[i] / h0, vm = S.hv[im] / hm, vp = S.hv[ip] / hp;
    du = limit(u0 - um, up - u0, lim);
    dv = limit(v0 - vm, vp - v0, lim);
    // keep the face depths non-negative and the face bed inside what the limiter allows
    if (std::fabs(dh) > T(2) * h0) dh = std::copysign(T(2) * h0, dh);
}

// Face state of cell i seen from a face in direction dir (0: x, 1: y) on side `side`
// (+1: the face after the cell, i.e. east/south; -1: before it), in the face frame:
// normal velocity positive along +column (x) or +row (y, i.e. southward).
// A cell's primitive state, computed once per row (one division per cell) and read by its faces.
template <class T>
struct CellState {
    T h, u, v, z, c;  // c = sqrt(g h)
};

template <class T>
inline void row_states(const Params<T>& P, const View<T>& S, int r, CellState<T>* out) {
    const long row = long(r) * P.nx;
    for (int c = 0; c < P.nx; ++c) {
        const long i = row + c;
        const T h = S.h[i];
        const T inv = h > P.hdry ? T(1) / h : T(0);
        out[c] = CellState<T>{h, S.hu[i] * inv, S.hv[i] * inv, P.z[i], std::sqrt(P.g * h)};
    }
}

template <class T, bool SECOND>
inline FaceState<T> cell_face_state(const CellState<T>& cs, int dir, int side, const Slope<T>* sl) {
    T h = cs.h, u = cs.u, v = cs.v;
    T eta = h + cs.z;
    if (SECOND) {
        const T s = T(0.5) * T(side);
        h += s * sl->dh;
        eta += s * sl->de;
        u += s * sl->du;
        v += s * sl->dv;
        if (h < T(0)) h = T(0);
    }
    FaceState<T> f;
    f.h = h;
    f.z = SECOND ? eta - h : cs.z;
    f.c = SECOND ? T(-1) : cs.c;
    if (dir == 0) {
        f.un = u;
        f.ut = v;
    } else {
        f.un = -v;  // +row is southward
        f.ut = u;
    }
    return f;
}

// Slopes of one row of cells in direction dir (second order only).
template <class T>
inline void row_slopes(const Params<T>& P, const View<T>& S, int r, int dir, Slope<T>* out) {
    for (int c = 0; c < P.nx; ++c) {
        Slope<T>& o = out[c];
        slopes(P, S, r, c, dir, o.dh, o.de, o.du, o.dv);
    }
}

// Ghost state across a domain edge / wall from the inside state `in` (face frame); `outward` is
// +1 when the edge lies in the +normal direction of the cell (east, south), -1 otherwise.
template <class T>
inline FaceState<T> ghost(const FaceState<T>& in, int kind, T stage, int outward) {
    FaceState<T> g = in;
    if (kind == BC_WALL) {
        g.un = -in.un;
    } else if (kind == BC_FREE) {
        // free outflow: transmissive while the water leaves, a wall when it would come in
        if (in.un * T(outward) < T(0)) g.un = -in.un;
    } else if (kind == BC_STAGE) {
        g.h = std::max(T(0), stage - in.z);
        g.c = T(-1);
    }
    return g;
}

// Flux through x-face (r, j) between cells (r, j-1) and (r, j), j in [0, nx].
// Writes bc_out (outward discharge per unit width, m^2/s) for edge faces.
template <class T, bool SECOND>
inline FaceFlux<T> xface(const Params<T>& P, int r, int j, T* bc_q, const Slope<T>* sx, const CellState<T>* row) {
    const int nx = P.nx;
    const T zf = P.zfx ? P.zfx[long(r) * (nx + 1) + j] : -std::numeric_limits<T>::infinity();
    const bool hasL = j > 0 && is_active(P, long(r) * nx + j - 1);
    const bool hasR = j < nx && is_active(P, long(r) * nx + j);
    FaceFlux<T> f{T(0), T(0), T(0), T(0), T(0)};
    if (!hasL && !hasR) return f;
    FaceState<T> L, R;
    if (hasL && hasR) {
        L = cell_face_state<T, SECOND>(row[j - 1], 0, +1, SECOND ? sx + j - 1 : nullptr);
        R = cell_face_state<T, SECOND>(row[j], 0, -1, SECOND ? sx + j : nullptr);
    } else if (hasL) {
        L = cell_face_state<T, SECOND>(row[j - 1], 0, +1, SECOND ? sx + j - 1 : nullptr);
        int kind = BC_WALL;
        T stage = T(0);
        if (j == nx) {
            kind = P.bc_kind[P.ny + r];
            stage = P.bc_stage[P.ny + r];
        }
        R = ghost(L, kind, stage, +1);
    } else {
        R = cell_face_state<T, SECOND>(row[j], 0, -1, SECOND ? sx + j : nullptr);
        int kind = BC_WALL;
        T stage = T(0);
        if (j == 0) {
            kind = P.bc_kind[r];
            stage = P.bc_stage[r];
        }
        L = ghost(R, kind, stage, -1);
    }
    f = face_flux(L, R, zf, P.g);
    if (bc_q) {
        if (j == 0) bc_q[r] = -f.fh;
        if (j == nx) bc_q[P.ny + r] = f.fh;
    }
    return f;
}

// Flux through y-face (k, c) between cells (k-1, c) (north) and (k, c) (south), k in [0, ny];
// normal positive southward.
template <class T, bool SECOND>
inline FaceFlux<T> yface(const Params<T>& P, int k, int c, T* bc_q, const Slope<T>* syN, const Slope<T>* syS,
                         const CellState<T>* rowN, const CellState<T>* rowS) {
    const int nx = P.nx, ny = P.ny;
    const T zf = P.zfy ? P.zfy[long(k) * nx + c] : -std::numeric_limits<T>::infinity();
    const bool hasL = k > 0 && is_active(P, long(k - 1) * nx + c);
    const bool hasR = k < ny && is_active(P, long(k) * nx + c);
    FaceFlux<T> f{T(0), T(0), T(0), T(0), T(0)};
    if (!hasL && !hasR) return f;
    FaceState<T> L, R;
    if (hasL && hasR) {
        L = cell_face_state<T, SECOND>(rowN[c], 1, +1, SECOND ? syN + c : nullptr);
        R = cell_face_state<T, SECOND>(rowS[c], 1, -1, SECOND ? syS + c : nullptr);
    } else if (hasL) {
        L = cell_face_state<T, SECOND>(rowN[c], 1, +1, SECOND ? syN + c : nullptr);
        int kind = BC_WALL;
        T stage = T(0);
        if (k == ny) {
            kind = P.bc_kind[2 * ny + nx + c];
            stage = P.bc_stage[2 * ny + nx + c];
        }
        R = ghost(L, kind, stage, +1);
    } else {
        R = cell_face_state<T, SECOND>(rowS[c], 1, -1, SECOND ? syS + c : nullptr);
        int kind = BC_WALL;
        T stage = T(0);
        if (k == 0) {
            kind = P.bc_kind[2 * ny + c];
            stage = P.bc_stage[2 * ny + c];
        }
        L = ghost(R, kind, stage, -1);
    }
    f = face_flux(L, R, zf, P.g);
    if (bc_q) {
        if (k == 0) bc_q[2 * ny + c] = -f.fh;
        if (k == ny) bc_q[2 * ny + nx + c] = f.fh;
    }
    return f;
}

// One forward-Euler flux update from state S, written to O:
//   O = a*B + b*(S + dt*L(S))   (first order / Heun stage 1: a=0, b=1; Heun stage 2: a=b=1/2, B=U^n)
// then (final stage: X non-null) friction, rain, losses and the tracked outputs. Returns the larger of
// the signal speed max(|u|,|v|)+sqrt(g h) of the new state and the HLL wave speeds |S_L|, |S_R| of the
// faces just computed (dry fronts move at u + 2c): the next step's CFL speed, positivity-safe. bc_q (may be null) receives the edge-face outward discharge
// per unit width, scaled by `bc_w` and added (so the two Heun stages average).
// bad_out (may be null): set to 1 + the flat index of a cell whose new state is not finite or whose
// depth is negative (the last such cell), 0 when every cell is fine; checked in the loop that writes
// the state, on every call.
template <class T, bool SECOND>
T euler_update(const Params<T>& P, const View<T>& S, const View<T>* B, T a, T b, T* Oh, T* Ohu, T* Ohv,
               T dt, const Extras<T>* X, T* bc_q, T bc_w, int threads, T* bc_tmp, T* hmax_out = nullptr,
               long* bad_out = nullptr) {
    const bool friction = X != nullptr;
    const int ny = P.ny, nx = P.nx;
    const T rdx = dt / P.dx;
    T smax = T(0), hmax = T(0);
    long bad_first = 0;  // 1 + flat index of the last bad cell (0: none)
    const T big = std::numeric_limits<T>::max();
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel num_threads(threads) reduction(max : smax, hmax, bad_first)
#endif
    {
        int tid = 0, nth = 1;
#ifdef TWIN_HAVE_OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const int r0 = int((long(ny) * tid) / nth), r1 = int((long(ny) * (tid + 1)) / nth);
        std::vector<FaceFlux<T>> fx(nx + 1), fn(nx), fs(nx);
        // second order: x-slopes of the current row, y-slopes of the rows above, at and below it
        std::vector<Slope<T>> sx(SECOND ? nx : 0), syU(SECOND ? nx : 0), syC(SECOND ? nx : 0), syD(SECOND ? nx : 0);
        T* bq = bc_tmp;
        // primitive states of the rows above, at and below the current one
        std::vector<CellState<T>> stU(nx), stC(nx), stD(nx);
        if (r0 < r1) {
            if (SECOND) {
                if (r0 > 0) row_slopes(P, S, r0 - 1, 1, syU.data());
                row_slopes(P, S, r0, 1, syC.data());
            }
            if (r0 > 0) row_states(P, S, r0 - 1, stU.data());
            row_states(P, S, r0, stC.data());
            for (int c = 0; c < nx; ++c) {
                fn[c] = yface<T, SECOND>(P, r0, c, r0 == 0 ? bq : nullptr, syU.data(), syC.data(), stU.data(),
                                         stC.data());
                if (fn[c].s > smax) smax = fn[c].s;
            }
        }
        const T g = P.g, hd = P.hdry;
        for (int r = r0; r < r1; ++r) {
            if (SECOND) {
                row_slopes(P, S, r, 0, sx.data());
                if (r + 1 < ny) row_slopes(P, S, r + 1, 1, syD.data());
            }
            if (r + 1 < ny) row_states(P, S, r + 1, stD.data());
            for (int j = 0; j <= nx; ++j) {
                fx[j] = xface<T, SECOND>(P, r, j, bq, sx.data(), stC.data());
                if (fx[j].s > smax) smax = fx[j].s;
            }
            for (int c = 0; c < nx; ++c) {
                fs[c] = yface<T, SECOND>(P, r + 1, c, r + 1 == ny ? bq : nullptr, syC.data(), syD.data(), stC.data(),
                                         stD.data());
                if (fs[c].s > smax) smax = fs[c].s;
            }
            const long row = long(r) * nx;
            double rain_sum = 0.0, lost_sum = 0.0;
            for (int c = 0; c < nx; ++c) {
                const long i = row + c;
                if (!is_active(P, i)) {
                    Oh[i] = S.h[i];
                    Ohu[i] = S.hu[i];
                    Ohv[i] = S.hv[i];
                    if (!(Oh[i] >= T(0) && Oh[i] <= big && std::fabs(Ohu[i]) <= big && std::fabs(Ohv[i]) <= big))
                        bad_first = std::max(bad_first, i + 1);
                    continue;
                }
                const FaceFlux<T>& W = fx[c];
                const FaceFlux<T>& E = fx[c + 1];
                const FaceFlux<T>& N = fn[c];
                const FaceFlux<T>& Sf = fs[c];
                T h = S.h[i] - rdx * (E.fh - W.fh + Sf.fh - N.fh);
                // x momentum: normal on x-faces, tangential on y-faces
                T hu = S.hu[i] - rdx * (E.fm_l - W.fm_r + Sf.ft - N.ft);
                // y (north) momentum = -(southward normal momentum) on y-faces
                T hv = S.hv[i] - rdx * (E.ft - W.ft) + rdx * (Sf.fm_l - N.fm_r);
                if (SECOND) {
                    hu += rdx * (-g * S.h[i] * (sx[c].de - sx[c].dh));
                    // southward bed source, added to the northward momentum with a minus sign
                    hv -= rdx * (-g * S.h[i] * (syC[c].de - syC[c].dh));
                }
                if (B) {
                    h = a * B->h[i] + b * h;
                    hu = a * B->hu[i] + b * hu;
                    hv = a * B->hv[i] + b * hv;
                }
                T ih = T(0);  // 1/h of the wet cell
                if (h <= hd) {
                    if (h < T(0)) h = T(0);
                    hu = hv = T(0);
                } else {
                    ih = T(1) / h;
                    const T n = P.manning[i];
                    const T q2 = hu * hu + hv * hv;
                    if (friction && n > T(0) && q2 > T(0)) {
                        // q <- q / (1 + dt g n^2 |u| h^(-4/3)), h^(-4/3) = (1/h) h^(-1/3)
                        // h^(-1/3) to float precision (2 Newton steps): plenty for a roughness term
                        const T den = T(1) + dt * g * n * n * std::sqrt(q2) * ih * ih * T(inv_cbrt(float(h)));
                        const T f = T(1) / den;
                        hu *= f;
                        hv *= f;
                    }
                }
                if (X) {
                    const bool src = X->rain0 || X->loss;
                    if (X->rain0) {
                        const long k = X->rain_per_cell ? i : 0;
                        const T rn = X->rain_scale * ((T(1) - X->rain_w) * X->rain0[k] + X->rain_w * X->rain1[k]);
                        h += rn;
                        rain_sum += double(rn);
                    }
                    if (X->loss) {
                        const T cap = X->loss_scale * X->loss[X->loss_per_cell ? i : 0];
                        const T l = std::min(h, cap);
                        h -= l;
                        lost_sum += double(l);
                    }
                    if (src) {
                        if (h <= hd) {
                            hu = hv = T(0);
                            ih = T(0);
                        } else {
                            ih = T(1) / h;
                        }
                    }
                    if (X->maxh) {
                        const T mold = X->maxh[i];
                        if (h > mold) {  // store only what changes
                            if (mold <= X->arrival_depth && h > X->arrival_depth) X->arrival[i] = X->t_end;
                            X->maxh[i] = h;
                        }
                        if (h > X->speed_depth) {  // tracked as speed squared (the model takes the root)
                            const T sp2 = (hu * hu + hv * hv) * ih * ih;
                            if (sp2 > X->maxs[i]) X->maxs[i] = sp2;
                        }
                    }
                }
                Oh[i] = h;
                Ohu[i] = hu;
                Ohv[i] = hv;
                if (!(h >= T(0) && h <= big && std::fabs(hu) <= big && std::fabs(hv) <= big))
                    bad_first = std::max(bad_first, i + 1);
                if (h > hmax) hmax = h;
                if (h > hd) {
                    const T s = std::max(std::fabs(hu), std::fabs(hv)) * ih + std::sqrt(g * h);
                    if (s > smax) smax = s;
                }
            }
            if (X && X->row_sums) {
                X->row_sums[long(r) * X->row_slots + 0] = rain_sum;
                X->row_sums[long(r) * X->row_slots + 1] = lost_sum;
            }
            std::swap(fn, fs);
            std::swap(stU, stC);
            std::swap(stC, stD);
            if (SECOND) {
                std::swap(syU, syC);
                std::swap(syC, syD);
            }
        }
    }
    if (bc_q) {
        const int nb = 2 * (ny + nx);
        for (int k = 0; k < nb; ++k) bc_q[k] += bc_w * bc_tmp[k];
    }
    if (hmax_out) *hmax_out = hmax;
    if (bad_out) *bad_out = bad_first;
    return smax;
}

// Largest signal speed of a state (for the first time step).
template <class T>
T max_wave_speed(const Params<T>& P, const View<T>& S, int threads) {
    const long n = long(P.ny) * P.nx;
    T smax = T(0);
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) reduction(max : smax) schedule(static)
#endif
    for (long i = 0; i < n; ++i) {
        const T h = S.h[i];
        if (!is_active(P, i) || h <= P.hdry) continue;
        // u + 2c: a wet cell next to a dry one sends its front at that speed (first step only)
        const T s = std::max(std::fabs(S.hu[i]), std::fabs(S.hv[i])) / h + T(2) * std::sqrt(P.g * h);
        if (s > smax) smax = s;
    }
    return smax;
}

}  // namespace fv
}  // namespace twin
