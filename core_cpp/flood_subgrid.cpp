// Subgrid local-inertial flood kernel (twin/flood/subgrid.py builds the tables; formulation there and in
// docs/design/subgrid-tables.md). float64 only. A separate function from flood_inertial_step: the
// regular path is untouched (bit-identical).
//
// State on the coarse grid: h = mean depth (volume / cell area), qx (ny, nx+1), qy (ny+1, nx) unit
// discharges per coarse face width, as the regular kernel. Tables (C-contiguous float64):
//   cells (ny, nx, 2N+2):    z_min, valid fraction, z_0 .. z_{N-1}, h_0 .. h_{N-1} (mean depth at level z_k)
//   faces_x (ny, nx+1, 2N+4), faces_y (ny+1, nx, 2N+4):
//                            z_min, dz, width fraction, h_eff slope, hbar_0, h_eff_0, hbar_1, h_eff_1 ..
// One sub-step, five passes over rows (each an OpenMP loop, static schedule; every value written depends
// only on the old state, never on the thread count; reductions go to per-row slots):
//   A level of each cell from its mean depth (inverse of the volume table)
//   B raw face fluxes: q+ = (theta q + (1-theta)/2 (q_l + q_r) - g hbar dt d(eta)/dx)
//                          / (1 + g n^2 dt |q| / h_eff^(7/3)), eta_f = max(eta_L, eta_R),
//     with LISFLOOD-FP's fallback to theta = 1 when the centred flux runs against the head drop
//   C positivity limiter factor per cell (as the regular kernel)
//   D limited fluxes
//   E continuity, rain, losses, tracked maxima (mean depth, speed squared, arrival, level)
#include "common.hpp"
#include "inv_cbrt.hpp"
#include "modules.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
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
constexpr double kMinEff = 1.0e-6;  // floor of h_eff in the friction term (keeps it finite on a barely wet face)
enum RowSlot { kRain = 0, kLost = 1, kBndIn = 2, kBndOut = 3, kBad = 4, kRowSlots = 5 };
enum BadBits { kBadNonFinite = 1, kBadNegInput = 2, kBadSource = 4, kBadNegOutput = 8, kBadTable = 16 };
enum EdgeKind : std::uint8_t { kEdgeWall = 0, kEdgeFree = 1, kEdgeStage = 2 };

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
    const double* fxt;
    const double* fyt;
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
    double* row_sums;
    double dx, dt, theta, t_end;
    int threads;
};

// level of a cell holding mean depth h (cell table row c)
static inline double level_of(const double* c, std::int64_t nl, double h) {
    const double zmin = c[0], top = c[1];
    const double* zk = c + 2;
    const double* hk = c + 2 + nl;
    if (!(h > 0.0)) return zmin;
    if (h >= hk[nl - 1]) return zk[nl - 1] + (h - hk[nl - 1]) / top;
    // largest lo with hk[lo] <= h (hk[0] = 0 < h, hk[nl-1] > h): branch-free halving
    std::int64_t lo = 0, n = nl - 1;
    while (n > 1) {
        const std::int64_t half = n / 2;
        lo = (hk[lo + half] <= h) ? lo + half : lo;
        n -= half;
    }
    const std::int64_t hi = lo + 1;  // hk[hi] > h >= hk[lo]: the division is safe
    return zk[lo] + (zk[hi] - zk[lo]) * ((h - hk[lo]) / (hk[hi] - hk[lo]));
}

// face cross-section (hbar) and conveyance depth (h_eff) at face level eta (face table row t)
static inline void face_at(const double* t, std::int64_t nl, double eta, double* hbar, double* heff) {
    const double zmin = t[0], dz = t[1], frac = t[2], eslope = t[3];
    const double* p = t + 4;  // (hbar_k, h_eff_k) pairs
    const double s = eta - zmin;
    const double span = dz * static_cast<double>(nl - 1);
    if (!(dz > 0.0) || s >= span) {
        const double d = s - span;
        *hbar = p[2 * (nl - 1)] + frac * d;
        *heff = p[2 * (nl - 1) + 1] + eslope * d;
        return;
    }
    const double x = s / dz;
    std::int64_t k = static_cast<std::int64_t>(x);
    if (k > nl - 2) k = nl - 2;
    if (k < 0) k = 0;
    const double w = x - static_cast<double>(k);
    const double* q = p + 2 * k;
    *hbar = q[0] + w * (q[2] - q[0]);
    *heff = q[1] + w * (q[3] - q[1]);
}

