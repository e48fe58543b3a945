"""Figures of an experiment, drawn from its results folder alone.

``mktme-des plot RESULTS_DIR`` (and the end of ``mktme-des run``) reads ``spec.json`` (the
experiment's ``[[figure]]`` tables and columns, copied there at run time), ``table.csv`` and,
for CDFs, the histograms in ``points/*.json``; never a run's memory. Figures go to
``RESULTS_DIR/figures/FILE.png`` and ``.svg``, written atomically, byte-identical from one
drawing to the next (fixed metadata, fixed SVG id salt, deterministic ordering).

A ``[[figure]]`` table::

    [[figure]]
    kind = "line"                    # line | cdf | stacked
    file = "slowdown"                # figures/slowdown.png, figures/slowdown.svg
    title = "Slowdown vs AES-XTS latency"
    x = "model_overrides.mktme.aes_latency_ns"
    y = "slowdown"                   # line: one metric; stacked: a list of metrics
    hue = "tag.config"               # a column or a list of columns: one series per value
    facet = "model_overrides.mktme.aes_pipelined"   # one panel per value
    where = { "workload.pattern" = "random" }       # keep only these rows (value or list)
    xlabel = "AES-XTS latency (ns)"
    ylabel = "time / time without encryption"
    legend = "pages"                 # legend title
    labels = { "true" = "pipelined engine", "false" = "unpipelined engine" }
    xscale = "linear"                # linear | log | symlog (also yscale)
    ci = true                        # line: 95% confidence band over replications

* ``line``: one line per hue value, the mean over replications at each x, with a 95%
  confidence band (mean +- t * sd / sqrt(n), :mod:`confidence`).
* ``cdf``: the distribution of a histogram the driver stored in each run's result file
  (``histogram``, default ``read_latency_hist``) per hue value, every replication's histogram
  merged.
* ``stacked``: at each x, a bar stacking the mean of each ``y`` metric (e.g. an overhead
  breakdown); several hue values make side-by-side bars told apart by hatching.

Every row drawn at one (panel, series, x) must be a replication of one point: if rows there
differ in another parameter column the figure is refused with the column to add to ``hue``,
``facet`` or ``where``, rather than averaging different configurations. Series, panels and
categories keep the order in which the table first lists their values (numbers are sorted).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mktme_des.config.schema import Context, build, check_depth, read_text
from mktme_des.errors import ConfigError, UserError
from mktme_des.experiments import derive, dotted
from mktme_des.experiments.confidence import mean_ci
from mktme_des.experiments.spec import ID_COLUMNS, FigureSpec, check_figures
from mktme_des.experiments.table import read_table, rows_of

HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")


def fmt(value: Any) -> str:
    """A cell value as shown in legends and tick labels."""
    if isinstance(value, bool) or value is None:
        return dotted.display(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def column_label(name: str) -> str:
    return name.split(".", 1)[1] if dotted.is_tag(name) else name


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ordered(values: list[Any]) -> list[Any]:
    """Distinct values: sorted when all numeric, else in order of first appearance."""
    seen: list[Any] = []
    for v in values:
        if not any(derive.same(v, s) for s in seen):
            seen.append(v)
    if seen and all(_numeric(v) for v in seen):
        return sorted(seen)
    return seen


def _keep(row: dict[str, Any], where: dict[str, Any]) -> bool:
    for col, want in where.items():
        wants = want if isinstance(want, list) else [want]
        if not any(derive.same(row.get(col), w) for w in wants):
            return False
    return True


class Data:
    """The results table and the per-run series of one results folder."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.root = root
        self.spec = spec
        path = root / "table.csv"
        try:
            columns, cols = read_table(path)
        except FileNotFoundError:
            raise UserError(f"{path}: no results table; run the experiment first") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable results table: {exc}") from None
        self.columns = columns
        self.rows = rows_of(columns, cols)
        self.params: list[str] = spec["params"]

    def series(self, key: str, name: str) -> dict[str, list]:
        path = self.root / "points" / f"{key}.json"
        try:
            rec = json.loads(path.read_text())
            return rec["series"][name]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{path}: no series {name!r} in this run's result file") from None


