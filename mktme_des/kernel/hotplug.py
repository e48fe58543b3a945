"""CPU and package hotplug with the RFC v2 MKTME rules (patches 12-13).

* A package goes offline with its memory. While allocated pages are homed on it, the offline
  is refused (EBUSY), unless the policy migrates them to the other online packages first
  (``migrate_on_offline``, :meth:`MM.migrate_off <mktme_des.kernel.mm.MM.migrate_off>`).
  It comes back online powered up afresh, with an empty key table.
* With user-type keys in use and no saved key data (``mktme_savekeys`` off), onlining a
  package is refused: the kernel cannot program those keys there.
* Otherwise every KeyID in use is programmed on the new package by one of its CPUs: user keys
  from the saved data, CPU-generated keys as a fresh SET_KEY_RANDOM (a different key there,
  which is fine: each package encrypts only its own memory, and none of it holds data from
  before), CLEAR and NO_ENCRYPT as such.
  Programming stops at the first failure and the online is refused.
* A lead CPU going offline hands the package over to an online sibling. With none left, the
  package's memory stays online but no CPU can run PCONFIG there (a CPU-less package):
  - ``cpuless_package = "forget"`` (RFC v2 patch 13, "teardown always succeeds"): the package
    is left out of the lead mask, so no key broadcast reaches it; a KeyID added meanwhile keeps
    whatever its slot held there (TME behaviour, or a stale key). When one of its CPUs comes
    back (:meth:`Hotplug.online_cpu`) it is a CPU in a new package: every KeyID in use is
    programmed on that package alone, from the saved data (EPERM for user keys without
    ``mktme_savekeys``), a CPU key as a fresh SET_KEY_RANDOM. The memory controller kept its
    table and its memory, so data encrypted there under the old CPU key now reads as garbage.
  - ``"refuse"`` (2019, 38/62): the last CPU of a package cannot go offline while keys are in
    use (EBUSY), and key creation fails (EINVAL) while a package with memory has no online CPU
    (37/62, "no online CPU in proximity domain"). A CPU coming online is left alone: the 2019
    CPU-hotplug patch registers no startup callback ("since the service never needs to block
    a CPU startup event, nor does it need to prepare for an onlining CPU, a callback is not
    implemented", C5 39/59), so nothing is programmed and the online never fails.
* A package without memory (``gib_per_package`` 0 in the model: CPUs, caches, a key table,
  no DRAM) follows the same CPU rules, as neither series looks at memory there: RFC v2
  forgets it and programs it afresh when a CPU returns (EPERM with user keys and no saved
  key data, though it has nothing to protect); 2019 refuses the teardown of its last CPU
  while keys are in use ("Do not allow teardown of any lead CPU that would render a
  hardware key table unreachable!", 39/59, with no look at the memory) but never refuses a
  key for it (the HMAT check is per memory target). Its key table encrypts nothing, so
  what it holds for a KeyID never reaches data: its cores' accesses are encrypted at the
  home controller of each address.
* A CPU going offline runs WBINVD before it stops (Linux's ``native_play_dead``), and so does
  a package: dirty lines its caches own are written back, every line is dropped, and the
  offline takes that time (memory-system rule 7). An offline package's caches hold nothing.
* Online and offline take the hotplug lock as writers; the key broadcast takes it as a reader
  unless the policy removes that, which opens the race of scenario S7.
"""

from __future__ import annotations

from mktme_des.engine.time import ns
from mktme_des.hw import pconfig as pc
from mktme_des.kernel.errno import Errno


