"""The read-checking oracle: what every read *should* return, and why it did not.

Like gem5's MemTest, the oracle keeps a reference of the data and checks every load. Its rule:

    A read through tag ``(K, PA)`` is **checked** when the last store to any alias of the line
    ``PA`` (any KeyID, or a raw DRAM write) was a store through ``(K, PA)``. It must then return,
    for every byte written through ``(K, PA)`` since that tag became the line's owner, the last
    value stored there.

What this means in the cases the thread argues about:

* **Alias write.** A store through ``(K2, PA)`` makes ``K2`` the owner of the line; reads through
  ``(K1, PA)`` are then unchecked (hardware gives garbage or a stale copy, both legitimate for
  software that broke the one-writer rule). If ``K1`` stores again it becomes the owner with
  only the newly written bytes defined.
* **Raw DRAM write** (attacker, DMA, replay): the line has no owner; reads are unchecked until
  the next store through a tag.
* **Key change.** Not an excuse: a key change does not touch DRAM, so a read through
  ``(K, PA)`` after ``K`` was reprogrammed is still expected to return what was stored through
  ``(K, PA)``. When it does not, the violation names the key change. Software that re-keys
  correctly never reads before it writes (the kernel zeroes a page through its new KeyID).

A violation names the time, CPU, tag, expected and actual bytes, and the event that caused it,
found from the DRAM line's last writer and the key table's history, for instance "writeback of
(K1, 0x1000) at t=... overwrote data written via (K2, 0x1000)".

With ``classify=True`` every read is also given a class: ``expected`` (checked and correct),
``zero`` (all zero bytes), ``stale`` (bytes this tag held earlier, or a cached copy that no longer
matches what DRAM decrypts to), ``plaintext`` (bytes stored through another alias of the line:
a leak across KeyIDs) or ``garbage`` (anything else, e.g. a decryption with the wrong key).
"""

from __future__ import annotations

import cython

from mktme_des.engine.stats import Counter
from mktme_des.engine.time import to_ns
from mktme_des.hw.dram import RAW, ZERO_LINE

if not cython.compiled:  # compiled, they are C functions (cimported in oracle.pxd)
    from mktme_des.hw.memsys import copy_bytes, put_bytes

FULL = (1 << 64) - 1
MASKS = [(1 << n) - 1 for n in range(65)]  # MASKS[n]: n bytes stored
CLASSES = ("expected", "zero", "stale", "plaintext", "garbage")



@cython.no_gc  # holds no container, so it is never part of a cycle: the collector skips it
@cython.freelist(64)  # a key change or a kernel intent replaces Refs: reuse their memory
@cython.cclass
class Ref:
    """What reads through one tag should return: the line image, and which bytes of it were
    stored since the tag became the line's owner (bit i: byte i)."""

    tag = cython.declare(cython.longlong, visibility="public")
    image = cython.declare(bytearray, visibility="public")
    valid = cython.declare(cython.ulonglong, visibility="public")  # a line has 64 bytes

    def __init__(self, tag: int, image: bytearray, valid: int) -> None:
        self.tag = tag
        self.image = image
        self.valid = valid


RAW_OWNER = Ref(RAW, bytearray(64), 0)  # the owner of a line last written raw


@cython.cfunc
@cython.inline
@cython.locals(tag=cython.longlong, ref=Ref)
@cython.returns(Ref)
def fresh_ref(tag: int) -> Ref:
    """``Ref(tag, bytearray(64), 0)`` (nothing stored yet), without the argument parsing of a
    call to the class."""
    ref = Ref.__new__(Ref)
    ref.tag = tag
    ref.image = copy_bytes(ZERO_LINE)
    ref.valid = 0
    return ref


@cython.cfunc
@cython.inline
@cython.locals(n=cython.Py_ssize_t)
@cython.returns(cython.ulonglong)
@cython.exceptval(check=False)
def byte_mask(n: int) -> int:
    """``MASKS[n]`` as a C integer: bits 0..n-1 set, for the ``n`` bytes of an access."""
    return FULL if n == 64 else (cython.cast(cython.ulonglong, 1) << n) - 1


