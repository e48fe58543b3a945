"""What a synthetic workload asks of the machine running it, checked before it runs.

Two caps, each refused in one line naming the field and the limit (:mod:`mktme_des.limits`):

- **simulated time**: every access takes at least the first cache level's hit latency (plus
  ``compute_ns``), so ``warmup + accesses`` per core must fit in the longest simulated time,
  :data:`~mktme_des.engine.time.MAX_NS`;
- **memory**: the lines touched are at most ``warmup + accesses`` per core and at most the
  lines of each working set; together they must stay within
  :data:`~mktme_des.limits.MAX_LINES`.

Work within both caps may still take long: :func:`estimate_text` says how long before it
starts. A lackey trace is bounded by its file, so only synthetic streams are checked.
"""

from __future__ import annotations

from mktme_des import limits
from mktme_des.config.schema import Context
from mktme_des.engine.time import MAX_NS


def access_floor_ns(model, spec) -> float:
    """The least simulated time one access of ``spec`` takes on ``model``: an L1 hit plus the
    computation between accesses."""
    l1 = model.cache[0]
    return l1.hit_latency_cycles / model.platform.frequency_ghz + spec.compute_ns


def lines_touched(spec) -> int:
    """An upper bound on the distinct 64-byte lines the workload touches: per working set
    (one per core, or one shared), the smaller of its lines and the accesses made in it."""
    per_core = spec.per_core
    ws_lines = -(-spec.working_set_kib * 1024 // 64)
    if spec.sharing == "shared":
        return min(ws_lines, per_core * spec.cores)
    return spec.cores * min(ws_lines, per_core)


def check_budget(model, spec, ctx: Context) -> None:
    """Refuse a synthetic workload beyond the simulated-time or memory cap (see the module
    docstring); ``ctx`` names the ``[workload]`` table."""
    if spec.kind != "synthetic":
        return
    per_core = spec.per_core
    big = "warmup" if spec.warmup > spec.accesses else "accesses"
    floor = access_floor_ns(model, spec)
    if per_core * floor > MAX_NS:
        most = int(MAX_NS // floor)
        raise ctx.error(big, f"{getattr(spec, big)}: warmup + accesses = {per_core} per core "
                        f"take at least {per_core * floor:.3g} ns simulated ({floor:.3g} ns "
                        f"each: an L1 hit plus compute_ns), beyond the longest simulated time "
                        f"{MAX_NS:g} ns; at most {most} per core on {model.platform.name}")
    lines = lines_touched(spec)
    if lines > limits.MAX_LINES:
        ws_lines = -(-spec.working_set_kib * 1024 // 64)
        what = "working_set_kib" if ws_lines <= per_core else big
        raise ctx.error(what, f"{getattr(spec, what)}: {spec.cores} core(s) would touch up to "
                        f"{lines} distinct 64-byte lines, more than the {limits.MAX_LINES} "
                        f"that fit the memory budget ({limits.MEMORY_BUDGET_BYTES >> 30} GiB at "
                        f"{limits.BYTES_PER_LINE} bytes a line, mktme_des/limits.py); lower "
                        "accesses, warmup, working_set_kib or cores")


def estimate_text(spec) -> str | None:
    """A line saying how long the run may take, when the slower end of the estimate exceeds
    :data:`~mktme_des.limits.ESTIMATE_ABOVE_S`; None for a short run. The estimate is the
    accesses times :data:`~mktme_des.limits.CPU_US_PER_ACCESS`, not a measurement."""
    if spec.kind != "synthetic":
        return None
    total = spec.cores * spec.per_core
    low, high = (total * us / 1e6 for us in limits.CPU_US_PER_ACCESS)
    if high <= limits.ESTIMATE_ABOVE_S:
        return None
    return (f"simulate: {total:.4g} accesses ({spec.cores} core(s) x {spec.per_core:.4g}); "
            f"at {limits.CPU_US_PER_ACCESS[0]:g}-{limits.CPU_US_PER_ACCESS[1]:g} us of CPU "
            f"each this takes about {limits.human_seconds(low)} to "
            f"{limits.human_seconds(high)}; Ctrl-C stops it")