def _key(row: dict[str, Any], cols: list[str]) -> tuple:
    return tuple(derive._hashable(row.get(c)) for c in cols)


class Group:
    """Rows sharing the values of some columns: ``key`` to match, ``values`` to show."""

    def __init__(self, cols: list[str], rows: list[dict[str, Any]]) -> None:
        self.cols = cols
        self.rows = rows
        self.key = _key(rows[0], cols) if rows else ()
        self.values = tuple(rows[0].get(c) for c in cols) if rows else ()

    def label(self, fig: FigureSpec, default: str = "") -> str:
        if not self.cols:
            return default
        if len(self.values) == 1:
            return _label(fig, self.values[0])
        return _label(fig, self.values)

    def subset(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if _key(r, self.cols) == self.key]


def groups(rows: list[dict[str, Any]], cols: list[str]) -> list[Group]:
    """Rows grouped by the values of ``cols``, in order of first appearance (numbers sorted
    when ``cols`` is one numeric column); one group of every row when ``cols`` is empty."""
    if not cols:
        return [Group([], rows)]
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(_key(r, cols), []).append(r)
    gs = [Group(cols, rs) for rs in out.values()]
    if len(cols) == 1 and all(_numeric(g.values[0]) for g in gs):
        gs.sort(key=lambda g: g.values[0])
    return gs


def _check_unique(fig: FigureSpec, rows: list[dict[str, Any]], fixed: list[str],
                  params: list[str], where: str) -> None:
    for col in params:
        if col in fixed:
            continue
        vals = ordered([r.get(col) for r in rows])
        if len(vals) > 1:
            shown = ", ".join(fmt(v) for v in vals[:4])
            raise UserError(f"figure {fig.file!r}: the rows at {where} differ in {col!r} "
                            f"({shown}); add it to hue, facet or where")


def _label(fig: FigureSpec, value: Any) -> str:
    if isinstance(value, tuple):
        whole = ", ".join(fmt(v) for v in value)
        if whole in fig.labels:
            return fig.labels[whole]
        return ", ".join(fig.labels.get(fmt(v), fmt(v)) for v in value)
    return fig.labels.get(fmt(value), fmt(value))


def _axes(fig_spec: FigureSpec, n: int):
    from mktme_des.figures import new_figure

    width = 6.4 if n == 1 else min(3.6 * n + 0.8, 14.0)
    fig, axes = new_figure(ncols=n, sharey=True, figsize=(width, 4.0), squeeze=False)
    for ax in axes[0]:
        # Scales first: setting a scale resets the tick locators categorical axes set later.
        ax.set_xscale(fig_spec.xscale)
        ax.set_yscale(fig_spec.yscale)
    return fig, list(axes[0])


def _finish(fig_spec: FigureSpec, fig, axes, facets: list[Group], xlabel: str, ylabel: str,
            handles=None) -> None:
    for i, ax in enumerate(axes):
        ax.set_xlabel(xlabel)
        if i == 0:
            ax.set_ylabel(ylabel)
        if fig_spec.facet is not None:
            value = facets[i].values[0]
            if fmt(value) in fig_spec.labels:
                ax.set_title(fig_spec.labels[fmt(value)])
            else:
                ax.set_title(f"{column_label(fig_spec.facet)} = {fmt(value)}")
    if fig_spec.title:
        if len(axes) > 1:
            fig.suptitle(fig_spec.title)
        else:
            axes[0].set_title(fig_spec.title)
    title = _legend_title(fig_spec)
    if handles is not None:
        axes[-1].legend(handles=handles, title=title)
    elif axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(title=title)


def _legend_title(fig: FigureSpec) -> str | None:
    if fig.legend is not None:
        return fig.legend or None
    return ", ".join(column_label(h) for h in fig.hue_list) or None


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def _style(j: int, n: int) -> dict[str, Any]:
    """Series ``j`` of ``n``: colour, marker and dashes differ, and earlier series are drawn
    wider so that a later series lying on top of one (TME on MKTME) leaves it visible."""
    return {"color": f"C{j % 10}", "linestyle": LINESTYLES[j % len(LINESTYLES)],
            "linewidth": 1.2 + 1.2 * (n - 1 - j) / max(n - 1, 1)}


