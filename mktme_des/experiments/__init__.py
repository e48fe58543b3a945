"""Parameterised experiments: describe once, run over a grid, get tables and figures.

An experiment file (``experiments/NAME.toml``) names a driver, a base configuration, a sweep,
the metrics to record, optional derived metrics and figures. ``mktme-des run NAME`` validates
every point, runs each (point, replication) in worker processes or on a Dask cluster, stores
each result as it finishes (resumable), and writes a tidy table, a manifest and the figures to
``results/NAME/``; ``mktme-des plot results/NAME`` redraws the figures from that folder alone.

One concept per module:

* :mod:`~mktme_des.experiments.spec` - the file format, validation, expansion into runs, seeds;
* :mod:`~mktme_des.experiments.dotted` - dotted names addressing configuration fields;
* :mod:`~mktme_des.experiments.drivers` - the driver registry (how to add a driver);
* :mod:`~mktme_des.experiments.workload_driver` - the ``workload`` driver (``simulate``);
* :mod:`~mktme_des.experiments.derive` - derived metrics relative to a baseline row;
* :mod:`~mktme_des.experiments.executors` - local processes, in-process, Dask;
* :mod:`~mktme_des.experiments.runner` - the resumable run;
* :mod:`~mktme_des.experiments.store` - the results folder and atomic writes;
* :mod:`~mktme_des.experiments.table` - ``table.csv`` / ``table.parquet``;
* :mod:`~mktme_des.experiments.manifest` - versions, seeds, timings;
* :mod:`~mktme_des.experiments.plots` and :mod:`~mktme_des.experiments.confidence` - figures;
* :mod:`~mktme_des.experiments.progress` - the progress bar.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_experiment", "run_experiment", "plot_results"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. to discover drivers) must not pull in matplotlib.
    if name == "load_experiment":
        from mktme_des.experiments.spec import load_experiment

        return load_experiment
    if name == "run_experiment":
        from mktme_des.experiments.runner import run_experiment

        return run_experiment
    if name == "plot_results":
        from mktme_des.experiments.plots import plot_results

        return plot_results
    raise AttributeError(name)
