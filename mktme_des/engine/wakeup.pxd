cdef class Wakeup:
    cdef public object callbacks, _ok, _value
    cdef list _queue
    cdef object _eid

    cpdef Wakeup at(self, long long t)


cdef class Driver:
    cdef public object env, gen, done, _resume

    cpdef resume(self, object event)
    cdef _finish(self, bint ok, object value)
