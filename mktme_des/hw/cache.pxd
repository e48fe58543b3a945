cdef class Cache:
    cdef public object name, level_name, policy, rng, core
    cdef public int bit, package, level
    cdef public list sets
    cdef public long long mask, hit, evictions, writebacks, invalidations
    cdef public Py_ssize_t ways
