// The subgrid kernel compiled for x86-64-v3 (CMakeLists.txt gives this file its -march flags); see
// flood_subgrid_kernel.hpp. flood_subgrid.cpp calls it where the flood sweep runs avx2 or avx512.
#include "flood_subgrid_kernel.hpp"

namespace twin::subgrid {
#if defined(TWIN_FLOOD_HAVE_X86_ISAS)
double step_avx2(const Args& a) { return step_kernel(a); }
#endif
}  // namespace twin::subgrid
