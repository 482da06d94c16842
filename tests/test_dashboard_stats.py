"""The statistics behind the panels, against known values and simulated truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cutover.histogram import bucket_bounds
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
