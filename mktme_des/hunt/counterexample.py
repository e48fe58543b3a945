"""A shrunk counterexample as an ordinary scenario file, with its trace and timeline.

The file is the shrunk program with its times and ``tie_choices``, so ``mktme-des scenario
run`` replays it exactly. Its expectations describe the run as it went, corruption included:

* every system call, PCONFIG and pin that failed expects its errno or status;
* every read and device read expects the class of what it returned (``garbage``,
  ``plaintext``, ...);
* ``[expect] violations`` is ``some`` or ``none``, and ``[expect] invariants`` is ``broken``
  or ``hold``, as the run found them.

So the file's own expectations hold, and any change to the model or policy that removes the
corruption makes ``scenario run`` on it fail. A comment at the top says which policy, model,
seed and run of the hunt found it, and how far it was shrunk.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mktme_des.config.toml_write import dumps
from mktme_des.scenarios.explore import HEX_FIELDS
from mktme_des.scenarios.runner import Result

READS = ("read", "device_read")
NO_EXPECT = ("clflush", "compute", "wbinvd")  # ops without an ``expect`` field


def with_expectations(data: dict[str, Any], res: Result) -> dict[str, Any]:
    """``data`` with expectations stating what its run ``res`` did (module docstring)."""
    out = copy.deepcopy(data)
    actors = {}
    for table in ("process", "system"):
        for i, actor in enumerate(out.get(table, [])):
            actors[actor.get("name") or f"{table}{i}"] = actor
    for c in res.checks:
        actor = actors.get(c["actor"])
        if actor is None or "op" not in c:
            continue
        op = actor["ops"][c["op"]]
        if op["op"] in NO_EXPECT:
            continue
        if op["op"] in READS:
            if c.get("class"):
                op["expect"] = c["class"]
        elif not c["ok"] and c.get("result"):
            op["expect"] = c["result"]
    out["expect"] = {"violations": "some" if res.violations else "none",
                     "invariants": "broken" if res.invariants else "hold"}
    return out


def write_counterexample(folder: Path, stem: str, data: dict[str, Any],
                         header: str) -> tuple[dict[str, str], Result]:
    """Write ``stem.toml``, then ``stem.trace.txt`` and ``stem.png`` from what ``scenario
    run`` makes of that file, into ``folder``; returns their paths and that run. Each file is
    written whole under a temporary name first."""
    from mktme_des.scenarios.report import timeline_figure, verdict_text
    from mktme_des.scenarios.runner import run_scenario

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.toml"
    tmp = target.with_suffix(".toml.tmp")
    tmp.write_text(dumps(data, HEX_FIELDS, header))
    tmp.replace(target)
    res = run_scenario(target)
    trace = folder / f"{stem}.trace.txt"
    tmp = trace.with_suffix(".txt.tmp")
    tmp.write_text(verdict_text(res, trace=True) + "\n")
    tmp.replace(trace)
    picture = timeline_figure(res, folder / f"{stem}.png")
    return {"file": str(target), "trace": str(trace), "timeline": str(picture)}, res