def draw_line(fig_spec: FigureSpec, rows: list[dict[str, Any]], params: list[str]):
    hue, facet, x, y = fig_spec.hue_list, fig_spec.facet, fig_spec.x, fig_spec.y
    facets = groups(rows, [facet] if facet else [])
    hues = groups(rows, hue)
    fig, axes = _axes(fig_spec, len(facets))
    categorical = not all(_numeric(r.get(x)) for r in rows)
    xcats = ordered([r.get(x) for r in rows]) if categorical else []
    fixed = [c for c in [x, facet, *hue] if c] + list(fig_spec.where)
    for ax, fg in zip(axes, facets, strict=True):
        for j, hg in enumerate(hues):
            xs, means, lows, highs = [], [], [], []
            for xg in groups(hg.subset(fg.rows), [x]):
                xv = xg.values[0]
                _check_unique(fig_spec, xg.rows, fixed, params, f"{x} = {fmt(xv)}")
                ys = [r[y] for r in xg.rows if _numeric(r.get(y))]
                if not ys:
                    continue
                m, lo, hi = mean_ci(ys)
                xs.append(next(i for i, c in enumerate(xcats) if derive.same(c, xv))
                          if categorical else xv)
                means.append(m)
                lows.append(lo)
                highs.append(hi)
            if not xs:
                continue
            style = _style(j, len(hues))
            ax.plot(xs, means, marker=MARKERS[j % len(MARKERS)], markersize=4,
                    fillstyle="full" if j % 2 == 0 else "none", label=hg.label(fig_spec, y),
                    **style)
            if fig_spec.ci and any(h != lo for h, lo in zip(highs, lows, strict=True)):
                ax.fill_between(xs, lows, highs, color=style["color"], alpha=0.2, linewidth=0)
        if categorical:
            ax.set_xticks(range(len(xcats)), [_label(fig_spec, c) for c in xcats])
    _finish(fig_spec, fig, axes, facets, fig_spec.xlabel or column_label(x), fig_spec.ylabel or y)
    return fig


def draw_cdf(fig_spec: FigureSpec, rows: list[dict[str, Any]], params: list[str],
             series: Callable[[str, str], dict[str, list]]):
    from mktme_des.figures import cdf

    hue, facet = fig_spec.hue_list, fig_spec.facet
    facets = groups(rows, [facet] if facet else [])
    hues = groups(rows, hue)
    fig, axes = _axes(fig_spec, len(facets))
    fixed = [c for c in [facet, *hue] if c] + list(fig_spec.where)
    for ax, fg in zip(axes, facets, strict=True):
        for j, hg in enumerate(hues):
            hrows = hg.subset(fg.rows)
            if not hrows:
                continue
            where = ", ".join(f"{c} = {fmt(v)}" for c, v in zip(hue, hg.values, strict=True))
            _check_unique(fig_spec, hrows, fixed, params, where or "all rows")
            merged: dict[float, int] = {}
            for r in hrows:
                h = series(r["point"], fig_spec.histogram)
                for v, c in zip(h["values_ns"], h["counts"], strict=True):
                    merged[v] = merged.get(v, 0) + c
            if not merged:
                continue
            values = sorted(merged)
            cdf(ax, values, [merged[v] for v in values], hg.label(fig_spec, fig_spec.histogram),
                **_style(j, len(hues)))
    _finish(fig_spec, fig, axes, facets, fig_spec.xlabel or "read latency (ns)",
            fig_spec.ylabel or "fraction of reads")
    return fig


