// Subgrid local-inertial flood kernel (twin/flood/subgrid.py builds the tables; formulation there and in
// docs/design/subgrid-tables.md). float64 only. A separate function from flood_inertial_step: the
// regular path is untouched (bit-identical).
//
// The bed z is each cell's lowest pixel (the cell table's z_min; >= kWallZ: a wall): a dry cell's level.
// State on the coarse grid: h = mean depth (volume / cell area), qx (ny, nx+1), qy (ny+1, nx) unit
// discharges per coarse face width, as the regular kernel. Tables (C-contiguous float64):
//   cells (ny, nx, 2N+2):    z_min, valid fraction, z_0 .. z_{N-1}, h_0 .. h_{N-1} (mean depth at level z_k)
//   faces_x (N+2, ny, nx+1, 2), faces_y (N+2, ny+1, nx, 2), by slot (one plane of pairs per slot):
//                            (z_min, dz), (width fraction, h_eff slope), (hbar_0, h_eff_0), (hbar_1, h_eff_1) ..
//                            A sub-step reads a row's (z_min, dz) contiguously and each wet face's two pairs of its
//                            segment, shared in cache lines with the faces beside it at the same depth (a face's
//                            slots in one row streamed every slot of every wet face: 2-3x the kernel's time).
// One sub-step, three passes over rows (A and B OpenMP loops; C, D and E fused over each thread's block of
// rows, static blocks; every value written depends only on the old state, never on the thread count;
// reductions go to per-row slots):
//   A level of each cell from its mean depth (inverse of the volume table)
//   B raw face fluxes: q+ = (theta q + (1-theta)/2 (q_l + q_r) - g hbar dt d(eta)/dx)
//                          / (1 + g n^2 dt |q| / h_eff^(7/3)), hbar and h_eff read at the face level
//     eta_f = max((eta_L + eta_R) / 2, z_f + w (max(eta_L, eta_R) - z_f)) (w = face_weight; w >= 1: max(eta_L, eta_R)),
//     with LISFLOOD-FP's fallback to theta = 1 when the centred flux runs against the head drop
//   C positivity limiter factor per cell (as the regular kernel)
//   D limited fluxes
//   E continuity, rain, losses, tracked maxima (mean depth, speed squared, arrival, level)
// Within a row, the table reads (segment search, interpolation rows) run in scalar loops and the arithmetic
// (face levels and segments with their division, friction with inv_cbrt and sqrt, the cell update, the
// level formula) in loops the compiler vectorises; flood_subgrid_kernel.hpp holds the kernel, compiled
// here (baseline) and in flood_subgrid_avx2.cpp (x86-64-v3), picked at load time with the flood sweep.
// Every value is the same bits in both builds and as computed one face or cell at a time (IEEE
// operations only, no FMA contraction: -ffp-contract=off).
#include "common.hpp"
#include "flood_inertial.hpp"
#include "flood_subgrid_kernel.hpp"
#include "modules.hpp"

#include <cstring>
#include <sstream>
#include <string>
#include <vector>
#include <cmath>

