"""Experiment files: ``experiments/NAME.toml``, their schema, and their expansion into runs.

An experiment is described once and run over a grid of parameters::

    [experiment]
    name = "e1-aes-latency"          # results go to results/<name>/
    title = "..."                    # one line
    description = "..."
    driver = "workload"              # mktme_des.experiments.drivers
    seed = 1                         # every run's seed derives from it (see below)
    replications = 3                 # runs of every point, each with its own seed
    warmup = 0                       # only for drivers that support a warm-up

    [base]                           # the point configuration; its fields are the driver's
    model = "server-2s"              # (workload driver: model, model_overrides, workload,
    [base.workload]                  #  policy; see workload_driver.py)
    pattern = "random"

    [sweep]                          # grid: cartesian product; points: explicit list
    grid."model_overrides.mktme.aes_latency_ns" = [0, 8, 32]
    grid."model_overrides.mktme.aes_pipelined" = [true, false]
    points = [
      { "tag.config" = "TME",   "workload.mktme_fraction" = 0.0 },
      { "tag.config" = "MKTME", "workload.mktme_fraction" = 1.0 },
    ]

    [metrics]
    record = ["time_ns", "read_latency_mean_ns"]      # validated against the driver

    [[derive]]                       # optional derived columns: see derive.py
    [[figure]]                       # optional figures: see plots.py

Semantics:

* **Points.** Every combination of the grid (keys in file order, the last varying fastest),
  each combined with every entry of ``points`` (which vary fastest of all) (or just the grid when there are no points, or
  just the points when there is no grid; neither gives the single point ``[base]``). A dotted
  name may not be both a grid key and a key of a point. ``tag.NAME`` keys are labels (see
  dotted.py). Sweep values are strings, numbers or booleans.
* **Validation before anything runs.** Every point's configuration is built and resolved by the
  driver; the first error is reported with the experiment file and the sweep entry that caused
  it (``sweep.grid.workload.read_fraction[1]``, ``sweep.points[2].workload.cores``), or, for
  an error no single entry caused, the ``[base]`` field and the point's assignments. Metrics,
  derived columns and figures are checked against the driver and the parameter columns.
* **Runs, seeds and keys.** Each point runs ``replications`` times. A run's seed is the first
  63 bits of sha256 over (experiment seed, driver, resolved configuration, replication) in
  canonical JSON, so it depends neither on the order points are listed or executed in, nor on
  labels. A run's key, the name of its result file, is sha256 over the same plus its labels:
  see :func:`run_identity`.
* **Parameter columns** of the results table are the sweep's dotted names (grid keys, then
  point keys, in order of first appearance). A point that does not assign a column shows the
  value the resolved configuration has there.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktme_des import catalog
from mktme_des.config.schema import (
    Context,
    Section,
    build,
    param,
    parse_toml,
    read_text,
    resolved,
)
from mktme_des.errors import ConfigError, UserError
from mktme_des.experiments import derive as derive_mod
from mktme_des.experiments import dotted, drivers

ID_COLUMNS = ("replication", "seed", "point")
"""Columns every results table has between the parameter and the metric columns."""
FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
FIGURE_KINDS = ("line", "cdf", "stacked")
SCALES = ("linear", "log", "symlog")


@dataclass(frozen=True, kw_only=True)
class ExperimentInfo(Section):
    name: str = param(doc="results go to results/NAME/ (letters, digits, '-', '_', '.')")
    title: str = param("", doc="one line: what the experiment shows")
    description: str = param("", doc="what to look for")
    driver: str = param("workload", doc="the driver that runs one point (experiments/drivers.py)")
    seed: int = param(0, doc="experiment seed; each run's seed derives from it", min=0)
    replications: int = param(1, doc="runs of every point, each with its own seed", min=1,
                              max=100_000)
    warmup: int = param(0, doc="driver-defined warm-up; only for drivers that support one",
                        min=0)

    def check(self, ctx: Context) -> None:
        if not _NAME.fullmatch(self.name):
            raise ctx.error("name", f"{self.name!r} is not usable as a folder name; use "
                            "letters, digits, '-', '_' and '.'")


@dataclass(frozen=True, kw_only=True)
class Sweep(Section):
    grid: dict[str, list[Any]] = param({}, doc="dotted name -> list of values (cartesian "
                                       "product)")
    points: list[dict[str, Any]] = param([], doc="explicit points: tables of dotted name -> "
                                         "value, each combined with every grid combination")

    def check(self, ctx: Context) -> None:
        for name, values in self.grid.items():
            here = ctx.child("grid").child(name)
            _check_name(name, here)
            if not values:
                raise here.error(None, "an empty list of values gives no points")
            for i, v in enumerate(values):
                if not dotted.is_scalar(v):
                    raise here.child(i).error(None, "sweep values are strings, numbers or "
                                              "booleans; address a field of a table by its "
                                              "dotted name")
        for i, point in enumerate(self.points):
            here = ctx.child("points").child(i)
            if not point:
                raise here.error(None, "an empty point")
            for name, v in point.items():
                _check_name(name, here.child(name))
                if name in self.grid:
                    raise here.child(name).error(None, "is also a grid key; set it in one place")
                if not dotted.is_scalar(v):
                    raise here.child(name).error(None, "sweep values are strings, numbers or "
                                                 "booleans")


def _check_name(name: str, ctx: Context) -> None:
    try:
        dotted.split(name)
    except ValueError as exc:
        raise ctx.error(None, str(exc)) from None
    if name in ID_COLUMNS:
        raise ctx.error(None, f"{name!r} is a reserved column name")


@dataclass(frozen=True, kw_only=True)
class MetricsSpec(Section):
    record: list[str] = param(doc="the driver's metric names to record in the table")

    def check(self, ctx: Context) -> None:
        if not self.record:
            raise ctx.error("record", "record at least one metric")
        for i, name in enumerate(self.record):
            if name in self.record[:i]:
                raise ctx.error(f"record[{i}]", f"{name!r} is listed twice")


@dataclass(frozen=True, kw_only=True)
class DeriveSpec(Section):
    name: str = param(doc="the new column")
    metric: str = param(doc="a recorded metric")
    op: str = param("ratio", doc="ratio: x/b, difference: x-b, relative: x/b-1",
                    choices=derive_mod.OPS)
    baseline: dict[str, Any] = param(doc="parameter column -> value selecting baseline rows")
    match: list[str] | None = param(None, doc="columns a row and its baseline share (default: "
                                    "every parameter not in baseline, labels excepted)")
    unit: str = param("", doc="unit of the derived value, for labels")


@dataclass(frozen=True, kw_only=True)
class FigureSpec(Section):
    kind: str = param(doc="line (mean and 95% CI over replications), cdf, or stacked bars",
                      choices=FIGURE_KINDS)
    file: str = param(doc="file name without suffix, written to figures/ in the results")
    title: str = param("", doc="figure title")
    x: str | None = param(None, doc="x column (line, stacked)")
    y: Any = param(None, doc="line: a metric; stacked: a list of metrics to stack")
    hue: Any = param(None, doc="column, or list of columns, whose values make the series")
    facet: str | None = param(None, doc="column whose values make side-by-side panels")
    where: dict[str, Any] = param({}, doc="column -> value (or list of values) to keep")
    histogram: str = param("read_latency_hist", doc="cdf: the histogram series (stored in "
                           "each run's result file) to draw")
    xlabel: str | None = param(None, doc="x-axis label, with unit")
    ylabel: str | None = param(None, doc="y-axis label, with unit")
    legend: str | None = param(None, doc="legend title (default: the hue column names)")
    labels: dict[str, str] = param({}, doc="display names of hue values, facet values and "
                                   "stacked metrics")
    xscale: str = param("linear", doc="x-axis scale", choices=SCALES)
    yscale: str = param("linear", doc="y-axis scale", choices=SCALES)
    ci: bool = param(True, doc="line: draw 95% confidence bands over replications")
    formats: list[str] = param(["png", "svg"], doc="files to write")

    @property
    def y_list(self) -> list[str]:
        if self.y is None:
            return []
        return [self.y] if isinstance(self.y, str) else list(self.y)

    @property
    def hue_list(self) -> list[str]:
        if self.hue is None:
            return []
        return [self.hue] if isinstance(self.hue, str) else list(self.hue)

    def check(self, ctx: Context) -> None:
        if not _NAME.fullmatch(self.file) or "/" in self.file:
            raise ctx.error("file", f"{self.file!r} is not a plain file name")
        for i, fmt in enumerate(self.formats):
            if fmt not in ("png", "svg", "pdf"):
                raise ctx.error(f"formats[{i}]", f"{fmt!r}: choose png, svg or pdf")
        if self.hue is not None and not (
            isinstance(self.hue, str)
            or (isinstance(self.hue, list) and self.hue and all(isinstance(h, str) for h in self.hue))
        ):
            raise ctx.error("hue", "expected a column name or a list of column names")
        if self.kind == "line":
            if not self.x:
                raise ctx.error("x", "a line figure needs x")
            if not isinstance(self.y, str):
                raise ctx.error("y", "a line figure needs y, one metric name")
        elif self.kind == "stacked":
            if not self.x:
                raise ctx.error("x", "a stacked figure needs x")
            if not (isinstance(self.y, list) and self.y and all(isinstance(v, str) for v in self.y)):
                raise ctx.error("y", "a stacked figure needs y, a list of metric names")
        else:
            if self.y is not None:
                raise ctx.error("y", "a cdf figure draws its 'histogram'; it has no y")


@dataclass(frozen=True, kw_only=True)
class ExperimentFile(Section):
    experiment: ExperimentInfo = param(doc="name, driver, seed, replications")
    base: dict[str, Any] = param({}, doc="the point configuration (the driver's fields)")
    sweep: Sweep | None = param(None, doc="grid and/or explicit points")
    metrics: MetricsSpec = param(doc="what to record")
    derive: list[DeriveSpec] = param([], doc="derived columns")
    figure: list[FigureSpec] = param([], doc="figures drawn from the results table")


@dataclass(frozen=True)
class Point:
    """One configuration of the sweep."""

    index: int
    assigned: dict[str, Any]  # the sweep's dotted names -> values for this point
    params: dict[str, Any]    # every parameter column -> value
    config: dict[str, Any]    # resolved driver configuration (labels excluded)

    @property
    def tags(self) -> dict[str, Any]:
        return {k: v for k, v in self.assigned.items() if dotted.is_tag(k)}


@dataclass(frozen=True)
class Run:
    """One replication of one point: the unit of work and of storage."""

    point: Point
    replication: int
    seed: int
    key: str


@dataclass
class Experiment:
    """A loaded, fully validated experiment."""

    path: Path
    text: str
    info: ExperimentInfo
    driver: drivers.Driver
    spec: ExperimentFile
    params: list[str]
    points: list[Point]
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def metrics(self) -> list[str]:
        return list(self.spec.metrics.record)

    @property
    def derived(self) -> list[str]:
        return [d.name for d in self.spec.derive]

    @property
    def columns(self) -> list[str]:
        return self.params + list(ID_COLUMNS) + self.metrics + self.derived

    @property
    def needed_series(self) -> list[str]:
        return sorted({f.histogram for f in self.spec.figure if f.kind == "cdf"})

    def plot_spec(self) -> dict[str, Any]:
        """What ``plot`` needs besides the table: stored as spec.json in the results."""
        return {
            "format": FORMAT,
            "name": self.name,
            "title": self.info.title,
            "driver": self.driver.name,
            "params": self.params,
            "metrics": self.metrics,
            "derived": self.derived,
            "derive": [resolved(d) for d in self.spec.derive],
            "figure": [resolved(f) for f in self.spec.figure],
            "series": dict(self.driver.series),
        }


def run_identity(experiment_seed: int, driver: str, config: dict[str, Any],
                 replication: int, tags: dict[str, Any]) -> tuple[int, str]:
    """(seed, key) of one run; see the module docstring."""
    core = {"format": FORMAT, "experiment_seed": experiment_seed, "driver": driver,
            "config": config, "replication": replication}
    seed = int.from_bytes(hashlib.sha256(dotted.canonical(core).encode()).digest()[:8],
                          "big") >> 1
    key = dotted.digest({**core, "tags": tags})
    return seed, key


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Read and validate an experiment file, every point included; raises ConfigError."""
    path = catalog.find("experiment", name_or_path)
    file = str(name_or_path) if catalog.is_path(name_or_path) else str(path)
    text = read_text(path)
    data = parse_toml(text, file)
    ctx = Context(file)
    spec = build(ExperimentFile, data, ctx)
    info = spec.experiment
    try:
        driver = drivers.get(info.driver)
    except KeyError as exc:
        known = ", ".join(drivers.names()) or "(none)"
        raise ctx.error("experiment.driver", f"unknown driver {info.driver!r} ({exc.args[0]}); "
                        f"registered drivers: {known}") from None
    if info.warmup and not driver.warmup:
        raise ctx.error("experiment.warmup", f"the {driver.name!r} driver does not support a "
                        "warm-up; remove it or set it to 0")
    for i, m in enumerate(spec.metrics.record):
        if not driver.knows_metric(m):
            known = ", ".join(driver.metrics)
            raise ctx.error(f"metrics.record[{i}]", f"unknown metric {m!r}; the "
                            f"{driver.name!r} driver reports: {known}")
    sweep = spec.sweep or Sweep()
    params = list(sweep.grid)
    for point in sweep.points:
        params.extend(k for k in point if k not in params)
    points = _expand(sweep, spec.base, info, driver, params, ctx)
    exp = Experiment(path=path, text=text, info=info, driver=driver, spec=spec,
                     params=params, points=points)
    _check_metrics(exp, ctx)
    _check_derive(exp, ctx)
    check_figures(spec.figure, exp.params, exp.metrics, exp.derived, driver.series, ctx)
    seen: dict[str, int] = {}
    for p in points:
        for r in range(info.replications):
            seed, key = run_identity(info.seed, driver.name, p.config, r, p.tags)
            if key in seen:
                raise ctx.error("sweep", f"points {seen[key]} and {p.index} have the same "
                                f"configuration ({_describe(p.assigned)})")
            seen[key] = p.index
            exp.runs.append(Run(point=p, replication=r, seed=seed, key=key))
    return exp


