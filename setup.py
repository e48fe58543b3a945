"""Build of the compiled hot path (everything else is in pyproject.toml).

The modules in ``HOT`` are plain Python, and run as such with ``MKTME_DES_PURE=1``. Cython
compiles each into a C extension when the project is installed, taking C types from the
``.pxd`` file beside it and from the ``cython.declare`` hints in the code. Python annotations
are not read as C types (``annotation_typing``): they stay documentation, so an ``int`` that
happens to be a numpy integer is never refused.
"""

from Cython.Build import cythonize
from setuptools import setup

HOT = [
    "mktme_des/hw/core.py",
    "mktme_des/hw/memsys.py",
    "mktme_des/hw/cache.py",
    "mktme_des/hw/memctrl.py",
    "mktme_des/hw/dram.py",
    "mktme_des/hw/aes.py",
    "mktme_des/engine/server.py",
    "mktme_des/engine/wakeup.py",
    "mktme_des/engine/stats.py",
    "mktme_des/oracle.py",
    "mktme_des/workloads/synthetic.py",
]

setup(ext_modules=cythonize(HOT, nthreads=2, quiet=True,
                            compiler_directives={"language_level": 3, "annotation_typing": False}))
