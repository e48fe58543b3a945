cimport cython
from mktme_des.engine.wakeup cimport Parked, Parking, Wakeup
from mktme_des.hw.cache cimport Cache
from mktme_des.hw.memctrl cimport MemoryController
from mktme_des.hw.memsys cimport Line, copy_bytes, pass_ownership, put_bytes
from mktme_des.oracle cimport Oracle

@cython.locals(line=Line)
cdef inline Line new_line(long long tag, object data)

@cython.locals(c=Cache, vline=Line, bit=object, others=object, left=object, holders=object,
               fresh=bint)
cdef void place(object mem, int package, long long t, long long tag, Line line,
                list path, object mask) except *

@cython.locals(queue=list)
cdef long long _horizon(object env, Parking parking) except? -1


cdef class OpStream(Parked):
    cdef public object core, it, op, err, l1_name, log, foreign, op_counts
    cdef public Cache l1
    cdef public list l1_lines
    cdef public long long l1_hit, line_mask, served_l1, l1_reads
    cdef public Oracle oracle
    cdef public int cpu, package, shift, READ, WRITE, COMPUTE
    cdef public dict write_hist
    cdef public bint nb

    @cython.locals(l1=Cache, l1_lines=list, l1_hit=cython.longlong, oracle=Oracle, cpu=cython.int,
                   shift=cython.int, line_mask=cython.longlong, write_hist=dict,
                   READ=cython.int, WRITE=cython.int, COMPUTE=cython.int, nb=cython.bint,
                   t=cython.longlong, t0=cython.longlong, code=cython.int,
                   keyid=cython.longlong, pa=cython.longlong, tag=cython.longlong,
                   off=cython.longlong, slot=cython.Py_ssize_t, line=Line)
    cdef int advance(self, long long horizon) except -1
