"""The registry of experiment drivers: what runs one point of an experiment.

A driver is a function ``fn(config: dict, seed: int)`` that runs one point of a sweep with the
given seed and returns its metrics, a flat ``dict[str, float | int | str]``. It may instead
return a pair ``(metrics, series)`` where ``series`` is a dict of JSON-ready, non-scalar data
(histograms, time series) that is stored in the point's result file but not in the table (the
workload driver returns its read-latency histogram that way, for CDF figures). ``config`` is the
point's resolved configuration, plain JSON data; the function must be deterministic in
``(config, seed)`` and must not depend on the process that runs it, on the time of day or on
files other than those the configuration names: that is what makes a run reproducible, and
identical whichever executor (local processes, a Dask cluster) ran it.

Registering a driver::

    from mktme_des.experiments.drivers import register

    @register(
        "rekey",                                   # [experiment] driver = "rekey"
        metrics={                                  # every metric it can report, with its doc
            "rekey_ns": "time to re-key one page, flushes included [ns]",
            "flushed_lines": "lines written back by the flush",
            "hit_rate_<LEVEL>": "hit rate of each cache level",   # a template
        },
        series={"flush_hist": "histogram of flush times"},   # optional non-scalar outputs
        base=RekeyBase,            # optional Section (config/schema.py) for the [base] table
        resolve=resolve_rekey,     # optional: (base dict, Context) -> resolved config dict
    )
    def rekey(config: dict, seed: int) -> dict[str, float | int | str]:
        ...

Put the module in this package with a name ending in ``_driver`` (e.g.
``mktme_des/experiments/rekey_driver.py``): :func:`get` imports every such module the first
time it is asked for a name it does not know, so nothing else needs editing. A driver living
in another installed package is a plugin: that package declares its module in the
``mktme_des.drivers`` entry-point group (``[project.entry-points."mktme_des.drivers"]
NAME = "package.module"`` in its pyproject.toml), and discovery imports it too. An experiment
file only ever names a registered driver: nothing it says makes this package import a module
it names (validating a file must not run arbitrary code). Worker processes (local or on a Dask
cluster) import a registered driver's module before calling it.

Validation happens before anything runs, in this order, for every point of the sweep:

1. the ``[base]`` table with the point's dotted-name assignments applied is built with ``base``
   (unknown keys and bad values are rejected by the schema);
2. ``resolve(base, ctx)`` checks what the schema cannot (cross-file rules, e.g. a model override
   or a workload that does not fit the model) and returns the fully resolved configuration,
   every default explicit: this dict is what the point's hash and seed derive from, and what
   ``fn`` receives. Report errors with ``raise ctx.error(field, reason)``; ``field`` is relative
   to ``[base]``, and the experiment loader names the sweep entry that caused it.

``metrics`` names may contain one ``<PLACEHOLDER>`` (upper case) standing for any identifier;
``metrics_for(config)``, when given, lists the exact names a point reports, so that a metric a
point cannot produce (``hit_rate_L3`` on a machine without an L3) is an error before the run.
A driver that supports a warm-up (``warmup=True``) receives ``[experiment].warmup`` as
``config["warmup"]``; for the others a non-zero warm-up is an error.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from mktme_des.config.schema import Context, Section, build, resolved

Metrics = dict[str, float | int | str | None]
DriverOutput = Metrics | tuple[Metrics, dict[str, Any]]
DriverFn = Callable[[dict[str, Any], int], DriverOutput]
Resolver = Callable[[dict[str, Any], Context], dict[str, Any]]

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


@dataclass(frozen=True)
class Driver:
    """A registered driver and its declarations (see the module docstring)."""

    name: str
    fn: DriverFn
    metrics: Mapping[str, str]
    series: Mapping[str, str]
    base: type[Section] | None
    resolve: Resolver | None
    metrics_for: Callable[[dict[str, Any]], Collection[str]] | None
    param_value: Callable[[dict[str, Any], str], Any] | None
    warmup: bool
    module: str
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def stored_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration as result files store it: key material fingerprinted by the
        driver's ``redact`` (the run itself got the whole configuration)."""
        return self.redact(config) if self.redact is not None else config

    def knows_metric(self, name: str) -> bool:
        """True when ``name`` is one of the declared metrics or matches a template."""
        if name in self.metrics:
            return True
        return any(_template(m).fullmatch(name) for m in self.metrics if _PLACEHOLDER.search(m))

    def resolve_config(self, base: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """Validate ``[base]`` (with a point's assignments applied); the resolved config."""
        if self.base is not None:
            data = resolved(build(self.base, base, ctx))
        else:
            data = copy.deepcopy(base)
        if self.resolve is not None:
            return self.resolve(data, ctx)
        return data


def _template(metric: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(metric)
    return re.compile("[A-Za-z0-9_.-]+".join(re.escape(p) for p in parts))


PLUGIN_GROUP = "mktme_des.drivers"
"""The entry-point group through which other installed packages register driver modules."""
_REGISTRY: dict[str, Driver] = {}
_DISCOVERED = False
_BROKEN: dict[str, str] = {}  # driver modules that failed to import -> the error


def register(
    name: str,
    *,
    metrics: Mapping[str, str],
    series: Mapping[str, str] | None = None,
    base: type[Section] | None = None,
    resolve: Resolver | None = None,
    metrics_for: Callable[[dict[str, Any]], Collection[str]] | None = None,
    param_value: Callable[[dict[str, Any], str], Any] | None = None,
    warmup: bool = False,
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[DriverFn], DriverFn]:
    """Decorator registering ``fn`` as the driver ``name`` (see the module docstring).

    ``param_value(config, dotted)`` gives the value of a parameter column for a point that
    does not assign it (default: look the name up in the resolved config). ``redact(config)``
    returns the configuration to store in result files, key material replaced by
    fingerprints (:mod:`mktme_des.redact`); a driver whose configuration can hold keys must
    give it."""

    def deco(fn: DriverFn) -> DriverFn:
        old = _REGISTRY.get(name)
        if old is not None and (old.module, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"driver {name!r} is already registered by {old.module}")
        _REGISTRY[name] = Driver(
            name=name, fn=fn, metrics=dict(metrics), series=dict(series or {}), base=base,
            resolve=resolve, metrics_for=metrics_for, param_value=param_value, warmup=warmup,
            module=fn.__module__, redact=redact,
        )
        return fn

    return deco


def discover() -> None:
    """Import every ``*_driver`` module of this package (once).

    A module that fails to import does not hide the others; :func:`get` reports it when the
    driver asked for is not found."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("mktme_des.experiments")
    modules = [f"mktme_des.experiments.{info.name}"
               for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)
               if info.name.endswith("_driver")]
    modules += sorted(ep.value for ep in entry_points(group=PLUGIN_GROUP))
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken driver module must not break the others
            _BROKEN[module] = f"{type(exc).__name__}: {exc}"


def get(name: str) -> Driver:
    """The registered driver ``name`` (after discovery); never imports a module ``name``
    names.

    Raises ``KeyError`` whose argument says why, when there is none."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    discover()
    if name not in _REGISTRY:
        why = "not registered"
        if _BROKEN:
            why += "; driver modules that failed to import: " + "; ".join(
                f"{m} ({e})" for m, e in sorted(_BROKEN.items()))
        raise KeyError(why)
    return _REGISTRY[name]


def names() -> list[str]:
    """Every registered driver name, after discovery."""
    discover()
    return sorted(_REGISTRY)