// new unit discharge through one face from L to R; ef = the face level; 0 on a dry face
static inline double flux(double eL, double eR, double ef, const double* t, std::int64_t nl, double qc, double qs,
                          double qp, double n2, double g_dt, double inv_dx, double theta) {
    if (!(ef - t[0] > kDepthThresh)) return 0.0;
    double hbar, heff;
    face_at(t, nl, ef, &hbar, &heff);
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

// boundary face of a cell with level eta; s = +1 (east/south) or -1 (west/north): array sign convention
static inline double edge(std::uint8_t kind, double value, double eta, double zc, const double* t, std::int64_t nl,
                          double qc_arr, double s, double n2, double g_dt, double inv_dx) {
    if (kind == kEdgeWall || zc >= kWallZ) return 0.0;
    const double qc = s * qc_arr;
    if (kind == kEdgeFree) {
        double q = flux(eta, eta - value / inv_dx, eta, t, nl, qc, 2.0 * qc, 0.0, n2, g_dt, inv_dx, 1.0);
        q = q > 0.0 ? q : 0.0;
        return s * q;
    }
    const double q = flux(eta, value, std::max(eta, value), t, nl, qc, 2.0 * qc, 0.0, n2, g_dt, inv_dx, 1.0);
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

double step(const Args& a) {
    const std::int64_t ny = a.ny, nx = a.nx, nl = a.nl;
    const std::int64_t cw = 2 * nl + 2, fw = 2 * nl + 4;
    std::vector<double> eta(static_cast<std::size_t>(ny * nx));
    std::vector<double> fx(static_cast<std::size_t>(ny * (nx + 1)));
    std::vector<double> fy(static_cast<std::size_t>((ny + 1) * nx));
    std::vector<double> fac(static_cast<std::size_t>(ny * nx));
    std::vector<double> rowmax(static_cast<std::size_t>(ny), 0.0);
    std::vector<int> facebad(static_cast<std::size_t>(ny + 1), 0);
    const double g_dt = kGravity * a.dt, inv_dx = 1.0 / a.dx, theta = a.theta, dt_dx = a.dt / a.dx;
    const int nt = a.threads > 0 ? a.threads : 1;
    (void)nt;
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
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
        }
        // B: raw fluxes; x faces of row r, y faces of row r (r = 0..ny)
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r <= ny; ++r) {
            if (r < ny) {
                const double* q = a.qx + r * (nx + 1);
                const double* pT = a.qy + r * nx;
                const double* pB = a.qy + (r + 1) * nx;
                double* o = fx.data() + r * (nx + 1);
                for (std::int64_t c = 1; c < nx; ++c) {
                    const std::int64_t iL = r * nx + c - 1, iR = iL + 1;
                    if (a.z[iL] >= kWallZ || a.z[iR] >= kWallZ || (!(a.h[iL] > 0.0) && !(a.h[iR] > 0.0))) {
                        o[c] = 0.0;  // a face between two dry cells is dry: its bed is at or above both cells' lowest pixel
                        continue;
                    }
                    const double eL = eta[iL], eR = eta[iR];
                    const double qp = 0.25 * ((pT[c - 1] + pT[c]) + (pB[c - 1] + pB[c]));
                    o[c] = flux(eL, eR, std::max(eL, eR), a.fxt + (r * (nx + 1) + c) * fw, nl, q[c], q[c - 1] + q[c + 1],
                                qp, n2_face(a, iL, iR), g_dt, inv_dx, theta);
                }
                const std::int64_t iw = r * nx, ie = r * nx + nx - 1;
                o[0] = edge(a.edge_kind[r], a.edge_value[r], eta[iw], a.z[iw], a.fxt + (r * (nx + 1)) * fw, nl, q[0],
                            -1.0, n2_cell(a, iw), g_dt, inv_dx);
                o[nx] = edge(a.edge_kind[ny + r], a.edge_value[ny + r], eta[ie], a.z[ie],
                             a.fxt + (r * (nx + 1) + nx) * fw, nl, q[nx], 1.0, n2_cell(a, ie), g_dt, inv_dx);
                double chk = 0.0;
                for (std::int64_t c = 0; c <= nx; ++c) chk += o[c] * 0.0;  // NaN if any flux is not finite
                if (!(chk == 0.0)) facebad[static_cast<std::size_t>(r)] |= kBadTable;
            }
            const double* q = a.qy + r * nx;
            double* o = fy.data() + r * nx;
            if (r == 0 || r == ny) {
                const std::int64_t rr = (r == 0) ? 0 : ny - 1;
                const std::int64_t e0 = (r == 0) ? 2 * ny : 2 * ny + nx;
                const double s = (r == 0) ? -1.0 : 1.0;
                for (std::int64_t c = 0; c < nx; ++c) {
                    const std::int64_t i = rr * nx + c;
                    o[c] = edge(a.edge_kind[e0 + c], a.edge_value[e0 + c], eta[i], a.z[i], a.fyt + (r * nx + c) * fw, nl,
                                q[c], s, n2_cell(a, i), g_dt, inv_dx);
                }
            } else {
                const double* qU = a.qy + (r - 1) * nx;
                const double* qD = a.qy + (r + 1) * nx;
                const double* pU = a.qx + (r - 1) * (nx + 1);
                const double* pD = a.qx + r * (nx + 1);
                for (std::int64_t c = 0; c < nx; ++c) {
                    const std::int64_t iU = (r - 1) * nx + c, iD = r * nx + c;
                    if (a.z[iU] >= kWallZ || a.z[iD] >= kWallZ || (!(a.h[iU] > 0.0) && !(a.h[iD] > 0.0))) {
                        o[c] = 0.0;
                        continue;
                    }
                    const double eU = eta[iU], eD = eta[iD];
                    const double qp = 0.25 * ((pU[c] + pU[c + 1]) + (pD[c] + pD[c + 1]));
                    o[c] = flux(eU, eD, std::max(eU, eD), a.fyt + (r * nx + c) * fw, nl, q[c], qU[c] + qD[c], qp,
                                n2_face(a, iU, iD), g_dt, inv_dx, theta);
                }
            }
            {
                double chk = 0.0;
                for (std::int64_t c = 0; c < nx; ++c) chk += o[c] * 0.0;
                if (!(chk == 0.0)) facebad[static_cast<std::size_t>(r)] |= kBadTable;
            }
        }
        // C: limiter factors
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r < ny; ++r) {
            const double* x = fx.data() + r * (nx + 1);
            const double* yN = fy.data() + r * nx;
            const double* yS = fy.data() + (r + 1) * nx;
            for (std::int64_t c = 0; c < nx; ++c) {
                const double out = std::max(-x[c], 0.0) + std::max(x[c + 1], 0.0) + std::max(-yN[c], 0.0) +
                                   std::max(yS[c], 0.0);
                const double od = out * dt_dx;
                const double hc = std::max(a.h[r * nx + c], 0.0);
                fac[r * nx + c] = od > hc ? hc / od : 1.0;
            }
        }
        // D: limited fluxes (donor = upwind cell; outside the domain the factor is 1)
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r <= ny; ++r) {
            if (r < ny) {
                const double* x = fx.data() + r * (nx + 1);
                double* o = a.qx_out + r * (nx + 1);
                const double* f = fac.data() + r * nx;
                o[0] = x[0] < 0.0 ? x[0] * f[0] : x[0];
                for (std::int64_t c = 1; c < nx; ++c) o[c] = x[c] * (x[c] > 0.0 ? f[c - 1] : f[c]);
                o[nx] = x[nx] > 0.0 ? x[nx] * f[nx - 1] : x[nx];
            }
            const double* y = fy.data() + r * nx;
            double* o = a.qy_out + r * nx;
            for (std::int64_t c = 0; c < nx; ++c) {
                const double v = y[c];
                const double fu = r > 0 ? fac[(r - 1) * nx + c] : 1.0;
                const double fd = r < ny ? fac[r * nx + c] : 1.0;
                o[c] = v * (v > 0.0 ? fu : fd);
            }
        }
        // E: continuity, sources, trackers, row sums
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (std::int64_t r = 0; r < ny; ++r) {
            const double* qxo = a.qx_out + r * (nx + 1);
            const double* qyN = a.qy_out + r * nx;
            const double* qyS = a.qy_out + (r + 1) * nx;
            const double w0 = 1.0 - a.rain_w, w1 = a.rain_w;
            const double big = std::numeric_limits<double>::max();
            double rain_sum = 0.0, lost_sum = 0.0, hm = 0.0;
            int bad = static_cast<int>(a.row_sums[r * kRowSlots + kBad]) | facebad[static_cast<std::size_t>(r)] |
                      (r == ny - 1 ? facebad[static_cast<std::size_t>(ny)] : 0);
            for (std::int64_t c = 0; c < nx; ++c) {
                const std::int64_t i = r * nx + c;
                const double qW = qxo[c], qE = qxo[c + 1], qN = qyN[c], qS = qyS[c];
                double hn = a.h[i] + dt_dx * ((qW - qE) + (qN - qS));
                const bool wall = a.z[i] >= kWallZ;
                if (!wall) {
                    double rr = 0.0;
                    if (a.rain0) {
                        const std::int64_t k = a.rain_per_cell ? i : 0;
                        rr = a.rain_scale * (w0 * a.rain0[k] + w1 * a.rain1[k]);
                        bad |= (rr >= 0.0 && rr <= big) ? 0 : kBadSource;
                    }
                    hn += rr;
                    double lc = 0.0;
                    if (a.loss) {
                        lc = a.loss_scale * a.loss[a.loss_per_cell ? i : 0];
                        bad |= (lc >= 0.0 && lc <= big) ? 0 : kBadSource;
                    }
                    const double hp = hn > 0.0 ? hn : 0.0;
                    const double l = hp < lc ? hp : lc;
                    hn -= l;
                    rain_sum += rr;
                    lost_sum += l;
                }
                a.h_out[i] = hn;
                if (!std::isfinite(hn)) bad |= kBadNonFinite;
                if (hn < -kNegDepth) bad |= kBadNegOutput;
                const double wet = hn > kSpeedDepth ? 1.0 : 0.0;
                const double inv = wet * (0.5 / (hn > kSpeedDepth ? hn : 1.0));
                const double u = (qW + qE) * inv, v = (qN + qS) * inv;
                const double sp = u * u + v * v;
                if (a.maxspeed[i] < sp) a.maxspeed[i] = sp;
                if (a.maxh[i] <= kArrivalDepth && hn > kArrivalDepth) a.arrival[i] = a.t_end;
                if (a.maxh[i] < hn) a.maxh[i] = hn;
                if (!wall) {
                    const double lev = level_of(a.cells + i * cw, nl, hn);
                    if (a.level_cache) {
                        a.level_cache[i] = lev;
                        a.depth_cache[i] = hn;
                    }
                    if (a.maxlevel[i] < lev) a.maxlevel[i] = lev;
                    const double dl = lev - a.cells[i * cw];
                    if (dl > hm) hm = dl;
                }
            }
            double bin = 0.0, bout = 0.0;
            {
                const double w = qxo[0], e = qxo[nx];
                if (w > 0.0) bin += w; else bout -= w;
                if (e < 0.0) bin -= e; else bout += e;
                if (r == 0)
                    for (std::int64_t c = 0; c < nx; ++c) {
                        const double f = qyN[c];
                        if (f > 0.0) bin += f; else bout -= f;
                    }
                if (r == ny - 1)
                    for (std::int64_t c = 0; c < nx; ++c) {
                        const double f = qyS[c];
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
        }
    }
    double hmax = 0.0;
    for (double v : rowmax) hmax = v > hmax ? v : hmax;
    return hmax;
}

}  // namespace subgrid

