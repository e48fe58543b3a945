cimport cython
from mktme_des.engine.server cimport Stage
from mktme_des.engine.stats cimport ServerStat

cdef class Record:
    cdef public object plain, key, boot, cipher, writer, time, cause

cdef class PageKeyIds:
    cdef public long long pages

    cpdef long long keyid(self, long long page) except -1

cdef class KeyIdTable(PageKeyIds):
    cdef public const unsigned short[:] table

    cpdef long long keyid(self, long long page) except -1

cdef class ZeroedRegion:
    cdef public long long base, end
    cdef public object boot
    cdef public tuple keys
    cdef public PageKeyIds layout

    cpdef object key_at(self, long long pa)

cdef class DramStore:
    cdef public bint lazy
    cdef public dict lines, zeroed, zero_views
    cdef public list regions
    cdef public long long decrypts, encrypts

    @cython.locals(rec=Record, region=ZeroedRegion)
    cpdef object read(self, long long pa, object key, object boot)

    @cython.locals(region=ZeroedRegion)
    cpdef object _region_of(self, long long pa)

    @cython.locals(page=cython.longlong, off=cython.longlong, views=dict)
    cpdef bytes _zero_seen(self, long long pa, object zkey, object zboot, object key,
                           object boot)

    @cython.locals(region=ZeroedRegion)
    cpdef object _in_region(self, long long pa)

cdef class DramTiming:
    cdef public long long read_latency, write_busy, bank_busy, transfer, nbanks, reads, writes
    cdef public list banks
    cdef public Stage channel
    cdef public ServerStat stat

    @cython.locals(low=cython.longlong, bank=Stage, transfer=cython.longlong,
                   start=cython.longlong, ready=cython.longlong, xfer=cython.longlong,
                   done=cython.longlong, wait=cython.longlong)
    cpdef long long access(self, long long now, long long pa, bint write, long long floor=*) except? -1
