"""Showing a scenario's result: a readable verdict, a numbered trace, a timeline picture."""

from __future__ import annotations

from pathlib import Path

from mktme_des.outputs import write_file, write_text
from mktme_des.scenarios.runner import Result

FIGURE_FORMATS = ("png", "svg", "pdf")
"""What ``--plot`` can write, by the file name's suffix."""


def _short(hexdata: str | None, n: int = 16) -> str:
    if not hexdata:
        return ""
    raw = bytes.fromhex(hexdata)
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in raw[:n])
    return f"{hexdata[: 2 * n]}{'...' if len(raw) > n else ''}  |{text}|"


def verdict_text(res: Result, trace: bool = False) -> str:
    """The verdict of every expectation, the oracle's violations, optionally the trace."""
    info = res.scenario.info
    lines = [f"{info.name}: {info.title}", f"  file {res.scenario.path}, model {info.model}, "
             f"seed {info.seed}, ran {res.end_ns:g} ns simulated"]
    if info.source:
        lines.append(f"  from the thread: {info.source}")
    lines.append("")
    for c in res.checks:
        mark = "PASS" if c["ok"] else "FAIL"
        where = f"{c['actor']} at {c['time_ns']:g} ns" if "time_ns" in c else c["actor"]
        lines.append(f"  [{mark}] {c['name']} ({where}): expected {c['expect'] or '-'}; "
                     f"{c['detail']}")
        if c.get("data"):
            lines.append(f"         K{c['keyid']} {c['addr']} -> {_short(c['data'])}"
                         f"{'  served by ' + c['served_by'] if c.get('served_by') else ''}")
    viol = res.violations
    lines.append("")
    lines.append(f"  oracle: {res.oracle_counts.get('checked', 0)} reads checked, "
                 f"{res.oracle_counts.get('unchecked', 0)} unchecked, {len(viol)} violation(s)")
    for v in viol:
        lines.append(f"    t={v['time_ns']:g} ns cpu{v['cpu']} {v['tag']}: {v['cause']}")
        lines.append(f"      expected {_short(v['expected'])}")
        lines.append(f"      actual   {_short(v['actual'])}")
    for line in res.invariants:
        lines.append(f"  kernel invariant broken: {line}")
    kernel = res.stats.get("kernel")
    if kernel:
        lines.append(f"  kernel policy {kernel['policy']}; KeyIDs in use {kernel['keys']['keyids_in_use']}")
        for b in kernel["keys"]["broadcasts"]:
            lines.append(f"    broadcast K{b['keyid']} {b['command']} at {b['start_ns']:g} ns: "
                         f"{b['duration_ns']:g} ns, packages disagreed for {b['window_ns']:g} ns; "
                         + ", ".join(f"pkg{p} {s}" for p, s in b["statuses"].items()))
        for keyid, nbytes in kernel.get("swap_plaintext_bytes_by_keyid", {}).items():
            lines.append(f"    swap: {nbytes} bytes of KeyID-{keyid} pages written unencrypted")
    lines.append("")
    lines.append(f"  verdict: {'PASS' if res.ok else 'FAIL'} "
                 f"({sum(c['ok'] for c in res.checks)}/{len(res.checks)} expectations hold)")
    if trace:
        lines.append("")
        lines.append("  trace:")
        for ev in res.trace:
            lines.append("    " + trace_line(ev))
    return "\n".join(lines)


def trace_line(ev: dict) -> str:
    t = f"{ev['start_ns']:>10.2f}"
    if ev["end_ns"] != ev["start_ns"]:
        t += f"-{ev['end_ns']:<10.2f}"
    else:
        t += " " * 11
    what = ev["op"]
    if "keyid" in ev:
        what += f" (K{ev['keyid']}, {ev['addr']})"
    extra = []
    if ev.get("served_by"):
        extra.append(f"from {ev['served_by']}")
    if ev.get("class"):
        extra.append(ev["class"])
    if ev.get("detail"):
        extra.append(ev["detail"])
    if ev.get("data"):
        extra.append(_short(ev["data"], 8))
    return f"#{ev['n']:<3} {t} {ev['actor']:<10} {what}" + (f"  [{'; '.join(extra)}]" if extra else "")


