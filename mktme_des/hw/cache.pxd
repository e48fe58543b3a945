cimport cython


cdef class Cache:
    cdef public object name, level_name, policy, rng, core, tag_slots, set_meta
    cdef public int bit, package, level
    cdef public list lines
    cdef public long long mask, hit, evictions, writebacks, invalidations, nsets
    cdef public Py_ssize_t ways
    cdef public bint lru, random
    cdef long long[:] tag_view
    cdef long long[:] meta

    @cython.locals(base=cython.Py_ssize_t, i=cython.Py_ssize_t, tags=cython.longlong[:])
    cpdef Py_ssize_t find(self, long long tag) except? -2

    @cython.locals(off=cython.Py_ssize_t)
    cdef inline Py_ssize_t _slot(self, Py_ssize_t si, Py_ssize_t pos) noexcept

    @cython.locals(p=cython.Py_ssize_t, src=cython.Py_ssize_t, dst=cython.Py_ssize_t,
                   lines=list, tags=cython.longlong[:])
    cdef void _close(self, Py_ssize_t si, Py_ssize_t pos, Py_ssize_t end) noexcept

    @cython.locals(h=cython.Py_ssize_t)
    cdef inline void _advance(self, Py_ssize_t si) noexcept

    @cython.locals(si=cython.Py_ssize_t, n=cython.Py_ssize_t, pos=cython.Py_ssize_t,
                   last=cython.Py_ssize_t, tag=cython.longlong)
    cpdef touch(self, Py_ssize_t slot)

    @cython.locals(si=cython.Py_ssize_t, n=cython.Py_ssize_t, k=cython.Py_ssize_t,
                   slot=cython.Py_ssize_t)
    cpdef object insert(self, long long tag, object line)

    @cython.locals(si=cython.Py_ssize_t, n=cython.Py_ssize_t, pos=cython.Py_ssize_t)
    cpdef remove_slot(self, Py_ssize_t slot)

    @cython.locals(si=cython.Py_ssize_t, pos=cython.Py_ssize_t, out=list)
    cpdef list tags(self)

    @cython.locals(si=cython.Py_ssize_t, base=cython.Py_ssize_t, i=cython.Py_ssize_t,
                   tags=list)
    cpdef list clear(self)
