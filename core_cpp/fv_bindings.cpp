// Python face of the finite-volume kernels (fv_solver.hpp): validation with the GIL held, then the
// loops with the GIL released. Bound for float64 and float32 (noconvert: a wrong dtype is an error).
#include <pybind11/stl.h>

#include <optional>

#include "common.hpp"
#include "fv_solver.hpp"
#include "modules.hpp"

namespace twin {
namespace {

template <class T>
void require_no_nan(const carray<T>& a, const char* name) {
    const T* p = a.data();
    for (py::ssize_t i = 0; i < a.size(); ++i) {
        if (std::isnan(static_cast<double>(p[i])) || p[i] == std::numeric_limits<T>::infinity()) {
            std::ostringstream s;
            s << name << ": value " << p[i] << " at flat index " << i
              << " must be finite (or -inf where there is no crest)";
            fail(s.str());
        }
    }
}

// h >= 0 and finite, hu/hv finite: one pass over the three arrays.
template <class T>
void require_state(const carray<T>& h, const carray<T>& hu, const carray<T>& hv) {
    const T* ph = h.data();
    const T* pu = hu.data();
    const T* pv = hv.data();
    const py::ssize_t n = h.size();
    bool ok = true;
    for (py::ssize_t i = 0; i < n; ++i) ok &= (ph[i] >= T(0)) & std::isfinite(ph[i]) & std::isfinite(pu[i]) & std::isfinite(pv[i]);
    if (!ok) {
        require_nonnegative(h, "h");
        require_finite(hu, "hu");
        require_finite(hv, "hv");
    }
}

template <class T>
fv::Params<T> make_params(const carray<T>& z, const carray<T>& manning, const carray<uint8_t>& active,
                          const carray<int8_t>& bc_kind, const carray<T>& bc_stage,
                          const std::optional<carray<T>>& zfx, const std::optional<carray<T>>& zfy,
                          double dx, double g, double h_dry, int order, int limiter, bool check_static) {
    require(z.ndim() == 2, "z: expected a 2-D (ny, nx) array, got shape " + shape_str(z));
    const py::ssize_t ny = z.shape(0), nx = z.shape(1);
    require(ny >= 1 && nx >= 1, "z: empty grid");
    require_shape2(manning, ny, nx, "manning");
    require_shape2(active, ny, nx, "active");
    require_size(bc_kind, 2 * (ny + nx), "bc_kind");
    require_size(bc_stage, 2 * (ny + nx), "bc_stage");
    // scalars are checked after the cast to T (1e39 is finite in float64, +inf in float32)
    checked_scalar<T>(dx, "dx", true, true);
    checked_scalar<T>(g, "g", true, true);
    checked_scalar<T>(h_dry, "h_dry", true);
    require(order == 1 || order == 2, "order: must be 1 or 2, got " + std::to_string(order));
    require(limiter == 0 || limiter == 1, "limiter: must be 0 (minmod) or 1 (van Leer), got " + std::to_string(limiter));
    if (zfx) require_shape2(*zfx, ny, nx + 1, "face_z_x");
    if (zfy) require_shape2(*zfy, ny + 1, nx, "face_z_y");
    if (check_static) {
        require_finite(z, "z");
        require_nonnegative(manning, "manning");
        const int8_t* k = bc_kind.data();
        const T* st = bc_stage.data();
        for (py::ssize_t i = 0; i < bc_kind.size(); ++i) {
            if (k[i] < 0 || k[i] > 2)
                fail("bc_kind: value " + std::to_string(int(k[i])) + " at index " + std::to_string(i) +
                     " must be 0 (wall), 1 (free) or 2 (stage)");
            if (k[i] == 2 && !std::isfinite(static_cast<double>(st[i])))
                fail("bc_stage: non-finite stage at index " + std::to_string(i) + " of a stage boundary face");
        }
        if (zfx) require_no_nan(*zfx, "face_z_x");
        if (zfy) require_no_nan(*zfy, "face_z_y");
    }
    fv::Params<T> P;
    P.ny = int(ny);
    P.nx = int(nx);
    P.dx = T(dx);
    P.g = T(g);
    P.hdry = T(h_dry);
    P.order = order;
    P.limiter = limiter;
    P.z = z.data();
    P.manning = manning.data();
    P.active = active.data();
    P.zfx = zfx ? zfx->data() : nullptr;
    P.zfy = zfy ? zfy->data() : nullptr;
    P.bc_kind = bc_kind.data();
    P.bc_stage = bc_stage.data();
    return P;
}

template <class T>
py::tuple fv_step(const carray<T>& z, const carray<T>& manning, const carray<uint8_t>& active, const carray<T>& h,
               const carray<T>& hu, const carray<T>& hv, carray<T> out_h, carray<T> out_hu, carray<T> out_hv,
               const carray<int8_t>& bc_kind, const carray<T>& bc_stage, carray<T> bc_q, carray<T> work,
               double dx, double dt, double g, double h_dry, int order, int limiter,
               std::optional<carray<T>> face_z_x, std::optional<carray<T>> face_z_y, int threads,
               bool check_static, std::optional<carray<T>> rain0, std::optional<carray<T>> rain1, double rain_w,
               double rain_scale, std::optional<carray<T>> loss, double loss_scale,
               std::optional<carray<T>> max_depth, std::optional<carray<T>> max_speed,
               std::optional<carray<T>> arrival_time, double t_end, std::optional<carray<double>> row_sums,
               bool check_state) {
    fv::Params<T> P = make_params(z, manning, active, bc_kind, bc_stage, face_z_x, face_z_y, dx, g, h_dry, order,
                                  limiter, check_static);
    const py::ssize_t ny = P.ny, nx = P.nx, n = ny * nx;
    require_shape2(h, ny, nx, "h");
    require_shape2(hu, ny, nx, "hu");
    require_shape2(hv, ny, nx, "hv");
    require_shape2(out_h, ny, nx, "out_h");
    require_shape2(out_hu, ny, nx, "out_hu");
    require_shape2(out_hv, ny, nx, "out_hv");
    require_size(bc_q, 2 * (ny + nx), "bc_q");
    checked_scalar<T>(dt, "dt", true);
    checked_scalar<T>(t_end, "t_end", false);
    if (order == 2 && work.size() < 3 * n)
        fail("work: order 2 needs at least 3*ny*nx = " + std::to_string(3 * n) + " elements, got " +
             std::to_string(work.size()));
    if (check_state) require_state(h, hu, hv);
    fv::Extras<T> X;
    if (rain0 || rain1) {
        require(rain0 && rain1, "rain0/rain1: give both or neither");
        require(rain0->size() == rain1->size() && (rain0->size() == 1 || rain0->size() == n),
                "rain0/rain1: expected 1 or ny*nx values each");
        require(std::isfinite(rain_w) && rain_w >= 0 && rain_w <= 1, "rain_w: must be in [0, 1]");
        checked_scalar<T>(rain_scale, "rain_scale", true);
        require_nonnegative(*rain0, "rain0");
        require_nonnegative(*rain1, "rain1");
        X.rain0 = rain0->data();
        X.rain1 = rain1->data();
        X.rain_per_cell = rain0->size() == n;
        X.rain_w = T(rain_w);
        X.rain_scale = T(rain_scale);
    }
    if (loss) {
        require(loss->size() == 1 || loss->size() == n, "loss: expected 1 or ny*nx values");
        checked_scalar<T>(loss_scale, "loss_scale", true);
        require_nonnegative(*loss, "loss");
        X.loss = loss->data();
        X.loss_per_cell = loss->size() == n;
        X.loss_scale = T(loss_scale);
    }
    if (max_depth || max_speed || arrival_time) {
        require(max_depth && max_speed && arrival_time, "max_depth/max_speed/arrival_time: give all three or none");
        require_shape2(*max_depth, ny, nx, "max_depth");
        require_shape2(*max_speed, ny, nx, "max_speed");
        require_shape2(*arrival_time, ny, nx, "arrival_time");
        X.maxh = max_depth->mutable_data();
        X.maxs = max_speed->mutable_data();
        X.arrival = arrival_time->mutable_data();
        X.t_end = T(t_end);
    }
    if (row_sums) {
        require(row_sums->ndim() == 2 && row_sums->shape(0) == ny && row_sums->shape(1) >= 4,
                "row_sums: expected shape (ny, >= 4), got " + shape_str(*row_sums));
        X.row_sums = row_sums->mutable_data();
        X.row_slots = int(row_sums->shape(1));
        std::fill(X.row_sums, X.row_sums + row_sums->size(), 0.0);
    }
    // no array the kernel writes may share memory with another argument (views offset by a row included)
    {
        auto ob = [](const char* name, const auto& o, bool w) {
            return o ? buf(name, *o, w) : NamedBuf{name, nullptr, 0, w};
        };
        require_no_overlap({buf("out_h", out_h, true), buf("out_hu", out_hu, true), buf("out_hv", out_hv, true),
                            buf("bc_q", bc_q, true), NamedBuf{"work", work.data(), order == 2 ? work.nbytes() : 0, true},
                            ob("max_depth", max_depth, true), ob("max_speed", max_speed, true),
                            ob("arrival_time", arrival_time, true), ob("row_sums", row_sums, true),
                            buf("z", z, false), buf("manning", manning, false), buf("active", active, false),
                            buf("h", h, false), buf("hu", hu, false), buf("hv", hv, false),
                            buf("bc_kind", bc_kind, false), buf("bc_stage", bc_stage, false),
                            ob("face_z_x", face_z_x, false), ob("face_z_y", face_z_y, false),
                            ob("rain0", rain0, false), ob("rain1", rain1, false), ob("loss", loss, false)});
    }
    T* oh = out_h.mutable_data();
    T* ohu = out_hu.mutable_data();
    T* ohv = out_hv.mutable_data();
    T* bq = bc_q.mutable_data();
    T* wk = order == 2 ? work.mutable_data() : nullptr;
    const int nt = resolve_threads(threads);
    double smax;
    T hmax = T(0);
    long bad = 0;
    {
        py::gil_scoped_release release;
        const py::ssize_t nb = 2 * (ny + nx);
        std::vector<T> tmp(nb, T(0));
        std::fill(bq, bq + nb, T(0));
        fv::View<T> S{h.data(), hu.data(), hv.data()};
        if (order == 1) {
            smax = fv::euler_update<T, false>(P, S, nullptr, T(0), T(1), oh, ohu, ohv, T(dt), &X, bq, T(1), nt,
                                              tmp.data(), &hmax, &bad);
        } else {
            T* h1 = wk;
            T* hu1 = wk + n;
            T* hv1 = wk + 2 * n;
            fv::euler_update<T, true>(P, S, nullptr, T(0), T(1), h1, hu1, hv1, T(dt), nullptr, bq, T(0.5), nt,
                                      tmp.data());
            fv::View<T> S1{h1, hu1, hv1};
            smax = fv::euler_update<T, true>(P, S1, &S, T(0.5), T(0.5), oh, ohu, ohv, T(dt), &X, bq, T(0.5), nt,
                                             tmp.data(), &hmax, &bad);
        }
        if (X.row_sums) {  // boundary in/outflow per row [m2/s]: edge faces of the row, north/south edges on rows 0/ny-1
            double* rs = X.row_sums;
            const int sl = X.row_slots;
            auto book = [&](long row, double q) {
                if (q > 0) rs[row * sl + 3] += q;
                else rs[row * sl + 2] -= q;
            };
            for (py::ssize_t r = 0; r < ny; ++r) {
                book(r, double(bq[r]));
                book(r, double(bq[ny + r]));
            }
            for (py::ssize_t c = 0; c < nx; ++c) {
                book(0, double(bq[2 * ny + c]));
                book(ny - 1, double(bq[2 * ny + nx + c]));
            }
        }
    }
    if (bad) {  // the new state is not finite (or a depth negative): name the input, else the overflow
        require_state(h, hu, hv);
        const long i = bad - 1;
        std::ostringstream s;
        s << "fv_step: the new state is not finite at (row " << i / nx << ", col " << i % nx << "): h=" << oh[i]
          << ", hu=" << ohu[i] << ", hv=" << ohv[i] << " (the step overflowed " << (sizeof(T) == 4 ? "float32" : "float64")
          << ": check the depths, rain and stages for values far beyond any flood; dt=" << dt << ")";
        fail(s.str());
    }
    return py::make_tuple(smax, double(hmax));
}

template <class T>
double fv_max_wave_speed(const carray<T>& z, const carray<T>& h, const carray<T>& hu, const carray<T>& hv,
                         const carray<uint8_t>& active, double g, double h_dry, int threads) {
    require(h.ndim() == 2, "h: expected a 2-D (ny, nx) array, got shape " + shape_str(h));
    const py::ssize_t ny = h.shape(0), nx = h.shape(1);
    require_shape2(z, ny, nx, "z");
    require_shape2(hu, ny, nx, "hu");
    require_shape2(hv, ny, nx, "hv");
    require_shape2(active, ny, nx, "active");
    require(std::isfinite(g) && g > 0, "g: must be finite and > 0");
    require_state(h, hu, hv);
    fv::Params<T> P{};
    P.ny = int(ny);
    P.nx = int(nx);
    P.g = T(g);
    P.hdry = T(h_dry);
    P.active = active.data();
    P.z = z.data();
    fv::View<T> S{h.data(), hu.data(), hv.data()};
    const int nt = resolve_threads(threads);
    py::gil_scoped_release release;
    return double(fv::max_wave_speed(P, S, nt));
}

template <class T>
void bind_fv(py::module_& m) {
    m.def("fv_step", &fv_step<T>, py::arg("z").noconvert(), py::arg("manning").noconvert(),
          py::arg("active").noconvert(), py::arg("h").noconvert(), py::arg("hu").noconvert(),
          py::arg("hv").noconvert(), py::arg("out_h").noconvert(), py::arg("out_hu").noconvert(),
          py::arg("out_hv").noconvert(), py::arg("bc_kind").noconvert(), py::arg("bc_stage").noconvert(),
          py::arg("bc_q").noconvert(), py::arg("work").noconvert(), py::kw_only(), py::arg("dx"), py::arg("dt"),
          py::arg("g") = 9.81, py::arg("h_dry") = 1e-6, py::arg("order") = 1, py::arg("limiter") = 0,
          py::arg("face_z_x").noconvert() = py::none(), py::arg("face_z_y").noconvert() = py::none(),
          py::arg("threads") = 0, py::arg("check_static") = true, py::arg("rain0").noconvert() = py::none(),
          py::arg("rain1").noconvert() = py::none(), py::arg("rain_w") = 0.0, py::arg("rain_scale") = 0.0,
          py::arg("loss").noconvert() = py::none(), py::arg("loss_scale") = 0.0,
          py::arg("max_depth").noconvert() = py::none(), py::arg("max_speed").noconvert() = py::none(),
          py::arg("arrival_time").noconvert() = py::none(), py::arg("t_end") = 0.0,
          py::arg("row_sums").noconvert() = py::none(), py::arg("check_state") = true,
          "One finite-volume step (HLLC + hydrostatic reconstruction, semi-implicit Manning friction) of the\n"
          "state (h, hu, hv) written to (out_h, out_hu, out_hv). order=2: MUSCL + Heun (work needs\n"
          "3*ny*nx elements). bc_kind/bc_stage: per edge face, west[ny], east[ny], north[nx], south[nx];\n"
          "0 wall, 1 free (transmissive), 2 stage. bc_q receives the step-averaged outward discharge per\n"
          "unit width [m2/s] of each edge face. face_z_x (ny, nx+1) / face_z_y (ny+1, nx): crest\n"
          "elevations on faces (-inf: none). Optional, fused into the final update: rain (rain0/rain1\n"
          "rates, 1 or ny*nx values, depth = rain_scale*((1-rain_w)*rain0 + rain_w*rain1)), losses (depth\n"
          "cap loss_scale*loss), tracked max_depth/max_speed/arrival_time (first depth > 0.1 m: t_end) and\n"
          "row_sums (ny, >=4) float64: rain depth, lost depth, boundary inflow, outflow [m2/s] per row.\n"
          "Cells with z >= 1e29 are walls. check_state/check_static: validate the state (h >= 0, all finite)\n"
          "and the static inputs (z, manning, edges, crests); callers stepping their own output may skip.\n"
          "Returns (largest signal speed [m/s], largest depth [m]) of the\n"
          "new state.");
    m.def("fv_max_wave_speed", &fv_max_wave_speed<T>, py::arg("z").noconvert(), py::arg("h").noconvert(), py::arg("hu").noconvert(),
          py::arg("hv").noconvert(), py::arg("active").noconvert(), py::kw_only(), py::arg("g") = 9.81,
          py::arg("h_dry") = 1e-6, py::arg("threads") = 0,
          "Largest signal speed max(|u|, |v|) + 2 sqrt(g h) over active wet cells [m/s] (2c: a front\n"
          "into a dry cell moves at u + 2c): the speed for a first, positivity-safe time step.");
}

}  // namespace

void register_fv(py::module_& m) {
    bind_fv<double>(m);
    bind_fv<float>(m);
}

}  // namespace twin
