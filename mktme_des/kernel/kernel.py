"""The kernel facade: one object holding the policy, locks, key service, hotplug and mm."""

from __future__ import annotations

from mktme_des.kernel.directmap import DirectMap
from mktme_des.kernel.hotplug import Hotplug
from mktme_des.kernel.keys import KeyService
from mktme_des.kernel.locks import HotplugLock, Mutex
from mktme_des.kernel.mm import MM
from mktme_des.kernel.policy import Policy, load_policy


class Kernel:
    """The MKTME kernel model running on ``plat`` under ``policy`` (a name or a Policy)."""

    def __init__(self, plat, policy: Policy | str = "rfc-v2", frames_per_package: int = 4096) -> None:
        self.plat = plat
        self.env = plat.env
        self.policy = load_policy(policy) if isinstance(policy, str) else policy
        self.map_lock = Mutex(self.env)  # mktme_map_lock (RFC v2: a global mutex)
        self.hotplug = HotplugLock(self.env)  # get_online_cpus() vs CPU hotplug
        self.keys = KeyService(self)
        self.hp = Hotplug(self)
        self.mm = MM(self, frames_per_package)
        self.dmap = DirectMap(self)  # direct-map isolation (xpfo, isolated)
        # Interrupt time each CPU has spent on IPIs sent to it (TLB shootdowns, WBINVD on
        # every package), in ps: the work it was running is that much later (see owed()).
        self.irq_owed: list[int] = [0] * len(plat.cores)

    def owed(self, cpu: int) -> int:
        """Interrupt time (ps) ``cpu`` has spent handling IPIs since last asked, which
        whoever runs work on it pays as a delay; resets the account."""
        t, self.irq_owed[cpu] = self.irq_owed[cpu], 0
        return t

    def lead_cpus(self) -> dict[int, int]:
        """package -> its lead CPU (the first online one), for online packages."""
        leads = {}
        for pkg in self.plat.packages:
            if pkg.online:
                for core in pkg.cores:
                    if core.online:
                        leads[pkg.index] = core.cpu
                        break
        return leads

    def stats(self) -> dict:
        return {"policy": self.policy.name, "keys": self.keys.to_dict(),
                "mm": dict(sorted(self.mm.counts.items())), "hotplug": self.hp.log,
                "swap_plaintext_bytes_by_keyid": {str(k): v for k, v in
                                                  sorted(self.mm.swap_exposure.items())}}
