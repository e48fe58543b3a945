cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING
from libc.string cimport memcpy

cdef class Line:
    cdef public long long tag
    cdef public bytearray data
    cdef public bint dirty
    cdef public int owner
    cdef public object holders


cdef bytearray copy_bytes(object data)

@cython.locals(n=Py_ssize_t)
cdef void put_bytes(bytearray data, Py_ssize_t off, object arg) except *

@cython.locals(p=Py_ssize_t)
cdef void pass_ownership(Line line, list package_mask) except *
