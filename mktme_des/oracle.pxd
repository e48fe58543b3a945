cimport cython
from mktme_des.hw.memsys cimport copy_bytes, put_bytes

cdef class Oracle:
    cdef public bint classify
    cdef public object max_violations, counts, plat, amap
    cdef public dict ref, owner_ref, intended_via, history, line_history, fill_cause
    cdef public long long stores, checked, unchecked, violation_count, pa_mask
    cdef public list violations
    cdef object spare  # a Ref: see Oracle.__init__

    cpdef store(self, long long t, int cpu, long long tag, long long off, object data)

    @cython.locals(exp=bytearray)
    cpdef object load_line(self, long long t, int cpu, long long tag, Py_ssize_t off,
                           Py_ssize_t n, bytearray line, object served)

    cpdef object load(self, long long t, int cpu, long long tag, long long off, object data,
                      object served)
