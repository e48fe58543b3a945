from Cython.Build import cythonize
from setuptools import setup

HOT = [
    "mktme_des/hw/core.py",
    "mktme_des/hw/cache.py",
    "mktme_des/hw/memctrl.py",
    "mktme_des/hw/dram.py",
    "mktme_des/hw/aes.py",
    "mktme_des/engine/server.py",
    "mktme_des/engine/stats.py",
    "mktme_des/oracle.py",
    "mktme_des/workloads/synthetic.py",
]

setup(ext_modules=cythonize(HOT, nthreads=2, quiet=True,
                            compiler_directives={"language_level": 3, "annotation_typing": False}))
