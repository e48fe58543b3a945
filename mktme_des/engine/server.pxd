cimport cython

cdef class Stage:
    cdef public long long interval
    cdef public list starts, ends

    @cython.locals(s=cython.longlong, n=cython.Py_ssize_t, i=cython.Py_ssize_t,
                   size=cython.longlong, low=cython.longlong, starts=list, ends=list)
    cpdef long long reserve(self, long long t, object length=*, object floor=*) except? -1
