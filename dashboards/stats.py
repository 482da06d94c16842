"""The statistics behind the panels: percentiles from merged histograms, Wilson intervals,
paired shadow deltas with confidence intervals, and the timeout advisor.

Percentiles come from `processors.histograms.quantile` on buckets merged with `sumMap`
(within 0.54% of the exact value at scale 6). Rates use Wilson score intervals (good at
small counts and near 0%). Mean paired deltas use the normal approximation (pairs number
in the hundreds or more); the p95 delta, a quantile difference with no closed form, uses a
percentile bootstrap over pairs with a fixed seed so a refresh does not move the interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cutover.histogram import bucket_bounds, quantile, representative

Z95 = 1.959963984540054


def percentiles(
    buckets: Mapping[int, int], zero_count: int, qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> list[float | None]:
    merged = {int(k): int(v) for k, v in buckets.items()}
    return [quantile(merged, q, zero_count) for q in qs]


def distribution(buckets: Mapping[int, int], zero_count: int = 0) -> pd.DataFrame:
    """One row per bucket: its bounds, representative value, count, and the CDF at its upper bound."""
    items = sorted((int(k), int(v)) for k, v in buckets.items())
    total = zero_count + sum(v for _, v in items)
    rows, seen = [], zero_count
    for index, count in items:
        low, high = bucket_bounds(index)
        seen += count
        rows.append((low, high, representative(index), count, seen / total if total else 0.0))
    return pd.DataFrame(rows, columns=["low", "high", "value", "count", "cdf"])


def display_bins(buckets: Mapping[int, int], per_decade: int = 10) -> pd.DataFrame:
    """Histogram buckets summed into `per_decade` log-spaced bins for drawing, every bin from the first
    to the last with calls included (empty ones as 0): a step area then drops to zero between a few
    calls instead of drawing one block across them, and thousands of calls do not draw as grass.
    Columns: low, high (bin bounds, ms), count, share (of the calls drawn)."""
    counts: dict[int, int] = {}
    for index, count in buckets.items():
        low, high = bucket_bounds(int(index))
        bin_ = math.floor(math.log10(math.sqrt(low * high)) * per_decade)
        counts[bin_] = counts.get(bin_, 0) + int(count)
    if not counts:
        return pd.DataFrame(columns=["low", "high", "count", "share"])
    bins = np.arange(min(counts), max(counts) + 1)
    per_bin = np.array([counts.get(int(b), 0) for b in bins])
    return pd.DataFrame(
        {
            "low": 10.0 ** (bins / per_decade),
            "high": 10.0 ** ((bins + 1) / per_decade),
            "count": per_bin,
            "share": per_bin / per_bin.sum(),
        }
    )


@dataclass(frozen=True)
class TimeoutAdvice:
    timeout_ms: float  # the upper bound of the bucket holding the target rank: every call in it fits
    covered: int
    cut: int
    total: int


def advise_timeout(buckets: Mapping[int, int], zero_count: int, target: float) -> TimeoutAdvice | None:
    """The smallest bucket upper bound that lets `target` of the calls finish, and what it would cut."""
    items = sorted((int(k), int(v)) for k, v in buckets.items())
    total = zero_count + sum(v for _, v in items)
    if total == 0 or not items:
        return None
    rank = max(1, math.ceil(target * total))
    seen = zero_count
    for index, count in items:
        seen += count
        if seen >= rank:
            return TimeoutAdvice(timeout_ms=bucket_bounds(index)[1], covered=seen, cut=total - seen, total=total)
    return TimeoutAdvice(timeout_ms=bucket_bounds(items[-1][0])[1], covered=total, cut=0, total=total)


def wilson(successes: np.ndarray | float, trials: np.ndarray | float, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion; (nan, nan) where there are no trials."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass(frozen=True)
class Delta:
    """shadow - primary, with a 95% interval; `n` pairs behind it."""

    estimate: float
    low: float
    high: float
    n: int


def mean_delta(primary: np.ndarray, shadow: np.ndarray) -> Delta | None:
    """Mean paired difference with the normal-approximation 95% interval."""
    d = np.asarray(shadow, dtype=float) - np.asarray(primary, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None
    mean = float(d.mean())
    half = Z95 * float(d.std(ddof=1)) / math.sqrt(len(d))
    return Delta(mean, mean - half, mean + half, len(d))


def quantile_delta(
    primary: np.ndarray, shadow: np.ndarray, q: float = 0.95, resamples: int = 400, seed: int = 7
) -> Delta | None:
    """Difference of the q-quantiles (shadow - primary) with a paired percentile-bootstrap 95% interval."""
    p = np.asarray(primary, dtype=float)
    s = np.asarray(shadow, dtype=float)
    keep = np.isfinite(p) & np.isfinite(s)
    p, s = p[keep], s[keep]
    if len(p) < 20:
        return None
    estimate = float(np.quantile(s, q) - np.quantile(p, q))
    rng = np.random.default_rng(seed)
    # Resample pair indices in chunks: keeps memory bounded for 50k pairs x 400 resamples.
    draws = []
    for chunk in np.array_split(np.arange(resamples), max(1, resamples * len(p) // 5_000_000)):
        idx = rng.integers(0, len(p), size=(len(chunk), len(p)))
        draws.append(np.quantile(s[idx], q, axis=1) - np.quantile(p[idx], q, axis=1))
    boot = np.concatenate(draws)
    low, high = np.quantile(boot, [0.025, 0.975])
    return Delta(estimate, float(low), float(high), len(p))


def rate(successes: int, trials: int) -> Delta | None:
    if trials <= 0:
        return None
    low, high = wilson(successes, trials)
    return Delta(successes / trials, float(low), float(high), trials)


# --- cutover decisions (Readiness page): rate differences and ratios with 95% intervals ---------


def rate_difference(k_b: int, n_b: int, k_a: int, n_a: int) -> Delta | None:
    """p_b - p_a with Newcomb's hybrid score interval (method 10), built from the two Wilson intervals.

    Newcomb treats the samples as independent: on paired calls, whose outcomes are positively
    correlated, it is conservative (wider), never optimistic. No library in our dependencies has it.
    """
    if n_a <= 0 or n_b <= 0:
        return None
    p_b, p_a = k_b / n_b, k_a / n_a
    (l_b, u_b), (l_a, u_a) = (tuple(float(x) for x in wilson(k, n)) for k, n in ((k_b, n_b), (k_a, n_a)))
    d = p_b - p_a
    return Delta(
        d, d - math.sqrt((p_b - l_b) ** 2 + (u_a - p_a) ** 2), d + math.sqrt((u_b - p_b) ** 2 + (p_a - l_a) ** 2), n_b
    )


def mean_ratio(primary: np.ndarray, shadow: np.ndarray) -> Delta | None:
    """mean(shadow) / mean(primary) - 1 on paired values, with a delta-method 95% interval that keeps
    the pairs' covariance (the same requests on both models)."""
    p = np.asarray(primary, dtype=float)
    s = np.asarray(shadow, dtype=float)
    keep = np.isfinite(p) & np.isfinite(s)
    p, s = p[keep], s[keep]
    if len(p) < 2 or p.mean() <= 0:
        return None
    mp, ms_ = float(p.mean()), float(s.mean())
    r = ms_ / mp
    cov = np.cov(s, p, ddof=1)
    var = (cov[0, 0] + r**2 * cov[1, 1] - 2 * r * cov[0, 1]) / (len(p) * mp**2)
    half = Z95 * math.sqrt(max(var, 0.0))
    return Delta(r - 1, r - 1 - half, r - 1 + half, len(p))


