"""Races between system calls queued on mktme_map_lock, and the wait policy's wake-ups:
each check is made under the lock, so a call that waited sees the state it acts on."""

from __future__ import annotations

import pytest

from mktme_des.config.model import load_model
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.hw.platform import Platform
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.kernel import Kernel
from mktme_des.kernel.policy import load_policy

CPU = "type=cpu algorithm=aes-xts-128"
USER = ("type=user algorithm=aes-xts-128 key=00112233445566778899aabbccddeeff "
        "tweak=0f1e2d3c4b5a69788796a5b4c3d2e1f0")


class World:
    def __init__(self, model="server-2s", policy="rfc-v2", **over):
        self.plat = Platform(load_model(model, over or None), 0)
        self.k = Kernel(self.plat, policy)
        self.env = self.plat.env
        self.r: dict = {}

    def at(self, t_ns: float, name: str, fn) -> None:
        def body():
            yield self.env.timeout(ns(t_ns))
            try:
                self.r[name] = yield from fn()
            except Errno as err:
                self.r[name] = err
        self.env.process(body())

    def run(self) -> None:
        self.plat.run()

    def mapped(self, cpu: int):
        """A process on ``cpu`` with an unencrypted page mapped at r["va"], and a CPU key
        added as r["S"]."""
        p = self.k.mm.spawn(cpu)
        self.at(0, "S", lambda: self.k.keys.add_key(0, "S", CPU))
        self.at(0, "va", lambda: self.k.mm.mmap(p, 4096))
        self.run()
        return p


def test_update_queued_behind_an_encrypt_mprotect_sees_the_new_user():
    w = World()
    p = w.mapped(4)
    # A2 holds mktme_map_lock while it programs; the mprotect, then the update, queue on it.
    w.at(0, "A2", lambda: w.k.keys.add_key(2, "A2", CPU))
    w.at(100, "mprotect", lambda: w.k.mm.encrypt_mprotect(p, w.r["va"], 4096, 3, w.r["S"]))
    w.at(400, "update", lambda: w.k.keys.update_key(5, w.r["S"], CPU))
    versions = w.plat.packages[0].mc.keys.entry(1).version
    w.run()
    assert w.r["mprotect"] is None
    assert isinstance(w.r["update"], Errno) and w.r["update"].name == "EBUSY"
    assert w.plat.packages[0].mc.keys.entry(1).version == versions  # not reprogrammed


def test_encrypt_mprotect_queued_behind_a_revoke_does_not_take_a_reused_keyid():
    w = World()
    p = w.mapped(4)
    w.at(0, "A2", lambda: w.k.keys.add_key(2, "A2", CPU))  # holds mktme_map_lock
    w.at(50, "C", lambda: w.k.keys.add_key(3, "C", CPU))  # queued
    w.at(100, "mprotect", lambda: w.k.mm.encrypt_mprotect(p, w.r["va"], 4096, 3, w.r["S"]))
    # invalidate: S gone and KeyID 1 free at once (a revoke would hold it for gc_delay)
    w.at(400, "invalidate", lambda: w.k.keys.invalidate(5, w.r["S"]))
    w.run()
    assert isinstance(w.r["mprotect"], Errno) and w.r["mprotect"].name == "ENOKEY"
    assert p.vmas[0].keyid == 0  # nothing changed
    assert w.k.keys.keys[w.r["C"]].keyid == 1  # C reused the freed KeyID, alone


