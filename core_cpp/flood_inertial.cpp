// Bindings of the local-inertial flood kernel (flood_inertial.hpp): validation with the GIL held,
// then the sweep with the GIL released. float32 and float64 overloads share one name; arrays are
// bound noconvert, so a wrong dtype or a non-contiguous array is a TypeError, never a silent copy.
#include "common.hpp"
#include "flood_inertial.hpp"
#include "modules.hpp"

#include <cstdlib>
#include <limits>
#include <string>
#include <sstream>

namespace twin {
namespace flood {

namespace {

enum class Isa { kBase, kAvx2, kAvx512 };

Isa detect_isa() {
    const char* force = std::getenv("TWIN_FLOOD_ISA");
    Isa best = Isa::kBase;
#if defined(TWIN_FLOOD_HAVE_X86_ISAS)
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
                    __builtin_cpu_supports("bmi2");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vl");
    best = v4 ? Isa::kAvx512 : (v3 ? Isa::kAvx2 : Isa::kBase);
    if (force) {
        const std::string f(force);
        if (f == "base") return Isa::kBase;
        if (f == "avx2" && v3) return Isa::kAvx2;
        if (f == "avx512" && v4) return Isa::kAvx512;
    }
#endif
    (void)force;
    return best;
}

Isa isa() {
    static const Isa chosen = detect_isa();
    return chosen;
}

}  // namespace

const char* active_isa() {
    switch (isa()) {
        case Isa::kAvx512: return "avx512";
        case Isa::kAvx2: return "avx2";
        default: return "base";
    }
}

template <class T>
T dispatch(const StepArgs<T>& a, int tid, int nth) {
#if defined(TWIN_FLOOD_HAVE_X86_ISAS)
    switch (isa()) {
        case Isa::kAvx512: return sweep_rows_avx512(a, tid, nth);
        case Isa::kAvx2: return sweep_rows_avx2(a, tid, nth);
        default: break;
    }
#endif
    return sweep_rows_base(a, tid, nth);
}

float sweep_rows_dispatch(const StepArgs<float>& a, int tid, int nth) { return dispatch<float>(a, tid, nth); }
double sweep_rows_dispatch(const StepArgs<double>& a, int tid, int nth) { return dispatch<double>(a, tid, nth); }

}  // namespace flood

namespace {

using flood::kRowSlots;

template <class T>
bool is_arr(const py::object& o) {
    return py::isinstance<carray<T>>(o);
}

// An optional array argument: None, or a C-contiguous array of exactly dtype T.
template <class T>
const T* opt_ptr(const py::object& o, const char* name, py::ssize_t n1, py::ssize_t nfull, bool* per_cell,
                 py::ssize_t* size_out = nullptr) {
    if (o.is_none()) return nullptr;
    if (!is_arr<T>(o)) {
        std::ostringstream s;
        s << name << ": expected a C-contiguous numpy array of dtype " << py::str(py::dtype::of<T>()).cast<std::string>()
          << " (no conversion is made), got " << py::str(py::type::of(o)).cast<std::string>();
        if (py::isinstance<py::array>(o))
            s << " of dtype " << py::str(o.attr("dtype")).cast<std::string>();
        throw py::type_error(s.str());
    }
    auto a = py::reinterpret_borrow<carray<T>>(o);
    if (size_out) {
        *size_out = a.size();
        return a.data();
    }
    if (a.size() != n1 && a.size() != nfull) {
        std::ostringstream s;
        s << name << ": expected 1 value or " << nfull << " values (one per cell), got " << a.size();
        fail(s.str());
    }
    if (per_cell) *per_cell = (a.size() == nfull && nfull != 1);
    return a.data();
}

template <class T>
double step_binding(carray<T> z, carray<T> h, carray<T> qx, carray<T> qy, carray<T> h_out, carray<T> qx_out,
                    carray<T> qy_out, carray<T> manning, carray<std::uint8_t> edge_kind, carray<T> edge_value,
                    carray<T> maxh, carray<T> maxspeed, carray<T> arrival, carray<double> row_sums, double dx,
                    double dt, double theta, double t_end, py::object rain0, py::object rain1, double rain_w,
                    double rain_scale, py::object loss, double loss_scale, py::object lev_x_ptr, py::object lev_x_idx,
                    py::object lev_x_crest, py::object lev_y_ptr, py::object lev_y_idx, py::object lev_y_crest,
                    int threads, py::object seg_max_depth_min, py::object seg_max_speed_min) {
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
    require_shape2(row_sums, ny, kRowSlots, "row_sums");
    require_size(edge_kind, 2 * ny + 2 * nx, "edge_kind");
    require_size(edge_value, 2 * ny + 2 * nx, "edge_value");
    if (manning.size() != 1 && manning.size() != ny * nx) {
        std::ostringstream s;
        s << "manning: expected 1 value or " << ny * nx << " (one per cell), got " << manning.size();
        fail(s.str());
    }
    require_nonnegative(manning, "manning");
    // scalars are checked after the cast to T (1e39 is finite in float64, +inf in float32)
    checked_scalar<T>(dx, "cell_size (dx)", true, true);
    checked_scalar<T>(dt, "dt", true, true);
    checked_scalar<T>(t_end, "t_end", false);
    if (!(theta >= 0.0 && theta <= 1.0)) {
        std::ostringstream s;
        s << "theta: must be in [0, 1], got " << theta;
        fail(s.str());
    }
    if (threads < 0) fail("threads: must be >= 0 (0 = default), got " + std::to_string(threads));
    const std::uint8_t* ek = edge_kind.data();
    for (py::ssize_t i = 0; i < edge_kind.size(); ++i)
        if (ek[i] > flood::kEdgeStage)
            fail("edge_kind: value " + std::to_string(int(ek[i])) + " at index " + std::to_string(i) +
                 " is not 0 (wall), 1 (free) or 2 (stage)");
    require_finite(edge_value, "edge_value");

    flood::StepArgs<T> a{};
    a.ny = ny;
    a.nx = nx;
    a.z = z.data();
    a.h = h.data();
    a.qx = qx.data();
    a.qy = qy.data();
    a.h_out = h_out.mutable_data();
    a.qx_out = qx_out.mutable_data();
    a.qy_out = qy_out.mutable_data();
    a.manning = manning.data();
    a.manning_per_cell = (manning.size() == ny * nx && ny * nx != 1);
    a.edge_kind = ek;
    a.edge_value = edge_value.data();
    bool rpc0 = false, rpc1 = false;
    a.rain0 = opt_ptr<T>(rain0, "rain0", 1, ny * nx, &rpc0);
    a.rain1 = opt_ptr<T>(rain1, "rain1", 1, ny * nx, &rpc1);
    if ((a.rain0 == nullptr) != (a.rain1 == nullptr)) fail("rain0/rain1: give both or neither");
    if (a.rain0 && rpc0 != rpc1) fail("rain0/rain1: must both be uniform (1 value) or both per cell");
    a.rain_per_cell = rpc0;
    if (!(rain_w >= 0.0 && rain_w <= 1.0)) fail("rain_w: must be in [0, 1], got " + std::to_string(rain_w));
    a.rain_w = static_cast<T>(rain_w);
    a.rain_scale = checked_scalar<T>(rain_scale, "rain_scale", true);
    bool lpc = false;
    a.loss = opt_ptr<T>(loss, "loss", 1, ny * nx, &lpc);
    a.loss_per_cell = lpc;
    a.loss_scale = checked_scalar<T>(loss_scale, "loss_scale", true);
    // uniform rain and loss: the depth of this sub-step, computed as the kernel does, finite and >= 0;
    // per-cell values are checked inside the sweep (source_rows), where they are read anyway
    const T big = std::numeric_limits<T>::max();
    auto bad_depth = [big](T v) { return !(v >= T(0) && v <= big); };
    if (a.rain0 && !a.rain_per_cell) {
        const T ru = a.rain_scale * ((T(1) - a.rain_w) * a.rain0[0] + a.rain_w * a.rain1[0]);
        if (bad_depth(a.rain0[0]) || bad_depth(a.rain1[0]) || bad_depth(ru)) {
            std::ostringstream s;
            s << "rain0/rain1: uniform rates " << a.rain0[0] << ", " << a.rain1[0] << " with rain_scale " << rain_scale
              << " give a rain depth of " << ru << " this sub-step: rates must be finite and >= 0 and the depth finite";
            fail(s.str());
        }
    }
    if (a.loss && !a.loss_per_cell) {
        const T lu = a.loss_scale * a.loss[0];
        if (bad_depth(a.loss[0]) || bad_depth(lu)) {
            std::ostringstream s;
            s << "loss: uniform rate " << a.loss[0] << " with loss_scale " << loss_scale << " gives a loss of " << lu
              << " this sub-step: the rate must be finite and >= 0 and the loss finite";
            fail(s.str());
        }
    }
    // levees (CSR by row)
    py::ssize_t lev_sizes[2][3] = {{0, 0, 0}, {0, 0, 0}};
    auto levee = [&](const py::object& ptr, const py::object& idx, const py::object& crest, py::ssize_t nrows,
                     py::ssize_t nfaces, const char* which, const std::int64_t** p_out, const std::int64_t** i_out,
                     const T** c_out, py::ssize_t* sizes) {
        if (ptr.is_none() && idx.is_none() && crest.is_none()) return;
        py::ssize_t np = 0, ni = 0, nc = 0;
        const std::int64_t* p = opt_ptr<std::int64_t>(ptr, which, 0, 0, nullptr, &np);
        const std::int64_t* ix = opt_ptr<std::int64_t>(idx, which, 0, 0, nullptr, &ni);
        const T* cr = opt_ptr<T>(crest, which, 0, 0, nullptr, &nc);
        if (!p || !ix || !cr) fail(std::string(which) + ": give the row pointer, face index and crest arrays together");
        if (np != nrows + 1 || ni != nc || p[0] != 0 || p[nrows] != ni)
            fail(std::string(which) + ": inconsistent CSR arrays (row pointer length " + std::to_string(np) +
                 ", expected " + std::to_string(nrows + 1) + ")");
        for (py::ssize_t r = 0; r < nrows; ++r)
            if (p[r + 1] < p[r]) fail(std::string(which) + ": row pointer must be non-decreasing");
        for (py::ssize_t i = 0; i < ni; ++i) {
            if (ix[i] < 0 || ix[i] >= nfaces) fail(std::string(which) + ": face index out of range");
            if (!std::isfinite(static_cast<double>(cr[i]))) fail(std::string(which) + ": crest must be finite");
        }
        *p_out = p;
        *i_out = ix;
        *c_out = cr;
        sizes[0] = np;
        sizes[1] = ni;
        sizes[2] = nc;
    };
    levee(lev_x_ptr, lev_x_idx, lev_x_crest, ny, ny * (nx + 1), "levee x faces", &a.lev_x_ptr, &a.lev_x_idx,
          &a.lev_x_crest, lev_sizes[0]);
    levee(lev_y_ptr, lev_y_idx, lev_y_crest, ny + 1, (ny + 1) * nx, "levee y faces", &a.lev_y_ptr, &a.lev_y_idx,
          &a.lev_y_crest, lev_sizes[1]);
    a.maxh = maxh.mutable_data();
    a.maxspeed = maxspeed.mutable_data();
    a.arrival = arrival.mutable_data();
    a.row_sums = row_sums.mutable_data();
    // tracker segment bounds (optional; both or neither)
    const py::ssize_t nseg = (nx + flood::kTrackSeg - 1) / flood::kTrackSeg;
    auto seg_bound = [&](const py::object& o, const char* name) -> T* {
        if (o.is_none()) return nullptr;
        if (!py::isinstance<carray<T>>(o))
            throw py::type_error(std::string(name) + ": expected a C-contiguous array of the model dtype (" +
                                 (sizeof(T) == 4 ? "float32" : "float64") + ")");
        auto arr = py::reinterpret_borrow<carray<T>>(o);
        if (arr.ndim() != 2 || arr.shape(0) != ny || arr.shape(1) != nseg) {
            std::ostringstream s;
            s << name << ": expected shape (" << ny << ", " << nseg << ") (rows, ceil(nx / " << flood::kTrackSeg
              << ")), got " << shape_str(arr);
            fail(s.str());
        }
        if (!arr.writeable()) fail(std::string(name) + ": array must be writeable");
        return arr.mutable_data();
    };
    if (seg_max_depth_min.is_none() != seg_max_speed_min.is_none())
        fail("seg_max_depth_min/seg_max_speed_min: give both or neither");
    a.seg_maxh_min = seg_bound(seg_max_depth_min, "seg_max_depth_min");
    a.seg_maxs_min = seg_bound(seg_max_speed_min, "seg_max_speed_min");
    // no array the kernel writes may share memory with another argument (views offset by a row included)
    {
        const py::ssize_t nsrc = a.rain_per_cell ? ny * nx : 1, nloss = a.loss_per_cell ? ny * nx : 1;
        const py::ssize_t nsegb = ny * nseg * static_cast<py::ssize_t>(sizeof(T));
        const py::ssize_t sz = static_cast<py::ssize_t>(sizeof(T)), s8 = 8;
        require_no_overlap({buf("depth_out", h_out, true), buf("qx_out", qx_out, true), buf("qy_out", qy_out, true),
                            buf("max_depth", maxh, true), buf("max_speed", maxspeed, true),
                            buf("arrival_time", arrival, true), buf("row_sums", row_sums, true),
                            NamedBuf{"seg_max_depth_min", a.seg_maxh_min, nsegb, true},
                            NamedBuf{"seg_max_speed_min", a.seg_maxs_min, nsegb, true},
                            buf("elevation", z, false), buf("depth", h, false), buf("qx", qx, false),
                            buf("qy", qy, false), buf("manning", manning, false), buf("edge_kind", edge_kind, false),
                            buf("edge_value", edge_value, false), NamedBuf{"rain0", a.rain0, nsrc * sz, false},
                            NamedBuf{"rain1", a.rain1, nsrc * sz, false}, NamedBuf{"loss", a.loss, nloss * sz, false},
                            NamedBuf{"lev_x_ptr", a.lev_x_ptr, lev_sizes[0][0] * s8, false},
                            NamedBuf{"lev_x_idx", a.lev_x_idx, lev_sizes[0][1] * s8, false},
                            NamedBuf{"lev_x_crest", a.lev_x_crest, lev_sizes[0][2] * sz, false},
                            NamedBuf{"lev_y_ptr", a.lev_y_ptr, lev_sizes[1][0] * s8, false},
                            NamedBuf{"lev_y_idx", a.lev_y_idx, lev_sizes[1][1] * s8, false},
                            NamedBuf{"lev_y_crest", a.lev_y_crest, lev_sizes[1][2] * sz, false}});
    }
    a.dx = static_cast<T>(dx);
    a.dt = static_cast<T>(dt);
    a.theta = static_cast<T>(theta);
    a.t_end = static_cast<T>(t_end);
    a.threads = resolve_threads(threads);

    double hmax;
    {
        py::gil_scoped_release release;
        hmax = flood::inertial_step<T>(a);
    }
    // non-finite or negative values found in the sweep (every sub-step, folded into the scans the sweep
    // makes anyway): name the input
    const double* rs = row_sums.data();
    for (py::ssize_t r = 0; r < ny; ++r) {
        const double flag = rs[r * kRowSlots + flood::kBad];
        if (flag == 0.0) continue;
        const int bits = static_cast<int>(flag);
        const T neg = T(-flood::kNegDepth);
        auto first_below = [&](const T* p, py::ssize_t n, const char* name) {
            for (py::ssize_t i = 0; i < n; ++i)
                if (p[i] < neg) {
                    std::ostringstream s;
                    s << name << ": value " << p[i] << " at (row " << i / nx << ", col " << i % nx
                      << ") is negative: depths must be >= 0";
                    fail(s.str());
                }
        };
        if (bits & flood::kBadNegInput) first_below(h.data(), ny * nx, "depth");
        if (bits & flood::kBadSource) {
            if (a.rain0 && a.rain_per_cell) {
                require_nonnegative(py::reinterpret_borrow<carray<T>>(rain0), "rain0");
                require_nonnegative(py::reinterpret_borrow<carray<T>>(rain1), "rain1");
            }
            if (a.loss && a.loss_per_cell) require_nonnegative(py::reinterpret_borrow<carray<T>>(loss), "loss");
            std::ostringstream s;
            s << "rain0/rain1/loss: the rain depth or loss of this sub-step (rain_scale " << rain_scale
              << ", loss_scale " << loss_scale << " times the rates) is not finite in row " << r
              << " (overflow in " << (sizeof(T) == 4 ? "float32" : "float64") << ")";
            fail(s.str());
        }
        require_finite(z, "elevation");
        require_finite(h, "depth");
        require_finite(qx, "qx");
        require_finite(qy, "qy");
        if (bits & flood::kBadNonFinite)
            fail("depth became non-finite in row " + std::to_string(r) + " (check rain, loss and manning inputs " +
                 "for NaN/inf, and the depths for values too large for " + (sizeof(T) == 4 ? "float32" : "float64") +
                 ")");
        fail("depth became negative (below -" + std::to_string(flood::kNegDepth) + " m) in row " + std::to_string(r));
    }
    return hmax;
}

template <class T>
void def_step(py::module_& m) {
    m.def("flood_inertial_step", &step_binding<T>, py::arg("z").noconvert(), py::arg("h").noconvert(),
          py::arg("qx").noconvert(), py::arg("qy").noconvert(), py::arg("h_out").noconvert(),
          py::arg("qx_out").noconvert(), py::arg("qy_out").noconvert(), py::arg("manning").noconvert(),
          py::arg("edge_kind").noconvert(), py::arg("edge_value").noconvert(), py::arg("max_depth").noconvert(),
          py::arg("max_speed").noconvert(), py::arg("arrival_time").noconvert(), py::arg("row_sums").noconvert(),
          py::kw_only(), py::arg("dx"), py::arg("dt"), py::arg("theta"), py::arg("t_end"),
          py::arg("rain0") = py::none(), py::arg("rain1") = py::none(), py::arg("rain_w") = 0.0,
          py::arg("rain_scale") = 0.0, py::arg("loss") = py::none(), py::arg("loss_scale") = 0.0, py::arg("lev_x_ptr") = py::none(),
          py::arg("lev_x_idx") = py::none(), py::arg("lev_x_crest") = py::none(), py::arg("lev_y_ptr") = py::none(),
          py::arg("lev_y_idx") = py::none(), py::arg("lev_y_crest") = py::none(), py::arg("threads") = 0,
          py::arg("seg_max_depth_min") = py::none(), py::arg("seg_max_speed_min") = py::none(),
          "One local-inertial sub-step of length dt (see core_cpp/flood_inertial.hpp). Reads the old state "
          "(z, h, qx, qy), writes the new one into h_out/qx_out/qy_out, updates max_depth/max_speed/"
          "arrival_time in place and the per-row sums (rain, lost, boundary in, boundary out, bad) in "
          "row_sums. Returns the new maximum depth. Optional seg_max_depth_min/seg_max_speed_min "
          "(ny, ceil(nx / FLOOD_TRACK_SEGMENT)): lower bounds of the trackers' minimum over each row "
          "segment, kept by the kernel; segments whose new values stay within them are not touched. "
          "Reset them to -inf after lowering a tracker outside the kernel.");
}

}  // namespace

void register_flood(py::module_& m) {
    def_step<float>(m);
    def_step<double>(m);
    m.attr("FLOOD_WALL_Z") = flood::kWallZ;
    m.attr("FLOOD_DEPTH_THRESHOLD") = flood::kDepthThresh;
    m.attr("FLOOD_SPEED_DEPTH") = flood::kSpeedDepth;
    m.attr("FLOOD_ARRIVAL_DEPTH") = flood::kArrivalDepth;
    m.attr("FLOOD_ROW_SLOTS") = static_cast<int>(kRowSlots);
    m.attr("FLOOD_TRACK_SEGMENT") = static_cast<int>(flood::kTrackSeg);
    m.def("flood_isa", [] { return std::string(flood::active_isa()); },
          "Instruction set of the flood sweep in use: 'avx512', 'avx2' or 'base' (TWIN_FLOOD_ISA forces one).");
}

}  // namespace twin
