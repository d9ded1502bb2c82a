// The flood sweep compiled for one instruction set (avx2); see flood_inertial.hpp.
// CMakeLists.txt gives this file its -march flags; the code is the same template for every ISA.
// This ISA has masked stores: the tracked maxima are written only where they change.
#define TWIN_FLOOD_MASKED_STORES 1
#include "flood_inertial.hpp"

namespace twin::flood {
#if defined(TWIN_FLOOD_HAVE_X86_ISAS)
float sweep_rows_avx2(const StepArgs<float>& a, int tid, int nth) { return sweep_rows<float>(a, tid, nth); }
double sweep_rows_avx2(const StepArgs<double>& a, int tid, int nth) { return sweep_rows<double>(a, tid, nth); }
#endif
}  // namespace twin::flood
