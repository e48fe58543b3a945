cimport cython
from mktme_des.hw.dram cimport PageKeyIds

cdef unsigned long long M64, M32, DIGIT

cdef class KeyIdLayout(PageKeyIds):
    cdef public unsigned long long s_lo, s_hi
    cdef public const unsigned long long[:] a_lo, a_hi, c_lo, c_hi
    cdef public double mktme, encrypted
    cdef public long long mktme_keys, noenc
    cdef public bint draws

    @cython.locals(hi=cython.ulonglong, lo=cython.ulonglong, j=cython.ulonglong,
                   k=cython.ulonglong, d=cython.ulonglong, alo=cython.ulonglong,
                   x0=cython.ulonglong, x1=cython.ulonglong, y0=cython.ulonglong,
                   y1=cython.ulonglong, p00=cython.ulonglong, p01=cython.ulonglong,
                   p10=cython.ulonglong, mid=cython.ulonglong, plo=cython.ulonglong,
                   phi=cython.ulonglong, x=cython.ulonglong, rot=cython.ulonglong,
                   out=cython.ulonglong)
    cpdef double draw(self, long long page)

    @cython.locals(u=cython.double)
    cpdef long long keyid(self, long long page) except -1

    cpdef list keyids_of(self, list pages)