namespace {

using dcarr = carray<double>;

const double* opt_arr(const py::object& o, const char* name, py::ssize_t nfull, bool* per_cell) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<dcarr>(o))
        throw py::type_error(std::string(name) + ": expected a C-contiguous numpy array of dtype float64 (no conversion "
                             "is made), got " + py::str(py::type::of(o)).cast<std::string>());
    auto a = py::reinterpret_borrow<dcarr>(o);
    if (a.size() != 1 && a.size() != nfull) {
        std::ostringstream s;
        s << name << ": expected 1 value or " << nfull << " values (one per cell), got " << a.size();
        fail(s.str());
    }
    *per_cell = (a.size() == nfull && nfull != 1);
    return a.data();
}

void require_table(const dcarr& t, py::ssize_t d0, py::ssize_t d1, py::ssize_t width, const char* name) {
    if (t.ndim() != 3 || t.shape(0) != d0 || t.shape(1) != d1 || t.shape(2) != width) {
        std::ostringstream s;
        s << name << ": expected shape (" << d0 << ", " << d1 << ", " << width << "), got " << shape_str(t);
        fail(s.str());
    }
}

void check_tables(const dcarr& cells, const dcarr& faces_x, const dcarr& faces_y) {
    using namespace subgrid;
    if (cells.ndim() != 3 || cells.shape(2) < 6 || cells.shape(2) % 2)
        fail("cells: expected a (ny, nx, 2N+2) table with N >= 2, got shape " + shape_str(cells));
    const py::ssize_t ny = cells.shape(0), nx = cells.shape(1), nl = (cells.shape(2) - 2) / 2;
    require_table(faces_x, ny, nx + 1, 2 * nl + 4, "faces_x");
    require_table(faces_y, ny + 1, nx, 2 * nl + 4, "faces_y");
    // finite; valid fraction in (0, 1] (walls: 0); levels from z_min, non-decreasing; mean depths from 0,
    // non-decreasing (the level inversion needs it)
    {
        const double* c = cells.data();
        for (py::ssize_t i = 0; i < ny * nx; ++i) {
            const double* row = c + i * (2 * nl + 2);
            for (py::ssize_t k = 0; k < 2 * nl + 2; ++k)
                if (!std::isfinite(row[k])) fail("cells: non-finite value in the table of cell " + std::to_string(i));
            const bool wall = row[0] >= kWallZ;
            if (!(row[1] >= 0.0 && row[1] <= 1.0) || (!wall && !(row[1] > 0.0)))
                fail("cells: cell " + std::to_string(i) + " has a valid fraction outside (0, 1]");
            if (wall) continue;
            if (row[2] != row[0] || row[2 + nl] != 0.0)
                fail("cells: the table of cell " + std::to_string(i) + " must start at z_min with depth 0");
            for (py::ssize_t k = 1; k < nl; ++k)
                if (!(row[2 + k] >= row[1 + k]) || !(row[2 + nl + k] >= row[1 + nl + k]))
                    fail("cells: the volume table of cell " + std::to_string(i) + " decreases at level " +
                         std::to_string(k));
        }
        for (const dcarr* t : {&faces_x, &faces_y}) {
            const double* p = t->data();
            for (py::ssize_t i = 0; i < t->size(); ++i)
                if (!std::isfinite(p[i])) fail(std::string(t == &faces_x ? "faces_x" : "faces_y") + ": non-finite value");
        }
    }
    for (const dcarr* t : {&faces_x, &faces_y}) {
        const char* name = t == &faces_x ? "faces_x" : "faces_y";
        const double* p = t->data();
        const py::ssize_t nf = t->shape(0) * t->shape(1);
        for (py::ssize_t i = 0; i < nf; ++i) {
            const double* row = p + i * (2 * nl + 4);
            if (!(row[1] >= 0.0) || !(row[2] >= 0.0 && row[2] <= 1.0) || !(row[3] >= 0.0))
                fail(std::string(name) + ": face " + std::to_string(i) + " has a negative level spacing or a width "
                     "fraction outside [0, 1]");
            for (py::ssize_t k = 4; k < 2 * nl + 4; ++k)
                if (!(row[k] >= 0.0)) fail(std::string(name) + ": face " + std::to_string(i) + " has a negative depth");
        }
    }
}

