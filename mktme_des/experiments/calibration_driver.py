"""The ``calibration`` driver: the default models against the published figures.

Each point is one ``figure`` and reports the model's figure next to the source's
(``mktme-facts.md`` section 3), in percent:

* ``a`` - MKTME compiled in, no encrypted memory, costs nothing. Source: kernel build
  (Shutemov, PATCHv4 cover, 26 Jun 2018) 162.55 s with ``CONFIG_X86_INTEL_MKTME=y`` vs
  162.71 s without: -0.1%. Model: the page-churn workload with every page under KeyID 0,
  under the RFC v2 policy vs a kernel without the MKTME page protocol.
* ``b`` - all anonymous memory encrypted pays for clflush on allocation and free. Source: the
  same kernel build, 196.07 s: +20.5%. Model: the page-churn workload, pages encrypted vs not,
  under RFC v2. Its size is set by ``compute_ns_per_page``, the work done per page allocated
  (see the experiment file for how the default was estimated from the kernel build). That is
  the fitted parameter: the point reports it by name, the figure with it halved and doubled,
  and the figure with the 2019 allocation flush (always through KeyID 0). Agreement with the
  source after a fit is not a validation of the flush model.
* ``c`` - counterless AES-XTS slows irregular workloads by about 9% on average (ISCA 2024,
  real-system measurements). Model: the mean slowdown of the ``irregular`` workloads (random,
  Zipf, the shipped lackey trace) with every page under an MKTME KeyID vs a NO_ENCRYPT KeyID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import Context, build, param
from mktme_des.experiments.churn_driver import run_churn
from mktme_des.experiments.drivers import register
from mktme_des.experiments.platform_base import PlatformBase, param_value, resolve_platform
from mktme_des.workloads.synthetic import WorkloadSpec

SOURCES = {
    "a": (-0.098, "kernel build, CONFIG_X86_INTEL_MKTME=y, no encrypted memory: 162.55 s vs "
                  "162.71 s (PATCHv4 cover, 2018-06-26)"),
    "b": (20.5, "kernel build, all anonymous memory encrypted: 196.07 s vs 162.71 s "
                "(PATCHv4 cover, 2018-06-26)"),
    "c": (9.0, "counterless memory encryption slows irregular workloads by 9% on average "
               "(Counter-light Memory Encryption, ISCA 2024)"),
}
IRREGULAR = [
    {"pattern": "random", "working_set_kib": 65536, "accesses": 20000, "compute_ns": 20.0},
    {"pattern": "zipf", "zipf_alpha": 1.05, "working_set_kib": 65536, "accesses": 20000,
     "compute_ns": 20.0},
    {"kind": "lackey", "accesses": 60000, "compute_ns": 2.0},
]
METRICS = {
    "figure": "which published figure (a, b or c)",
    "model_pct": "the model's figure [%]",
    "source_pct": "the published figure [%]",
    "difference_pct": "model - source [percentage points]",
    "source": "where the published figure comes from",
    "fitted": "the model parameter chosen to reproduce this figure, and its value ('' if none)",
    "model_pct_at_half": "(b) the model's figure with the fitted parameter halved [%]",
    "model_pct_at_double": "(b) the model's figure with the fitted parameter doubled [%]",
    "model_pct_alloc_flush_keyid0": "(b) the model's figure with the 2019 allocation flush "
                                    "(always through KeyID 0) [%]",
}


@dataclass(frozen=True, kw_only=True)
class CalibrationBase(PlatformBase):
    figure: str = param("b", doc="which published figure", choices=("a", "b", "c"))
    processes: int = param(4, doc="churn: processes", min=1)
    iterations: int = param(3, doc="churn: rounds per process", min=1)
    pages: int = param(16, doc="churn: pages per round", min=1)
    compute_ns_per_page: float = param(25000.0, doc="churn: work per page allocated", unit="ns",
                                       min=0.0)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return resolve_platform(base, ctx)


def _churn(config: dict[str, Any], seed: int, encrypted: bool, **policy: Any) -> float:
    cfg = dict(config, encrypted=encrypted, touches=4)
    if policy:
        cfg["policy_resolved"] = dict(config["policy_resolved"], **policy)
    return run_churn(cfg, seed)["time_ns"]


def _slowdown_c(config: dict[str, Any], seed: int) -> float:
    from mktme_des.config.model import model_from_dict
    from mktme_des.simulate import simulate

    model = model_from_dict(config["model_resolved"], "calibration model")
    slowdowns = []
    for wl in IRREGULAR:
        times = []
        for enc in (False, True):
            data = dict(wl, mktme_fraction=1.0 if enc else 0.0,
                        no_encrypt_fraction=0.0 if enc else 1.0)
            spec = build(WorkloadSpec, data, Context("calibration", "workload"))
            times.append(simulate(model, spec, seed)["time_ns"])
        slowdowns.append(100.0 * (times[1] / times[0] - 1.0))
    return sum(slowdowns) / len(slowdowns)


@register("calibration", metrics=METRICS, base=CalibrationBase, resolve=resolve,
          param_value=param_value)
def calibration(config: dict[str, Any], seed: int) -> dict[str, Any]:
    check = config["figure"]
    if check == "a":
        with_mktme = _churn(config, seed, False)
        without = _churn(config, seed, False, flush_on_alloc=False, flush_on_free=False)
        model = 100.0 * (with_mktme / without - 1.0)
    elif check == "b":
        model = _figure_b(config, seed)
    else:
        model = _slowdown_c(config, seed)
    source, where = SOURCES[check]
    out = {"figure": check, "model_pct": model, "source_pct": source,
           "difference_pct": model - source, "source": where, "fitted": "",
           "model_pct_at_half": None, "model_pct_at_double": None,
           "model_pct_alloc_flush_keyid0": None}
    if check == "b":
        # compute_ns_per_page is not measured: it was estimated so that (b) lands near the
        # source. Report it as the fitted parameter, with how the figure moves with it.
        fitted = config["compute_ns_per_page"]
        out["fitted"] = f"compute_ns_per_page = {fitted:g} ns"
        out["model_pct_at_half"] = _figure_b(dict(config, compute_ns_per_page=fitted / 2), seed)
        out["model_pct_at_double"] = _figure_b(dict(config, compute_ns_per_page=fitted * 2), seed)
        out["model_pct_alloc_flush_keyid0"] = _figure_b(config, seed, alloc_flush="keyid0")
    return out


def _figure_b(config: dict[str, Any], seed: int, **policy: Any) -> float:
    """(b): page churn with every page encrypted vs none, in percent."""
    return 100.0 * (_churn(config, seed, True, **policy) / _churn(config, seed, False, **policy)
                    - 1.0)

