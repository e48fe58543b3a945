cimport cython

cdef class Stage:
    cdef public long long interval
    cdef public Py_ssize_t lo, hi, cap
    cdef public object starts, ends
    cdef long long[:] starts_view
    cdef long long[:] ends_view

    @cython.locals(n=cython.Py_ssize_t)
    cpdef _make_room(self)

    @cython.locals(s=cython.longlong, i=cython.Py_ssize_t, j=cython.Py_ssize_t,
                   lo=cython.Py_ssize_t, hi=cython.Py_ssize_t, size=cython.longlong,
                   low=cython.longlong)
    cpdef long long reserve(self, long long t, long long length=*, long long floor=*) except? -1

    @cython.locals(mid=cython.Py_ssize_t)
    cdef Py_ssize_t _first_ending_after(self, Py_ssize_t lo, Py_ssize_t hi, long long x) noexcept