class Oracle:
    """Reference model of stored data, checking every load (see the module docstring)."""

    def __init__(self, classify: bool = False, max_violations: int = 1000) -> None:
        self.classify = classify
        self.max_violations = max_violations
        self.ref: dict[int, Ref] = {}  # tag -> what reads through it should return
        # line PA -> the Ref of the tag of its last store (RAW_OWNER: a raw write). One lookup
        # answers both "who owns the line" and "what should a read through the owner get".
        self.owner_ref: dict[int, Ref] = {}
        self.intended_via: dict[int, int] = {}  # tag -> tag software really stored through
        self.history: dict[int, list[bytes]] = {}  # tag -> earlier line images (classify only)
        self.line_history: dict[int, list[bytes]] = {}  # line PA -> images stored via any tag
        # tag -> why the bytes a read got from memory were wrong: a later read of the same
        # copy from a cache is wrong for the same reason.
        self.fill_cause: dict[int, str] = {}
        self.counts = Counter()
        self.stores = self.checked = self.unchecked = self.violation_count = 0
        self.violations: list[dict] = []
        self.plat = None
        # The Ref the next first store to a line gets: ``store`` offers it to ``owner_ref`` by a
        # single probe that both finds the line's owner and, when there is none, inserts it.
        self.spare = fresh_ref(RAW)

    def attach(self, plat) -> None:
        self.plat = plat
        self.amap = plat.amap
        self.pa_mask = plat.amap.pa_mask

    # -- events --------------------------------------------------------------------------------
    def store(self, t: int, cpu: int, tag: int, off: int, data: bytes) -> None:
        cython.declare(pa=cython.longlong, n=cython.Py_ssize_t, ref=Ref, spare=Ref, exp=bytearray)
        pa = tag & self.pa_mask
        n = len(data)
        spare = self.spare
        spare.tag = tag
        ref = self.owner_ref.setdefault(pa, spare)
        if ref is spare:
            # The first store to the line (since a reboot forgot memory): no tag of the line has
            # a Ref either, as ``ref`` only gains a tag together with its line's owner.
            self.ref[tag] = ref
            self.spare = fresh_ref(RAW)
            if self.intended_via:
                self.intended_via.pop(tag, None)
        elif ref.tag != tag:
            ref = self.ref.get(tag)
            if ref is None:
                ref = self.ref[tag] = fresh_ref(tag)
            self.owner_ref[pa] = ref
            ref.valid = 0
            if self.intended_via:
                self.intended_via.pop(tag, None)
        exp = ref.image
        if self.classify:
            self.history.setdefault(tag, []).append(bytes(exp))
        put_bytes(exp, off, data)
        ref.valid |= byte_mask(n) << off
        if self.classify:
            self.line_history.setdefault(pa, []).append(bytes(exp))
        self.stores += 1

    def raw_write(self, t: int, pa: int) -> None:
        self.owner_ref[pa] = RAW_OWNER
        self.counts.add("raw_writes")

    def intend(self, tag: int, data: bytes, via: int | None = None) -> None:
        """Software means a read through ``tag`` to return ``data`` from now on, although it
        wrote the bytes through another mapping (the kernel zeroing or swapping in a user page
        through its direct map). ``tag`` becomes the line's owner with ``data`` expected;
        ``via`` is the tag the bytes were actually stored through."""
        pa = tag & self.pa_mask
        if via is not None and via != tag:
            self.intended_via[tag] = via
        else:
            self.intended_via.pop(tag, None)
        self.ref[tag] = self.owner_ref[pa] = Ref(tag, bytearray(data), FULL)
        self.counts.add("intents")

    def image(self, tag: int) -> bytes | None:
        """The full line a read through ``tag`` is expected to return now, if defined."""
        ref = self.owner_ref.get(tag & self.pa_mask)
        if ref is not None and ref.tag == tag and ref.valid == FULL:
            return bytes(ref.image)
        return None

    def raw_class(self, pa: int, data: bytes) -> str:
        """Class of a raw DRAM read: ``plaintext`` when the bytes equal what software last
        stored there (through any KeyID), ``zero``, or ``ciphertext``."""
        self.counts.add("raw_reads")
        image = bytearray()
        end = pa + len(data)
        line = pa & ~63
        plain = True
        while line < end:
            owner = self.owner_ref.get(line)
            if owner is None or owner is RAW_OWNER:
                plain = False
                break
            image += owner.image
            line += 64
        if plain:
            lo = pa & 63
            if bytes(image[lo : lo + len(data)]) == data:
                return "plaintext"
        return "zero" if not any(data) else "ciphertext"

    def reboot(self, persistent: bool) -> None:
        """Volatile memory promises nothing across a reboot; persistent memory does."""
        self.fill_cause.clear()  # the caches are empty
        if not persistent:
            self.ref.clear()
            self.owner_ref.clear()

    def load_line(self, t: int, cpu: int, tag: int, off: int, n: int, line: bytearray,
                  served: str) -> str | None:
        """:meth:`load` of the ``n`` bytes at ``off`` of ``line``, the image of the line the
        read was served from; the bytes are copied out only when they are not simply right
        (a cache hit makes no copy in the common case)."""
        cython.declare(ref=Ref, full=cython.ulonglong, i=cython.Py_ssize_t)
        if not self.classify:  # a class needs the bytes: ``load`` gives it
            ref = self.owner_ref.get(tag & self.pa_mask)
            if ref is None or ref.tag != tag:
                # Unchecked (no store through ``tag`` owns the line): all ``load`` would do is
                # count it, after looking the line up again and copying the bytes out.
                self.unchecked += 1
                return None
            full = byte_mask(n)
            if (ref.valid >> off) & full == full:
                exp = ref.image
                for i in range(off, off + n):
                    if exp[i] != line[i]:
                        break
                else:
                    self.checked += 1
                    return None
        return self.load(t, cpu, tag, off, line[off : off + n], served)

    def load(self, t: int, cpu: int, tag: int, off: int, data: bytes, served: str) -> str | None:
        """Check one load; returns its class when classifying, else None."""
        cython.declare(ref=Ref, n=cython.Py_ssize_t)
        ref = self.owner_ref.get(tag & self.pa_mask)
        if ref is not None and ref.tag == tag:
            exp, valid = ref.image, ref.valid
            n = len(data)
            full = MASKS[n]
            if (valid >> off) & full == full and exp[off : off + n] == data:
                # The common case, kept short: every byte was stored and is right.
                self.checked += 1
                if self.classify:
                    self.counts.add("class_expected")
                    return "expected"
                return None
            return self._check_partial(t, cpu, tag, off, data, served, full)
        self.unchecked += 1
        if not self.classify:
            return None
        return self._classified(None, tag, off, data, served)

    def _check_partial(self, t, cpu, tag, off, data, served, full) -> str | None:
        """A checked load that is wrong, or reads bytes of which only some were stored."""
        ref = self.ref[tag]
        exp, valid = ref.image, ref.valid >> off & full
        status = None
        if valid:
            want = exp[off : off + len(data)]
            if any((valid >> i) & 1 and data[i] != want[i] for i in range(len(data))):
                self.violation_count += 1
                self._violation(t, cpu, tag, off, bytes(want), data, valid, served)
                status = "violation"
            else:
                # Every byte that was stored is right; the rest was never defined.
                self.checked += 1
                status = "expected"
        else:
            self.unchecked += 1
        return self._classified(status, tag, off, data, served)

    def _classified(self, status, tag, off, data, served) -> str | None:
        if not self.classify:
            return None
        pa = tag & self.pa_mask
        cls = status if status == "expected" else self._classify(tag, pa, off, data, served)
        self.counts.add(f"class_{cls}")
        return cls

    # -- diagnosis -----------------------------------------------------------------------------
    def _classify(self, tag: int, pa: int, off: int, data: bytes, served: str) -> str:
        n = len(data)
        if not any(data):
            return "zero"
        for img in self.history.get(tag, []) + ([bytes(self.ref[tag].image)] if tag in self.ref else []):
            if img[off : off + n] == data:
                return "stale"
        if served not in ("DRAM", "DRAM-remote"):
            keyid = tag >> self.amap.keyid_shift
            mc = self.plat.mc_for(pa)
            now = mc.store.read(pa, mc.keys.key(keyid), mc.boot_tweak)
            if now[off : off + n] != data:
                return "stale"
        for img in self.line_history.get(pa, []):
            if img[off : off + n] == data:
                return "plaintext"
        return "garbage"

    def _cause(self, tag: int, pa: int, served: str, off: int = 0, data: bytes = b"") -> str:
        """Why a read of ``tag`` served by ``served`` returned wrong ``data``. A cached copy
        is wrong only because the bytes it was filled with were: the cause is memory's when
        DRAM still decrypts to those bytes, else the one found when they were first read."""
        plat = self.plat
        describe = self.amap.describe
        mc = plat.mc_for(pa)
        keyid = tag >> self.amap.keyid_shift
        rec = mc.store.record(pa)
        why = plat.cause_text(rec.cause) if rec is not None else ""
        via = self.intended_via.get(tag)
        if via is not None:
            return (f"the kernel stored the data meant for {describe(tag)} through "
                    f"{describe(via)}, a mapping with another KeyID")
        if served not in ("DRAM", "DRAM-remote"):
            now = mc.store.read(pa, mc.keys.key(keyid), mc.boot_tweak)
            if data and now[off : off + len(data)] == data:
                return (f"{self._cause(tag, pa, 'DRAM')} (the cached copy of {describe(tag)} was "
                        "filled from it)")
            first = self.fill_cause.get(tag)
            if first is not None:
                return f"{first} (the cached copy of {describe(tag)} holds the bytes read then)"
            return f"the cached copy of {describe(tag)} (served by {served}) does not hold the stored data"
        if rec is None:
            return f"{describe(tag)} never reached DRAM: the dirty line was lost"
        if rec.writer == RAW:
            return f"{why} overwrote data written via {describe(tag)}"
        if rec.writer != tag:
            return f"{why} overwrote data written via {describe(tag)}"
        entry = mc.keys.entry(keyid)
        if rec.key != mc.keys.key(keyid):
            return (f"key of K{keyid} on package {mc.package} changed at t={to_ns(entry.time):g} ns "
                    f"({entry.command}) after {describe(tag)} was written back under the old key "
                    f"({why})")
        if rec.boot != mc.boot_tweak:
            return "the platform rebooted: the tweak changed since the line was written"
        return f"DRAM holds an older image of {describe(tag)} ({why})"

    def _violation(self, t, cpu, tag, off, want, data, valid, served) -> None:
        if len(self.violations) >= self.max_violations:
            return
        keyid, pa = self.amap.split(tag)
        cause = self._cause(tag, pa, served, off, data)
        if served in ("DRAM", "DRAM-remote"):
            self.fill_cause[tag] = cause
        self.violations.append({
            "time_ns": to_ns(t),
            "cpu": cpu,
            "keyid": keyid,
            "addr": hex(pa + off),
            "tag": self.amap.describe(tag),
            "expected": want.hex(),
            "actual": data.hex(),
            "served_by": served,
            "cause": cause,
        })

    def summary(self) -> dict:
        counts = dict(self.counts)
        counts.update(stores=self.stores, checked=self.checked, unchecked=self.unchecked,
                      violations=self.violation_count)
        return {"counts": dict(sorted(counts.items())), "violations": list(self.violations)}