class Hotplug:
    def __init__(self, kernel) -> None:
        self.k = kernel
        self.plat = kernel.plat
        self.env = kernel.env
        self.log: list[dict] = []
        # Packages left without an online CPU by CPU hotplug (not taken offline as a
        # package): their memory, if they have any, stays online.
        self.cpuless: set[int] = set()

    def online_package(self, package: int):
        """Bring ``package`` and its CPUs online; raises Errno when the kernel refuses."""
        plat, keys = self.plat, self.k.keys
        pkg = self._package(package, online=False)
        yield self.k.hotplug.write_acquire()
        start = self.env.now
        try:
            in_use = keys.in_use()
            if keys.user_type and not self.k.policy.savekeys:
                raise Errno("EPERM", f"user-type keys are in use (KeyIDs {sorted(keys.user_type)}) "
                            "and mktme_savekeys is off: their key data cannot be programmed "
                            f"on package {package}")
            pkg.mc.keys.reset(self.env.now, f"package {package} online")  # an empty key table
            lead = pkg.cores[0].cpu
            for keyid in in_use:
                kind, data_key, tweak_key = keys.vault.get(keyid, (keys.types.get(keyid, "cpu"), b"", b""))
                prog = self._program_for(keyid, kind, data_key, tweak_key)
                status = yield self.env.process(pc.pconfig(plat, lead, prog))
                if status != pc.PROG_SUCCESS:
                    pkg.mc.keys.reset()
                    raise Errno("ENOKEY", f"programming KeyID {keyid} on package {package} "
                                f"failed: {pc.STATUS[status]}")
            pkg.online = True
            self.k.mm.frames.isolated.discard(package)  # its memory is in use again
            self.cpuless.discard(package)
            for core in pkg.cores:
                core.online = True
            self.log.append({"event": "online", "package": package, "keys": len(in_use),
                             "start_ns": start / 1000, "end_ns": self.env.now / 1000})
        finally:
            self.k.hotplug.write_release()

    def _program_for(self, keyid: int, kind: str, data_key: bytes, tweak_key: bytes) -> pc.KeyProgram:
        alg = pc.AES_XTS_128
        if kind == "user":
            return pc.KeyProgram(keyid, pc.SET_KEY_DIRECT, alg, data_key.ljust(64, b"\0"),
                                 tweak_key.ljust(64, b"\0"))
        if kind == "cpu":
            return pc.KeyProgram(keyid, pc.SET_KEY_RANDOM, alg)
        cmd = pc.CLEAR_KEY if kind == "clear" else pc.NO_ENCRYPT_CMD
        return pc.KeyProgram(keyid, cmd, alg if self.k.policy.clear_sends_alg else 0)

    def _package(self, package: int, online: bool):
        """The package ``package``, which must exist and be ``online`` (else EINVAL)."""
        if not 0 <= package < len(self.plat.packages):
            raise Errno("EINVAL", f"no package {package}")
        pkg = self.plat.packages[package]
        if pkg.online != online:
            raise Errno("EINVAL", f"package {package} is already {'offline' if online else 'online'}")
        return pkg

    def offline_package(self, package: int):
        """Take ``package`` offline: its CPUs, and its memory, which must hold no page."""
        plat = self.plat
        pkg = self._package(package, online=True)
        if sum(p.online for p in plat.packages) == 1:
            raise Errno("EBUSY", "the last online package cannot go offline")
        frames = self.k.mm.frames
        yield self.k.hotplug.write_acquire()
        start = self.env.now
        isolated = package not in frames.isolated
        try:
            yield self.env.timeout(ns(self.k.policy.syscall_ns))
            # As offline_pages does: isolate the memory first (no allocation lands there from
            # now on), then count and migrate what is there; a page a process faulted in
            # while the offline waited for the lock is counted too.
            frames.isolated.add(package)
            used = frames.in_use(package)
            if used and not self.k.policy.migrate_on_offline:
                raise Errno("EBUSY", f"{used} allocated page(s) are homed on package {package} "
                            "and the policy does not migrate them (migrate_on_offline)")
            yield from self._empty(package)
            for core in pkg.cores:
                core.online = False
            yield from self._flush_caches(package)
            pkg.online = False
            isolated = False  # stays isolated while offline
            self._move_tasks()
            self.log.append({"event": "offline", "package": package, "migrated": used,
                             "start_ns": start / 1000, "time_ns": self.env.now / 1000})
        finally:
            if isolated:  # refused or failed: the memory is back in use
                frames.isolated.discard(package)
            self.k.hotplug.write_release()

    def _empty(self, package: int, tries: int = 100):
        """Migrate every page off ``package``'s isolated memory, as offline_pages repeats
        its migration until the range is free: pages mapped meanwhile (a fault that took its
        frame before the isolation) are moved by a later pass, and a frame in use but not
        mapped (an allocation still in progress) is waited for, 1 us at a time. EBUSY when
        frames stay in use (a page pinned past its VMA cannot be moved)."""
        mm, frames = self.k.mm, self.k.mm.frames
        waited = 0
        while frames.in_use(package):
            if mm.pages_homed_on(package):
                yield from mm.migrate_off(package)
                continue
            waited += 1
            if waited > tries:
                raise Errno("EBUSY", f"{frames.in_use(package)} frame(s) on package {package} "
                            "stay in use and cannot be migrated (pinned pages)")
            yield self.env.timeout(ns(1000.0))

    def _flush_caches(self, package: int):
        """The WBINVD a dying CPU runs: ``package``'s caches written back and emptied."""
        done = self.plat.offline_caches(self.env.now, package)
        if done > self.env.now:
            yield self.env.timeout(done - self.env.now)

    def _move_tasks(self) -> None:
        """Processes on CPUs that went offline move to the first online CPU, as the
        scheduler moves tasks off a dying CPU."""
        cores = self.plat.cores
        target = next(c.cpu for c in cores if c.online)
        for proc in self.k.mm.procs.values():
            if not cores[proc.cpu].online:
                proc.cpu = target

    def offline_cpu(self, cpu: int):
        """Take one CPU offline; a lead CPU hands over to an online sibling."""
        plat = self.plat
        if not 0 <= cpu < len(plat.cores):
            raise Errno("EINVAL", f"no cpu {cpu}")
        core = plat.cores[cpu]
        if not core.online:
            raise Errno("EINVAL", f"cpu {cpu} is already offline")
        pkg = plat.packages[core.package]
        # The teardown callback runs under the hotplug lock (cpuhp), so its check sees no
        # broadcast in progress; a KeyID reserved by a key being instantiated is in use.
        yield self.k.hotplug.write_acquire()
        try:
            siblings = [c for c in pkg.cores if c.online and c is not core]
            keys = self.k.keys
            busy = keys.in_use() or any(owner == -1 for owner in keys.owner)
            if not siblings and busy and self.k.policy.cpuless_package == "refuse":
                # 2019: "Do not allow teardown of any lead CPU that would render a hardware
                # key table unreachable"; taking the package down is offline_package's job.
                raise Errno("EBUSY", f"cpu {cpu} is the last online CPU of package "
                            f"{core.package} and keys are in use")
            # RFC v2 (cpuless_package = "forget"): teardown always succeeds; the package is
            # forgotten below and its memory stays online, unreachable by PCONFIG.
            was_lead = self.k.lead_cpus().get(core.package) == cpu
            core.online = False
            if not siblings:
                # From the teardown callback on, the package has no CPU to program it (key
                # creation sees that at once); the dying CPU's WBINVD comes after, at its end.
                pkg.online = False
                self.cpuless.add(core.package)
            yield from self._flush_caches(core.package)
            self._move_tasks()
            self.log.append({"event": "offline_cpu", "cpu": cpu, "was_lead": was_lead,
                             "new_lead": siblings[0].cpu if siblings and was_lead else None,
                             "time_ns": self.env.now / 1000})
        finally:
            self.k.hotplug.write_release()

    def online_cpu(self, cpu: int):
        """Bring one CPU back online. In a package that still has an online CPU nothing else
        happens. In a CPU-less package (see the module docstring), with ``cpuless_package =
        "forget"`` it is patch 13's startup of a CPU in a new package: every KeyID in use is
        programmed on this package alone by this CPU, from the saved key data, without
        resetting the key table (the package's memory controller stayed up); then the CPU
        becomes its lead. Raises EPERM when user-type keys are in use without
        ``mktme_savekeys``, ENOKEY when programming fails. With ``"refuse"`` (2019, no
        startup callback) nothing is programmed and the CPU always comes online; the 2019
        rules leave no key in use on a CPU-less package with memory, so only the table of a
        package without memory can be left behind, which encrypts nothing."""
        plat, keys = self.plat, self.k.keys
        if not 0 <= cpu < len(plat.cores):
            raise Errno("EINVAL", f"no cpu {cpu}")
        core = plat.cores[cpu]
        if core.online:
            raise Errno("EINVAL", f"cpu {cpu} is already online")
        pkg = plat.packages[core.package]
        if not pkg.online and core.package not in self.cpuless:
            raise Errno("EINVAL", f"package {core.package} is offline with its memory; bring it "
                        "online as a package")
        yield self.k.hotplug.write_acquire()
        start = self.env.now
        try:
            startup = self.k.policy.cpuless_package == "forget"  # 2019: no startup callback
            in_use = keys.in_use() if not pkg.online and startup else []
            if in_use and keys.user_type and not self.k.policy.savekeys:
                raise Errno("EPERM", f"user-type keys are in use (KeyIDs {sorted(keys.user_type)}) "
                            "and mktme_savekeys is off: their key data cannot be programmed "
                            f"on package {core.package}")
            for keyid in in_use:
                kind, data_key, tweak_key = keys.vault.get(keyid, (keys.types.get(keyid, "cpu"), b"", b""))
                prog = self._program_for(keyid, kind, data_key, tweak_key)
                status = yield self.env.process(pc.pconfig(plat, cpu, prog))
                if status != pc.PROG_SUCCESS:
                    raise Errno("ENOKEY", f"programming KeyID {keyid} on package "
                                f"{core.package} failed: {pc.STATUS[status]}")
            core.online = True
            pkg.online = True
            self.cpuless.discard(core.package)
            self.log.append({"event": "online_cpu", "cpu": cpu, "keys": len(in_use),
                             "start_ns": start / 1000, "end_ns": self.env.now / 1000})
        finally:
            self.k.hotplug.write_release()