namespace twin {
namespace subgrid {

double step_base(const Args& a) { return step_kernel(a); }

// the avx2 build where the flood sweep runs avx2 or avx512 (same bits as the baseline; faster vectors)
static double step(const Args& a) {
#if defined(TWIN_FLOOD_HAVE_X86_ISAS)
    static const bool wide = std::strcmp(flood::active_isa(), "base") != 0;
    if (wide) return step_avx2(a);
#endif
    return step_base(a);
}

// ---- local time steps (docs/design/subgrid-local-time-steps.md) -------------------------------------------------
// One step of a.dt with m sub-steps of a.dt / m for the deepest cells, on levels of sub-steps (the chain): level 0
// takes one step of a.dt, level l (1..L) c_l sub-steps of a.dt / c_l, c_0 = 1 < c_1 < .. < c_L = m, each dividing the
// next (m, m/2, m/4 .. while even: m = 8 gives 2, 4, 8; m = 6 gives 3, 6; m = 5 gives 5). A cell's depth level is the
// number of the thresholds c_l^2 h_deep (l = 0..L-1: the depth a sub-step of a.dt / c_l allows) its local depth is
// above (a point source's cell and a NaN: L; a stage edge: the level of its depth on the cell); a face's level is
// the larger of its cells' depth levels; a cell's update level the largest of its faces' levels (its own and its
// 4-neighbours' depth levels). Deep: depth level >= 1; fast: update level >= 1.
//   1. classify: the mask (LtsBits, the depth level in bits 2..7) and the fast cells in row-major order;
//   2. the whole-grid kernel with a.dt, fast cells left as they are: slow faces (level 0) are computed from the
//      levels at the start and their outflow is limited by the donor's depth (a fast donor: the outflow through its
//      slow faces only), so a slow face's discharge is fixed for the step; slow cells are updated with it;
//   3. the sub-cycle over the fast cells and faces, in m sub-steps of a.dt / m: at sub-step j the faces and cells
//      of the levels whose period starts at j (every level l with j a multiple of m / c_l) advance by their own
//      period a.dt / c_l (the same face, limiter and cell formulas), from the levels all their cells have at j;
//      a face's discharge is held over its period, and each cell takes every face's held discharge over its own
//      period (which divides its faces'). The limiter of a cell's faces of level l scales their outflow to the
//      depth it holds beyond its reserve: the outflow still committed, until the ends of their periods, to its
//      faces of coarser levels (the slow ones included); losses do not take the reserve; so no depth goes
//      negative. Every face's discharge times its duration leaves one cell and enters the other: the volume is
//      conserved as in the kernel.
// Every value is a pure function of the old state: the same bits whatever the number of threads (sums in a fixed
// order, sequentially).
constexpr int kLtsMaxLevels = 11;  // m <= 1024: at most 10 levels above 0
constexpr int kLtsLevelShift = 2;  // the depth level in the mask's bits 2..7

struct LtsChain {
    int L = 0;
    int c[kLtsMaxLevels + 1] = {1};  // c[0] = 1, c[L] = m
};

static LtsChain lts_chain(int m) {
    int v[kLtsMaxLevels + 1], n = 0;
    v[n++] = m;
    while (v[n - 1] % 2 == 0 && v[n - 1] / 2 > 1 && n < kLtsMaxLevels) {
        v[n] = v[n - 1] / 2;
        ++n;
    }
    LtsChain ch;
    ch.L = n;
    ch.c[0] = 1;
    for (int k = 0; k < n; ++k) ch.c[n - k] = v[k];
    return ch;
}

struct LtsSets {
    std::vector<std::int64_t> cells;
};

// point sources of a step with local time steps (the model's inflows): cell (flat index) and the depth it gains
// over the step, added in m equal parts, one at the start of each sub-step of the sub-cycle (the cells are deep)
struct LtsSources {
    const std::int64_t* cell = nullptr;
    const double* depth = nullptr;
    std::int64_t n = 0;
};

static inline int lts_depth_level(std::uint8_t bits) { return bits >> kLtsLevelShift; }

static void lts_classify(const Args& a, double h_deep, const LtsChain& ch, const LtsSources& src, std::uint8_t* mask,
                         LtsSets& s) {
    const std::int64_t ny = a.ny, nx = a.nx, nl = a.nl, cw = 2 * nl + 2;
    const int L = ch.L;
    double thr[kLtsMaxLevels];
    for (int l = 0; l < L; ++l) thr[l] = static_cast<double>(ch.c[l]) * static_cast<double>(ch.c[l]) * h_deep;
    auto level = [&](double d) -> int {  // the thresholds d is above (NaN: L)
        if (!(d <= thr[L - 1])) return L;
        int l = 0;
        while (l < L && d > thr[l]) ++l;
        return l;
    };
    const int nt = a.threads > 0 ? a.threads : 1;
    (void)nt;
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (std::int64_t r = 0; r < ny; ++r)
        for (std::int64_t c = 0; c < nx; ++c) {
            const std::int64_t i = r * nx + c;
            const double hc = a.h[i];
            int d = 0;
            if (a.z[i] < kWallZ) {
                if (hc > 0.0) {
                    const double e = (a.depth_cache && std::memcmp(&a.depth_cache[i], &hc, sizeof(double)) == 0)
                                         ? a.level_cache[i] : level_of(a.cells + i * cw, nl, hc);
                    d = level(e - a.z[i]);  // (a NaN level: the finest; the kernel names it)
                }
                // a stage edge standing deep above the cell's bed conveys at that depth
                auto stage = [&](std::int64_t e) {
                    if (a.edge_kind[e] == kEdgeStage) d = std::max(d, level(a.edge_value[e] - a.z[i]));
                };
                if (c == 0) stage(r);
                if (c == nx - 1) stage(ny + r);
                if (r == 0) stage(2 * ny + c);
                if (r == ny - 1) stage(2 * ny + nx + c);
            }
            mask[i] = static_cast<std::uint8_t>((d << kLtsLevelShift) | (d > 0 ? kLtsDeep : 0));
        }
    for (std::int64_t k = 0; k < src.n; ++k)
        if (a.z[src.cell[k]] < kWallZ) mask[src.cell[k]] = static_cast<std::uint8_t>((L << kLtsLevelShift) | kLtsDeep);
    s.cells.clear();
    auto deep = [&](std::int64_t i) { return (mask[i] & kLtsDeep) != 0; };
    for (std::int64_t r = 0; r < ny; ++r)
        for (std::int64_t c = 0; c < nx; ++c) {
            const std::int64_t i = r * nx + c;
            if (a.z[i] >= kWallZ) continue;
            if (deep(i) || (c > 0 && deep(i - 1)) || (c + 1 < nx && deep(i + 1)) || (r > 0 && deep(i - nx)) ||
                (r + 1 < ny && deep(i + nx))) {
                mask[i] |= kLtsFast;
                s.cells.push_back(i);
            }
        }
}

// The fast region gathered once per step into compact arrays (cells, then every face of a fast cell: the fast ones
// with their neighbours and where their table is, the slow ones with their fixed discharge), so that the sub-steps
// read state in order. The tables are read where they are: most fast cells and faces take 2 to 4 sub-steps, and a
// copy of a face's table (one cache line per slot) cost more than those reads.
struct LtsRegion {
    // cells (the fast cells, row-major)
    std::vector<std::int32_t> cface;   // 4 per cell: its W, E, N, S faces (compact)
    std::vector<double> h, eta, z, rr, lc, fac, mh, ms, ar, ml, lcache, dcache, hm;
    std::vector<std::int32_t> seg;
    std::vector<double> rs, ls;
    std::vector<int> bad;
    std::vector<std::uint8_t> cup;     // update level
    std::vector<std::int32_t> cord;    // cells by update level, finest first (row-major within a level)
    // faces (every face of a fast cell)
    std::vector<std::int64_t> gface;   // global index: x faces r (nx+1) + c, y faces nfx + r nx + c
    std::vector<std::uint8_t> kind;    // kFixed (slow: q fixed), kInner (fast, between two cells), kEdge (fast, on
                                       // the domain's edge), kShut (fast, a wall on a side: 0)
    std::vector<std::uint8_t> flev;    // level (kFixed: 0)
    std::vector<std::int32_t> fend;    // the end of the period of the face's held discharge, in sub-steps
    std::vector<std::int32_t> ford;    // fast faces by level, finest first
    std::vector<std::int32_t> fa, fb;  // cells (compact) on the left/up and right/down side; -1 none
    std::vector<std::int32_t> nb;      // fast inner faces: 6 neighbours (the two parallel, the four across)
    std::vector<const double*> ftab;   // fast faces: their table (slot 0's pair in the grid's face table; read in place:
                                       // a copy cost more than the sub-steps' reads of it)
    std::vector<std::uint8_t> fisx;    // an x face (slot stride a.fxs) or a y face (a.fys)
    std::vector<double> q, raw, n2, eval, esign;
    std::vector<std::uint8_t> ekind;
    std::vector<std::int32_t> src;     // the sources' cells (compact)
    // dense maps, valid where stamped with this step's number
    std::vector<std::int32_t> cmap, fmap;
    std::vector<std::uint32_t> cstamp, fstamp;
    std::uint32_t stamp = 0;
};
enum LtsFaceKind : std::uint8_t { kFixed = 0, kInner = 1, kEdge = 2, kShut = 3 };

// the sub-cycle (step 3) on the kernel's outputs (a.h_out, a.qx_out, a.qy_out); returns the largest local depth of
// the fast cells (a level or a depth not finite: flagged in the rows' bad slot)
static double lts_subcycle(const Args& a, const std::uint8_t* mask, const LtsSets& s, const LtsSources& srcs,
                           const LtsChain& ch) {
    const std::int64_t ny = a.ny, nx = a.nx, nl = a.nl, cw = 2 * nl + 2;
    const std::int64_t nfx = ny * (nx + 1), nfy = (ny + 1) * nx;
    const int L = ch.L, m = ch.c[L];
    const std::int64_t LW = L + 1;  // limiter factors per cell: one per level
    const double dts = a.dt / static_cast<double>(m), dts_dx = dts / a.dx;  // the finest sub-step
    double g_dt[kLtsMaxLevels + 1], dt_dx[kLtsMaxLevels + 1], part[kLtsMaxLevels + 1];
    int span[kLtsMaxLevels + 1];  // a level's period in sub-steps
    for (int l = 0; l <= L; ++l) {
        span[l] = m / ch.c[l];
        const double dl = a.dt / static_cast<double>(ch.c[l]);
        g_dt[l] = kGravity * dl;
        dt_dx[l] = dl / a.dx;
        part[l] = 1.0 / static_cast<double>(ch.c[l]);
    }
    const double inv_dx = 1.0 / a.dx, theta = a.theta;
    const std::int64_t nF = static_cast<std::int64_t>(s.cells.size());
    static thread_local LtsRegion region;  // the calling thread's (OpenMP's threads share it through R)
    LtsRegion& R = region;
    if (R.cmap.size() != static_cast<std::size_t>(ny * nx) || R.fmap.size() != static_cast<std::size_t>(nfx + nfy)) {
        R.cmap.assign(static_cast<std::size_t>(ny * nx), 0);
        R.cstamp.assign(static_cast<std::size_t>(ny * nx), 0);
        R.fmap.assign(static_cast<std::size_t>(nfx + nfy), 0);
        R.fstamp.assign(static_cast<std::size_t>(nfx + nfy), 0);
        R.stamp = 0;
    }
    if (++R.stamp == 0) {  // (wrapped: every entry stale)
        std::fill(R.cstamp.begin(), R.cstamp.end(), 0u);
        std::fill(R.fstamp.begin(), R.fstamp.end(), 0u);
        R.stamp = 1;
    }
    const std::uint32_t st = R.stamp;
    auto dlev = [&](std::int64_t i) { return i >= 0 ? lts_depth_level(mask[i]) : 0; };
    const std::size_t F = static_cast<std::size_t>(nF);
    for (std::int64_t k = 0; k < nF; ++k) {
        R.cmap[static_cast<std::size_t>(s.cells[k])] = static_cast<std::int32_t>(k);
        R.cstamp[static_cast<std::size_t>(s.cells[k])] = st;
    }
    auto cidx = [&](std::int64_t i) -> std::int32_t {
        return (i >= 0 && R.cstamp[static_cast<std::size_t>(i)] == st) ? R.cmap[static_cast<std::size_t>(i)] : -1;
    };
    // faces: every face of a fast cell, in the order met (cells row-major; W, E, N, S)
    R.gface.clear();
    R.cface.resize(4 * F);
    auto face_id = [&](std::int64_t g) -> std::int32_t {
        if (R.fstamp[static_cast<std::size_t>(g)] == st) return R.fmap[static_cast<std::size_t>(g)];
        const std::int32_t id = static_cast<std::int32_t>(R.gface.size());
        R.fstamp[static_cast<std::size_t>(g)] = st;
        R.fmap[static_cast<std::size_t>(g)] = id;
        R.gface.push_back(g);
        return id;
    };
    for (std::int64_t k = 0; k < nF; ++k) {
        const std::int64_t i = s.cells[k], r = i / nx, c = i % nx;
        R.cface[4 * k] = face_id(r * (nx + 1) + c);
        R.cface[4 * k + 1] = face_id(r * (nx + 1) + c + 1);
        R.cface[4 * k + 2] = face_id(nfx + r * nx + c);
        R.cface[4 * k + 3] = face_id(nfx + (r + 1) * nx + c);
    }
    const std::size_t NF = R.gface.size();
    R.kind.assign(NF, kFixed);
    R.flev.assign(NF, 0);
    R.fend.assign(NF, m);
    R.fa.assign(NF, -1);
    R.fb.assign(NF, -1);
    R.nb.assign(6 * NF, -1);
    R.ftab.assign(NF, nullptr);
    R.fisx.resize(NF);
    R.q.resize(NF);
    R.raw.assign(NF, 0.0);
    R.n2.assign(NF, 0.0);
    R.eval.assign(NF, 0.0);
    R.esign.assign(NF, 0.0);
    R.ekind.assign(NF, 0);
    auto fid = [&](std::int64_t g) -> std::int32_t {  // a face met above (every neighbour of a fast face is)
        return R.fstamp[static_cast<std::size_t>(g)] == st ? R.fmap[static_cast<std::size_t>(g)] : -1;
    };
    std::int64_t nlev_f[kLtsMaxLevels + 2] = {0};  // fast faces per level
    for (std::size_t f = 0; f < NF; ++f) {
        const std::int64_t g = R.gface[f];
        const bool isx = g < nfx;
        const std::int64_t gl = isx ? g : g - nfx;
        const std::int64_t r = isx ? gl / (nx + 1) : gl / nx, c = isx ? gl % (nx + 1) : gl % nx;
        // the cells on each side (global; -1 outside)
        std::int64_t iA = -1, iB = -1;
        if (isx) {
            if (c > 0) iA = r * nx + c - 1;
            if (c < nx) iB = r * nx + c;
        } else {
            if (r > 0) iA = (r - 1) * nx + c;
            if (r < ny) iB = r * nx + c;
        }
        const int lv = std::max(dlev(iA), dlev(iB));
        const bool fast = lv > 0;
        R.fa[f] = iA >= 0 ? cidx(iA) : -1;
        R.fb[f] = iB >= 0 ? cidx(iB) : -1;
        R.q[f] = fast ? (isx ? a.qx[gl] : a.qy[gl]) : (isx ? a.qx_out[gl] : a.qy_out[gl]);  // fast: the old one
        if (!fast) continue;
        R.flev[f] = static_cast<std::uint8_t>(lv);
        ++nlev_f[lv];
        R.ftab[f] = isx ? a.fxt + gl * 2 : a.fyt + gl * 2;
        R.fisx[f] = isx ? 1 : 0;
        if (iA < 0 || iB < 0) {  // an edge face: its cell is the deep one
            const std::int64_t i = iA < 0 ? iB : iA;
            std::int64_t e;
            if (isx) e = c == 0 ? r : ny + r;
            else e = r == 0 ? 2 * ny + c : 2 * ny + nx + c;
            R.kind[f] = kEdge;
            R.ekind[f] = a.edge_kind[e];
            R.eval[f] = a.edge_value[e];
            R.esign[f] = iA < 0 ? -1.0 : 1.0;
            R.n2[f] = n2_cell(a, i);
            continue;
        }
        if (a.z[iA] >= kWallZ || a.z[iB] >= kWallZ) {
            R.kind[f] = kShut;
            continue;
        }
        R.kind[f] = kInner;
        R.n2[f] = n2_face(a, iA, iB);
        std::int32_t* nb = R.nb.data() + 6 * f;
        if (isx) {
            nb[0] = fid(r * (nx + 1) + c - 1);
            nb[1] = fid(r * (nx + 1) + c + 1);
            nb[2] = fid(nfx + r * nx + c - 1);
            nb[3] = fid(nfx + r * nx + c);
            nb[4] = fid(nfx + (r + 1) * nx + c - 1);
            nb[5] = fid(nfx + (r + 1) * nx + c);
        } else {
            nb[0] = fid(nfx + (r - 1) * nx + c);
            nb[1] = fid(nfx + (r + 1) * nx + c);
            nb[2] = fid((r - 1) * (nx + 1) + c);
            nb[3] = fid((r - 1) * (nx + 1) + c + 1);
            nb[4] = fid(r * (nx + 1) + c);
            nb[5] = fid(r * (nx + 1) + c + 1);
        }
    }
    // the fast faces and cells by level, finest first: the ones that advance at sub-step j are a prefix
    // (the levels l >= l0(j)); fstart[l] / cstart[l]: how many have a level >= l
    std::int64_t fstart[kLtsMaxLevels + 2] = {0}, cstart[kLtsMaxLevels + 2] = {0}, nlev_c[kLtsMaxLevels + 2] = {0};
    R.cup.resize(F);
    for (std::size_t k = 0; k < F; ++k) {
        const std::int32_t* cf = R.cface.data() + 4 * k;
        int u = 0;
        for (int e = 0; e < 4; ++e) u = std::max(u, static_cast<int>(R.flev[static_cast<std::size_t>(cf[e])]));
        R.cup[k] = static_cast<std::uint8_t>(u);
        ++nlev_c[u];
    }
    for (int l = L; l >= 1; --l) {
        fstart[l] = fstart[l + 1] + nlev_f[l];
        cstart[l] = cstart[l + 1] + nlev_c[l];
    }
    {
        std::int64_t fpos[kLtsMaxLevels + 2], cpos[kLtsMaxLevels + 2];
        for (int l = 1; l <= L; ++l) {
            fpos[l] = fstart[l + 1];
            cpos[l] = cstart[l + 1];
        }
        R.ford.resize(static_cast<std::size_t>(fstart[1]));
        R.cord.resize(static_cast<std::size_t>(cstart[1]));
        for (std::size_t f = 0; f < NF; ++f)
            if (R.flev[f] > 0) R.ford[static_cast<std::size_t>(fpos[R.flev[f]]++)] = static_cast<std::int32_t>(f);
        for (std::size_t k = 0; k < F; ++k)
            if (R.cup[k] > 0) R.cord[static_cast<std::size_t>(cpos[R.cup[k]]++)] = static_cast<std::int32_t>(k);
    }
    // cells: state, rates over the step, trackers (their table rows are read in place)
    for (auto* v : {&R.h, &R.eta, &R.z, &R.rr, &R.lc, &R.mh, &R.ms, &R.ar, &R.ml, &R.lcache, &R.dcache, &R.rs, &R.ls})
        v->resize(F);
    R.hm.assign(F, 0.0);
    R.fac.assign((F + 1) * static_cast<std::size_t>(LW), 1.0);  // (the last: outside the grid, factor 1)
    R.seg.resize(F);
    R.bad.assign(F, 0);
    // the arrays the sub-cycle reads and writes back, compact copy beside the grid's
    std::vector<std::pair<double*, std::vector<double>*>> kept = {
        {a.h_out, &R.h}, {a.maxh, &R.mh}, {a.maxspeed, &R.ms}, {a.arrival, &R.ar}, {a.maxlevel, &R.ml}};
    if (a.level_cache) {
        kept.emplace_back(a.level_cache, &R.lcache);
        kept.emplace_back(a.depth_cache, &R.dcache);
    }
    for (auto& [g, c] : kept)
        for (std::int64_t k = 0; k < nF; ++k) (*c)[static_cast<std::size_t>(k)] = g[s.cells[k]];
    const double w0 = 1.0 - a.rain_w, w1 = a.rain_w;
    for (std::int64_t k = 0; k < nF; ++k) {
        const std::size_t ks = static_cast<std::size_t>(k);
        const std::int64_t i = s.cells[k];
        R.z[ks] = a.z[i];
        R.rr[ks] = a.rain0 ? a.rain_scale * (a.rain_per_cell ? (w0 * a.rain0[i] + w1 * a.rain1[i])
                                                            : (w0 * a.rain0[0] + w1 * a.rain1[0]))
                           : 0.0;
        R.lc[ks] = a.loss ? a.loss_scale * (a.loss_per_cell ? a.loss[i] : a.loss[0]) : 0.0;
        R.seg[ks] = a.level_segment ? a.level_segment[i] : 0;
    }
    R.src.clear();
    for (std::int64_t k = 0; k < srcs.n; ++k) R.src.push_back(a.z[srcs.cell[k]] < kWallZ ? cidx(srcs.cell[k]) : -1);
    const int nt = a.threads > 0 ? a.threads : 1;
    (void)nt;
    auto crow = [&](std::size_t k) { return a.cells + s.cells[k] * cw; };  // a cell's table row, in place
    const std::int32_t* fa = R.fa.data();
    const std::int32_t* fb = R.fb.data();
    const std::uint8_t* flev = R.flev.data();
    std::int32_t* fend = R.fend.data();
    double* const fac = R.fac.data();
    const std::size_t outside = F;  // fac[outside * LW + l] = 1
    // the outflow (>= 0) of a cell's face e (0..3: W, E, N, S) with discharge q
    auto out_of = [](int e, double q) { return (e & 1) ? (q > 0.0 ? q : 0.0) : (q < 0.0 ? -q : 0.0); };
    for (int j = 0; j < m; ++j) {
        int l0 = 1;  // the coarsest level whose period starts at j
        while (j % span[l0] != 0) ++l0;
        const std::int64_t nfa = fstart[l0], nca = cstart[l0];
        for (std::int64_t k = 0; k < srcs.n; ++k)
            if (R.src[static_cast<std::size_t>(k)] >= 0)
                R.h[static_cast<std::size_t>(R.src[static_cast<std::size_t>(k)])] += srcs.depth[k] / static_cast<double>(m);
        // levels: at the first sub-step from the level cache (the kernel's, of the depth at the start) or the table;
        // then each cell's level is the one its update computed (a source's cell: from the table again)
        if (j == 0) {
            for (std::int64_t k = 0; k < nF; ++k) {
                const std::size_t ks = static_cast<std::size_t>(k);
                const double hc = R.h[ks];
                R.eta[ks] = (a.level_cache && std::memcmp(&R.dcache[ks], &hc, sizeof(double)) == 0)
                                ? R.lcache[ks] : level_of(crow(ks), nl, hc);
            }
        } else {
            for (std::int32_t k : R.src)
                if (k >= 0) R.eta[static_cast<std::size_t>(k)] = level_of(crow(static_cast<std::size_t>(k)), nl, R.h[static_cast<std::size_t>(k)]);
        }
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
        {
            // raw discharges of the faces whose period starts now
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (std::int64_t x = 0; x < nfa; ++x) {
                const std::size_t fs_ = static_cast<std::size_t>(R.ford[static_cast<std::size_t>(x)]);
                const std::uint8_t kd = R.kind[fs_];
                const int lv = flev[fs_];
                double v = 0.0;
                const double* t = R.ftab[fs_];
                const std::int64_t ts = R.fisx[fs_] ? a.fxs : a.fys;
                if (kd == kEdge) {
                    const std::size_t ic = static_cast<std::size_t>(fa[fs_] >= 0 ? fa[fs_] : fb[fs_]);
                    v = edge(R.ekind[fs_], R.eval[fs_], R.eta[ic], R.z[ic], t, ts, nl, R.q[fs_], R.esign[fs_], R.n2[fs_],
                             g_dt[lv], inv_dx);
                } else if (kd == kInner) {
                    const std::size_t iA = static_cast<std::size_t>(fa[fs_]), iB = static_cast<std::size_t>(fb[fs_]);
                    if (!(!(R.h[iA] > 0.0) & !(R.h[iB] > 0.0))) {
                        const std::int32_t* nb = R.nb.data() + 6 * fs_;
                        const double ef = face_level(R.eta[iA], R.eta[iB], t[0], a.face_weight);
                        const double qp = 0.25 * ((R.q[static_cast<std::size_t>(nb[2])] + R.q[static_cast<std::size_t>(nb[3])]) +
                                                  (R.q[static_cast<std::size_t>(nb[4])] + R.q[static_cast<std::size_t>(nb[5])]));
                        v = flux(R.eta[iA], R.eta[iB], ef, t, ts, nl, R.q[fs_],
                                 R.q[static_cast<std::size_t>(nb[0])] + R.q[static_cast<std::size_t>(nb[1])], qp, R.n2[fs_],
                                 g_dt[lv], inv_dx, theta);
                    }
                }
                R.raw[fs_] = v;
            }
            // limiter, level by level from the coarsest starting now: a cell's outflow through its faces of level l
            // over their period scaled to the depth it holds beyond the outflow committed to its coarser faces
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (std::int64_t x = 0; x < nca; ++x) {
                const std::size_t ks = static_cast<std::size_t>(R.cord[static_cast<std::size_t>(x)]);
                const std::int32_t* cf = R.cface.data() + 4 * ks;
                const int u = R.cup[ks];
                double reserve = 0.0;
                for (int e = 0; e < 4; ++e) {
                    const std::size_t f = static_cast<std::size_t>(cf[e]);
                    if (flev[f] < l0) reserve += out_of(e, R.q[f]) * static_cast<double>(fend[f] - j) * dts_dx;
                }
                const double have = std::max(R.h[ks], 0.0);
                for (int l = l0; l <= u; ++l) {
                    double od = 0.0;
                    for (int e = 0; e < 4; ++e) {
                        const std::size_t f = static_cast<std::size_t>(cf[e]);
                        if (flev[f] == l) od += out_of(e, R.raw[f]);
                    }
                    od *= dt_dx[l];
                    const double avail = have - reserve;
                    const double fl = od > avail ? (avail > 0.0 ? avail / od : 0.0) : 1.0;
                    fac[ks * static_cast<std::size_t>(LW) + static_cast<std::size_t>(l)] = fl;
                    reserve += fl * od;
                }
            }
            // limited discharges (donor: the upwind cell; outside the grid the factor is 1), held for their period
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (std::int64_t x = 0; x < nfa; ++x) {
                const std::size_t fs_ = static_cast<std::size_t>(R.ford[static_cast<std::size_t>(x)]);
                const int lv = flev[fs_];
                const double v = R.raw[fs_];
                const std::size_t iA = fa[fs_] >= 0 ? static_cast<std::size_t>(fa[fs_]) : outside;
                const std::size_t iB = fb[fs_] >= 0 ? static_cast<std::size_t>(fb[fs_]) : outside;
                R.q[fs_] = v * fac[(v > 0.0 ? iA : iB) * static_cast<std::size_t>(LW) + static_cast<std::size_t>(lv)];
                fend[fs_] = j + span[lv];
            }
            // continuity over each cell's period, rain, losses (not of the reserve still committed at its end),
            // trackers, levels
#ifdef TWIN_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (std::int64_t x = 0; x < nca; ++x) {
                const std::size_t ks = static_cast<std::size_t>(R.cord[static_cast<std::size_t>(x)]);
                const std::int32_t* cf = R.cface.data() + 4 * ks;
                const int u = R.cup[ks];
                const int jend = j + span[u];
                const double qW = R.q[static_cast<std::size_t>(cf[0])], qE = R.q[static_cast<std::size_t>(cf[1])],
                             qN = R.q[static_cast<std::size_t>(cf[2])], qS = R.q[static_cast<std::size_t>(cf[3])];
                double hn = R.h[ks] + dt_dx[u] * ((qW - qE) + (qN - qS));
                const double rr = R.rr[ks] * part[u], lc = R.lc[ks] * part[u];
                const double hr = hn + rr;
                double keep = 0.0;
                for (int e = 0; e < 4; ++e) {
                    const std::size_t f = static_cast<std::size_t>(cf[e]);
                    if (fend[f] > jend) keep += out_of(e, R.q[f]) * static_cast<double>(fend[f] - jend) * dts_dx;
                }
                const double hp = hr - keep > 0.0 ? hr - keep : 0.0;
                const double l = hp < lc ? hp : lc;
                hn = hr - l;
                R.rs[ks] = rr;
                R.ls[ks] = l;
                R.h[ks] = hn;
                const double wet = hn > kSpeedDepth ? 1.0 : 0.0;
                const double inv = wet * (0.5 / (hn > kSpeedDepth ? hn : 1.0));
                const double uu = (qW + qE) * inv, vv = (qN + qS) * inv;
                const double sp = uu * uu + vv * vv;
                const double m0 = R.mh[ks];
                const double t_end = jend == m ? a.t_end : a.t_end - a.dt + static_cast<double>(jend) * dts;
                if (R.ms[ks] < sp) R.ms[ks] = sp;
                if ((m0 <= kArrivalDepth) & (hn > kArrivalDepth)) R.ar[ks] = t_end;
                if (m0 < hn) R.mh[ks] = hn;
                const double* cr = crow(ks);
                double lev = R.z[ks];
                if (hn > 0.0) {
                    if (a.level_segment && hn < cr[2 + nl + nl - 1]) {
                        const double* zk = cr + 2;
                        const double* hk = cr + 2 + nl;
                        const std::int64_t lo = segment_from(hk, nl, hn, &R.seg[ks]);
                        lev = zk[lo] + (zk[lo + 1] - zk[lo]) * ((hn - hk[lo]) / (hk[lo + 1] - hk[lo]));
                    } else {
                        lev = level_of(cr, nl, hn);
                    }
                }
                R.lcache[ks] = lev;
                R.dcache[ks] = hn;
                if (R.ml[ks] < lev) R.ml[ks] = lev;
                R.eta[ks] = lev;  // the level from which the next faces start (the faces of this one are done)
                const double dl = lev - R.z[ks];
                R.hm[ks] = dl > R.hm[ks] ? dl : R.hm[ks];
                R.bad[ks] |= (std::isfinite(hn) && std::isfinite(lev) ? 0 : kBadNonFinite) |
                             (hn < -kNegDepth ? kBadNegOutput : 0);
            }
        }
        // the volumes, cells in their fixed order (the same bits whatever the number of threads)
        for (std::int64_t x = 0; x < nca; ++x) {
            const std::size_t ks = static_cast<std::size_t>(R.cord[static_cast<std::size_t>(x)]);
            const std::int64_t i = s.cells[ks], r = i / nx, c = i % nx;
            double* rsum = a.row_sums + r * kRowSlots;
            rsum[kRain] += R.rs[ks];
            rsum[kLost] += R.ls[ks];
            if (c == 0 || c == nx - 1 || r == 0 || r == ny - 1) {
                // boundary faces of the fast cells (fast or slow), as discharge x (the cell's period / step): the
                // caller multiplies the slots by the face width and the step
                const std::int32_t* cf = R.cface.data() + 4 * ks;
                double bin = 0.0, bout = 0.0;
                if (c == 0) { const double q = R.q[static_cast<std::size_t>(cf[0])]; if (q > 0.0) bin += q; else bout -= q; }
                if (c == nx - 1) { const double q = R.q[static_cast<std::size_t>(cf[1])]; if (q < 0.0) bin -= q; else bout += q; }
                if (r == 0) { const double q = R.q[static_cast<std::size_t>(cf[2])]; if (q > 0.0) bin += q; else bout -= q; }
                if (r == ny - 1) { const double q = R.q[static_cast<std::size_t>(cf[3])]; if (q < 0.0) bin -= q; else bout += q; }
                if (bin != 0.0 || bout != 0.0) {
                    const double p = part[R.cup[ks]];
                    rsum[kBndIn] += bin * p;
                    rsum[kBndOut] += bout * p;
                }
            }
        }
    }
    // scatter back: the state, the fast faces' discharges, trackers, caches; the depth counts; the bad flags
    for (auto& [g, c] : kept)
        for (std::int64_t k = 0; k < nF; ++k) g[s.cells[k]] = (*c)[static_cast<std::size_t>(k)];
    if (a.level_segment)
        for (std::int64_t k = 0; k < nF; ++k) a.level_segment[s.cells[k]] = R.seg[static_cast<std::size_t>(k)];
    for (std::size_t f = 0; f < NF; ++f) {
        if (R.kind[f] == kFixed) continue;
        const std::int64_t g = R.gface[f];
        if (g < nfx) a.qx_out[g] = R.q[f];
        else a.qy_out[g - nfx] = R.q[f];
    }
    for (std::int64_t k = 0; k < nF && a.n_thr > 0; ++k) {  // the fast cells' share of the depth counts
        const std::int64_t r = s.cells[k] / nx;
        const double dl = R.eta[static_cast<std::size_t>(k)] - R.z[static_cast<std::size_t>(k)];
        for (std::int64_t t = 0; t < a.n_thr; ++t) a.depth_counts[r * a.n_thr + t] += dl > a.count_thr[t] ? 1.0 : 0.0;
    }
    double hmax = 0.0;
    for (std::int64_t k = 0; k < nF; ++k) {
        const std::size_t ks = static_cast<std::size_t>(k);
        hmax = R.hm[ks] > hmax ? R.hm[ks] : hmax;
        if (R.bad[ks]) {
            const std::int64_t r = s.cells[k] / nx;
            a.row_sums[r * kRowSlots + kBad] =
                static_cast<double>(static_cast<int>(a.row_sums[r * kRowSlots + kBad]) | R.bad[ks]);
        }
    }
    return hmax;
}

// one step with local time steps: sub-steps of a.dt / c_l on the levels of the chain of m (>= 2) in the cells
// deeper than c_{l-1}^2 h_deep and their neighbours, one step of a.dt elsewhere (mask: the caller's (ny, nx) scratch,
// written); *n_fast: the fast cells
static double lts_step(Args a, std::uint8_t* mask, int m, double h_deep, const LtsSources& src,
                       std::int64_t* n_fast) {
    static thread_local LtsSets sets;
    const LtsChain ch = lts_chain(m);
    lts_classify(a, h_deep, ch, src, mask, sets);
    *n_fast = static_cast<std::int64_t>(sets.cells.size());
    a.lts = sets.cells.empty() ? nullptr : mask;
    const double hs = step(a);
    if (std::isnan(hs) || sets.cells.empty()) return hs;  // (NaN: inputs not finite, nothing kept was written)
    for (std::int64_t r = 0; r < a.ny; ++r)  // a row the pass flagged (the binding names it): no sub-cycle on top
        if (a.row_sums[r * kRowSlots + kBad] != 0.0) return hs;
    const double hf = lts_subcycle(a, mask, sets, src, ch);
    return hf > hs ? hf : hs;
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

void require_face_table(const dcarr& t, py::ssize_t nl, py::ssize_t d0, py::ssize_t d1, const char* name) {
    if (t.ndim() != 4 || t.shape(0) != nl + 2 || t.shape(1) != d0 || t.shape(2) != d1 || t.shape(3) != 2) {
        std::ostringstream s;
        s << name << ": expected shape (" << nl + 2 << ", " << d0 << ", " << d1 << ", 2) (N+2 slots of pairs), got "
          << shape_str(t);
        fail(s.str());
    }
}

void check_tables(const dcarr& cells, const dcarr& faces_x, const dcarr& faces_y) {
    using namespace subgrid;
    if (cells.ndim() != 3 || cells.shape(2) < 6 || cells.shape(2) % 2)
        fail("cells: expected a (ny, nx, 2N+2) table with N >= 2, got shape " + shape_str(cells));
    const py::ssize_t ny = cells.shape(0), nx = cells.shape(1), nl = (cells.shape(2) - 2) / 2;
    require_face_table(faces_x, nl, ny, nx + 1, "faces_x");
    require_face_table(faces_y, nl, ny + 1, nx, "faces_y");
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
        const py::ssize_t nf = t->shape(1) * t->shape(2), fs = 2 * nf;  // faces, slot stride
        for (py::ssize_t i = 0; i < nf; ++i) {
            const double* f = p + 2 * i;  // slot j of face i: f[j * fs], f[j * fs + 1]
            if (!(f[1] >= 0.0) || !(f[fs] >= 0.0 && f[fs] <= 1.0) || !(f[fs + 1] >= 0.0))
                fail(std::string(name) + ": face " + std::to_string(i) + " has a negative level spacing or a width "
                     "fraction outside [0, 1]");
            for (py::ssize_t k = 2; k < nl + 2; ++k)
                if (!(f[k * fs] >= 0.0) || !(f[k * fs + 1] >= 0.0))
                    fail(std::string(name) + ": face " + std::to_string(i) + " has a negative depth");
        }
    }
}

double subgrid_binding(dcarr z, dcarr h, dcarr qx, dcarr qy, dcarr h_out, dcarr qx_out, dcarr qy_out, dcarr cells,
                       dcarr faces_x, dcarr faces_y, dcarr manning, carray<std::uint8_t> edge_kind, dcarr edge_value,
                       dcarr maxh, dcarr maxspeed, dcarr arrival, dcarr maxlevel, dcarr row_sums, double dx, double dt,
                       double theta, double t_end, py::object rain0, py::object rain1, double rain_w,
                       double rain_scale, py::object loss, double loss_scale, int threads, py::object level_cache,
                       py::object depth_cache, py::object level_segment, double face_weight, py::object lts_mask,
                       int lts_substeps, double lts_deep_depth, py::object lts_sources, py::object lts_source_depth,
                       py::object count_depths, py::object depth_counts) {
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
    require_face_table(faces_x, nl, ny, nx + 1, "faces_x");
    require_face_table(faces_y, nl, ny + 1, nx, "faces_y");
    if (manning.size() != 1 && manning.size() != ny * nx) {
        std::ostringstream s;
        s << "manning: expected 1 value or " << ny * nx << " (one per cell), got " << manning.size();
        fail(s.str());
    }
    if (manning.size() == 1 || ny * nx == 1) require_nonnegative(manning, "manning");  // per cell: in the kernel
    checked_scalar<double>(dx, "cell_size (dx)", true, true);
    checked_scalar<double>(dt, "dt", true, true);
    checked_scalar<double>(t_end, "t_end", false);
    if (!(theta >= 0.0 && theta <= 1.0)) fail("theta: must be in [0, 1], got " + std::to_string(theta));
    if (!(face_weight > 0.0 && face_weight <= 1.0))
        fail("face_weight: must be in (0, 1], got " + std::to_string(face_weight));
    if (threads < 0) fail("threads: must be >= 0 (0 = default), got " + std::to_string(threads));
    const std::uint8_t* ek = edge_kind.data();
    for (py::ssize_t i = 0; i < edge_kind.size(); ++i)
        if (ek[i] > kEdgeStage)
            fail("edge_kind: value " + std::to_string(int(ek[i])) + " at index " + std::to_string(i) +
                 " is not 0 (wall), 1 (free) or 2 (stage)");
    require_finite(edge_value, "edge_value");
    // elevation, depth, qx, qy and manning are checked by the kernel as it reads them (a NaN result: it stopped
    // before writing anything the caller keeps); the messages below are the same
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
    a.fxs = 2 * ny * (nx + 1);
    a.fys = 2 * (ny + 1) * nx;
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
    py::ssize_t nseg = 0;
    if (!level_segment.is_none()) {
        if (!py::isinstance<carray<std::int32_t>>(level_segment))
            throw py::type_error("level_segment: expected a C-contiguous int32 array (no conversion is made)");
        auto ls = py::reinterpret_borrow<carray<std::int32_t>>(level_segment);
        require_shape2(ls, ny, nx, "level_segment");
        if (!ls.writeable()) fail("level_segment: the array must be writeable");
        a.level_segment = ls.mutable_data();
        nseg = ny * nx * 4;
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
                            NamedBuf{"depth_cache", a.depth_cache, ncache, true},
                            NamedBuf{"level_segment", a.level_segment, nseg, true}});
    }
    a.dx = dx;
    a.dt = dt;
    a.theta = theta;
    a.face_weight = face_weight;
    a.t_end = t_end;
    a.threads = resolve_threads(threads);
    a.lts = nullptr;
    std::uint8_t* mask = nullptr;
    if (lts_substeps < 1 || lts_substeps > 1024)
        fail("lts_substeps: must be in [1, 1024], got " + std::to_string(lts_substeps));
    if (lts_substeps > 1) {
        if (lts_mask.is_none() || !py::isinstance<carray<std::uint8_t>>(lts_mask))
            throw py::type_error("lts_mask: with lts_substeps > 1, expected a C-contiguous uint8 (ny, nx) array "
                                 "(no conversion is made)");
        auto mk = py::reinterpret_borrow<carray<std::uint8_t>>(lts_mask);
        require_shape2(mk, ny, nx, "lts_mask");
        if (!mk.writeable()) fail("lts_mask: the array must be writeable");
        require_no_overlap({buf("lts_mask", mk, true), buf("depth_out", h_out, true), buf("depth", h, false),
                            buf("qx_out", qx_out, true), buf("qy_out", qy_out, true), buf("row_sums", row_sums, true)});
        if (!(lts_deep_depth >= 0.0))
            fail("lts_deep_depth: must be >= 0, got " + std::to_string(lts_deep_depth));
        mask = mk.mutable_data();
    }
    a.count_thr = nullptr;
    a.n_thr = 0;
    a.depth_counts = nullptr;
    if (count_depths.is_none() != depth_counts.is_none()) fail("count_depths/depth_counts: give both or neither");
    if (!count_depths.is_none()) {
        if (!py::isinstance<dcarr>(count_depths) || !py::isinstance<dcarr>(depth_counts))
            throw py::type_error("count_depths/depth_counts: expected C-contiguous float64 arrays (no conversion is made)");
        auto th = py::reinterpret_borrow<dcarr>(count_depths);
        auto dc = py::reinterpret_borrow<dcarr>(depth_counts);
        if (th.ndim() != 1 || th.size() < 1 || th.size() > 16)
            fail("count_depths: expected 1 to 16 depths, got shape " + shape_str(th));
        require_finite(th, "count_depths");
        require_shape2(dc, ny, th.size(), "depth_counts");
        if (!dc.writeable()) fail("depth_counts: the array must be writeable");
        require_no_overlap({buf("depth_counts", dc, true), buf("count_depths", th, false), buf("depth_out", h_out, true),
                            buf("row_sums", row_sums, true)});
        a.count_thr = th.data();
        a.n_thr = th.size();
        a.depth_counts = dc.mutable_data();
    }
    subgrid::LtsSources src;
    if (lts_sources.is_none() != lts_source_depth.is_none())
        fail("lts_sources/lts_source_depth: give both or neither");
    if (!lts_sources.is_none()) {
        if (!mask) fail("lts_sources: point sources are for steps with local time steps (lts_substeps > 1)");
        if (!py::isinstance<carray<std::int64_t>>(lts_sources) || !py::isinstance<dcarr>(lts_source_depth))
            throw py::type_error("lts_sources/lts_source_depth: expected C-contiguous int64 and float64 arrays "
                                 "(no conversion is made)");
        auto sc = py::reinterpret_borrow<carray<std::int64_t>>(lts_sources);
        auto sd = py::reinterpret_borrow<dcarr>(lts_source_depth);
        if (sc.ndim() != 1 || sd.ndim() != 1 || sc.size() != sd.size())
            fail("lts_sources/lts_source_depth: expected two 1-D arrays of the same length, got shapes " +
                 shape_str(sc) + " and " + shape_str(sd));
        for (py::ssize_t k = 0; k < sc.size(); ++k) {
            if (sc.data()[k] < 0 || sc.data()[k] >= ny * nx)
                fail("lts_sources: cell " + std::to_string(sc.data()[k]) + " at index " + std::to_string(k) +
                     " is outside the grid's " + std::to_string(ny * nx) + " cells");
            if (!(std::isfinite(sd.data()[k]) && sd.data()[k] >= 0.0))
                fail("lts_source_depth: value at index " + std::to_string(k) + " must be finite and >= 0");
        }
        src.cell = sc.data();
        src.depth = sd.data();
        src.n = sc.size();
    }
    double hmax;
    {
        py::gil_scoped_release release;
        if (mask) {
            std::int64_t n_fast = 0;
            hmax = subgrid::lts_step(a, mask, lts_substeps, lts_deep_depth, src, &n_fast);
        } else {
            hmax = subgrid::step(a);
        }
    }
    if (std::isnan(hmax)) {  // the kernel found a non-finite input and stopped before writing what the caller keeps
        require_finite(z, "elevation");
        require_finite(h, "depth");
        require_finite(qx, "qx");
        require_finite(qy, "qy");
        require_nonnegative(manning, "manning");
        fail("elevation/depth/qx/qy/manning: a value is not finite (or a manning value is negative)");
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

// Levels and mean depths of a few cells from their gathered table rows (n, 2N+2): the model's sparse cells
// (inflows, stage and pump cells), looked up every sub-step. The same operations as
// SubgridTables.level_for_depth and depth_for_level in numpy (the same bits, tested), without numpy's
// per-call cost of ~0.2 ms for a handful of cells.
std::int64_t table_levels(const dcarr& rows, py::ssize_t n, const char* what) {
    if (rows.ndim() != 2 || rows.shape(0) != n || rows.shape(1) < 6 || rows.shape(1) % 2 != 0) {
        std::ostringstream s;
        s << what << ": table rows must be (" << n << ", 2N+2) with N >= 2, got (";
        for (py::ssize_t k = 0; k < rows.ndim(); ++k) s << (k ? ", " : "") << rows.shape(k);
        s << ")";
        throw py::value_error(s.str());
    }
    return static_cast<std::int64_t>((rows.shape(1) - 2) / 2);
}

// a cell's mean depth at water level lev from its table row r (N levels): depth_for_level's operations
double depth_of(const double* r, std::int64_t nl, double lev) {
    const double top = r[1];
    const double* zk = r + 2;
    const double* hk = r + 2 + nl;
    std::int64_t cnt = 0;  // numpy's k = clip(count(z_k <= level) - 1, 0, N - 2)
    for (std::int64_t k = 0; k < nl; ++k) cnt += zk[k] <= lev ? 1 : 0;
    std::int64_t k = cnt - 1;
    if (k < 0) k = 0;
    if (k > nl - 2) k = nl - 2;
    const double z0 = zk[k], z1 = zk[k + 1], h0 = hk[k], h1 = hk[k + 1];
    const double wt = z1 > z0 ? (lev - z0) / (z1 - z0) : 0.0;
    const double wc = wt < 0.0 ? 0.0 : (wt > 1.0 ? 1.0 : wt);  // NaN stays NaN, as np.clip
    const double inside = h0 + wc * (h1 - h0);
    const double above = hk[nl - 1] + top * (lev - zk[nl - 1]);
    const double v = lev <= zk[0] ? 0.0 : (lev >= zk[nl - 1] ? above : inside);
    return top > 0.0 ? (v < 0.0 ? 0.0 : v) : 0.0;  // np.maximum(v, 0): NaN stays NaN
}

// a cell's level at mean depth h from its table row r: level_for_depth's (the kernel's inversion); NaN on a wall
double level_at(const double* r, std::int64_t nl, double h) {
    return r[1] > 0.0 ? subgrid::level_of(r, nl, h) : std::numeric_limits<double>::quiet_NaN();
}

// f(row i, N, x[i]) for the n cells whose table rows are rows (n, 2N+2)
template <double (*F)(const double*, std::int64_t, double)>
py::array_t<double> of_rows(const dcarr& rows, const dcarr& x, const char* what, const char* xname) {
    if (x.ndim() != 1) throw py::value_error(std::string(what) + ": " + xname + " must be 1-D");
    const py::ssize_t n = x.shape(0);
    const std::int64_t nl = table_levels(rows, n, what);
    py::array_t<double> out(n);
    const double* c = rows.data();
    const double* xp = x.data();
    double* o = out.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) o[i] = F(c + i * (2 * nl + 2), nl, xp[i]);
    return out;
}

