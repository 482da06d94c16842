"""The statistics behind the panels, against known values and simulated truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cutover.histogram import HISTOGRAM_SCALE, bucket_bounds
from dashboards import stats


def test_wilson_matches_the_textbook_interval():
    low, high = stats.wilson(np.array([10.0, 0.0]), np.array([100.0, 50.0]))
    assert (float(low[0]), float(high[0])) == pytest.approx((0.0552, 0.1744), abs=5e-4)  # 10/100
    assert float(low[1]) == pytest.approx(0.0, abs=1e-12) and float(high[1]) == pytest.approx(
        0.0713, abs=5e-4
    )  # 0/50: not a zero-width interval
    assert stats.rate(0, 0) is None


def test_timeout_advice_is_a_bucket_edge_that_keeps_the_target_share():
    rng = np.random.default_rng(1)
    latencies = rng.lognormal(7.5, 0.6, 20_000)
    indexes = np.ceil(np.log2(latencies) * 64).astype(int) - 1
    buckets = dict(zip(*np.unique(indexes, return_counts=True), strict=True))
    advice = stats.advise_timeout(buckets, 0, 0.995)
    assert advice.total == len(latencies)
    assert advice.cut == int((latencies > advice.timeout_ms).sum())
    assert advice.cut <= 0.005 * len(latencies)
    # one bucket lower would cut more than the target allows
    index = round(math.log2(advice.timeout_ms) * 64) - 1  # the bucket whose upper edge is the advice
    lower_edge = bucket_bounds(index - 1)[1]
    assert (latencies > lower_edge).sum() > 0.005 * len(latencies)


def test_paired_deltas_cover_the_true_difference():
    rng = np.random.default_rng(3)
    primary = rng.lognormal(7.0, 0.5, 5_000)
    shadow = primary * 1.1 + rng.normal(0, 20, 5_000)  # 10% slower on the same requests
    true_p95 = np.quantile(shadow, 0.95) - np.quantile(primary, 0.95)
    p95 = stats.quantile_delta(primary, shadow)
    assert p95.low < true_p95 < p95.high and p95.n == 5_000
    assert p95.low > 0  # clearly slower
    mean = stats.mean_delta(primary, shadow)
    assert mean.low < float(np.mean(shadow - primary)) < mean.high
    assert stats.quantile_delta(primary[:5], shadow[:5]) is None  # too few pairs to say anything


def test_newcomb_difference_matches_the_published_example():
    # Newcomb (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 vs 48/80, method 10.
    d = stats.rate_difference(56, 70, 48, 80)
    assert (d.estimate, d.low, d.high) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-4)
    zero = stats.rate_difference(0, 600, 0, 600)  # nothing seen on either side: still an interval, not a point
    assert zero.low < 0 < zero.high and zero.high == pytest.approx(3.84 / (600 + 3.84), abs=2e-4)


def test_ratio_intervals_cover_the_true_ratio():
    rng = np.random.default_rng(3)
    covered_mean = covered_p95 = 0
    for _ in range(100):
        base = rng.lognormal(0, 0.5, 800)
        shadow = base * 1.2 * rng.lognormal(0, 0.2, 800)  # true mean ratio 1.2 * e^(0.02); paired
        r = stats.mean_ratio(base, shadow)
        covered_mean += r.low <= 1.2 * math.exp(0.02) - 1 <= r.high
        q = stats.quantile_ratio(rng.lognormal(0, 0.5, 800), rng.lognormal(math.log(1.1), 0.5, 800), resamples=200)
        covered_p95 += q.low <= 0.1 <= q.high
    assert covered_mean >= 88 and covered_p95 >= 88  # nominal 95


def test_display_bins_draw_a_few_calls_as_separate_steps():
    """Three calls at 300 ms, 2 s and 10 s: three bins with a call, every bin between them empty (drawn
    as zero, not as one block from 300 ms to 10 s), ten bins per decade."""
    buckets = {math.ceil(math.log2(v) * 2**HISTOGRAM_SCALE) - 1: 1 for v in (300.0, 2000.0, 10000.0)}
    bins = stats.display_bins(buckets)
    assert list(bins["count"][bins["count"] > 0]) == [1, 1, 1] and bins["count"].sum() == 3
    assert len(bins) == 40 - 24 + 1  # bins 10^(24/10) (251 ms) to 10^(40/10) (10 s)
    assert (bins["low"] <= 300).iloc[0] and bins["high"].iloc[-1] >= 10000
    assert bins["share"].sum() == pytest.approx(1.0)


def test_the_m_out_of_n_p95_interval_covers_and_matches_the_full_bootstrap():
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(60):
        base = rng.lognormal(0, 0.5, 20_000)
        q = stats.quantile_ratio(base, base * 1.1 * rng.lognormal(0, 0.1, 20_000), most=2000)
        truth = 1.1 * math.exp(1.6449 * (math.hypot(0.5, 0.1) - 0.5)) - 1  # lognormal p95s: exp(1.6449 sigma)
        covered += q.low <= truth <= q.high
    assert covered >= 51  # nominal 57 of 60
    a, b = rng.lognormal(0, 0.5, 20_000), rng.lognormal(0.1, 0.5, 20_000)
    full, sub = stats.quantile_ratio(a, b, most=20_000), stats.quantile_ratio(a, b, most=2000)
    assert sub.high - sub.low == pytest.approx(full.high - full.low, rel=0.25)
