"""Figures in one house style: labelled axes with units, legends, no chart junk.

Every figure is written atomically (to a temporary name, then renamed), as PNG and, when
asked, SVG.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

from mktme_des.outputs import write_file

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 120,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.size": 9,
}


def new_figure(**kwargs):
    """A figure and axes in the house style."""
    with plt.rc_context(STYLE):
        return plt.subplots(**kwargs)


def save(fig, path: str | Path, formats: Iterable[str] = ("png",)) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; returns the files."""
    path = Path(path)
    out = []
    try:
        for fmt in formats:
            def draw(tmp: Path, fmt: str = fmt) -> None:
                with plt.rc_context(STYLE):
                    fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=_metadata(fmt))

            out.append(write_file(path.with_suffix("." + fmt), draw, "figure", parents=True))
    finally:
        plt.close(fig)
    return out


def _metadata(fmt: str) -> dict:
    # Fixed metadata keeps the files byte-identical from run to run.
    if fmt == "png":
        return {"Software": "mktme-des"}
    if fmt == "svg":
        return {"Date": None, "Creator": "mktme-des"}
    return {}


def cdf(ax, values: list[float], counts: list[int], label: str, **kw) -> None:
    """A step CDF from distinct values and their counts."""
    total = sum(counts)
    acc, ys = 0, []
    for c in counts:
        acc += c
        ys.append(acc / total)
    ax.step(values, ys, where="post", label=label, **kw)
