"""Build of the compiled hot path (everything else is in pyproject.toml).

The modules in ``HOT`` are plain Python, and run as such with ``MKTME_DES_PURE=1``. Cython
compiles each into a C extension when the project is installed, taking C types from the
``.pxd`` file beside it and from the ``cython.declare`` hints in the code. Python annotations
are not read as C types (``annotation_typing``): they stay documentation, so an ``int`` that
happens to be a numpy integer is never refused. ``MKTME_DES_BUILD_PURE=1`` builds without
compiling (a wheel that runs the Python source; the install test uses it to stay fast).

The shipped models, policies, experiments, scenarios and the small trace live once in git, in
the top-level ``models/`` and ``experiments/`` folders. Building copies them into the package
as ``mktme_des/shipped/`` (package data, found through importlib.resources by
``mktme_des/catalog.py``); an editable install reads the folders themselves.
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = {
    "models": ["*.toml", "kernel/*.toml"],
    "experiments": ["*.toml", "scenarios/*.toml", "traces/README.md",
                    "traces/kernel_mix.lackey.gz"],
}

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
    "mktme_des/workloads/layout.py",
]



class BuildWithData(build_py):
    """build_py that also copies the shipped files into ``mktme_des/shipped/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the top-level folders in place
        here = Path(__file__).resolve().parent
        for top, patterns in SHIPPED.items():
            for pattern in patterns:
                for src in sorted((here / top).glob(pattern)):
                    dst = Path(self.build_lib) / "mktme_des" / "shipped" / src.relative_to(here)
                    self.mkpath(str(dst.parent))
                    self.copy_file(str(src), str(dst))


if os.environ.get("MKTME_DES_BUILD_PURE"):
    extensions = []
else:
    from Cython.Build import cythonize

    extensions = cythonize(HOT, nthreads=2, quiet=True,
                           compiler_directives={"language_level": 3, "annotation_typing": False})
setup(ext_modules=extensions, cmdclass={"build_py": BuildWithData})
