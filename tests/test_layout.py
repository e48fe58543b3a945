"""The KeyID layout of a working set (:mod:`mktme_des.workloads.layout`) computed page by page
equals the layout drawn all at once from the same stream, and moves the stream as far."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.hw.platform import Platform
from mktme_des.simulate import workload_from
from mktme_des.workloads.layout import KeyIdLayout
from mktme_des.workloads.synthetic import prepare


def drawn_at_once(pages: int, mktme: float, no_encrypt: float, keys: int, noenc: int,
                  rng: np.random.Generator) -> list[int]:
    """The rule stated in the module, with numpy's own draws: one uniform a page."""
    u = rng.random(pages)
    idx = np.arange(pages)
    out = np.zeros(pages, dtype=np.int64)
    mk = u < mktme
    out[mk] = 1 + idx[mk] % keys
    out[~mk & (u < mktme + no_encrypt)] = noenc
    return out.tolist()


shares = st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(pages=st.integers(1, 3000), mktme=shares, no_encrypt=shares, keys=st.integers(1, 40),
       seed=st.integers(0, 2**63), burnt=st.integers(0, 5), probe=st.integers(0, 2**24 - 1))
def test_pages_get_the_keyids_of_one_draw_each_in_page_order(pages, mktme, no_encrypt, keys,
                                                              seed, burnt, probe):
    """For any shares, key count and stream position, every page's KeyID is the one the
    whole layout drawn at once gives it, and the stream ends where those draws leave it. A
    page far into a 64 GiB working set matches too (the layout's jumps over many digits)."""
    no_encrypt = min(no_encrypt, 1.0 - mktme)
    lazy_rng = np.random.Generator(np.random.PCG64(seed))
    eager_rng = np.random.Generator(np.random.PCG64(seed))
    lazy_rng.random(burnt)
    eager_rng.random(burnt)
    layout = KeyIdLayout(pages, mktme, no_encrypt, keys, keys + 1, lazy_rng)
    want = drawn_at_once(pages, mktme, no_encrypt, keys, keys + 1, eager_rng)
    assert layout.keyids_of(list(range(pages))) == want
    assert [layout.keyid(i) for i in range(pages)] == want
    assert lazy_rng.random(3).tolist() == eager_rng.random(3).tolist()

    big = KeyIdLayout(2**24, mktme, no_encrypt, keys, keys + 1,
                      np.random.Generator(np.random.PCG64(seed)))
    rng = np.random.Generator(np.random.PCG64(seed))
    rng.bit_generator.advance(probe)
    assert big.draw(probe) == rng.random()


@settings(max_examples=10, deadline=None)
@given(kib=st.integers(4, 1 << 16), mktme=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_a_prepared_working_set_zeroes_each_page_through_its_drawn_keyid(kib, mktme, seed):
    """What DRAM answers for a prepared page is the key of the KeyID drawn for it from the
    workload's layout stream (the one draw a page rule, from a fresh copy of that stream)."""
    p = Platform(load_model("server-2s"), seed=seed)
    spec = workload_from({"pattern": "random", "working_set_kib": kib, "accesses": 10,
                          "mktme_fraction": mktme, "mktme_keys": 3})
    (region,) = prepare(p, spec).values()
    pages = region.size // 4096
    stream = Platform(load_model("server-2s"), seed=seed).streams.get(
        f"workload/layout/{region.base:#x}")
    want = drawn_at_once(pages, mktme, 0.0, 3, 4, stream)
    mc = p.mc_for(region.base)
    (zone,) = mc.store.regions
    keys = [mc.keys.key(k) for k in range(mc.keys.max_keyid + 1)]
    for i in sorted({0, pages - 1, *range(0, pages, max(1, pages // 50))}):
        assert zone.key_at(region.base + i * 4096 + 64) == keys[want[i]]
