cdef class LatencyStat:
    cdef public dict hist

cdef class ServerStat:
    cdef public long long jobs, busy, queue, queue_max

    cpdef record(self, long long wait, long long service)