def _assignments(sweep: Sweep) -> list[tuple[dict[str, Any], dict[str, int], int | None]]:
    """(assignment, grid key -> value index, point index) for every point, in order."""
    keys = list(sweep.grid)
    combos = itertools.product(*(range(len(sweep.grid[k])) for k in keys))
    out = []
    for combo in combos:
        base = {k: sweep.grid[k][i] for k, i in zip(keys, combo, strict=True)}
        gidx = dict(zip(keys, combo, strict=True))
        if sweep.points:
            for j, pt in enumerate(sweep.points):
                out.append(({**base, **pt}, gidx, j))
        else:
            out.append((base, gidx, None))
    return out


def _describe(assigned: dict[str, Any]) -> str:
    if not assigned:
        return "[base] alone"
    return ", ".join(f"{k} = {dotted.display(v)}" for k, v in assigned.items())


def _expand(sweep: Sweep, base: dict[str, Any], info: ExperimentInfo, driver: drivers.Driver,
            params: list[str], ctx: Context) -> list[Point]:
    base_ctx = ctx.child("base")
    points = []
    for index, (assigned, gidx, pidx) in enumerate(_assignments(sweep)):
        config_in = dict(base)
        for name, value in assigned.items():
            if dotted.is_tag(name):
                continue
            try:
                config_in = dotted.assign(config_in, name, value)
            except ValueError as exc:
                raise _sweep_error(ctx, name, gidx, pidx, str(exc)) from None
        try:
            config = driver.resolve_config(config_in, base_ctx)
            if driver.warmup:
                config["warmup"] = info.warmup
        except ConfigError as err:
            raise _attribute(err, ctx, assigned, gidx, pidx) from None
        except UserError as err:
            raise ctx.error("sweep" if assigned else "base",
                            f"{err} (at {_describe(assigned)})") from None
        values = {}
        for name in params:
            if name in assigned:
                values[name] = assigned[name]
            else:
                values[name] = _param_value(driver, config, name)
        points.append(Point(index=index, assigned=assigned, params=values, config=config))
    return points