def chrome_trace(res: Result, path: str | Path) -> Path:
    """Write the scenario's trace in the Chrome trace-event format (chrome://tracing,
    Perfetto): one track per actor, an op as a complete event, a zero-length event (a
    writeback arriving, a key programmed) as an instant, and a flow arrow from the flush or
    eviction that sent each writeback to its arrival at the memory controller."""
    import json

    actors = sorted({e["actor"] for e in res.trace},
                    key=lambda a: (not a.startswith("cpu"), a.startswith("mc"), a))
    tid = {a: i + 1 for i, a in enumerate(actors)}
    events: list[dict] = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid[a],
                           "args": {"name": a}} for a in actors]
    for e in res.trace:
        name = e["op"] + (f" (K{e['keyid']}, {e['addr']})" if "keyid" in e else "")
        args = {k: v for k, v in e.items()
                if k not in ("op", "actor", "start_ns", "end_ns", "keyid", "addr")}
        ev = {"name": name, "pid": 1, "tid": tid[e["actor"]], "ts": e["start_ns"] / 1000,
              "args": args}
        dur = (e["end_ns"] - e["start_ns"]) / 1000
        if dur > 0:
            ev.update(ph="X", dur=dur)
        else:
            ev.update(ph="i", s="t")
        events.append(ev)
        origin = e.get("from")
        if origin and origin["actor"] in tid:
            flow = {"name": "writeback", "cat": "writeback", "id": e["n"], "pid": 1}
            events.append(dict(flow, ph="s", tid=tid[origin["actor"]],
                               ts=origin["time_ns"] / 1000))
            events.append(dict(flow, ph="f", bp="e", tid=tid[e["actor"]],
                               ts=e["start_ns"] / 1000))
    text = json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}, indent=1)
    return write_text(path, text, "--chrome-trace")


COLOURS = {"read": "#1f77b4", "write": "#d62728", "clflush": "#2ca02c", "clflushopt": "#2ca02c",
           "clwb": "#98df8a", "prefetch": "#9467bd", "wbinvd": "#8c564b", "raw_read": "#7f7f7f",
           "raw_write": "#ff7f0e", "raw_copy": "#ff7f0e", "writeback arrives": "#2ca02c"}


def timeline_figure(res: Result, path: str | Path) -> Path:
    """Draw the scenario's events on one lane per actor; returns the file written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = [e for e in res.trace if e["op"] not in ("compute",)]
    actors = []
    for e in events:
        if e["actor"] not in actors:
            actors.append(e["actor"])
    actors.sort(key=lambda a: (not a.startswith("cpu"), a.startswith("mc"), a))
    lane = {a: i for i, a in enumerate(actors)}
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * len(actors)))
    named: dict[int, int] = {}  # lane -> kernel ops named on it so far
    for e in events:
        y = lane[e["actor"]]
        colour = COLOURS.get(e["op"], "#444444")
        width = e["end_ns"] - e["start_ns"]
        if width > 0:
            ax.barh(y, width, left=e["start_ns"], height=0.5, color=colour, alpha=0.8)
            if e["op"] not in COLOURS:  # a system call or kernel op: named above or below
                named[y] = named.get(y, 0) + 1
                ax.annotate(e["op"] + (f" {e['result']}" if e.get("result", "ok") != "ok"
                                       else ""),
                            (e["start_ns"], y - 0.3 if named[y] % 2 else y + 0.45),
                            fontsize=6, ha="left", va="bottom", color="#333333")
        else:
            ax.plot(e["start_ns"], y, marker="v", color=colour, markersize=7)
        if "check" in e:
            ax.annotate(f"{e.get('class') or ''}", (e["end_ns"], y + 0.42), fontsize=7,
                        ha="center", va="top")
        elif e["op"] == "writeback arrives":
            ax.annotate(f"K{e['keyid']} wb", (e["start_ns"], y - 0.3), fontsize=7, ha="center")
    for e in events:  # each writeback, from the flush or eviction that sent it
        origin = e.get("from")
        if origin and origin["actor"] in lane:
            ax.annotate("", xy=(e["start_ns"], lane[e["actor"]]),
                        xytext=(origin["time_ns"], lane[origin["actor"]]),
                        arrowprops={"arrowstyle": "->", "color": COLOURS["writeback arrives"],
                                    "lw": 1, "alpha": 0.7})
    on_cpu = {cpu: name for name, (_kind, cpu, _ops) in res.scenario.kernel_ops.items()
              if name in lane}
    for v in res.violations:  # on the CPU's lane, or that of the actor running there
        y = lane.get(f"cpu{v['cpu']}", lane.get(on_cpu.get(v["cpu"], ""), 0))
        ax.plot(v["time_ns"], y, marker="x", color="#d62728", markersize=10, mew=2)
        ax.annotate("oracle violation", (v["time_ns"], y - 0.35), fontsize=7,
                    color="#d62728", ha="right")
    ax.set_yticks(range(len(actors)), actors)
    ax.invert_yaxis()
    ax.set_xlabel("simulated time (ns)")
    info = res.scenario.info
    title = f"{info.name}: {info.title}"
    title = title if len(title) <= 110 else title[:107] + "..."
    ax.set_title(f"{title} - {'PASS' if res.ok else 'FAIL'}", fontsize=10)
    for k, line in enumerate(res.invariants[:2]):
        ax.annotate(f"kernel invariant broken: {line}", (0.0, -0.28 - 0.07 * k),
                    xycoords="axes fraction", fontsize=7, color="#d62728")
    handles = [plt.Line2D([0], [0], color=c, lw=6) for c in
               ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")]
    ax.legend(handles, ["read", "write", "flush / writeback", "prefetch", "raw DRAM"],
              fontsize=7, loc="best", frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower()
    try:
        return write_file(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt), "--plot",
                          FIGURE_FORMATS)
    finally:
        plt.close(fig)
