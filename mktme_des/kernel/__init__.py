"""The kernel model: the MKTME key service, KeyID map and refcounts, memory management with
``encrypt_mprotect``, CPU hotplug, all under a named policy.

The kernel drives the hardware only as software can on a real machine: PCONFIG on a chosen
core, IPIs, cache-flush instructions and loads and stores through a KeyID.
"""
