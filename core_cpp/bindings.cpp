// The one binding file of the private module twin._core. Kernel families live in their own
// files (flood_*.cpp, traffic_*.cpp, fv_*.cpp) and expose a register_*() called here.
#include "common.hpp"
#include "modules.hpp"

namespace twin {

void register_common(py::module_& m) {
#ifdef TWIN_HAVE_OPENMP
    m.attr("has_openmp") = true;
#else
    m.attr("has_openmp") = false;
#endif
    m.def("max_threads", [] { return resolve_threads(0); },
          "Threads a kernel uses by default (OMP_NUM_THREADS or the core count; 1 without OpenMP).");
}

}  // namespace twin

PYBIND11_MODULE(_core, m) {
    m.doc() = "Tam Kỳ Twin hot kernels (private: use the twin package).";
    twin::register_common(m);
    twin::register_flood(m);
    twin::register_traffic(m);
    twin::register_fv(m);
    twin::register_flood_subgrid(m);
}
