// Shared helpers for the kernels of twin._core: array views, boundary validation, OpenMP threads.
// Every kernel validates its inputs here, with the GIL held, then releases the GIL for the loops.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#ifdef TWIN_HAVE_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace twin {

// C-contiguous arrays; bind them with py::arg(...).noconvert() so that a wrong dtype is an error,
// never a silent copy (an out= array that was copied would lose the kernel's writes).
template <class T>
using carray = py::array_t<T, py::array::c_style>;

[[noreturn]] inline void fail(const std::string& msg) { throw py::value_error(msg); }

inline void require(bool ok, const std::string& msg) {
    if (!ok) fail(msg);
}

template <class T>
std::string shape_str(const carray<T>& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

// Checks that `a` has exactly `n` elements; the message names the argument.
template <class T>
void require_size(const carray<T>& a, py::ssize_t n, const char* name) {
    if (a.size() != n) {
        std::ostringstream s;
        s << name << ": expected " << n << " elements, got " << a.size() << " with shape " << shape_str(a);
        fail(s.str());
    }
}

template <class T>
void require_shape2(const carray<T>& a, py::ssize_t ny, py::ssize_t nx, const char* name) {
    if (a.ndim() != 2 || a.shape(0) != ny || a.shape(1) != nx) {
        std::ostringstream s;
        s << name << ": expected shape (" << ny << ", " << nx << "), got " << shape_str(a);
        fail(s.str());
    }
}

// First non-finite value, reported with its flat index (for "elevation contains NaN at index 1234").
template <class T>
void require_finite(const carray<T>& a, const char* name) {
    const T* p = a.data();
    const py::ssize_t n = a.size();   // once: size() walks the shape
    for (py::ssize_t i = 0; i < n; ++i) {
        if (!std::isfinite(static_cast<double>(p[i]))) {
            std::ostringstream s;
            s << name << ": non-finite value " << p[i] << " at flat index " << i;
            fail(s.str());
        }
    }
}

// Finite and >= 0 (+inf is refused too: every caller needs a finite amount).
template <class T>
void require_nonnegative(const carray<T>& a, const char* name) {
    const T* p = a.data();
    const py::ssize_t n = a.size();   // once: size() walks the shape
    for (py::ssize_t i = 0; i < n; ++i) {
        if (!(p[i] >= T(0) && p[i] <= std::numeric_limits<T>::max())) {
            std::ostringstream s;
            s << name << ": value " << p[i] << " at flat index " << i << " must be finite and >= 0";
            fail(s.str());
        }
    }
}

// A scalar argument, after the cast to the kernel's dtype T (a float64 1e39 becomes +inf in float32):
// finite, and >= 0 (nonneg) or > 0 (positive) when asked.
template <class T>
T checked_scalar(double v, const char* name, bool nonneg, bool positive = false) {
    const T t = static_cast<T>(v);
    const bool ok = std::isfinite(static_cast<double>(t)) && (!nonneg || t >= T(0)) && (!positive || t > T(0));
    if (!ok) {
        std::ostringstream s;
        s << name << ": must be finite" << (positive ? " and > 0" : nonneg ? " and >= 0" : "");
        if (std::isfinite(v) && !std::isfinite(static_cast<double>(t)))
            s << " in " << (sizeof(T) == 4 ? "float32" : "float64") << " (" << v << " overflows it)";
        s << ", got " << v;
        fail(s.str());
    }
    return t;
}

// Aliasing: an array the kernel writes must not share a byte with any other array of the call (an
// output view offset by one row from an input would be read after it was overwritten). Arrays are
// C-contiguous, so each spans [data, data + nbytes); empty arrays and None are skipped.
struct NamedBuf {
    const char* name;
    const void* ptr;
    py::ssize_t nbytes;
    bool written;
};

template <class T>
NamedBuf buf(const char* name, const carray<T>& a, bool written) {
    return NamedBuf{name, a.data(), a.nbytes(), written};
}

inline void require_no_overlap(std::initializer_list<NamedBuf> bufs) {
    for (auto i = bufs.begin(); i != bufs.end(); ++i) {
        if (!i->ptr || i->nbytes <= 0) continue;
        const auto a0 = reinterpret_cast<std::uintptr_t>(i->ptr), a1 = a0 + static_cast<std::uintptr_t>(i->nbytes);
        for (auto j = i + 1; j != bufs.end(); ++j) {
            if (!j->ptr || j->nbytes <= 0 || !(i->written || j->written)) continue;
            const auto b0 = reinterpret_cast<std::uintptr_t>(j->ptr), b1 = b0 + static_cast<std::uintptr_t>(j->nbytes);
            if (a0 < b1 && b0 < a1)
                fail(std::string(i->name) + " and " + j->name +
                     " share memory (the same array or overlapping views): an array the kernel writes must not "
                     "share memory with any other argument (pass distinct arrays)");
        }
    }
}

// Number of OpenMP threads a kernel uses: `requested` > 0 wins, else the runtime default
// (OMP_NUM_THREADS or the core count). Always 1 in a build without OpenMP.
inline int resolve_threads(int requested) {
#ifdef TWIN_HAVE_OPENMP
    if (requested > 0) return requested;
    return omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

}  // namespace twin
