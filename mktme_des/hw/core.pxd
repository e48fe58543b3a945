cimport cython
from mktme_des.engine.wakeup cimport Wakeup
from mktme_des.hw.cache cimport Cache
from mktme_des.hw.memctrl cimport MemoryController
from mktme_des.hw.memsys cimport Line
from mktme_des.oracle cimport Oracle

@cython.locals(queue=list)
cdef long long _horizon(object env) except? -1
