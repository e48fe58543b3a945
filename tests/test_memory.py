"""Memory controller, key table and DRAM: real ciphertext, checked independently."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mktme_des.config.model import load_model
from mktme_des.hw.platform import Platform


def ref_xts(key: bytes, pa: int, boot: int, data: bytes, encrypt: bool) -> bytes:
    """AES-XTS from the `cryptography` package, tweak = (pa/64 ^ boot) little-endian."""
    tweak = ((pa // 64) ^ boot).to_bytes(16, "little")
    c = Cipher(algorithms.AES(key), modes.XTS(tweak))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


@pytest.fixture
def plat():
    p = Platform(load_model("server-2s"), seed=7)
    p.set_key(1, "key", p.random_key("k1"))
    p.set_key(2, "key", p.random_key("k2"))
    p.set_key(3, "no-encrypt")
    return p


def tag(p, keyid, pa):
    return p.amap.tag(keyid, pa)


def test_ciphertext_in_dram_is_real_xts(plat):
    pa, data = 0x4000, bytes(range(64))
    mc = plat.mc_for(pa)
    mc.write(0, tag(plat, 1, pa), data, "test")
    k1 = mc.keys.key(1)
    assert plat.dram_read(pa, 64) == ref_xts(k1, pa, plat.boot_tweak, data, True)
    assert mc.read(0, tag(plat, 1, pa))[0] == data


def test_wrong_key_gives_genuine_garbage(plat):
    pa, data = 0x8040, b"secret!!" * 8
    mc = plat.mc_for(pa)
    mc.write(0, tag(plat, 1, pa), data, "test")
    got = mc.read(0, tag(plat, 2, pa))[0]
    cipher = ref_xts(mc.keys.key(1), pa, plat.boot_tweak, data, True)
    assert got == ref_xts(mc.keys.key(2), pa, plat.boot_tweak, cipher, False)
    assert got != data


def test_relocated_ciphertext_is_garbage(plat):
    src, dst, data = 0x10000, 0x20000, b"\x5a" * 64
    mc = plat.mc_for(src)
    mc.write(0, tag(plat, 1, src), data, "test")
    plat.dram_write(dst, plat.dram_read(src, 64))
    got = mc.read(0, tag(plat, 1, dst))[0]
    assert got != data
    k1 = mc.keys.key(1)
    assert got == ref_xts(k1, dst, plat.boot_tweak, ref_xts(k1, src, plat.boot_tweak, data, True), False)


def test_no_encrypt_and_bypass_are_plaintext_on_the_bus(plat):
    pa = 0x3000
    plat.mc_for(pa).write(0, tag(plat, 3, pa), b"P" * 64, "test")
    assert plat.dram_read(pa, 64) == b"P" * 64
    m = load_model("client-1s", {"mktme": {"tme_bypass": True}})
    q = Platform(m, seed=1)
    q.mc_for(pa).write(0, q.amap.tag(0, pa), b"Q" * 64, "test")
    assert q.dram_read(pa, 64) == b"Q" * 64


def test_tme_keyid0_is_encrypted_without_bypass(plat):
    pa = 0x5000
    plat.mc_for(pa).write(0, tag(plat, 0, pa), b"T" * 64, "test")
    assert plat.dram_read(pa, 64) != b"T" * 64
    assert plat.mc_for(pa).read(0, tag(plat, 0, pa))[0] == b"T" * 64


def test_packages_have_different_tme_keys(plat):
    assert plat.packages[0].mc.keys.key(0) != plat.packages[1].mc.keys.key(0)


def test_home_controller_by_range(plat):
    top = 64 << 30
    assert plat.amap.home(0) == 0 and plat.amap.home(top - 64) == 0 and plat.amap.home(top) == 1


def test_sparse_dram_costs_only_touched_lines(plat):
    far = plat.amap.memory_bytes - 64
    plat.mc_for(far).write(0, tag(plat, 1, far), b"x" * 64, "test")
    assert sum(len(p.mc.store.lines) for p in plat.packages) == 1
    assert plat.dram_read(0x123440, 64) == bytes(64)


def test_keyid_is_not_in_the_tweak(plat):
    """The same key under two KeyIDs produces the same ciphertext at the same PA."""
    k = plat.random_key("shared")
    plat.set_key(4, "key", k)
    plat.set_key(5, "key", k)
    pa = 0x7000
    mc = plat.mc_for(pa)
    mc.write(0, tag(plat, 4, pa), b"z" * 64, "t")
    c4 = plat.dram_read(pa, 64)
    mc.write(0, tag(plat, 5, pa), b"z" * 64, "t")
    assert plat.dram_read(pa, 64) == c4


def _script(seed: int, lines: list[int]) -> list[tuple]:
    """A random sequence of controller and raw-DRAM actions, drawn once, applied twice."""
    rng = random.Random(seed)
    script = []
    for _ in range(600):
        pa, keyid, r = rng.choice(lines), rng.randrange(0, 5), rng.random()
        if r < 0.35:
            script.append(("write", pa, keyid, rng.randbytes(64)))
        elif r < 0.8:
            script.append(("read", pa, keyid, None))
        elif r < 0.86:
            script.append(("copy", pa, None, rng.choice(lines)))
        elif r < 0.9:
            script.append(("zero", pa, keyid, None))
        elif r < 0.95:
            script.append(("rekey", None, rng.randrange(1, 4), rng.randbytes(32)))
        else:
            script.append(("raw", pa, None, None))
    return script


@pytest.mark.parametrize("seed", range(5))
def test_lazy_and_eager_dram_give_identical_bytes(seed):
    """Writes, reads through other KeyIDs, raw copies, page zeroing and key changes: the lazy
    store and one that encrypts every line eagerly return the same bytes everywhere."""
    m = load_model("server-2s")
    rng = random.Random(seed)
    lines = [rng.randrange(0, 2 * (64 << 30), 64) for _ in range(24)]
    results = []
    plats = []
    for lazy in (True, False):
        p = Platform(m, seed=seed, lazy_dram=lazy)
        for k in (1, 2, 3):
            p.set_key(k, "key", p.random_key(f"k{k}"))
        p.set_key(4, "no-encrypt")
        out = []
        for step, (kind, pa, keyid, arg) in enumerate(_script(seed, lines)):
            if kind == "write":
                p.mc_for(pa).write(step, p.amap.tag(keyid, pa), arg, "w")
            elif kind == "read":
                out.append(p.mc_for(pa).read(step, p.amap.tag(keyid, pa))[0])
            elif kind == "copy":
                p.dram_write(pa, p.dram_read(arg, 64))
            elif kind == "zero":
                mc = p.mc_for(pa)
                mc.store.zero_page(pa & ~4095, mc.keys.key(keyid), p.boot_tweak)
            elif kind == "rekey":
                p.set_key(keyid, "key", arg)
            else:
                out.append(p.dram_read(pa, 64))
        out += [p.dram_read(pa, 64) for pa in lines]
        results.append(out)
        plats.append(p)
    assert results[0] == results[1]
    decrypts = [sum(pkg.mc.store.decrypts for pkg in p.packages) for p in plats]
    assert decrypts[1] > decrypts[0]  # the lazy store really skipped work


def test_a_zeroed_region_reads_as_its_pages_zeroed_one_by_one():
    """A working set recorded as one zeroed region gives, through every KeyID, the bytes of
    the same pages zeroed page by page, also after some lines are written, a page is zeroed
    again and bytes are put in DRAM raw; raw reads give the ciphertext of zeros under each
    page's key (checked against an independent XTS)."""
    from array import array

    from mktme_des.hw.dram import KeyIdTable

    pages = 16
    base = 0x40_0000
    K1, K2 = bytes(range(32)), bytes(range(32, 64))
    layout = [random.Random(3).choice([0, 1, 2, 3]) for _ in range(pages)]
    outs = []
    for whole in (True, False):
        p = Platform(load_model("server-2s"), seed=7)
        for k, key in ((1, K1), (2, K2)):
            p.set_key(k, "key", key)
        p.set_key(3, "no-encrypt")
        mc = p.mc_for(base)
        keys = [mc.keys.key(k) for k in range(mc.keys.max_keyid + 1)]
        if whole:
            mc.store.zero_region(base, KeyIdTable(array("H", layout)), keys, p.boot_tweak)
        else:
            for i, k in enumerate(layout):
                mc.store.zero_page(base + i * 4096, keys[k], p.boot_tweak)
        mc.write(0, p.amap.tag(1, base + 64), b"w" * 64, "w")
        mc.store.zero_page(base + 4096 * 3, keys[2], p.boot_tweak)
        p.dram_write(base + 4096 * 5 + 128, b"r" * 64)
        out = [mc.read(0, p.amap.tag(k, base + i * 4096 + off))[0]
               for i in range(pages) for k in range(4) for off in (0, 64, 128)]
        outs.append((out, [p.dram_read(base + i * 4096, 64) for i in range(pages)]))
    assert outs[0] == outs[1]
    raw = outs[0][1]
    for i, k in enumerate(layout):
        if i == 3:
            continue  # zeroed again through K2
        want = {0: ref_xts(keys[0], base + i * 4096, p.boot_tweak, bytes(64), True),
                1: ref_xts(K1, base + i * 4096, p.boot_tweak, bytes(64), True),
                2: ref_xts(K2, base + i * 4096, p.boot_tweak, bytes(64), True),
                3: bytes(64)}[k]
        assert raw[i] == want


