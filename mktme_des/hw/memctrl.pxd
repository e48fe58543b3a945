cimport cython
from mktme_des.hw.aes cimport AesEngine
from mktme_des.hw.dram cimport DramStore, DramTiming

cdef class MemoryController:
    cdef public int package
    cdef public object amap, keys
    cdef public AesEngine engine
    cdef public DramTiming timing
    cdef public DramStore store
    cdef public list _boot, key_of
    cdef public long long pa_mask
    cdef public int shift
    cdef public long long reads, writes

    @cython.locals(pa=cython.longlong, done=cython.longlong)
    cpdef tuple read(self, long long now, long long tag)