def test_encrypt_mprotect_queued_behind_a_revoke_sees_ekeyrevoked_and_the_keyid_stays_held():
    w = World()
    p = w.mapped(4)
    w.at(0, "A2", lambda: w.k.keys.add_key(2, "A2", CPU))  # holds mktme_map_lock
    w.at(50, "C", lambda: w.k.keys.add_key(3, "C", CPU))  # queued
    w.at(100, "mprotect", lambda: w.k.mm.encrypt_mprotect(p, w.r["va"], 4096, 3, w.r["S"]))
    w.at(400, "revoke", lambda: w.k.keys.revoke(5, w.r["S"]))  # revoked, not yet collected
    w.run()
    assert isinstance(w.r["mprotect"], Errno) and w.r["mprotect"].name == "EKEYREVOKED"
    assert p.vmas[0].keyid == 0  # nothing changed
    assert w.k.keys.keys[w.r["C"]].keyid != 1  # KeyID 1 was still held by the revoked key


def test_a_waiter_whose_programming_fails_passes_the_free_keyid_on():
    w = World("client-1s", load_policy("rfc-v2", {"on_exhaustion": "wait"}),
              pconfig={"entropy_error_probability": 1.0})
    serials = []

    def setup():
        for i in range(15):  # user keys (DIRECT) never hit ENTROPY_ERROR
            serials.append((yield from w.k.keys.add_key(0, f"u{i}", USER)))

    w.env.process(setup())
    w.run()
    w.at(0, "Y", lambda: w.k.keys.add_key(1, "Y", CPU))  # waits, then fails to program
    w.at(10, "X", lambda: w.k.keys.add_key(2, "X", CPU))  # waits, must be woken too
    w.at(1000, "revoke", lambda: w.k.keys.revoke(3, serials[4]))
    w.run()
    assert w.r["Y"].name == "ENOKEY" and w.r["X"].name == "ENOKEY"
    assert not w.k.keys.waiters


def test_package_with_pages_cannot_go_offline():
    w = World()
    p = w.mapped(17)  # package 1

    def touch():
        yield from w.k.mm.encrypt_mprotect(p, w.r["va"], 4096, 3, w.r["S"])
        yield from w.k.mm.fault(p, w.r["va"])
        kid, pa = w.k.mm.translate(p, w.r["va"])
        yield from w.plat.cores[17].run([(O.WRITE, kid, pa, b"x" * 64, None)], [])

    w.at(0, "touch", touch)
    w.run()
    w.at(0, "offline", lambda: w.k.hp.offline_package(1))
    w.run()
    assert w.r["offline"].name == "EBUSY" and "homed on package 1" in w.r["offline"].reason
    assert w.plat.packages[1].online


@pytest.mark.parametrize("exc", [Errno("EBUSY", "why")])
def test_errno_survives_pickling(exc):
    import pickle

    again = pickle.loads(pickle.dumps(exc))
    assert (again.name, again.reason, str(again)) == (exc.name, exc.reason, "EBUSY: why")


def test_a_2019_key_queued_on_the_map_lock_rechecks_the_topology():
    """add_key passes its first topology check, then waits on mktme_map_lock (here held by
    the test) while the last CPU of package 1 goes offline (nothing is reserved yet, so the
    teardown is allowed). 2019's instantiate checks and reserves in one hold of the lock, so
    the key is refused (EINVAL) rather than programmed everywhere but package 1. Found by
    ``hunt mktme-2019``."""
    w = World(policy="mktme-2019", topology={"cores_per_package": 2})
    held = {}

    def hold_the_lock():
        yield w.k.map_lock.acquire()
        held["lock"] = True
        yield w.env.timeout(ns(5000))
        w.k.map_lock.release()

    w.at(0, "cpu2", lambda: w.k.hp.offline_cpu(2))
    w.run()  # cpu2's offline ends with its WBINVD, holding the hotplug lock meanwhile
    w.at(10, "holder", hold_the_lock)  # times from now on
    w.at(100, "key", lambda: w.k.keys.add_key(0, "k", CPU))
    w.at(2000, "cpu3", lambda: w.k.hp.offline_cpu(3))  # the key waits on the lock meanwhile
    w.run()
    assert held and w.r["cpu3"] is None  # the teardown went through
    assert isinstance(w.r["key"], Errno) and w.r["key"].name == "EINVAL"
    assert not w.k.keys.in_use()