def draw_stacked(fig_spec: FigureSpec, rows: list[dict[str, Any]], params: list[str]):
    from matplotlib.patches import Patch

    hue, facet, x = fig_spec.hue_list, fig_spec.facet, fig_spec.x
    parts = fig_spec.y_list
    facets = groups(rows, [facet] if facet else [])
    hues = groups(rows, hue)
    xcats = ordered([r.get(x) for r in rows])
    fig, axes = _axes(fig_spec, len(facets))
    fixed = [c for c in [x, facet, *hue] if c] + list(fig_spec.where)
    width = 0.8 / len(hues)
    for ax, fg in zip(axes, facets, strict=True):
        for j, hg in enumerate(hues):
            hrows = hg.subset(fg.rows)
            for i, xv in enumerate(xcats):
                xrows = [r for r in hrows if derive.same(r.get(x), xv)]
                if not xrows:
                    continue
                _check_unique(fig_spec, xrows, fixed, params, f"{x} = {fmt(xv)}")
                pos = i + (j - (len(hues) - 1) / 2) * width
                bottom = 0.0
                for k, part in enumerate(parts):
                    ys = [r[part] for r in xrows if _numeric(r.get(part))]
                    h = mean_ci(ys)[0] if ys else 0.0
                    ax.bar(pos, h, width * 0.95, bottom=bottom, color=f"C{k % 10}",
                           hatch=HATCHES[j % len(HATCHES)], edgecolor="white", linewidth=0.5)
                    bottom += h
        ax.set_xticks(range(len(xcats)), [_label(fig_spec, c) for c in xcats])
    handles = [Patch(facecolor=f"C{k % 10}", label=fig_spec.labels.get(p, p))
               for k, p in enumerate(parts)]
    if hue:
        handles += [Patch(facecolor="white", edgecolor="0.3", hatch=HATCHES[j % len(HATCHES)],
                          label=hg.label(fig_spec)) for j, hg in enumerate(hues)]
    _finish(fig_spec, fig, axes, facets, fig_spec.xlabel or column_label(x),
            fig_spec.ylabel or ", ".join(parts), handles=handles)
    return fig


def load_spec(root: Path) -> dict[str, Any]:
    path = root / "spec.json"
    if not root.is_dir():
        raise UserError(f"{root}: no such results folder")
    if not path.exists():
        raise UserError(f"{root}: not a results folder (no spec.json); run the experiment "
                        "first")
    try:
        spec = json.loads(read_text(path))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: unreadable: {exc}") from None
    check_depth(spec, str(path))
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a JSON object (what `mktme-des run` writes), got "
                        f"{type(spec).__name__}")
    for name in ("params", "metrics", "derived", "figure"):
        value = spec.get(name, [])
        if not isinstance(value, list) or (name != "figure" and not all(
                isinstance(v, str) for v in value)):
            raise UserError(f"{path}: {name}: expected a list"
                            + ("" if name == "figure" else " of column names"))
    if not isinstance(spec.get("series", {}), dict):
        raise UserError(f"{path}: series: expected an object")
    return spec


def plot_results(results_dir: str | Path, log: Callable[[str], None] | None = None) -> list[Path]:
    """Draw every figure of a results folder; returns the files written.

    A figure with no rows to draw (every run of it failed, or ``where`` keeps nothing) is
    skipped with a message to ``log`` (default: stderr)."""
    import matplotlib.pyplot as plt

    from mktme_des.figures import STYLE, save

    root = Path(results_dir)
    spec = load_spec(root)
    say = log or (lambda s: print(s, file=sys.stderr))
    ctx = Context(str(root / "spec.json"))
    try:
        figures = [build(FigureSpec, f, ctx.child("figure").child(i))
                   for i, f in enumerate(spec.get("figure", []))]
        check_figures(figures, spec["params"], spec["metrics"], spec["derived"],
                      spec.get("series", {}), ctx)
    except KeyError as exc:
        raise UserError(f"{root / 'spec.json'}: missing {exc}") from None
    except ConfigError:
        raise
    if not figures:
        return []
    data = Data(root, spec)
    missing = [c for c in spec["params"] + list(ID_COLUMNS) if c not in data.columns]
    if missing:
        raise UserError(f"{root / 'table.csv'}: missing columns {', '.join(missing)}")
    out: list[Path] = []
    rc = dict(STYLE, **{"svg.hashsalt": "mktme-des", "svg.fonttype": "path"})
    for f in figures:
        rows = [r for r in data.rows if _keep(r, f.where)]
        if not rows:
            say(f"figure {f.file!r}: no rows to draw, skipped")
            continue
        with plt.rc_context(rc):
            if f.kind == "line":
                fig = draw_line(f, rows, data.params)
            elif f.kind == "cdf":
                fig = draw_cdf(f, rows, data.params, data.series)
            else:
                fig = draw_stacked(f, rows, data.params)
            out.extend(save(fig, root / "figures" / f.file, formats=f.formats))
    return out
