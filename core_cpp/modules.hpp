// Each kernel family registers its functions on the one module twin._core.
#pragma once
#include <pybind11/pybind11.h>

namespace twin {
void register_common(pybind11::module_& m);
void register_flood(pybind11::module_& m);
void register_traffic(pybind11::module_& m);
void register_fv(pybind11::module_& m);
void register_flood_subgrid(pybind11::module_& m);
// Added by the kernel families (one file each): register_flood, register_traffic, register_fv ...
}  // namespace twin
