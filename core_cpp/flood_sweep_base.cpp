// The flood sweep compiled for one instruction set (base); see flood_inertial.hpp.
// CMakeLists.txt gives this file its -march flags; the code is the same template for every ISA.
#include "flood_inertial.hpp"

namespace twin::flood {
#if 1
float sweep_rows_base(const StepArgs<float>& a, int tid, int nth) { return sweep_rows<float>(a, tid, nth); }
double sweep_rows_base(const StepArgs<double>& a, int tid, int nth) { return sweep_rows<double>(a, tid, nth); }
#endif
}  // namespace twin::flood
