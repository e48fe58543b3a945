cimport cython
from mktme_des.engine.server cimport Stage
from mktme_des.engine.stats cimport ServerStat

cdef class AesEngine:
    cdef public long long latency, interval
    cdef public Stage stage
    cdef public ServerStat stat

    @cython.locals(start=cython.longlong)
    cpdef long long process(self, long long t, long long floor=*) except? -1
