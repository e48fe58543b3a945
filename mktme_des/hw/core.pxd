cimport cython
from mktme_des.hw.cache cimport Cache
from mktme_des.hw.memctrl cimport MemoryController
from mktme_des.hw.memsys cimport Line
from mktme_des.oracle cimport Oracle
