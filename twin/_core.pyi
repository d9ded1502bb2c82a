# Type stub of the private C++ module twin._core (kernel families add their signatures here).
has_openmp: bool

def max_threads() -> int: ...
