"""Kernel policies as data: ``models/kernel/*.toml``.

A policy is a named set of switches describing how the kernel behaves: the RFC v2 default
(the seed series), the 2019 series, and unsafe variants the review thread worries about. A
scenario or experiment picks one by name and may override single switches.
"""

from __future__ import annotations

from dataclasses import dataclass

from mktme_des import catalog
from mktme_des.config.model import merge
from mktme_des.config.schema import Context, Section, build, param, read_toml
from mktme_des.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Policy(Section):
    name: str = param(doc="policy name")
    description: str = param("", doc="what this policy is and where it comes from")
    flush_on_alloc: bool = param(True, doc="prep_encrypted_page: clflush the page through its "
                                 "previous KeyID before handing it out under a new one")
    flush_on_free: bool = param(True, doc="free_encrypted_page: clflush every line of an "
                                "encrypted page through its KeyID when it is freed")
    alloc_flush: str = param("last-keyid", doc="which lines prep_encrypted_page clflushes when "
                             "a page is allocated under a KeyID: last-keyid (the core series "
                             "behind RFC v2, PATCHv4 changelog: through the KeyID the page last "
                             "had, skipped when it is the same KeyID) or keyid0 (the 2019 tree: "
                             "always, through the KeyID-0 direct map)",
                             choices=("last-keyid", "keyid0"))
    zero_on_alloc: bool = param(True, doc="new user pages are zeroed through their KeyID")
    refcount_pages: bool = param(False, doc="2019 series: every allocated page holds a "
                                 "reference on its KeyID (percpu_ref)")
    reprogram_in_use: bool = param(False, doc="UNSAFE: allow a key update (PCONFIG) of a KeyID "
                                   "that VMAs or pages still use (RFC v2 refuses with EBUSY)")
    hotplug_lock: bool = param(True, doc="hold get_online_cpus() across a key broadcast")
    direct_map: str = param("per-keyid", doc="kernel access to user pages: through a direct "
                            "map per KeyID, or only through KeyID 0",
                            choices=("per-keyid", "keyid0-only"))
    retries: int = param(0, doc="whole-broadcast retries on DEVICE_BUSY or ENTROPY_ERROR "
                         "(RFC v2: 0, 2019: 10)", min=0, max=100)
    savekeys: bool = param(False, doc="mktme_savekeys: keep user key data to program packages "
                           "that come online")
    clear_sends_alg: bool = param(False, doc="CLEAR_KEY and NO_ENCRYPT carry a valid ENC_ALG. "
                                  "RFC v2 as posted sends ENC_ALG = 0 (patch 10, "
                                  "mktme_check_options), which PCONFIG rejects with "
                                  "INVALID_ENC_ALG, so type=clear and type=no-encrypt keys fail "
                                  "with ENOKEY; the 2019 tree's intel_pconfig.h adds the "
                                  "algorithm to both commands")
    cpuless_package: str = param("forget", doc="a package whose last CPU goes offline while "
                                 "its memory, if it has any, stays: forget (RFC v2 patch 13: "
                                 "the teardown always succeeds, the package is left out of "
                                 "every key broadcast, and when a CPU returns every KeyID in "
                                 "use is programmed there afresh, a CPU key with a new random "
                                 "key) or refuse (2019: the last CPU of a package, with memory "
                                 "or not, cannot go while keys are in use, EBUSY; no key can be "
                                 "created while a package with memory has no online CPU, "
                                 "EINVAL; and a returning CPU programs nothing, as 2019 has no "
                                 "startup callback)",
                                 choices=("forget", "refuse"))
    migrate_on_offline: bool = param(False, doc="memory hot-remove: a package going offline "
                                     "first migrates the pages homed on it to the other online "
                                     "packages (otherwise the offline is refused with EBUSY)")
    direct_map_isolation: str = param("none", doc="what keeps the kernel from reading user "
                                      "pages through the direct map (kernel/directmap.py): "
                                      "none (they stay mapped; MKTME's flushes protect), xpfo "
                                      "(unmapped on allocation with a TLB shootdown to every "
                                      "online CPU) or isolated (never mapped: a temporary "
                                      "mapping and a local INVLPG to zero them)",
                                      choices=("none", "xpfo", "isolated"))
    shootdown_handler_ns: float = param(500.0, doc="ASSUMPTION: a CPU's time handling one "
                                        "TLB-shootdown IPI (interrupt entry, INVLPG, "
                                        "acknowledgement, return); about a third of the 1.32 us "
                                        "virtualised send-to-handled IPI of facts section 3.4, "
                                        "the rest being delivery (the model's ipi fields)",
                                        unit="ns", min=0.0)
    local_invlpg_ns: float = param(100.0, doc="ASSUMPTION: dropping one kernel translation on "
                                   "the local CPU (INVLPG and the PTE store, a few hundred "
                                   "cycles; no published figure, facts section 3.4)",
                                   unit="ns", min=0.0)
    keyid_pools: bool = param(False, doc="per-KeyID pools of free pages (planned in the "
                              "PATCHv4 cover letter, never merged): a freed page of KeyID K is "
                              "kept, unflushed, in K's pool; an allocation under K takes from it "
                              "first with no flush; a frame leaving the pool for another KeyID "
                              "(0 included) is flushed through K then")
    page_flush: str = param("clflush", doc="how the page protocol flushes: clflush (every "
                            "line of each page, through its KeyID) or wbinvd (one WBINVD on "
                            "every package for all the pages of one allocation or unmap, run "
                            "by IPIs to a CPU of each other package, as a system-wide cache "
                            "flush must be)", choices=("clflush", "wbinvd"))
    on_exhaustion: str = param("fail", doc="when no KeyID is free: fail with ENOKEY, or wait "
                               "for one", choices=("fail", "wait"))
    key_gc_delay_s: float = param(300.0, doc="/proc/sys/kernel/keys/gc_delay: how long a "
                                  "revoked key (and the KeyID reference it holds) lives before "
                                  "the keyring garbage collector destroys it; 300 s by default "
                                  "(keyrings(7))", unit="s", min=0.0)
    syscall_ns: float = param(150.0, doc="entry/exit cost of a syscall (ASSUMPTION)",
                              unit="ns", min=0.0)
    fault_ns: float = param(500.0, doc="page-fault handling cost before zeroing (ASSUMPTION)",
                            unit="ns", min=0.0)


def load_policy(name: str = "rfc-v2", overrides: dict | None = None) -> Policy:
    """Load a policy by name (models/kernel/NAME.toml, see :mod:`mktme_des.catalog`) or
    path, with switch overrides."""
    path = catalog.find("policy", name)
    data = read_toml(path).get("policy", {})
    if not isinstance(data, dict):
        raise ConfigError(str(path), "policy", "expected a table [policy] of switches, got "
                          f"{type(data).__name__} {data!r}"[:200])
    if overrides:
        data = merge(data, overrides)
    return build(Policy, data, Context(str(path), "policy"))


def list_policies() -> list[str]:
    """The names of every policy (:func:`mktme_des.catalog.names`)."""
    return catalog.names("policy")