def _param_value(driver: drivers.Driver, config: dict[str, Any], name: str) -> Any:
    if dotted.is_tag(name):
        return None
    try:
        if driver.param_value is not None:
            return driver.param_value(config, name)
        return dotted.lookup(config, name)
    except KeyError:
        return None


def _sweep_error(ctx: Context, name: str, gidx: dict[str, int], pidx: int | None,
                 reason: str) -> ConfigError:
    if name in gidx:
        return ctx.error(f"sweep.grid.{name}[{gidx[name]}]", reason)
    return ctx.error(f"sweep.points[{pidx}].{name}", reason)


def _attribute(err: ConfigError, ctx: Context, assigned: dict[str, Any], gidx: dict[str, int],
               pidx: int | None) -> ConfigError:
    """Re-address a driver's error to the sweep entry that caused it, when one did."""
    if err.file != ctx.file:
        return err  # an error in another file (a model file), not caused by this experiment
    field_ = err.field[len("base."):] if err.field.startswith("base.") else err.field
    if err.field.startswith("base"):
        for name in assigned:
            if not dotted.is_tag(name) and dotted.related(name, field_):
                return _sweep_error(ctx, name, gidx, pidx, err.reason
                                    + (f" ({err.field})" if field_ != name else ""))
    if not assigned:
        return err
    return ConfigError(err.file, err.field, f"{err.reason} (in the sweep point "
                       f"{_describe(assigned)})")


