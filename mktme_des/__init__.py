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