def quantile_ratio(
    primary: np.ndarray, shadow: np.ndarray, q: float = 0.95, resamples: int = 200, seed: int = 7, most: int = 2000
) -> Delta | None:
    """q-quantile(shadow) / q-quantile(primary) - 1 with a paired bootstrap 95% interval (fixed seed: a
    refresh does not move it). Above `most` pairs it is an m-out-of-n bootstrap: resamples of `most`
    pairs, their spread around the estimate scaled by sqrt(most / n) (a sample quantile is asymptotically
    normal), which keeps the cost of a scorecard flat at 50,000 pairs."""
    p = np.asarray(primary, dtype=float)
    s = np.asarray(shadow, dtype=float)
    keep = np.isfinite(p) & np.isfinite(s)
    p, s = p[keep], s[keep]
    if len(p) < 20 or np.quantile(p, q) <= 0:
        return None
    estimate = float(np.quantile(s, q) / np.quantile(p, q) - 1)
    m = min(len(p), most)
    idx = np.random.default_rng(seed).integers(0, len(p), size=(resamples, m))
    boot = np.quantile(s[idx], q, axis=1) / np.maximum(np.quantile(p[idx], q, axis=1), 1e-9) - 1
    low, high = np.quantile(boot, [0.025, 0.975])
    scale = math.sqrt(m / len(p))
    return Delta(
        estimate, estimate - (estimate - float(low)) * scale, estimate + (float(high) - estimate) * scale, len(p)
    )