def test_a_working_set_costs_the_same_at_any_size_and_no_record_per_page():
    """The KeyID layout of a working set keeps no table: what it holds (its jump tables)
    is the same for 4 MiB and 16 GiB, up to one level of tables per 256-fold size; DRAM keeps
    one region per controller and no record per page."""
    from mktme_des.simulate import workload_from
    from mktme_des.workloads.synthetic import prepare

    held = {}
    for kib in (4 << 10, 1 << 20, 16 << 20):
        p = Platform(load_model("server-2s"), seed=1)
        spec = workload_from({"pattern": "random", "working_set_kib": kib, "accesses": 10,
                              "mktme_fraction": 0.5})
        (region,) = prepare(p, spec).values()
        layout = region.layout
        held[kib] = sum(len(t) * t.itemsize for t in (layout.a_lo, layout.a_hi, layout.c_lo, layout.c_hi))
        for pkg in p.packages:
            assert not pkg.mc.store.zeroed and not pkg.mc.store.lines
            assert len(pkg.mc.store.regions) == 1
    assert held[1 << 20] == held[16 << 20] <= 3 * 256 * 4 * 8


# -- the address map with packages without memory -----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mktme_des.config.model import merge, model_from_dict  # noqa: E402
from mktme_des.config.schema import resolved  # noqa: E402
from mktme_des.hw import ops as O  # noqa: E402
from mktme_des.hw.address import AddressMap  # noqa: E402

