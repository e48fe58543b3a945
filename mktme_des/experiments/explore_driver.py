"""The ``explore`` driver: how often a scenario's race bites, against timing noise.

One point explores one scenario (:mod:`mktme_des.scenarios.explore`): ``runs`` runs with every
op time moved by up to ``±jitter_ns``, the point's seed seeding the moves. It reports the share
of runs that broke an expectation of the file and the share in which the oracle saw a
violation, each with a 95% Wilson interval, and how many distinct outcomes appeared.

The resolved configuration holds the scenario file's contents and its resolved model, so
editing either changes the points that use them (they are then recomputed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mktme_des.config.model import load_model
from mktme_des.config.schema import Context, Section, param, read_toml, resolved
from mktme_des.errors import ConfigError
from mktme_des.experiments.drivers import register
from mktme_des.experiments.race_driver import wilson

METRICS = {
    "runs": "jittered runs of the scenario",
    "outcomes": "distinct verdicts among them",
    "failed": "runs that broke an expectation of the file",
    "p_fail": "failed / runs",
    "p_fail_low": "95% Wilson interval of p_fail, lower end",
    "p_fail_high": "95% Wilson interval of p_fail, upper end",
    "violated": "runs in which the oracle reported a violation",
    "p_violation": "violated / runs",
}


@dataclass(frozen=True, kw_only=True)
class ExploreBase(Section):
    scenario: str = param(doc="scenario name (experiments/scenarios/NAME.toml), id or path")
    runs: int = param(50, doc="jittered runs per point", min=1, max=100_000)
    jitter_ns: float = param(500.0, doc="largest move of an op's time", unit="ns", min=0.0,
                             min_exclusive=True)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from mktme_des.scenarios.spec import find_scenario, scenario_from

    try:
        path = find_scenario(base["scenario"])
        data = read_toml(path)
        sc = scenario_from(data, str(path))
    except ConfigError as err:
        raise ctx.error("scenario", str(err)) from None
    info = sc.file.scenario
    model = load_model(info.model, sc.file.model_overrides or None)
    return dict(base, scenario_file=path.name, scenario_data=data,
                model_resolved=resolved(model))


def stored(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration result files keep: the scenario's keys fingerprinted."""
    from mktme_des import redact

    return dict(config, scenario_data=redact.scenario(config["scenario_data"]))


@register("explore", metrics=METRICS, base=ExploreBase, resolve=resolve, redact=stored)
def explore_point(config: dict[str, Any], seed: int) -> dict[str, Any]:
    from mktme_des.scenarios.explore import explore_data

    found = explore_data(config["scenario_data"], Path(config["scenario_file"]),
                         config["runs"], config["jitter_ns"], seed)
    n = found.runs
    failed = found.failed
    violated = sum(len(o.runs) for o in found.outcomes if o.violations)
    lo, hi = wilson(failed, n)
    return {"runs": n, "outcomes": len(found.outcomes), "failed": failed, "p_fail": failed / n,
            "p_fail_low": lo, "p_fail_high": hi, "violated": violated,
            "p_violation": violated / n}
