"""The MKTME key service (key type "mktme"), the KeyID map, refcounts and system-wide
programming, as in the RFC v2 series (patches 04-13), with the 2019 variants as policy options.

Keys
----
``add_key("mktme", desc, options)`` with whitespace-separated options (RFC v2):
``type=user|cpu|clear|no-encrypt``, ``algorithm=aes-xts-128`` (required for user and cpu,
absent for clear and no-encrypt), ``key=`` and ``tweak=`` (32 hex characters each; required for
user, optional entropy for cpu). A repeated or unknown token, a missing or superfluous field,
an empty or over-long (>1024 bytes) payload give ``EINVAL``; a caller without
CAP_SYS_RESOURCE/CAP_SYS_ADMIN gets ``EACCES``; no free KeyID, or programming that failed on
any package, gives ``ENOKEY``. Adding a key with an existing description updates it (same
serial), which is refused with ``EBUSY`` while VMAs use its KeyID.

KeyIDs and references
---------------------
KeyIDs are allocated first fit, lowest free. Each KeyID has a reference count: the key holds
one, each VMA using it one, and (2019 policy ``refcount_pages``) each allocated page one. The
KeyID is reused only when the last reference is gone. The hardware slot is not cleared on free.

Key lifetime
------------
The key's own reference is put by the key type's ``.destroy`` method, which the keyring
garbage collector calls. RFC v2 patch 10/13 (``security/keys/mktme_keys.c``, Message-ID
<42d44fb5ddbbf7241a2494fc688e274ade641965.1543903910.git.alison.schofield@intel.com>) registers
``key_type_mktme`` with ``.destroy = mktme_destroy_key`` ("Key Service Method called when Key
is garbage collected": ``key_put_encrypt_ref(mktme_map_keyid_from_key(key))``) and no
``.revoke``; the cover letter removed the earlier "special MKTME case in keyctl revoke". So:

* ``keyctl revoke`` marks the key revoked at once: any further use of its serial (update,
  revoke, invalidate, ``encrypt_mprotect``) fails with ``EKEYREVOKED``, and ``add_key`` with
  its description makes a new key. The key itself, and with it the KeyID reference it holds,
  lives until the garbage collector removes revoked keys, ``key_gc_delay_s`` later
  (``/proc/sys/kernel/keys/gc_delay``, 300 s by default, keyrings(7)).
* ``keyctl invalidate`` schedules the collector at once: the key is gone (its serial gives
  ``ENOKEY``) and its reference is put promptly.

The 2019 key type also releases the KeyID from ``.destroy`` (``percpu_ref_kill``), so both
policies share this lifetime.

Programming
-----------
One PCONFIG per package, run in parallel on each package's lead CPU, reached by an IPI (local
or cross-socket latency); the caller waits for all and combines the statuses like
``mktme_parse_program_status``. RFC v2 never retries and never rolls back packages that
succeeded; the 2019 series repeats the whole broadcast up to ``retries`` times on DEVICE_BUSY
or ENTROPY_ERROR. The broadcast holds the hotplug lock unless the policy says not to. Each
broadcast records the window during which packages disagreed on the KeyID's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mktme_des import redact
from mktme_des.engine.time import ns, to_ns
from mktme_des.hw import pconfig as pc
from mktme_des.kernel.errno import Errno

TYPES = ("user", "cpu", "clear", "no-encrypt")
MAX_PAYLOAD = 1024


@dataclass
class MktmeKey:
    serial: int
    description: str
    type: str
    data_key: bytes
    tweak_key: bytes
    keyid: int
    live: bool = True  # the key exists (not yet garbage collected or invalidated)
    revoked: bool = False


@dataclass
class Broadcast:
    """One system-wide programming attempt, for statistics and experiments."""

    keyid: int
    command: str
    start: int
    end: int = 0
    statuses: dict[int, str] = field(default_factory=dict)  # package -> status
    first_change: int | None = None
    last_change: int | None = None
    attempt: int = 1

    @property
    def window_ns(self) -> float:
        """How long packages disagreed on the KeyID's key (0 when only one changed)."""
        if self.first_change is None or self.last_change is None:
            return 0.0
        return to_ns(self.last_change - self.first_change)

    def to_dict(self) -> dict:
        return {"keyid": self.keyid, "command": self.command, "attempt": self.attempt,
                "start_ns": to_ns(self.start), "end_ns": to_ns(self.end),
                "duration_ns": to_ns(self.end - self.start), "window_ns": self.window_ns,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


def parse_options(payload: str) -> dict[str, str]:
    """Parse and check an RFC v2 option string; raises ``Errno("EINVAL", ...)``."""
    if not isinstance(payload, str) or not 0 < len(payload.encode()) <= MAX_PAYLOAD:
        raise Errno("EINVAL", f"payload length must be 1..{MAX_PAYLOAD} bytes")
    opts: dict[str, str] = {}
    for token in payload.split():
        name, sep, value = token.partition("=")
        if not sep or name not in ("type", "algorithm", "key", "tweak"):
            # never echo a value: a misspelt tweek= still carries key material
            raise Errno("EINVAL", f"unknown option {redact.option_token(token)!r}")
        if name in opts:
            raise Errno("EINVAL", f"option {name!r} given twice")
        opts[name] = value
    kind = opts.get("type")
    if kind not in TYPES:
        raise Errno("EINVAL", f"type must be one of {', '.join(TYPES)}")
    for name in ("key", "tweak"):
        if name in opts:
            v = opts[name]
            if len(v) != 32 or any(c not in "0123456789abcdefABCDEF" for c in v):
                raise Errno("EINVAL", f"{name}= takes exactly 32 hex characters")
    if kind in ("user", "cpu"):
        if opts.get("algorithm") != "aes-xts-128":
            raise Errno("EINVAL", f"type={kind} needs algorithm=aes-xts-128")
        if kind == "user" and ("key" not in opts or "tweak" not in opts):
            raise Errno("EINVAL", "type=user needs key= and tweak=")
    else:
        extra = [n for n in ("algorithm", "key", "tweak") if n in opts]
        if extra:
            raise Errno("EINVAL", f"type={kind} takes no {extra[0]}=")
    return opts


def combine_statuses(statuses: list[int]) -> int:
    """``mktme_parse_program_status``: success only if every package succeeded; else the first
    invalid-parameter error; else DEVICE_BUSY if any; else ENTROPY_ERROR."""
    if all(s == pc.PROG_SUCCESS for s in statuses):
        return pc.PROG_SUCCESS
    for s in statuses:
        if s in (pc.INVALID_KEYID, pc.INVALID_PROG_CMD, pc.INVALID_ENC_ALG):
            return s
    if pc.DEVICE_BUSY in statuses:
        return pc.DEVICE_BUSY
    return pc.ENTROPY_ERROR


class KeyService:
    """Keys, the KeyID map and its reference counts, and system-wide programming."""

    def __init__(self, kernel) -> None:
        self.k = kernel
        self.plat = kernel.plat
        self.env = kernel.env
        self.nr_keyids = self.plat.amap.max_keyid  # Linux: (1 << keyid_bits) - 1
        self.keys: dict[int, MktmeKey] = {}
        self.by_desc: dict[str, int] = {}
        self.next_serial = 1000
        self.owner: list[int | None] = [None] * (self.nr_keyids + 1)  # KeyID -> key serial
        self.refs: list[int] = [0] * (self.nr_keyids + 1)
        self.user_type: set[int] = set()
        self.vault: dict[int, tuple[str, bytes, bytes]] = {}  # mktme_savekeys data
        self.types: dict[int, str] = {}
        self.broadcasts: list[Broadcast] = []
        self.counts: dict[str, int] = {}
        self.waiters: list = []

    # -- lookups ---------------------------------------------------------------------------------
    def lookup(self, serial: int) -> MktmeKey:
        """The key ``serial`` names, for use: ENOKEY when there is none (never was, garbage
        collected, invalidated), EKEYREVOKED when it is revoked but not yet collected."""
        key = self.keys.get(serial)
        if key is None or not key.live:
            raise Errno("ENOKEY", f"no key with serial {serial}")
        if key.revoked:
            raise Errno("EKEYREVOKED", f"key {serial} was revoked")
        return key

    def in_use(self) -> list[int]:
        """KeyIDs that hold references (a key, VMAs or pages)."""
        return [k for k in range(1, self.nr_keyids + 1) if self.refs[k] > 0]

    # -- references ------------------------------------------------------------------------------
    def get_ref(self, keyid: int, n: int = 1) -> None:
        if keyid:
            self.refs[keyid] += n

    def put_ref(self, keyid: int, n: int = 1) -> None:
        if not keyid:
            return
        self.refs[keyid] -= n
        if self.refs[keyid] < 0:
            raise AssertionError(f"KeyID {keyid} reference count went negative")
        if self.refs[keyid] == 0:
            # mktme_map_free_keyid(): the slot is free; the hardware key stays programmed.
            self.owner[keyid] = None
            self.k.mm.frames.release_pool(keyid)
            self.user_type.discard(keyid)
            self.types.pop(keyid, None)
            self.counts["keyids_freed"] = self.counts.get("keyids_freed", 0) + 1
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        """A KeyID became free: wake the oldest add_key waiting for one (policy "wait")."""
        if self.waiters:
            self.waiters.pop(0).succeed()

    def _free_keyid(self) -> int:
        for k in range(1, self.nr_keyids + 1):
            if self.owner[k] is None and self.refs[k] == 0:
                return k
        return 0

    # -- programming -------------------------------------------------------------------------
    def program(self, caller: int, keyid: int, kind: str, data_key: bytes, tweak_key: bytes):
        """SimPy process body: program ``keyid`` on every online package; returns the status."""
        policy = self.k.policy
        alg = pc.AES_XTS_128
        if kind == "user":
            prog = pc.KeyProgram(keyid, pc.SET_KEY_DIRECT, alg, data_key.ljust(64, b"\0"),
                                 tweak_key.ljust(64, b"\0"))
        elif kind == "cpu":
            # The kernel XORs the same 16 random bytes into both fields (RFC v2, patch 10).
            entropy = self.plat.streams.randbytes(f"kernel-entropy/{self.counts.get('programs', 0)}", 16)
            f1 = bytes(a ^ b for a, b in zip(data_key or bytes(16), entropy, strict=True))
            f2 = bytes(a ^ b for a, b in zip(tweak_key or bytes(16), entropy, strict=True))
            prog = pc.KeyProgram(keyid, pc.SET_KEY_RANDOM, alg, f1.ljust(64, b"\0"),
                                 f2.ljust(64, b"\0"))
        else:
            cmd = pc.CLEAR_KEY if kind == "clear" else pc.NO_ENCRYPT_CMD
            prog = pc.KeyProgram(keyid, cmd, alg if policy.clear_sends_alg else 0)
        self.counts["programs"] = self.counts.get("programs", 0) + 1
        status = pc.PROG_SUCCESS
        for attempt in range(1, policy.retries + 2):
            status = yield from self._broadcast(caller, prog, attempt)
            if status not in (pc.DEVICE_BUSY, pc.ENTROPY_ERROR):
                break
        return status

    def _broadcast(self, caller: int, prog: pc.KeyProgram, attempt: int):
        env, k = self.env, self.k
        if k.policy.hotplug_lock:
            yield k.hotplug.read_acquire()
        try:
            rec = Broadcast(prog.keyid, pc.COMMANDS.get(prog.command, str(prog.command)),
                            env.now, attempt=attempt)
            mark = len(self.plat.pconfig_log)
            leads = k.lead_cpus()
            procs = {}
            caller_pkg = self.plat.cores[caller].package
            ipi = self.plat.model.ipi
            sent = 0
            for pkg, cpu in leads.items():
                if cpu == caller:
                    delay = 0  # on_each_cpu_mask runs the function locally too
                else:
                    sent += 1  # IPIs leave one after another
                    delay = ns(sent * ipi.send_ns
                               + (ipi.local_ns if pkg == caller_pkg else ipi.remote_ns))
                procs[pkg] = env.process(self._on_lead(cpu, delay, prog))
            if procs:
                yield env.all_of(list(procs.values()))
            statuses = []
            for pkg, proc in procs.items():
                statuses.append(proc.value)
                rec.statuses[pkg] = pc.STATUS.get(proc.value, str(proc.value))
            # A package onlined meanwhile (no hotplug lock) was not in the mask: it missed it.
            rec.end = env.now
            applied = [t for t, _c, _p, kid, _cmd, what in self.plat.pconfig_log[mark:]
                       if kid == prog.keyid and what == "applied"]
            if applied:
                rec.first_change, rec.last_change = min(applied), max(applied)
            self.broadcasts.append(rec)
        finally:
            if k.policy.hotplug_lock:
                k.hotplug.read_release()
        return combine_statuses(statuses) if statuses else pc.PROG_SUCCESS

    def _on_lead(self, cpu: int, delay: int, prog: pc.KeyProgram):
        if delay:
            yield self.env.timeout(delay)
        try:
            status = yield self.env.process(pc.pconfig(self.plat, cpu, prog))
        except pc.GeneralProtection as gp:  # the kernel would oops; report the status
            self.counts["general_protection"] = self.counts.get("general_protection", 0) + 1
            # (the kernel zero-pads its keys, so never a reserved-bytes #GP: status None)
            status = gp.status if gp.status is not None else pc.INVALID_PROG_CMD
        return status

    # -- the key type's methods ----------------------------------------------------------------
    def add_key(self, caller: int, description: str, payload: str, capable: bool = True):
        """``add_key("mktme", description, payload)``; returns the key's serial."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        if not capable:
            raise Errno("EACCES", "needs CAP_SYS_RESOURCE or CAP_SYS_ADMIN")
        opts = parse_options(payload)
        self._check_topology()
        if description in self.by_desc and self.keys[self.by_desc[description]].live:
            serial = self.by_desc[description]
            yield from self._update(caller, self.keys[serial], opts)
            return serial
        yield self.k.map_lock.acquire()
        try:
            # 2019's mktme_instantiate_key evaluates the topology and reserves the KeyID in
            # one hold of mktme_lock, which the CPU-teardown callback takes too: a last CPU
            # cannot go between the check and the reservation (which then refuses it).
            self._check_topology()
            keyid = self._free_keyid()
            while not keyid and self.k.policy.on_exhaustion == "wait":
                ev = self.env.event()
                self.waiters.append(ev)
                self.k.map_lock.release()
                yield ev
                yield self.k.map_lock.acquire()
                self._check_topology()
                keyid = self._free_keyid()
            if not keyid:
                self.counts["enokey_no_keyid"] = self.counts.get("enokey_no_keyid", 0) + 1
                raise Errno("ENOKEY", f"all {self.nr_keyids} KeyIDs are in use")
            data_key = bytes.fromhex(opts.get("key", "")) or b""
            tweak_key = bytes.fromhex(opts.get("tweak", "")) or b""
            self.owner[keyid] = -1  # reserved while programming
            status = yield from self.program(caller, keyid, opts["type"], data_key, tweak_key)
            if status != pc.PROG_SUCCESS:
                self.owner[keyid] = None
                self._wake_waiter()
                self.counts["enokey_program"] = self.counts.get("enokey_program", 0) + 1
                raise Errno("ENOKEY", f"programming KeyID {keyid} failed: {pc.STATUS[status]}")
            serial = self.next_serial
            self.next_serial += 1
            key = MktmeKey(serial, description, opts["type"], data_key, tweak_key, keyid)
            self.keys[serial] = key
            self.by_desc[description] = serial
            self.owner[keyid] = serial
            self.types[keyid] = key.type
            self.refs[keyid] = 1
            self._remember(keyid, key)
            return serial
        finally:
            self.k.map_lock.release()

    def _check_topology(self) -> None:
        """Under the 2019 rule, EINVAL while a package with memory has no online CPU.

        A package without memory does not count, CPUs or not: 2019's ``mktme_hmat_evaluate``
        (PATCHv2 37/59, <20190731150813.26289-38-kirill.shutemov@linux.intel.com>, the patch
        behind facts 2.4 "unsafe topologies") walks the ACPI HMAT's memory proximity domain
        structures, one per memory target, and requires an online CPU in each one's
        processor domain: "The kernel must be capable of programming every memory
        controller on the platform. This means that there must be a CPU online, in the same
        proximity domain of each memory controller." A CPU-only domain has no such
        structure."""
        plat = self.plat
        cpuless = sorted(p for p in self.k.hp.cpuless if plat.packages[p].has_memory)
        if cpuless and self.k.policy.cpuless_package == "refuse":
            # 2019 (37/62): "MKTME: no online CPU in proximity domain"
            raise Errno("EINVAL", f"package(s) {cpuless} have memory but no online CPU: the "
                        "topology does not support key creation")

    def _remember(self, keyid: int, key: MktmeKey) -> None:
        if key.type == "user":
            self.user_type.add(keyid)
        else:
            self.user_type.discard(keyid)
        saved = self.k.policy.savekeys
        self.vault[keyid] = (key.type, key.data_key if saved else b"", key.tweak_key if saved else b"")

    def update_key(self, caller: int, serial: int, payload: str):
        """``keyctl update``: reprogram the key's KeyID; EBUSY while VMAs use it."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        key = self.lookup(serial)
        opts = parse_options(payload)
        yield from self._update(caller, key, opts)

    def _update(self, caller: int, key: MktmeKey, opts: dict):
        yield self.k.map_lock.acquire()
        try:
            # Checked under the lock: an encrypt_mprotect queued on it may add a user.
            self.lookup(key.serial)
            if self.refs[key.keyid] > 1 and not self.k.policy.reprogram_in_use:
                raise Errno("EBUSY", f"KeyID {key.keyid} is in use by "
                            f"{self.refs[key.keyid] - 1} mapping(s)")
            data_key = bytes.fromhex(opts.get("key", "")) or b""
            tweak_key = bytes.fromhex(opts.get("tweak", "")) or b""
            status = yield from self.program(caller, key.keyid, opts["type"], data_key, tweak_key)
            if status != pc.PROG_SUCCESS:
                raise Errno("ENOKEY", f"reprogramming KeyID {key.keyid} failed: {pc.STATUS[status]}")
            key.type, key.data_key, key.tweak_key = opts["type"], data_key, tweak_key
            self.types[key.keyid] = key.type
            self._remember(key.keyid, key)
        finally:
            self.k.map_lock.release()

    def revoke(self, caller: int, serial: int):
        """``keyctl revoke``: the key is unusable at once (EKEYREVOKED), and the garbage
        collector destroys it ``key_gc_delay_s`` later, putting its KeyID reference (see the
        module docstring)."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        key = self.lookup(serial)
        key.revoked = True
        del self.by_desc[key.description]
        self.counts["revoked"] = self.counts.get("revoked", 0) + 1
        self.env.process(self._collect(key, ns(self.k.policy.key_gc_delay_s * 1e9)))

    def invalidate(self, caller: int, serial: int):
        """``keyctl invalidate``: the key is gone at once (ENOKEY) and the collector, scheduled
        immediately, destroys it: its KeyID reference is put promptly."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        key = self.lookup(serial)
        del self.by_desc[key.description]
        self.counts["invalidated"] = self.counts.get("invalidated", 0) + 1
        self._destroy(key)

    def _collect(self, key: MktmeKey, delay: int):
        """The keyring garbage collector's pass over a revoked key."""
        yield self.env.timeout(delay)
        self._destroy(key)

    def _destroy(self, key: MktmeKey) -> None:
        """``mktme_destroy_key``: the key is gone; its reference on the KeyID is put."""
        key.live = False
        self.counts["keys_destroyed"] = self.counts.get("keys_destroyed", 0) + 1
        self.put_ref(key.keyid)

    def to_dict(self) -> dict:
        return {
            "keyids_in_use": self.in_use(),
            "refs": {str(k): self.refs[k] for k in self.in_use()},
            "broadcasts": [b.to_dict() for b in self.broadcasts],
            "counts": dict(sorted(self.counts.items())),
        }
