// The subgrid local-inertial kernel (see flood_subgrid.cpp for the formulation and the bindings).
// Header-only with internal linkage: flood_subgrid.cpp (baseline) and flood_subgrid_avx2.cpp (x86-64-v3) each
// compile their own copy with their own flags, and flood_subgrid.cpp picks one at load time with the flood
// sweep (flood_isa(); TWIN_FLOOD_ISA=base forces the baseline).
#pragma once

#include "inv_cbrt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef TWIN_HAVE_OPENMP
#include <omp.h>
#endif


namespace twin {
namespace subgrid {

constexpr double kWallZ = 1.0e29;
constexpr double kGravity = 9.81;
constexpr double kDepthThresh = 1.0e-3;
constexpr double kSpeedDepth = 1.0e-2;
constexpr double kArrivalDepth = 0.1;
constexpr double kNegDepth = 1.0e-3;
constexpr std::int64_t kFaceChunk = 16;  // faces whose table reads are skipped together when all are closed
constexpr double kMinEff = 1.0e-6;  // floor of h_eff in the friction term (keeps it finite on a barely wet face)
enum RowSlot { kRain = 0, kLost = 1, kBndIn = 2, kBndOut = 3, kBad = 4, kRowSlots = 5 };
enum BadBits { kBadNonFinite = 1, kBadNegInput = 2, kBadSource = 4, kBadNegOutput = 8, kBadTable = 16 };
enum EdgeKind : std::uint8_t { kEdgeWall = 0, kEdgeFree = 1, kEdgeStage = 2 };
// local time steps (lts_step): bits of the per-cell mask. A deep cell needs a shorter sub-step than the step; a fast
// cell is deep or a 4-neighbour of a deep one (not a wall); a fast face has a deep cell on a side (an edge face: its
// cell deep), so both cells of an interior fast face are fast and a cell that is not fast has no fast face. Bits 2..7
// hold the cell's depth level (flood_subgrid.cpp: which level of sub-steps it needs); this kernel reads bits 0 and 1.
enum LtsBits : std::uint8_t { kLtsFast = 1, kLtsDeep = 2 };

struct Args {
    std::int64_t ny, nx, nl;
    const double* z;  // coarse bed (z_min); >= kWallZ: wall
    const double* h;
    const double* qx;
    const double* qy;
    double* h_out;
    double* qx_out;
    double* qy_out;
    const double* cells;
    // face tables by slot (N+2, faces, 2): face f's slot j pair at f * 2 + j * fs (fs = 2 x the faces of the
    // table); slot 0 (z_min, dz), slot 1 (width fraction, h_eff slope), slot 2 + k (hbar_k, h_eff_k)
    const double* fxt;
    const double* fyt;
    std::int64_t fxs, fys;
    const double* manning;
    bool manning_per_cell;
    const std::uint8_t* edge_kind;
    const double* edge_value;
    const double* rain0;
    const double* rain1;
    bool rain_per_cell;
    double rain_w, rain_scale;
    const double* loss;
    bool loss_per_cell;
    double loss_scale;
    double* maxh;
    double* maxspeed;
    double* arrival;
    double* maxlevel;
    // level cache (optional, both or neither): level_cache[i] is the level of depth_cache[i]; pass A reuses it
    // where h[i] has the same bits (the model did not edit the cell), pass E stores the new pair. The level is a
    // pure function of the depth, so the results are the same bits with or without the cache.
    double* level_cache;
    double* depth_cache;
    // optional, in/out: the volume-table segment of each cell's last level, where pass E starts its search
    // (any content gives the same results; it only saves the search)
    std::int32_t* level_segment;
    double* row_sums;
    // optional (lts_step's pass over the whole grid): the LtsBits of each cell. Fast cells are left as they are
    // (depth, trackers, caches, sums, boundary sums: the sub-cycle advances them), and their limiter factor counts
    // only their slow faces' outflow (their fast faces are recomputed by the sub-cycle). Null: every cell.
    const std::uint8_t* lts;
    // optional: depth_counts (ny, n_thr): per row, the cells whose new local depth exceeds each threshold (the
    // caller's choice of the next step's local time steps); fast cells are counted by the sub-cycle
    const double* count_thr;
    std::int64_t n_thr;
    double* depth_counts;
    double dx, dt, theta, t_end;
    // face level between two cells with levels l, r (see face_level); >= 1: the upwind level max(l, r)
    double face_weight;
    int threads;
};

// The level at which a face between cells with levels l and r is read (its cross-section and conveyance):
// the mean of the two levels (a water surface continuous through the face), but not below the level that
// stands w of the way from the face's lowest strip bed zf up to the upwind level (a free overfall, the
// downwind cell low or dry). With w >= 1 it is the upwind level max(l, r), the regular kernel's rule.
// Why not the upwind level (docs/design/subgrid-face-level.md): on a slope a coarse cell's flat level pools
// the sheet flow against its downhill face, so the upwind level stands far above the film there and the face
// conveys the film's discharge with a fraction of its volume (a uniform 0.3 % slope held 14 % of the
// kinematic-wave volume).
static inline double face_level(double l, double r, double zf, double w) {
    const double up = l > r ? l : r;
    const double mean = 0.5 * (l + r);
    const double brink = zf + w * (up - zf);
    const double e = mean > brink ? mean : brink;
    return w >= 1.0 ? up : e;
}

// the volume-table segment of mean depth h (0 < h < hk[nl-1]): the largest lo with hk[lo] <= h (level_of's)
static inline std::int64_t segment_of(const double* hk, std::int64_t nl, double h) {
    std::int64_t lo = 0, n = nl - 1;
    while (n > 1) {
        const std::int64_t half = n / 2;
        lo = (hk[lo + half] <= h) ? lo + half : lo;
        n -= half;
    }
    return lo;
}

// the same segment by a walk from a remembered one (*seg, updated; any value gives the right answer)
static inline std::int64_t segment_from(const double* hk, std::int64_t nl, double h, std::int32_t* seg) {
    std::int64_t lo = *seg;
    if (lo < 0) lo = 0;
    if (lo > nl - 2) lo = nl - 2;
    if (hk[lo] <= h) {
        while (lo < nl - 2 && hk[lo + 1] <= h) ++lo;
    } else {
        do --lo; while (hk[lo] > h);  // stops at lo = 0 at the latest: hk[0] = 0 < h
    }
    *seg = static_cast<std::int32_t>(lo);
    return lo;
}

// level of a cell holding mean depth h (cell table row c)
static inline double level_of(const double* c, std::int64_t nl, double h) {
    const double zmin = c[0], top = c[1];
    const double* zk = c + 2;
    const double* hk = c + 2 + nl;
    if (!(h > 0.0)) return zmin;
    if (h >= hk[nl - 1]) return zk[nl - 1] + (h - hk[nl - 1]) / top;
    const std::int64_t lo = segment_of(hk, nl, h), hi = lo + 1;  // hk[hi] > h >= hk[lo]: the division is safe
    return zk[lo] + (zk[hi] - zk[lo]) * ((h - hk[lo]) / (hk[hi] - hk[lo]));
}

// face cross-section (hbar) and conveyance depth (h_eff) at face level eta (t: the face's header pair in a
// table by slot, fs: the slot stride)
static inline void face_at(const double* t, std::int64_t fs, std::int64_t nl, double eta, double* hbar, double* heff) {
    const double zmin = t[0], dz = t[1], frac = t[fs], eslope = t[fs + 1];
    const double* p = t + 2 * fs;  // (hbar_k, h_eff_k) pairs, one slot apart
    const double s = eta - zmin;
    const double span = dz * static_cast<double>(nl - 1);
    if (!(dz > 0.0) || s >= span) {
        const double d = s - span;
        *hbar = p[(nl - 1) * fs] + frac * d;
        *heff = p[(nl - 1) * fs + 1] + eslope * d;
        return;
    }
    const double x = s / dz;
    std::int64_t k = static_cast<std::int64_t>(x);
    if (k > nl - 2) k = nl - 2;
    if (k < 0) k = 0;
    const double w = x - static_cast<double>(k);
    const double* q = p + k * fs;
    *hbar = q[0] + w * (q[fs] - q[0]);
    *heff = q[1] + w * (q[fs + 1] - q[1]);
}

// the local-inertial update of one face from its cross-section depth hbar and conveyance depth heff
static inline double flux_from(double eL, double eR, double hbar, double heff, double qc, double qs, double qp,
                               double n2, double g_dt, double inv_dx, double theta) {
    const double he = heff > kMinEff ? heff : kMinEff;
    const double r = inv_cbrt(he);  // the regular kernel's x^(-1/3) (core_cpp/inv_cbrt.hpp)
    const double r2 = r * r;
    const double r7 = r2 * r2 * r2 * r;  // h_eff^(-7/3)
    const double inv_denom = 1.0 / (1.0 + g_dt * n2 * std::sqrt(qc * qc + qp * qp) * r7);
    const double drive = g_dt * hbar * (eR - eL) * inv_dx;
    const double qtheta = theta * qc + 0.5 * (1.0 - theta) * qs;
    const double q = (qtheta - drive) * inv_denom;
    const double qb = (qc - drive) * inv_denom;
    return (q * (eL - eR) < 0.0) ? qb : q;
}

// new unit discharge through one face from L to R; ef = the face level; 0 on a dry face
static inline double flux(double eL, double eR, double ef, const double* t, std::int64_t fs, std::int64_t nl, double qc,
                          double qs, double qp, double n2, double g_dt, double inv_dx, double theta) {
    if (!(ef - t[0] > kDepthThresh)) return 0.0;
    double hbar, heff;
    face_at(t, fs, nl, ef, &hbar, &heff);
    return flux_from(eL, eR, hbar, heff, qc, qs, qp, n2, g_dt, inv_dx, theta);
}

// whether the n values are all finite (nonneg: and >= 0): an integer OR that the compiler vectorises, no exit
static inline bool row_ok(const double* __restrict v, std::int64_t n, bool nonneg) {
    const double big = std::numeric_limits<double>::max();
    int bad = 0;
    if (nonneg)
        for (std::int64_t k = 0; k < n; ++k) bad |= (v[k] >= 0.0 && v[k] <= big) ? 0 : 1;
    else
        for (std::int64_t k = 0; k < n; ++k) bad |= (std::fabs(v[k]) <= big) ? 0 : 1;
    return bad == 0;
}

// Scratch of one thread: pass E's rain and loss of one row's cells
struct RowScratch {
    std::vector<double> rr, lc, rs, ls;
    std::vector<double> z0, ka, h0, kb, zm, dl, lcache, dcache;  // the levels of one row
    std::vector<double> f0, f1, f2, north;  // limiter factors of three rows, the y faces north of the block
    std::vector<double> sv;  // trackers of a row's fast cells, kept (lts)
    explicit RowScratch(std::size_t n)
        : rr(n), lc(n), rs(n), ls(n), z0(n), ka(n), h0(n), kb(n), zm(n), dl(n), lcache(n), dcache(n), f0(n), f1(n),
          f2(n), north(n), sv(3 * n) {}
};

// New unit discharge of n interior faces of one row: face k lies between cells ia + k (left/up) and ib + k
// (right/down), its header pair is tab + 2 k (slot stride fs); its momentum inputs are qc = Q[k], qs = S1[k] + S2[k] and
// qp = ((P1[k] + P2[k]) + (P3[k] + P4[k])) / 4. In chunks of kFaceChunk faces: a chunk whose faces are all
// closed (walls, dry on both sides: most of a city in a river flood) costs one test and reads no table, as
// in the scalar kernel; otherwise (1) face levels, on/off and the segment search with its division in a
// loop the compiler vectorises, (2) the table reads alone, in a scalar loop that no longer waits on the
// division, (3) the friction (inv_cbrt, sqrt, divisions) vectorised. The same operations in the same order as
// flux() one face at a time: the same bits.
static inline void faces_of_row(const Args& a, std::int64_t n, std::int64_t ia, std::int64_t ib, const double* eta,
                                const double* tab, std::int64_t fs, const double* Q, const double* S1,
                                const double* S2, const double* P1, const double* P2, const double* P3,
                                const double* P4, double g_dt, double inv_dx, double theta, double* __restrict out) {
    const std::int64_t nl = a.nl;
    const double last = static_cast<double>(nl - 2), nseg = static_cast<double>(nl - 1);
    alignas(64) double eL[kFaceChunk], eR[kFaceChunk], on[kFaceChunk], sv[kFaceChunk], seg[kFaceChunk],
        wt[kFaceChunk], hb[kFaceChunk], he[kFaceChunk], n2[kFaceChunk];
    for (std::int64_t k0 = 0; k0 < n; k0 += kFaceChunk) {
        const std::int64_t m = k0 + kFaceChunk < n ? kFaceChunk : n - k0;
        const double* __restrict zA = a.z + ia + k0;
        const double* __restrict zB = a.z + ib + k0;
        const double* __restrict hA = a.h + ia + k0;
        const double* __restrict hB = a.h + ib + k0;
        int open = 0;
        for (std::int64_t k = 0; k < m; ++k)
            open |= ((zA[k] >= kWallZ) | (zB[k] >= kWallZ) | (!(hA[k] > 0.0) & !(hB[k] > 0.0))) ? 0 : 1;
        double* __restrict o = out + k0;
        if (!open) {
            for (std::int64_t k = 0; k < m; ++k) o[k] = 0.0;
            continue;
        }
        const double* __restrict eA = eta + ia + k0;
        const double* __restrict eB = eta + ib + k0;
        const double* t0 = tab + 2 * k0;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
        for (std::int64_t k = 0; k < m; ++k) {
            // a face between two dry cells is dry: its bed is at or above both cells' lowest pixel
            const bool closed = (zA[k] >= kWallZ) | (zB[k] >= kWallZ) | (!(hA[k] > 0.0) & !(hB[k] > 0.0));
            const double l = eA[k], r = eB[k];
            const double* t = t0 + 2 * k;
            const double ef = face_level(l, r, t[0], a.face_weight);
            const double sk = ef - t[0];
            const double dz = t[1];
            const bool above = !(dz > 0.0) | (sk >= dz * nseg);
            const double x = sk / dz;
            const double xs = above ? 0.0 : x;
            const double xc = xs < 0.0 ? 0.0 : (xs > last ? last : xs);
            const double kd = static_cast<double>(static_cast<std::int32_t>(xc));  // = clamp(int(x), 0, nl - 2)
            eL[k] = l;
            eR[k] = r;
            on[k] = (!closed & (sk > kDepthThresh)) ? 1.0 : 0.0;
            sv[k] = sk;
            seg[k] = above ? -1.0 : kd;
            wt[k] = xs - kd;
        }
        for (std::int64_t k = 0; k < m; ++k) {
            const double* t = t0 + 2 * k;
            const double* p = t + 2 * fs;  // (hbar_k, h_eff_k) pairs, one slot apart
            double b = 0.0, e = 1.0;
            if (on[k] != 0.0) {
                if (seg[k] < 0.0) {
                    const double d = sv[k] - t[1] * static_cast<double>(nl - 1);
                    b = p[(nl - 1) * fs] + t[fs] * d;
                    e = p[(nl - 1) * fs + 1] + t[fs + 1] * d;
                } else {
                    const double* q = p + static_cast<std::int64_t>(seg[k]) * fs;
                    const double w = wt[k];
                    b = q[0] + w * (q[fs] - q[0]);
                    e = q[1] + w * (q[fs + 1] - q[1]);
                }
            }
            hb[k] = b;
            he[k] = e;
        }
        if (a.manning_per_cell) {
            const double* __restrict mA = a.manning + ia + k0;
            const double* __restrict mB = a.manning + ib + k0;
            for (std::int64_t k = 0; k < m; ++k) {
                const double v = 0.5 * (mA[k] + mB[k]);
                n2[k] = v * v;
            }
        } else {
            const double v = a.manning[0] * a.manning[0];
            for (std::int64_t k = 0; k < m; ++k) n2[k] = v;
        }
        const double* __restrict q = Q + k0;
        const double* __restrict s1 = S1 + k0;
        const double* __restrict s2 = S2 + k0;
        const double* __restrict p1 = P1 + k0;
        const double* __restrict p2 = P2 + k0;
        const double* __restrict p3 = P3 + k0;
        const double* __restrict p4 = P4 + k0;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
        for (std::int64_t k = 0; k < m; ++k) {
            const double qp = 0.25 * ((p1[k] + p2[k]) + (p3[k] + p4[k]));
            const double f = flux_from(eL[k], eR[k], hb[k], he[k], q[k], s1[k] + s2[k], qp, n2[k], g_dt, inv_dx, theta);
            o[k] = on[k] != 0.0 ? f : 0.0;
        }
    }
}

// boundary face of a cell with level eta; s = +1 (east/south) or -1 (west/north): array sign convention
static inline double edge(std::uint8_t kind, double value, double eta, double zc, const double* t, std::int64_t fs,
                          std::int64_t nl, double qc_arr, double s, double n2, double g_dt, double inv_dx) {
    if (kind == kEdgeWall || zc >= kWallZ) return 0.0;
    const double qc = s * qc_arr;
    if (kind == kEdgeFree) {
        double q = flux(eta, eta - value / inv_dx, eta, t, fs, nl, qc, 2.0 * qc, 0.0, n2, g_dt, inv_dx, 1.0);
        q = q > 0.0 ? q : 0.0;
        return s * q;
    }
    const double q = flux(eta, value, std::max(eta, value), t, fs, nl, qc, 2.0 * qc, 0.0, n2, g_dt, inv_dx, 1.0);
    return s * q;
}

static inline double n2_face(const Args& a, std::int64_t i0, std::int64_t i1) {
    if (!a.manning_per_cell) return a.manning[0] * a.manning[0];
    const double n = 0.5 * (a.manning[i0] + a.manning[i1]);
    return n * n;
}

static inline double n2_cell(const Args& a, std::int64_t i) {
    const double n = a.manning_per_cell ? a.manning[i] : a.manning[0];
    return n * n;
}

// the whole sub-step; compiled once per instruction set (flood_subgrid.cpp: baseline; flood_subgrid_avx2.cpp:
// x86-64-v3), the same bits in each (no FMA contraction, IEEE operations only)
static inline double step_kernel(const Args& a) {
    const std::int64_t ny = a.ny, nx = a.nx, nl = a.nl;
    const std::int64_t cw = 2 * nl + 2, fxs = a.fxs, fys = a.fys;
    // levels and raw fluxes: every entry is written before it is read, so the calling
    // thread's buffers are reused from one sub-step to the next instead of allocated and zeroed each time
    static thread_local std::vector<double> work;
    const std::size_t ncell = static_cast<std::size_t>(ny * nx), nfx = static_cast<std::size_t>(ny * (nx + 1)),
                      nfy = static_cast<std::size_t>((ny + 1) * nx), need = ncell + nfx + nfy;
    if (work.size() < need || work.size() > 4 * need) std::vector<double>(need).swap(work);
    double* const eta = work.data();
    double* const fx = eta + ncell;
    double* const fy = fx + nfx;
    std::vector<double> rowmax(static_cast<std::size_t>(ny), 0.0);
    std::vector<int> facebad(static_cast<std::size_t>(ny + 1), 0);
    // rows (cells in A, faces in B) whose inputs are not finite (elevation, depth, manning, qx, qy): checked as
    // the passes read them (a separate scan before the kernel was ~7 % of a mostly dry sub-step); when any is, the sub-step
    // stops after B, before anything the caller keeps is written, and the binding names the value
    std::vector<int> inbad(static_cast<std::size_t>(ny + 1), 0);
    const double g_dt = kGravity * a.dt, inv_dx = 1.0 / a.dx, theta = a.theta, dt_dx = a.dt / a.dx;
    const int nt = a.threads > 0 ? a.threads : 1;
    (void)nt;
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        RowScratch sc(static_cast<std::size_t>(nx + 1));  // this thread's per-row scratch
        // A: levels
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r < ny; ++r) {
            int bad = 0;
            for (std::int64_t c = 0; c < nx; ++c) {
                const std::int64_t i = r * nx + c;
                const double hc = a.h[i];
                bad |= (hc < -kNegDepth) ? kBadNegInput : 0;
                double e;
                if (a.z[i] >= kWallZ) e = a.z[i];
                else if (a.depth_cache && std::memcmp(&a.depth_cache[i], &hc, sizeof(double)) == 0) e = a.level_cache[i];
                else e = level_of(a.cells + i * cw, nl, hc);
                bad |= std::isfinite(e) ? 0 : kBadTable;
                eta[i] = e;
            }
            a.row_sums[r * kRowSlots + kBad] = static_cast<double>(bad);
            const bool ok = row_ok(a.z + r * nx, nx, false) && row_ok(a.h + r * nx, nx, false) &&
                            (!a.manning_per_cell || row_ok(a.manning + r * nx, nx, true));
            inbad[static_cast<std::size_t>(r)] = ok ? 0 : 1;
        }
        // B: raw fluxes; x faces of row r, y faces of row r (r = 0..ny)
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r <= ny; ++r) {
            if (!row_ok(a.qy + r * nx, nx, false) || (r < ny && !row_ok(a.qx + r * (nx + 1), nx + 1, false)))
                inbad[static_cast<std::size_t>(r)] |= 2;
            if (r < ny) {
                const double* q = a.qx + r * (nx + 1);
                const double* pT = a.qy + r * nx;
                const double* pB = a.qy + (r + 1) * nx;
                double* o = fx + r * (nx + 1);
                faces_of_row(a, nx - 1, r * nx, r * nx + 1, eta, a.fxt + (r * (nx + 1) + 1) * 2, fxs, q + 1, q, q + 2,
                             pT, pT + 1, pB, pB + 1, g_dt, inv_dx, theta, o + 1);
                const std::int64_t iw = r * nx, ie = r * nx + nx - 1;
                o[0] = edge(a.edge_kind[r], a.edge_value[r], eta[iw], a.z[iw], a.fxt + (r * (nx + 1)) * 2, fxs, nl, q[0],
                            -1.0, n2_cell(a, iw), g_dt, inv_dx);
                o[nx] = edge(a.edge_kind[ny + r], a.edge_value[ny + r], eta[ie], a.z[ie],
                             a.fxt + (r * (nx + 1) + nx) * 2, fxs, nl, q[nx], 1.0, n2_cell(a, ie), g_dt, inv_dx);
                double chk = 0.0;
                for (std::int64_t c = 0; c <= nx; ++c) chk += o[c] * 0.0;  // NaN if any flux is not finite
                if (!(chk == 0.0)) facebad[static_cast<std::size_t>(r)] |= kBadTable;
            }
            const double* q = a.qy + r * nx;
            double* o = fy + r * nx;
            if (r == 0 || r == ny) {
                const std::int64_t rr = (r == 0) ? 0 : ny - 1;
                const std::int64_t e0 = (r == 0) ? 2 * ny : 2 * ny + nx;
                const double s = (r == 0) ? -1.0 : 1.0;
                for (std::int64_t c = 0; c < nx; ++c) {
                    const std::int64_t i = rr * nx + c;
                    o[c] = edge(a.edge_kind[e0 + c], a.edge_value[e0 + c], eta[i], a.z[i], a.fyt + (r * nx + c) * 2, fys, nl,
                                q[c], s, n2_cell(a, i), g_dt, inv_dx);
                }
            } else {
                const double* qU = a.qy + (r - 1) * nx;
                const double* qD = a.qy + (r + 1) * nx;
                const double* pU = a.qx + (r - 1) * (nx + 1);
                const double* pD = a.qx + r * (nx + 1);
                faces_of_row(a, nx, (r - 1) * nx, r * nx, eta, a.fyt + (r * nx) * 2, fys, q, qU, qD, pU, pU + 1, pD,
                             pD + 1, g_dt, inv_dx, theta, o);
            }
            {
                double chk = 0.0;
                for (std::int64_t c = 0; c < nx; ++c) chk += o[c] * 0.0;
                if (!(chk == 0.0)) facebad[static_cast<std::size_t>(r)] |= kBadTable;
            }
        }
        // C, D and E fused over each thread's own block of rows (the static schedule's blocks): the limiter
        // factors of rows r - 1 .. r + 1 in a ring of three rows, the limited fluxes of row r's x faces and of
        // the y faces south of it written as they are made and read back by E from cache (no factor array, no
        // second pass over the raw fluxes). The y faces north of a block's first row belong to the block above:
        // recomputed into a scratch row (the same bits; nothing is written twice). Every value is the same
        // pure function of the old state as in separate passes, whatever the number of threads.
        // (the end of B is a barrier: every thread reads the same flags and takes the same branch)
        bool any_bad = false;
        for (int v : inbad) any_bad |= v != 0;
        if (!any_bad) {
        int tid = 0, nth = 1;
#ifdef TWIN_HAVE_OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const std::int64_t rb = ny * tid / nth, re = ny * (tid + 1) / nth;
        // C: the limiter factor of each cell of row r (donor cells: outflow scaled to the depth held)
        auto fac_row = [&](std::int64_t r, double* __restrict fr) {
            const double* x = fx + r * (nx + 1);
            const double* yN = fy + r * nx;
            const double* yS = fy + (r + 1) * nx;
            for (std::int64_t c = 0; c < nx; ++c) {
                const double out = std::max(-x[c], 0.0) + std::max(x[c + 1], 0.0) + std::max(-yN[c], 0.0) +
                                   std::max(yS[c], 0.0);
                const double od = out * dt_dx;
                const double hc = std::max(a.h[r * nx + c], 0.0);
                fr[c] = od > hc ? hc / od : 1.0;
            }
            if (a.lts) {  // fast cells: the outflow through slow faces only (what the slow cells are given)
                const std::uint8_t* L = a.lts + r * nx;
                for (std::int64_t c = 0; c < nx; ++c) {
                    if (!(L[c] & kLtsFast)) continue;
                    double out = 0.0;
                    if (!(L[c] & kLtsDeep)) {  // (a deep cell has no slow face)
                        if (!(c > 0 && (L[c - 1] & kLtsDeep))) out += std::max(-x[c], 0.0);
                        if (!(c + 1 < nx && (L[c + 1] & kLtsDeep))) out += std::max(x[c + 1], 0.0);
                        if (!(r > 0 && (L[c - nx] & kLtsDeep))) out += std::max(-yN[c], 0.0);
                        if (!(r + 1 < ny && (L[c + nx] & kLtsDeep))) out += std::max(yS[c], 0.0);
                    }
                    const double od = out * dt_dx;
                    const double hc = std::max(a.h[r * nx + c], 0.0);
                    fr[c] = od > hc ? hc / od : 1.0;
                }
            }
        };
        // D: the limited y faces of face row j (between cell rows j - 1 and j; donor = upwind cell, outside
        // the domain the factor is 1: fu or fd null)
        auto y_row = [&](std::int64_t j, const double* fu, const double* fd, double* __restrict o) {
            const double* y = fy + j * nx;
            for (std::int64_t c = 0; c < nx; ++c) {
                const double v = y[c];
                const double u = fu ? fu[c] : 1.0;
                const double d = fd ? fd[c] : 1.0;
                o[c] = v * (v > 0.0 ? u : d);
            }
        };
        double* fP = sc.f0.data();  // factors of row r - 1, r, r + 1
        double* fC = sc.f1.data();
        double* fN = sc.f2.data();
        double* north = rb == 0 ? a.qy_out : sc.north.data();
        if (rb < re) {
            if (rb > 0) fac_row(rb - 1, fP);
            fac_row(rb, fC);
            y_row(rb, rb > 0 ? fP : nullptr, fC, north);
        }
        // E: continuity, sources, trackers, row sums
        for (std::int64_t r = rb; r < re; ++r) {
            if (r + 1 < ny) fac_row(r + 1, fN);
            {  // D: the x faces of row r, the y faces south of it
                const double* x = fx + r * (nx + 1);
                double* o = a.qx_out + r * (nx + 1);
                const double* f = fC;
                o[0] = x[0] < 0.0 ? x[0] * f[0] : x[0];
                for (std::int64_t c = 1; c < nx; ++c) o[c] = x[c] * (x[c] > 0.0 ? f[c - 1] : f[c]);
                o[nx] = x[nx] > 0.0 ? x[nx] * f[nx - 1] : x[nx];
                y_row(r + 1, fC, r + 1 < ny ? fN : nullptr, a.qy_out + (r + 1) * nx);
            }
            const double* qxo = a.qx_out + r * (nx + 1);
            const double* qyN = r == rb ? north : a.qy_out + r * nx;
            const double* qyS = a.qy_out + (r + 1) * nx;
            const double w0 = 1.0 - a.rain_w, w1 = a.rain_w;
            const double big = std::numeric_limits<double>::max();
            double rain_sum = 0.0, lost_sum = 0.0, hm = 0.0;
            int bad = static_cast<int>(a.row_sums[r * kRowSlots + kBad]) | facebad[static_cast<std::size_t>(r)] |
                      (r == ny - 1 ? facebad[static_cast<std::size_t>(ny)] : 0);
            // rain and loss of this row's cells, then the cell update in a loop the compiler vectorises (the
            // same operations in the same order as one cell at a time), then the sums and the levels in order
            double* __restrict rrow = sc.rr.data();
            double* __restrict lrow = sc.lc.data();
            double* __restrict rsum = sc.rs.data();
            double* __restrict lsum = sc.ls.data();
            if (a.rain0 && a.rain_per_cell) {
                const double* r0 = a.rain0 + r * nx;
                const double* r1 = a.rain1 + r * nx;
                for (std::int64_t c = 0; c < nx; ++c) rrow[c] = a.rain_scale * (w0 * r0[c] + w1 * r1[c]);
            } else {
                const double ru = a.rain0 ? a.rain_scale * (w0 * a.rain0[0] + w1 * a.rain1[0]) : 0.0;
                for (std::int64_t c = 0; c < nx; ++c) rrow[c] = ru;
            }
            if (a.loss && a.loss_per_cell) {
                const double* lp = a.loss + r * nx;
                for (std::int64_t c = 0; c < nx; ++c) lrow[c] = a.loss_scale * lp[c];
            } else {
                const double lu = a.loss ? a.loss_scale * a.loss[0] : 0.0;
                for (std::int64_t c = 0; c < nx; ++c) lrow[c] = lu;
            }
            {
                const double* __restrict hin = a.h + r * nx;
                const double* __restrict zr = a.z + r * nx;
                double* __restrict hout = a.h_out + r * nx;
                double* __restrict msp = a.maxspeed + r * nx;
                double* __restrict mh = a.maxh + r * nx;
                double* __restrict arr = a.arrival + r * nx;
                const double t_end = a.t_end;
                const std::uint8_t* L = a.lts ? a.lts + r * nx : nullptr;
                bool any_fast = false;
                if (L)
                    for (std::int64_t c = 0; c < nx; ++c)
                        if (L[c] & kLtsFast) {  // kept as they are (below): the sub-cycle advances them
                            any_fast = true;
                            sc.sv[3 * c] = msp[c];
                            sc.sv[3 * c + 1] = mh[c];
                            sc.sv[3 * c + 2] = arr[c];
                        }
                for (std::int64_t c = 0; c < nx; ++c) {  // rain and loss rates of the cells that get them
                    const double rr = rrow[c], lc = lrow[c];
                    const bool ok = (rr >= 0.0 && rr <= big && lc >= 0.0 && lc <= big) || zr[c] >= kWallZ;
                    bad |= ok ? 0 : kBadSource;
                }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
                for (std::int64_t c = 0; c < nx; ++c) {
                    const double qW = qxo[c], qE = qxo[c + 1], qN = qyN[c], qS = qyS[c];
                    double hn = hin[c] + dt_dx * ((qW - qE) + (qN - qS));
                    const bool wall = zr[c] >= kWallZ;
                    const double rr = rrow[c], lc = lrow[c];
                    const double hr = hn + rr;
                    const double hp = hr > 0.0 ? hr : 0.0;
                    const double l = hp < lc ? hp : lc;
                    const double hw = hr - l;
                    hn = wall ? hn : hw;  // walls get no rain and lose nothing
                    rsum[c] = wall ? 0.0 : rr;  // (other arrays than the rates read: plain stores vectorise)
                    lsum[c] = wall ? 0.0 : l;
                    hout[c] = hn;
                    const double wet = hn > kSpeedDepth ? 1.0 : 0.0;
                    const double inv = wet * (0.5 / (hn > kSpeedDepth ? hn : 1.0));
                    const double u = (qW + qE) * inv, v = (qN + qS) * inv;
                    const double sp = u * u + v * v;
                    const double m0 = mh[c];
                    msp[c] = msp[c] < sp ? sp : msp[c];
                    arr[c] = ((m0 <= kArrivalDepth) & (hn > kArrivalDepth)) ? t_end : arr[c];
                    mh[c] = m0 < hn ? hn : m0;
                }
                if (any_fast)
                    for (std::int64_t c = 0; c < nx; ++c)
                        if (L[c] & kLtsFast) {
                            hout[c] = hin[c];
                            rsum[c] = 0.0;
                            lsum[c] = 0.0;
                            msp[c] = sc.sv[3 * c];
                            mh[c] = sc.sv[3 * c + 1];
                            arr[c] = sc.sv[3 * c + 2];
                        }
                for (std::int64_t c = 0; c < nx; ++c) {
                    const double hn = hout[c];
                    bad |= (std::isfinite(hn) ? 0 : kBadNonFinite) | (hn < -kNegDepth ? kBadNegOutput : 0);
                }
            }
            for (std::int64_t c = 0; c < nx; ++c) {  // in order: the row sums are the same bits
                rain_sum += rsum[c];
                lost_sum += lsum[c];
            }
            {
                // levels of the new depths: the segment search and table reads per cell, then the level
                // z0 + a * ((h - h0) / b) (level_of's formula; above the table a = 1, b = the top area
                // fraction) and the trackers in a loop the compiler vectorises
                double* __restrict z0 = sc.z0.data();
                double* __restrict ka = sc.ka.data();
                double* __restrict h0 = sc.h0.data();
                double* __restrict kb = sc.kb.data();
                double* __restrict zm = sc.zm.data();
                double* __restrict dl = sc.dl.data();
                const double* __restrict hout = a.h_out + r * nx;
                const double* __restrict zr = a.z + r * nx;
                for (std::int64_t c = 0; c < nx; ++c) {
                    const std::int64_t i = r * nx + c;
                    const double* cr = a.cells + i * cw;
                    const double hn = hout[c];
                    double v0 = 0.0, va = 0.0, w0 = 0.0, vb = 1.0;  // dry cells and walls: selected below
                    // a dry cell's level is its bed z (= the table's z_min on every cell that is not a wall: the
                    // caller's contract), read from z rather than from the table: a dry city reads no table row
                    double zmc = zr[c];
                    if (zr[c] < kWallZ && hn > 0.0) {
                        zmc = cr[0];
                        const double* zk = cr + 2;
                        const double* hk = cr + 2 + nl;
                        if (hn >= hk[nl - 1]) {
                            v0 = zk[nl - 1];
                            va = 1.0;
                            w0 = hk[nl - 1];
                            vb = cr[1];
                        } else {
                            const std::int64_t lo = a.level_segment ? segment_from(hk, nl, hn, a.level_segment + i)
                                                                    : segment_of(hk, nl, hn);
                            v0 = zk[lo];
                            va = zk[lo + 1] - zk[lo];
                            w0 = hk[lo];
                            vb = hk[lo + 1] - hk[lo];
                        }
                    }
                    zm[c] = zmc;
                    z0[c] = v0;
                    ka[c] = va;
                    h0[c] = w0;
                    kb[c] = vb;
                }
                double* __restrict lc = a.level_cache ? a.level_cache + r * nx : sc.lcache.data();  // (scratch: unused)
                double* __restrict dc = a.level_cache ? a.depth_cache + r * nx : sc.dcache.data();
                double* __restrict ml = a.maxlevel + r * nx;
                const double ninf = -std::numeric_limits<double>::infinity();
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
                for (std::int64_t c = 0; c < nx; ++c) {
                    const double hn = hout[c];
                    const double lf = z0[c] + ka[c] * ((hn - h0[c]) / kb[c]);
                    const double ld = hn > 0.0 ? lf : zm[c];
                    const double lev = zr[c] >= kWallZ ? ninf : ld;  // a wall's tracked level stays as it is
                    lc[c] = lev;
                    dc[c] = hn;
                    const double m0 = ml[c];
                    ml[c] = m0 < lev ? lev : m0;
                    dl[c] = lev - zm[c];
                }
                if (a.lts)  // a fast cell's depth is the sub-cycle's to report
                    for (std::int64_t c = 0; c < nx; ++c)
                        if (a.lts[r * nx + c] & kLtsFast) dl[c] = 0.0;
                for (std::int64_t c = 0; c < nx; ++c)
                    if (dl[c] > hm) hm = dl[c];
                for (std::int64_t k = 0; k < a.n_thr; ++k) {
                    const double th = a.count_thr[k];
                    double n = 0.0;
                    for (std::int64_t c = 0; c < nx; ++c) n += dl[c] > th ? 1.0 : 0.0;
                    a.depth_counts[r * a.n_thr + k] = n;
                }
            }
            double bin = 0.0, bout = 0.0;
            {
                // (a fast cell's edge faces are the sub-cycle's to count)
                const std::uint8_t* L = a.lts ? a.lts + r * nx : nullptr;
                const double w = (L && (L[0] & kLtsFast)) ? 0.0 : qxo[0];
                const double e = (L && (L[nx - 1] & kLtsFast)) ? 0.0 : qxo[nx];
                if (w > 0.0) bin += w; else bout -= w;
                if (e < 0.0) bin -= e; else bout += e;
                if (r == 0)
                    for (std::int64_t c = 0; c < nx; ++c) {
                        const double f = (L && (L[c] & kLtsFast)) ? 0.0 : qyN[c];
                        if (f > 0.0) bin += f; else bout -= f;
                    }
                if (r == ny - 1)
                    for (std::int64_t c = 0; c < nx; ++c) {
                        const double f = (L && (L[c] & kLtsFast)) ? 0.0 : qyS[c];
                        if (f < 0.0) bin -= f; else bout += f;
                    }
            }
            double* s = a.row_sums + r * kRowSlots;
            s[kRain] = rain_sum;
            s[kLost] = lost_sum;
            s[kBndIn] = bin;
            s[kBndOut] = bout;
            s[kBad] = static_cast<double>(bad);
            rowmax[static_cast<std::size_t>(r)] = hm;
            double* const t = fP;  // the ring moves down a row
            fP = fC;
            fC = fN;
            fN = t;
        }
        }  // !any_bad
    }
    for (int v : inbad)
        if (v) return std::numeric_limits<double>::quiet_NaN();  // inputs not finite: nothing kept was written
    double hmax = 0.0;
    for (double v : rowmax) hmax = v > hmax ? v : hmax;
    return hmax;
}


// per-instruction-set entry points
double step_base(const Args& a);
double step_avx2(const Args& a);

}  // namespace subgrid
}  // namespace twin