double subgrid_binding(dcarr z, dcarr h, dcarr qx, dcarr qy, dcarr h_out, dcarr qx_out, dcarr qy_out, dcarr cells,
                       dcarr faces_x, dcarr faces_y, dcarr manning, carray<std::uint8_t> edge_kind, dcarr edge_value,
                       dcarr maxh, dcarr maxspeed, dcarr arrival, dcarr maxlevel, dcarr row_sums, double dx, double dt,
                       double theta, double t_end, py::object rain0, py::object rain1, double rain_w,
                       double rain_scale, py::object loss, double loss_scale, int threads, py::object level_cache,
                       py::object depth_cache) {
    using namespace subgrid;
    if (z.ndim() != 2) fail("elevation: expected a 2-D (ny, nx) array, got shape " + shape_str(z));
    const py::ssize_t ny = z.shape(0), nx = z.shape(1);
    if (ny < 1 || nx < 1) fail("elevation: grid must have at least one cell, got shape " + shape_str(z));
    require_shape2(h, ny, nx, "depth");
    require_shape2(h_out, ny, nx, "depth_out");
    require_shape2(qx, ny, nx + 1, "qx");
    require_shape2(qx_out, ny, nx + 1, "qx_out");
    require_shape2(qy, ny + 1, nx, "qy");
    require_shape2(qy_out, ny + 1, nx, "qy_out");
    require_shape2(maxh, ny, nx, "max_depth");
    require_shape2(maxspeed, ny, nx, "max_speed");
    require_shape2(arrival, ny, nx, "arrival_time");
    require_shape2(maxlevel, ny, nx, "max_level");
    require_shape2(row_sums, ny, kRowSlots, "row_sums");
    require_size(edge_kind, 2 * ny + 2 * nx, "edge_kind");
    require_size(edge_value, 2 * ny + 2 * nx, "edge_value");
    if (cells.ndim() != 3 || cells.shape(2) < 6 || cells.shape(2) % 2)
        fail("cells: expected a (ny, nx, 2N+2) table with N >= 2, got shape " + shape_str(cells));
    const py::ssize_t nl = (cells.shape(2) - 2) / 2;
    require_table(cells, ny, nx, 2 * nl + 2, "cells");
    require_table(faces_x, ny, nx + 1, 2 * nl + 4, "faces_x");
    require_table(faces_y, ny + 1, nx, 2 * nl + 4, "faces_y");
    if (manning.size() != 1 && manning.size() != ny * nx) {
        std::ostringstream s;
        s << "manning: expected 1 value or " << ny * nx << " (one per cell), got " << manning.size();
        fail(s.str());
    }
    require_nonnegative(manning, "manning");
    checked_scalar<double>(dx, "cell_size (dx)", true, true);
    checked_scalar<double>(dt, "dt", true, true);
    checked_scalar<double>(t_end, "t_end", false);
    if (!(theta >= 0.0 && theta <= 1.0)) fail("theta: must be in [0, 1], got " + std::to_string(theta));
    if (threads < 0) fail("threads: must be >= 0 (0 = default), got " + std::to_string(threads));
    const std::uint8_t* ek = edge_kind.data();
    for (py::ssize_t i = 0; i < edge_kind.size(); ++i)
        if (ek[i] > kEdgeStage)
            fail("edge_kind: value " + std::to_string(int(ek[i])) + " at index " + std::to_string(i) +
                 " is not 0 (wall), 1 (free) or 2 (stage)");
    require_finite(edge_value, "edge_value");
    require_finite(z, "elevation");
    require_finite(h, "depth");
    require_finite(qx, "qx");
    require_finite(qy, "qy");
    Args a{};
    a.ny = ny;
    a.nx = nx;
    a.nl = nl;
    a.z = z.data();
    a.h = h.data();
    a.qx = qx.data();
    a.qy = qy.data();
    a.h_out = h_out.mutable_data();
    a.qx_out = qx_out.mutable_data();
    a.qy_out = qy_out.mutable_data();
    a.cells = cells.data();
    a.fxt = faces_x.data();
    a.fyt = faces_y.data();
    a.manning = manning.data();
    a.manning_per_cell = (manning.size() == ny * nx && ny * nx != 1);
    a.edge_kind = ek;
    a.edge_value = edge_value.data();
    bool rpc0 = false, rpc1 = false, lpc = false;
    a.rain0 = opt_arr(rain0, "rain0", ny * nx, &rpc0);
    a.rain1 = opt_arr(rain1, "rain1", ny * nx, &rpc1);
    if ((a.rain0 == nullptr) != (a.rain1 == nullptr)) fail("rain0/rain1: give both or neither");
    if (a.rain0 && rpc0 != rpc1) fail("rain0/rain1: must both be uniform (1 value) or both per cell");
    a.rain_per_cell = rpc0;
    if (!(rain_w >= 0.0 && rain_w <= 1.0)) fail("rain_w: must be in [0, 1], got " + std::to_string(rain_w));
    a.rain_w = rain_w;
    a.rain_scale = checked_scalar<double>(rain_scale, "rain_scale", true);
    a.loss = opt_arr(loss, "loss", ny * nx, &lpc);
    a.loss_per_cell = lpc;
    a.loss_scale = checked_scalar<double>(loss_scale, "loss_scale", true);
    a.maxh = maxh.mutable_data();
    a.maxspeed = maxspeed.mutable_data();
    a.arrival = arrival.mutable_data();
    a.maxlevel = maxlevel.mutable_data();
    a.row_sums = row_sums.mutable_data();
    if (level_cache.is_none() != depth_cache.is_none()) fail("level_cache/depth_cache: give both or neither");
    py::ssize_t ncache = 0;
    if (!level_cache.is_none()) {
        for (const py::object* o : {&level_cache, &depth_cache})
            if (!py::isinstance<dcarr>(*o))
                throw py::type_error("level_cache/depth_cache: expected C-contiguous float64 arrays (no conversion is made)");
        auto lc = py::reinterpret_borrow<dcarr>(level_cache);
        auto dc = py::reinterpret_borrow<dcarr>(depth_cache);
        require_shape2(lc, ny, nx, "level_cache");
        require_shape2(dc, ny, nx, "depth_cache");
        if (!lc.writeable() || !dc.writeable()) fail("level_cache/depth_cache: arrays must be writeable");
        a.level_cache = lc.mutable_data();
        a.depth_cache = dc.mutable_data();
        ncache = ny * nx * 8;
    }
    {
        const py::ssize_t nsrc = a.rain_per_cell ? ny * nx : 1, nloss = a.loss_per_cell ? ny * nx : 1;
        require_no_overlap({buf("depth_out", h_out, true), buf("qx_out", qx_out, true), buf("qy_out", qy_out, true),
                            buf("max_depth", maxh, true), buf("max_speed", maxspeed, true),
                            buf("arrival_time", arrival, true), buf("max_level", maxlevel, true),
                            buf("row_sums", row_sums, true), buf("elevation", z, false), buf("depth", h, false),
                            buf("qx", qx, false), buf("qy", qy, false), buf("cells", cells, false),
                            buf("faces_x", faces_x, false), buf("faces_y", faces_y, false),
                            buf("manning", manning, false), buf("edge_kind", edge_kind, false),
                            buf("edge_value", edge_value, false), NamedBuf{"rain0", a.rain0, nsrc * 8, false},
                            NamedBuf{"rain1", a.rain1, nsrc * 8, false}, NamedBuf{"loss", a.loss, nloss * 8, false},
                            NamedBuf{"level_cache", a.level_cache, ncache, true},
                            NamedBuf{"depth_cache", a.depth_cache, ncache, true}});
    }
    a.dx = dx;
    a.dt = dt;
    a.theta = theta;
    a.t_end = t_end;
    a.threads = resolve_threads(threads);
    double hmax;
    {
        py::gil_scoped_release release;
        hmax = subgrid::step(a);
    }
    const double* rs = row_sums.data();
    for (py::ssize_t r = 0; r < ny; ++r) {
        const int bits = static_cast<int>(rs[r * kRowSlots + kBad]);
        if (bits == 0) continue;
        if (bits & kBadNegInput) {
            for (py::ssize_t c = 0; c < nx; ++c)
                if (h.data()[r * nx + c] < -kNegDepth) {
                    std::ostringstream s;
                    s << "depth: value " << h.data()[r * nx + c] << " at (row " << r << ", col " << c
                      << ") is negative: depths must be >= 0";
                    fail(s.str());
                }
        }
        if (bits & kBadSource) {
            if (a.rain0 && a.rain_per_cell) {
                require_nonnegative(py::reinterpret_borrow<dcarr>(rain0), "rain0");
                require_nonnegative(py::reinterpret_borrow<dcarr>(rain1), "rain1");
            }
            if (a.loss) require_nonnegative(py::reinterpret_borrow<dcarr>(loss), "loss");
            fail("rain0/rain1/loss: the rain depth or loss of this sub-step is negative or not finite in row " +
                 std::to_string(r));
        }
        if (bits & kBadTable) {
            check_tables(cells, faces_x, faces_y);
            fail("subgrid: a water level or face flux became non-finite in row " + std::to_string(r) +
                 " (check the tables, manning and the depths)");
        }
        if (bits & kBadNonFinite)
            fail("depth became non-finite in row " + std::to_string(r) + " (check rain, loss and manning inputs)");
        fail("depth became negative (below -" + std::to_string(kNegDepth) + " m) in row " + std::to_string(r));
    }
    return hmax;
}

}  // namespace

