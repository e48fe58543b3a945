"""The kernel's own invariants: what any correct MKTME policy keeps true, whatever the schedule.

Two promises the review thread's arguments rest on, checked on the kernel's state (at the end
of a scenario run):

* **A key reaches every package with memory.** Every KeyID the kernel holds for a CPU or user
  key (it has references) is programmed with a key on every package whose memory is online,
  CPUs or not. A package without memory is not one of them: its key table encrypts nothing. A package that missed a broadcast (no hotplug lock, S7) or was forgotten while
  CPU-less (RFC v2 patch 13) holds the TME key there instead: data written under the KeyID
  on that package is not encrypted with the tenant's key.
* **A live page keeps its key.** The KeyID of a page that is still allocated (mapped, or pinned
  past its VMA) is not reprogrammed on the page's home package after the page was allocated.
  Reprogramming it turns the page's data into garbage: an update of a key in use (S5), a
  KeyID freed and given to the next key under a pinned page (S5, RFC v2), or a CPU key
  replaced when a CPU-less package returns (S7).
* **A freed page leaves nothing behind.** Every dirty cache line under an encrypted KeyID
  belongs to a page the kernel holds under that KeyID (mapped, or pinned past its VMA). A
  dirty line of a freed frame, or of a frame now in use under another KeyID, will be written
  back over whatever the frame holds next (S2: the flush on free).
"""

from __future__ import annotations

from mktme_des.kernel.mm import PAGE

KEYED_TYPES = ("cpu", "user")


def broken_invariants(kernel) -> list[str]:
    """One line per broken invariant (empty when all hold), in a fixed order."""
    plat, keys, mm = kernel.plat, kernel.keys, kernel.mm
    broken: list[str] = []
    with_memory = [pkg for pkg in plat.packages if pkg.has_memory
                   and (pkg.online or pkg.index in kernel.hp.cpuless)]
    for keyid in keys.in_use():
        if keys.types.get(keyid) not in KEYED_TYPES:
            continue
        for pkg in with_memory:
            mode = pkg.mc.keys.mode(keyid)
            if mode != "key":
                broken.append(f"KeyID {keyid} is in use for a {keys.types[keyid]} key but "
                              f"package {pkg.index} holds {mode} for it")
    pages = [page for proc in mm.procs.values() for _v, page in sorted(proc.pages.items())]
    held = {(page.keyid, page.pa) for page in pages + mm.orphans}
    stale: dict[tuple[int, int], int] = {}
    for tag, line in plat.mem.directory.items():
        if not line.dirty:
            continue
        keyid, pa = plat.amap.split(tag)
        frame = pa & ~(PAGE - 1)
        if keyid and (keyid, frame) not in held:
            stale[(keyid, frame)] = stale.get((keyid, frame), 0) + 1
    for (keyid, frame), n in sorted(stale.items()):
        broken.append(f"{n} dirty line(s) under KeyID {keyid} of frame {frame:#x}, which the "
                      f"kernel no longer holds under KeyID {keyid}")
    for page in pages + mm.orphans:
        if not page.keyid:
            continue
        home = plat.amap.home(page.pa)
        entry = plat.packages[home].mc.keys.entry(page.keyid)
        if entry.version != page.key_version:
            what = "a pinned page past its VMA" if page.orphan else "a live page"
            broken.append(f"KeyID {page.keyid} was reprogrammed ({entry.command}) on package "
                          f"{home} under {what} at {page.pa:#x}")
    return broken