def _check_metrics(exp: Experiment, ctx: Context) -> None:
    if exp.driver.metrics_for is None:
        return
    for p in exp.points:
        available = set(exp.driver.metrics_for(p.config))
        for i, m in enumerate(exp.metrics):
            if m not in available:
                like = [a for a in sorted(available) if a.rsplit("_", 1)[0] == m.rsplit("_", 1)[0]]
                raise ctx.error(f"metrics.record[{i}]", f"the {exp.driver.name!r} driver "
                                f"cannot report {m!r} for the point {_describe(p.assigned)}; "
                                f"it reports: {', '.join(like or sorted(available))}")


def _check_derive(exp: Experiment, ctx: Context) -> None:
    taken = set(exp.params) | set(ID_COLUMNS) | set(exp.metrics)
    rows = [dict(p.params, replication=0) for p in exp.points]
    for i, d in enumerate(exp.spec.derive):
        here = ctx.child("derive").child(i)
        if d.name in taken:
            raise here.error("name", f"{d.name!r} is already a column")
        taken.add(d.name)
        if d.metric not in exp.metrics:
            raise here.error("metric", f"{d.metric!r} is not a recorded metric "
                             f"(metrics.record: {', '.join(exp.metrics)})")
        for k in list(d.baseline) + list(d.match or []):
            if k not in exp.params:
                where = f"baseline.{k}" if k in d.baseline else "match"
                raise here.error(where, f"{k!r} is not a parameter column; columns: "
                                 f"{', '.join(exp.params) or '(none)'}")
        if not d.baseline:
            raise here.error("baseline", "select the baseline rows with at least one column")
        match = derive_mod.match_columns(d.baseline, d.match, exp.params)
        index = derive_mod.baseline_index(rows, d.baseline, match)
        if not index:
            raise here.error("baseline", "no point of the sweep matches it")
        for cands in index.values():
            if len(cands) > 1:
                raise here.error("baseline", "several points match it with the same "
                                 f"{', '.join(match) or 'columns'}: add columns to 'match' or "
                                 "'baseline'")