BASE = resolved(load_model("server-2s"))


def _model(sizes: list[int], interleave: int):
    return model_from_dict(merge(BASE, {"topology": {"packages": len(sizes), "cores_per_package": 1},
                                        "memory": {"gib_per_package": sizes,
                                                   "interleave_bytes": interleave}}))


layouts = st.lists(st.booleans(), min_size=1, max_size=6).filter(any)


@settings(max_examples=60, deadline=None)
@given(has=layouts, interleave=st.sampled_from([0, 64, 4096, 1 << 21]),
       picks=st.lists(st.integers(0, (1 << 62)), min_size=1, max_size=20))
def test_addresses_are_homed_only_on_packages_with_memory(has, interleave, picks):
    """Rule of the address map: every address is homed on a package with memory; each has
    the same share; without interleaving the ranges follow package order. With memory on
    every package the map is the plain one (package = pa // range or (pa // g) % packages)."""
    amap = AddressMap(_model([64 if h else 0 for h in has], interleave))
    homes = [p for p, h in enumerate(has) if h]
    assert amap.memory_bytes == len(homes) * (64 << 30)
    full = AddressMap(_model([64] * len(homes), interleave))
    for x in picks:
        pa = x % amap.memory_bytes & ~63
        home = amap.home(pa)
        assert has[home]
        # Metamorphic: the same address on the machine without the memory-less packages
        # lands on the same rank among the packages with memory.
        assert homes.index(home) == full.home(pa) == amap.slot(pa)
        if not interleave:
            assert amap.range_start(home) <= pa < amap.range_start(home) + amap.package_bytes
        assert amap.nearest_home(home) == home
    for p, h in enumerate(has):
        near = amap.nearest_home(p)
        assert has[near] and (h or near != p)


