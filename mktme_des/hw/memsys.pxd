cdef class Line:
    cdef public long long tag
    cdef public bytearray data
    cdef public bint dirty
    cdef public int owner
    cdef public object holders
