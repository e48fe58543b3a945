"""95% confidence intervals of a mean over replications.

``mean +- t * sd / sqrt(n)`` with ``sd`` the sample standard deviation (n - 1) and ``t`` the
0.975 quantile of Student's t with ``n - 1`` degrees of freedom: from scipy when it is
importable, otherwise from the table below (exact to 3 decimals at the tabulated degrees of
freedom, interpolated in 1/df between them, 1.960 beyond 1000). One replication has no
interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Student's t, two-sided 95% (0.975 quantile), by degrees of freedom.
T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 50: 2.009,
    60: 2.000, 80: 1.990, 100: 1.984, 120: 1.980, 1000: 1.962,
}


def t975_table(df: int) -> float:
    """The 0.975 quantile of Student's t from :data:`T975`."""
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if df in T975:
        return T975[df]
    if df > 1000:
        return 1.960
    keys = sorted(T975)
    hi = next(k for k in keys if k > df)
    lo = max(k for k in keys if k < df)
    w = (1 / lo - 1 / df) / (1 / lo - 1 / hi)
    return T975[lo] + w * (T975[hi] - T975[lo])


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy import stats
    except ImportError:
        return t975_table(df)
    return float(stats.t.ppf(0.975, df))


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% interval; low == high == mean for fewer than 2 values."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