void register_flood_subgrid(py::module_& m) {
    m.def("flood_subgrid_step", &subgrid_binding, py::arg("z").noconvert(), py::arg("h").noconvert(),
          py::arg("qx").noconvert(), py::arg("qy").noconvert(), py::arg("h_out").noconvert(),
          py::arg("qx_out").noconvert(), py::arg("qy_out").noconvert(), py::arg("cells").noconvert(),
          py::arg("faces_x").noconvert(), py::arg("faces_y").noconvert(), py::arg("manning").noconvert(),
          py::arg("edge_kind").noconvert(), py::arg("edge_value").noconvert(), py::arg("max_depth").noconvert(),
          py::arg("max_speed").noconvert(), py::arg("arrival_time").noconvert(), py::arg("max_level").noconvert(),
          py::arg("row_sums").noconvert(), py::kw_only(), py::arg("dx"), py::arg("dt"), py::arg("theta"),
          py::arg("t_end"), py::arg("rain0") = py::none(), py::arg("rain1") = py::none(), py::arg("rain_w") = 0.0,
          py::arg("rain_scale") = 0.0, py::arg("loss") = py::none(), py::arg("loss_scale") = 0.0,
          py::arg("threads") = 0, py::arg("level_cache") = py::none(), py::arg("depth_cache") = py::none(),
          "One subgrid local-inertial sub-step (float64; see core_cpp/flood_subgrid.cpp and twin/flood/subgrid.py). "
          "h is the mean depth (volume / cell area) on the coarse grid; the tables come from "
          "twin.flood.subgrid.SubgridTables. Writes h_out/qx_out/qy_out, updates the trackers (max_level: the "
          "highest water level) and row_sums (rain, lost, boundary in, boundary out, bad). Returns the largest "
          "local depth (level minus the cell's lowest pixel) of the new state, for the CFL sub-step. Optional "
          "level_cache/depth_cache (ny, nx), in/out: the level of each cell's last depth, reused where the depth "
          "has the same bits (same results, one table inversion per cell saved).");
    m.def("flood_subgrid_check_tables", &check_tables, py::arg("cells").noconvert(), py::arg("faces_x").noconvert(),
          py::arg("faces_y").noconvert(),
          "Validate subgrid tables once (finite; level spacing >= 0; fractions in [0, 1]; volume tables strictly "
          "increasing; face depths >= 0). flood_subgrid_step checks shapes every call and flags non-finite levels "
          "and fluxes it computes (then runs this check to name the entry).");
    m.attr("FLOOD_SUBGRID_ROW_SLOTS") = static_cast<int>(subgrid::kRowSlots);
}

}  // namespace twin
