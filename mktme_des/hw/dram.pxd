cimport cython
from mktme_des.engine.server cimport Stage
from mktme_des.engine.stats cimport ServerStat

cdef class Record:
    cdef public object plain, key, boot, cipher, writer, time, cause

cdef class DramStore:
    cdef public bint lazy
    cdef public dict lines, zeroed
    cdef public list regions
    cdef public long long decrypts, encrypts

    @cython.locals(rec=Record)
    cpdef object read(self, long long pa, object key, object boot)

    @cython.locals(base=cython.longlong, end=cython.longlong)
    cpdef object _in_region(self, long long pa)

cdef class DramTiming:
    cdef public long long read_latency, write_busy, bank_busy, transfer, nbanks, reads, writes
    cdef public list banks
    cdef public Stage channel
    cdef public ServerStat stat

    @cython.locals(low=cython.longlong, bank=Stage, transfer=cython.longlong,
                   start=cython.longlong, ready=cython.longlong, xfer=cython.longlong,
                   done=cython.longlong, wait=cython.longlong)
    cpdef long long access(self, long long now, long long pa, bint write, object floor=*) except? -1
