"""mktme-des: a discrete-event simulator of Intel Multi-Key Total Memory Encryption.

The package is organised one concept per module:

* :mod:`mktme_des.crypto` - AES-XTS (scalar and vectorised) and the line tweak;
* :mod:`mktme_des.config` - loading and validating model, scenario and experiment files;
* :mod:`mktme_des.engine` - the simulation environment, seeded random streams, statistics;
* :mod:`mktme_des.hw` - the platform: cores, caches, memory controllers, key tables, DRAM;
* :mod:`mktme_des.workloads` - synthetic access streams and valgrind lackey traces;
* :mod:`mktme_des.scenarios` - scenario files, the read-checking oracle and verdicts;
* :mod:`mktme_des.cli` - the ``mktme-des`` command.
"""

__version__ = "0.1.0"


def _pure_python() -> None:
    """With ``MKTME_DES_PURE=1`` set, import this package's modules from their Python source
    even where a compiled build of them exists (``setup.py``): the reference behaviour the
    compiled hot path must reproduce byte for byte."""
    import importlib.util
    import os
    import sys

    class SourceFirst:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if not name.startswith(__name__ + ".") or not path:
                return None
            leaf = name.rpartition(".")[2] + ".py"
            for folder in path:
                source = os.path.join(folder, leaf)
                if os.path.isfile(source):
                    return importlib.util.spec_from_file_location(name, source)
            return None

    sys.meta_path.insert(0, SourceFirst)


def compiled() -> bool:
    """Whether the hot path runs compiled (see ``setup.py``)."""
    from mktme_des.hw import core

    return not core.__file__.endswith(".py")


if __import__("os").environ.get("MKTME_DES_PURE"):
    _pure_python()
