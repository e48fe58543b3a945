cimport cython

cdef class Wakeup:
    cdef public object callbacks, _ok, _value
    cdef list _queue
    cdef object _eid

    cpdef Wakeup at(self, long long t)


cdef class Driver:
    cdef public object env, gen, done, _resume, _send

    @cython.locals(w=Wakeup)
    cpdef resume(self, object event)
    cdef _finish(self, bint ok, object value)


cdef class Parked:
    cdef public long long t, eid
    cdef public Wakeup wake
    cdef public bint held

    cdef int advance(self, long long horizon) except -1



cdef class Parking:
    cdef public object env, _eid
    cdef list queue, heap
    cdef public Py_ssize_t n
    cdef public long long now, steps, holds
    cdef public bint active, enabled

    cpdef bint usable(self)
    @cython.locals(queue=list, h=cython.longlong, p=Parked)
    cpdef long long horizon(self) except? -1
    cpdef Wakeup park(self, Parked p, long long t)
    cpdef Wakeup hold(self, Parked p, long long t)
    cdef int _wake(self, Wakeup wake) except -1
    @cython.locals(heap=list, i=Py_ssize_t, j=Py_ssize_t, q=Parked)
    cdef int _push(self, Parked p) except -1
    @cython.locals(heap=list, top=Parked, n=Py_ssize_t)
    cdef Parked _pop(self)
    @cython.locals(heap=list, n=Py_ssize_t, p=Parked, q=Parked, r=Parked, i=Py_ssize_t,
                   c=Py_ssize_t)
    cdef int _sift_top(self) except -1
    @cython.locals(queue=list, p=Parked, head=tuple, t=cython.longlong)
    cdef bint first(self) except? -1
    @cython.locals(p=Parked, q=Parked, r=Parked, now=cython.longlong, h=cython.longlong,
                   wake=Wakeup, queue=list)
    cdef int step(self) except -1