def check_figures(figures: list[FigureSpec], params: list[str], metrics: list[str],
                  derived: list[str], series: dict[str, str] | Any, ctx: Context) -> None:
    """Every column a figure names exists; raises ConfigError naming the figure field."""
    columns = set(params) | set(ID_COLUMNS)
    values = set(metrics) | set(derived)
    files: set[str] = set()
    for i, f in enumerate(figures):
        here = ctx.child("figure").child(i)
        if f.file in files:
            raise here.error("file", f"{f.file!r} is used by two figures")
        files.add(f.file)
        for name, col in (("x", f.x), ("facet", f.facet)):
            if col is not None and col not in columns:
                raise here.error(name, f"{col!r} is not a parameter column; columns: "
                                 f"{', '.join(params) or '(none)'}")
        for j, col in enumerate(f.hue_list):
            if col not in columns:
                raise here.error("hue" if isinstance(f.hue, str) else f"hue[{j}]",
                                 f"{col!r} is not a parameter column; columns: "
                                 f"{', '.join(params) or '(none)'}")
        for col in f.where:
            if col not in columns:
                raise here.error(f"where.{col}", f"{col!r} is not a parameter column")
        for j, col in enumerate(f.y_list):
            if col not in values:
                raise here.error("y" if isinstance(f.y, str) else f"y[{j}]",
                                 f"{col!r} is not a recorded or derived metric; recorded: "
                                 f"{', '.join(list(metrics) + list(derived))}")
        if f.kind == "cdf" and f.histogram not in series:
            raise here.error("histogram", f"{f.histogram!r} is not a series the driver stores; it "
                             f"stores: {', '.join(series) or '(none)'}")
