"""Direct-map isolation: the alternatives to MKTME the review thread weighs (Lutomirski, Dec 4;
Hansen, Dec 5), as the kernel work they cost when user pages are allocated and freed.

The policy switch ``direct_map_isolation`` selects one:

* ``"none"``: user pages stay in the kernel's direct map (RFC v2 keeps them there, one map per
  KeyID); MKTME's protection is the clflush on allocation and free (``mm``).
* ``"xpfo"`` (eXclusive Page-Frame Ownership): a frame handed to user space is removed from the
  direct map after the kernel has zeroed it, and the stale kernel translation is shot down on
  every other online CPU: the allocating CPU sends one IPI after another (the model's
  ``ipi.send_ns`` each) and waits until the last has been handled (``ipi.local_ns`` to a CPU of
  its package, ``ipi.remote_ns`` to another, plus the handler, ``shootdown_handler_ns``; the
  acknowledgement, a store to a flag the sender polls, is not counted). Every CPU that takes
  the IPI loses ``shootdown_handler_ns`` of its own work: that time is owed by the CPU and paid
  by whoever runs work there (:meth:`Kernel.owed <mktme_des.kernel.kernel.Kernel.owed>`). Freeing the frame maps it back, which
  adds a translation and needs no shootdown.
* ``"isolated"`` (Lutomirski's MEMFD_ISOLATED): the frames come from a pool that was never in
  the direct map (its setup is not counted). The kernel zeroes a frame through a temporary
  per-CPU mapping and drops it with a local INVLPG, ``local_invlpg_ns``; no IPI.

Neither alternative encrypts anything: they keep the kernel (and whoever subverts it) from
reading tenant pages through the direct map, which is what Hansen says MKTME's per-KeyID direct
map gives away ("this has very consequential security implications").
"""

from __future__ import annotations

from mktme_des.engine.time import ns


class DirectMap:
    """The direct-map work of the policy's ``direct_map_isolation`` mode (module docstring)."""

    def __init__(self, kernel) -> None:
        self.k = kernel
        self.plat = kernel.plat
        self.env = kernel.env
        self.counts: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def user_page_allocated(self, cpu: int):
        """The work done after a frame is allocated (and zeroed) for user space on ``cpu``."""
        mode = self.k.policy.direct_map_isolation
        if mode == "xpfo":
            yield from self.shootdown(cpu)
        elif mode == "isolated":
            yield self.env.timeout(ns(self.k.policy.local_invlpg_ns))
            self._count("temporary_mappings")

    def shootdown(self, cpu: int):
        """Flush one kernel translation on every online CPU (see the module docstring)."""
        ipi = self.plat.model.ipi
        handler = ns(self.k.policy.shootdown_handler_ns)
        here = self.plat.cores[cpu].package
        wait = 0
        sent = 0
        for core in self.plat.cores:
            if core.cpu == cpu or not core.online:
                continue
            sent += 1
            delivery = ipi.local_ns if core.package == here else ipi.remote_ns
            wait = max(wait, ns(sent * ipi.send_ns + delivery) + handler)
            self.k.irq_owed[core.cpu] += handler
        yield self.env.timeout(wait + ns(self.k.policy.local_invlpg_ns))
        self._count("shootdowns")
        self._count("shootdown_ipis", sent)