py::array_t<double> levels_of_rows(const dcarr& rows, const dcarr& h) {
    return of_rows<level_at>(rows, h, "flood_subgrid_levels_of_rows", "h");
}

py::array_t<double> depths_of_rows(const dcarr& rows, const dcarr& level) {
    return of_rows<depth_of>(rows, level, "flood_subgrid_depths_of_rows", "level");
}

// Depth on the fine grid with a Manning sheet-flow film on every pixel (docs/design/subgrid-sheet-downscale.md):
// per coarse cell with water (h > 0) and flow (q > 0) the pixels' depths are max(eta - z_k, d_k),
// d_k = (n q)^(3/5) s_k (s_k = S_k^(-3/10), NaN on nodata), eta the level at which they sum to f^2 h (an exact
// piecewise-linear inversion over the pixels sorted by z_k + d_k); where the films alone hold more than that,
// the films scaled to it. Otherwise (no flow) max(level - z_k, 0), the flat downscale. A wall (level NaN): 0.
// out (NY, NX) written; max_out, if given, raised to out. Rows of cells in parallel; the same bits in any
// thread count (each pixel depends only on its cell).
void sheet_downscale(const dcarr& z, const dcarr& scale, const dcarr& h, const dcarr& q, const dcarr& manning,
                     const dcarr& level, dcarr& out, const py::object& max_out, int factor, int threads) {
    if (factor < 1 || factor > 10) fail("factor: must be in 1..10, got " + std::to_string(factor));
    if (h.ndim() != 2) fail("h: expected a 2-D array, got " + shape_str(h));
    const py::ssize_t ny = h.shape(0), nx = h.shape(1), f = factor, NY = ny * f, NX = nx * f;
    require_shape2(q, ny, nx, "q");
    require_shape2(level, ny, nx, "level");
    require_shape2(z, NY, NX, "z");
    require_shape2(scale, NY, NX, "film_scale");
    require_shape2(out, NY, NX, "out");
    if (!out.writeable()) fail("out: the array must be writeable");
    const bool n_per_cell = manning.size() == ny * nx && ny * nx != 1;
    if (!n_per_cell) require_size(manning, 1, "manning");
    double* mx = nullptr;
    carray<double> mxa;
    if (!max_out.is_none()) {
        if (!py::isinstance<dcarr>(max_out))
            throw py::type_error("max_out: expected a C-contiguous float64 array (no conversion is made)");
        mxa = py::reinterpret_borrow<dcarr>(max_out);
        require_shape2(mxa, NY, NX, "max_out");
        if (!mxa.writeable()) fail("max_out: the array must be writeable");
        mx = mxa.mutable_data();
    }
    require_no_overlap({buf("out", out, true), mx ? buf("max_out", mxa, true) : NamedBuf{"max_out", nullptr, 0, true},
                        buf("z", z, false), buf("film_scale", scale, false), buf("h", h, false), buf("q", q, false),
                        buf("manning", manning, false), buf("level", level, false)});
    const double *zp = z.data(), *sp = scale.data(), *hp = h.data(), *qp = q.data(), *np_ = manning.data(),
                 *lp = level.data();
    double* op = out.mutable_data();
    std::vector<unsigned char> bad(static_cast<size_t>(ny), 0);
    const int nt = resolve_threads(threads);
    {
        py::gil_scoped_release release;
#ifdef TWIN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
        for (py::ssize_t r = 0; r < ny; ++r) {
            double b[100], film[100];
            int order[100];
            for (py::ssize_t c = 0; c < nx; ++c) {
                const py::ssize_t i = r * nx + c;
                const double hc = hp[i], qc = qp[i], lev = lp[i], n = np_[n_per_cell ? i : 0];
                if (!(std::isfinite(hc) && hc >= 0.0 && std::isfinite(qc) && qc >= 0.0 && std::isfinite(n) && n >= 0.0)) {
                    bad[static_cast<size_t>(r)] = 1;
                    continue;
                }
                const bool sheet = hc > 0.0 && qc > 0.0 && std::isfinite(lev);
                double need = 0.0, films = 0.0, eta = 0.0;
                const double total = static_cast<double>(f * f) * hc;
                int m = 0;
                if (sheet) {
                    const double nq = std::pow(n * qc, 0.6);
                    for (py::ssize_t a = 0; a < f; ++a)
                        for (py::ssize_t k = 0; k < f; ++k) {
                            const py::ssize_t p = (r * f + a) * NX + c * f + k;
                            const int idx = static_cast<int>(a * f + k);
                            const bool ok = std::isfinite(zp[p]) && std::isfinite(sp[p]);
                            film[idx] = ok ? nq * sp[p] : 0.0;
                            b[idx] = ok ? zp[p] + film[idx] : 1e30;
                            films += film[idx];
                            if (ok) order[m++] = idx;
                        }
                    // the valid pixels in order of z + film (insertion sort: at most 100)
                    for (int u = 1; u < m; ++u) {
                        const int v = order[u];
                        int w = u - 1;
                        while (w >= 0 && b[order[w]] > b[v]) {
                            order[w + 1] = order[w];
                            --w;
                        }
                        order[w + 1] = v;
                    }
                    need = total - films;
                    if (need >= 0.0 && m > 0) {
                        double cs = 0.0;
                        int j = 0;          // pixels under the level
                        for (int u = 0; u < m; ++u) {
                            const double bu = b[order[u]];
                            // water above the films with the level at bu: sum over the first u pixels of (bu - b)
                            if (static_cast<double>(u) * bu - cs > need) break;
                            cs += bu;
                            j = u + 1;
                        }
                        eta = (need + cs) / static_cast<double>(j);
                    }
                }
                for (py::ssize_t a = 0; a < f; ++a)
                    for (py::ssize_t k = 0; k < f; ++k) {
                        const py::ssize_t p = (r * f + a) * NX + c * f + k;
                        double d;
                        if (!std::isfinite(lev)) {
                            d = 0.0;
                        } else if (!sheet) {
                            d = lev - zp[p];
                            d = std::isfinite(d) ? (d > 0.0 ? d : 0.0) : 0.0;
                        } else {
                            const int idx = static_cast<int>(a * f + k);
                            if (!(std::isfinite(zp[p]) && std::isfinite(sp[p]))) d = 0.0;
                            else if (need < 0.0) d = film[idx] * (total / films);
                            else {
                                const double pool = eta - b[idx];
                                d = (pool > 0.0 ? pool : 0.0) + film[idx];
                            }
                        }
                        op[p] = d;
                        if (mx && d > mx[p]) mx[p] = d;
                    }
            }
        }
    }
    for (py::ssize_t r = 0; r < ny; ++r)
        if (bad[static_cast<size_t>(r)])
            for (py::ssize_t c = 0; c < nx; ++c) {
                const py::ssize_t i = r * nx + c;
                const double n = np_[n_per_cell ? i : 0];
                std::ostringstream s;
                if (!(std::isfinite(hp[i]) && hp[i] >= 0.0)) s << "h: value " << hp[i];
                else if (!(std::isfinite(qp[i]) && qp[i] >= 0.0)) s << "q: value " << qp[i];
                else if (!(std::isfinite(n) && n >= 0.0)) s << "manning: value " << n;
                else continue;
                s << " at (row " << r << ", col " << c << ") must be finite and >= 0 (out and max_out are partly written)";
                fail(s.str());
            }
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
          py::arg("level_segment") = py::none(), py::arg("face_weight") = 0.5, py::arg("lts_mask") = py::none(),
          py::arg("lts_substeps") = 1, py::arg("lts_deep_depth") = std::numeric_limits<double>::infinity(),
          py::arg("lts_sources") = py::none(), py::arg("lts_source_depth") = py::none(),
          py::arg("count_depths") = py::none(), py::arg("depth_counts") = py::none(),
          "One subgrid local-inertial sub-step (float64; see core_cpp/flood_subgrid.cpp and twin/flood/subgrid.py). "
          "h is the mean depth (volume / cell area) on the coarse grid; the tables come from "
          "twin.flood.subgrid.SubgridTables. Writes h_out/qx_out/qy_out, updates the trackers (max_level: the "
          "highest water level) and row_sums (rain, lost, boundary in, boundary out, bad). Returns the largest "
          "local depth (level minus the cell's lowest pixel) of the new state, for the CFL sub-step. Optional "
          "level_cache/depth_cache (ny, nx), in/out: the level of each cell's last depth, reused where the depth "
          "has the same bits (same results, one table inversion per cell saved). Optional level_segment (ny, nx) int32, "
          "in/out: the volume-table segment of each cell's last level, where the next inversion starts (same results "
          "whatever it holds; a walk of a segment or two instead of a search). face_weight in (0, 1]: faces are read at "
          "max((level_L + level_R) / 2, z_face + face_weight (upwind level - z_face)); 1: at the upwind level. "
          "Local time steps: with lts_substeps = m >= 2 and lts_mask (ny, nx) uint8 scratch (written: bit 1 fast, "
          "bit 2 deep), the cells whose local depth exceeds lts_deep_depth (or below a stage edge that does) and their "
          "4-neighbours take m sub-steps of dt / m, every other cell one of dt; conservative, the slow faces' "
          "discharges fixed for the step (docs/design/subgrid-local-time-steps.md). lts_sources (int64 flat cell "
          "indices) with lts_source_depth (float64, the depth each gains over the step): point inflows added in m "
          "equal parts through the sub-cycle (the cells are taken as deep). count_depths (K,) with depth_counts "
          "(ny, K), written: per row, the cells whose new local depth exceeds each depth (the choice of the next "
          "step's local time steps).");
    m.def("flood_subgrid_check_tables", &check_tables, py::arg("cells").noconvert(), py::arg("faces_x").noconvert(),
          py::arg("faces_y").noconvert(),
          "Validate subgrid tables once (finite; level spacing >= 0; fractions in [0, 1]; volume tables strictly "
          "increasing; face depths >= 0). flood_subgrid_step checks shapes every call and flags non-finite levels "
          "and fluxes it computes (then runs this check to name the entry).");
    m.def("flood_subgrid_downscale_sheet", &sheet_downscale, py::arg("z").noconvert(), py::arg("film_scale").noconvert(),
          py::arg("h").noconvert(), py::arg("q").noconvert(), py::arg("manning").noconvert(),
          py::arg("level").noconvert(), py::arg("out").noconvert(), py::kw_only(), py::arg("max_out") = py::none(),
          py::arg("factor"), py::arg("threads") = 0,
          "Depth on the fine grid (NY, NX) = (ny*factor, nx*factor) with a Manning sheet-flow film on every pixel "
          "of each coarse cell with water and flow: max(eta - z, (n q)^(3/5) film_scale), eta holding the cell's "
          "volume factor^2 h; without flow max(level - z, 0); a wall (level NaN) 0. Writes out; raises max_out "
          "to it if given (docs/design/subgrid-sheet-downscale.md).");
    m.def("flood_subgrid_levels_of_rows", &levels_of_rows, py::arg("rows").noconvert(), py::arg("h").noconvert(),
          "Water level of n cells holding mean depths h (n,), from their table rows (n, 2N+2) (cells[rows, cols]): "
          "SubgridTables.level_for_depth, the same bits; NaN where the valid fraction is 0.");
    m.def("flood_subgrid_depths_of_rows", &depths_of_rows, py::arg("rows").noconvert(), py::arg("level").noconvert(),
          "Mean depth of n cells at water levels (n,), from their table rows (n, 2N+2): "
          "SubgridTables.depth_for_level, the same bits.");
    m.attr("FLOOD_SUBGRID_ROW_SLOTS") = static_cast<int>(subgrid::kRowSlots);
}

}  // namespace twin