def test_a_memoryless_packages_cores_read_remote_memory_encrypted_at_the_home():
    """A core of package 1 (no memory) stores and loads through a KeyID that package 1's key
    table does not hold: the line is encrypted by package 0's controller, served remotely."""
    plat = Platform(load_model("server-2s-memoryless"), seed=3)
    cpu = plat.packages[1].cores[0].cpu
    plat.program(1, "random", packages=[0])  # package 1's table keeps TME for KeyID 1
    assert plat.packages[1].mc.keys.mode(1) == "tme" and not plat.packages[1].has_memory
    pa, data = 0x7000, b"on package 0's memory".ljust(64, b".")
    core = plat.cores[cpu]
    core.log = []
    plat.start(cpu, [(O.WRITE, 1, pa, data, None), (O.CLFLUSH, 1, pa, None, None),
                     (O.READ, 1, pa, 64, None)])
    plat.run()
    # The store's fill and the load both went to package 0 (write-allocate), none locally.
    assert core.log[-1][5] == data and core.served == {"DRAM-remote": 2}
    assert plat.packages[0].mc.reads == 2 and plat.packages[1].mc.reads == 0
    assert plat.dram_read(pa, 64) == ref_xts(plat.packages[0].mc.keys.key(1), pa,
                                             plat.boot_tweak, data, True)


# -- lines zeroed under one key, read under another ---------------------------------------------

ZERO_KEYS = [None] + [random.Random(k).randbytes(32) for k in (11, 12, 13)]
reads_of_zeroed = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 63),
                                     st.sampled_from([None, 0, 1, 2, 3]), st.booleans()),
                           min_size=1, max_size=80)


@settings(max_examples=40, deadline=None)
@given(page_keys=st.lists(st.integers(0, 3), min_size=6, max_size=6), reads=reads_of_zeroed,
       as_region=st.booleans(), kept=st.integers(1, 4), boots=st.sampled_from([(0, 0), (0, 5)]))
def test_lines_zeroed_under_one_key_read_under_another_are_xts_of_zeros(page_keys, reads,
                                                                         as_region, kept,
                                                                         boots):
    """Rule of the store: a line of a page zeroed through key Z under boot tweak b0, read
    through key K under b1, is the XTS decryption under (K, b1) of the XTS encryption of zeros
    under (Z, b0) (a raw read or K None: that ciphertext), in any order of reads, whatever the
    store keeps of earlier reads (a small bound here, so pages are dropped and computed again),
    and with the eager store alike. Checked against the ``cryptography`` package."""
    from array import array

    from mktme_des.hw import dram
    from mktme_des.hw.dram import DramStore, KeyIdTable

    base, (zboot, boot) = 0x80_0000, boots
    stores = [DramStore(lazy=True), DramStore(lazy=False)]
    for store in stores:
        if as_region:
            store.zero_region(base, KeyIdTable(array("H", page_keys)), ZERO_KEYS, zboot)
        else:
            for i, k in enumerate(page_keys):
                store.zero_page(base + i * 4096, ZERO_KEYS[k], zboot)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dram, "ZERO_VIEWS", kept)
        for page, line, reader, twice in reads:
            pa = base + page * 4096 + line * 64
            zkey = ZERO_KEYS[page_keys[page]]
            cipher = bytes(64) if zkey is None else ref_xts(zkey, pa, zboot, bytes(64), True)
            if reader is None:
                want, got = cipher, [s.read_raw(pa) for s in stores]
            else:
                key = ZERO_KEYS[reader]
                want = cipher if key is None else ref_xts(key, pa, boot, cipher, False)
                if key == zkey and boot == zboot:
                    want = bytes(64)
                got = [s.read(pa, key, boot) for s in stores * (1 + twice)]
            assert all(g == want for g in got)
            assert len(stores[0].zero_views) <= kept
