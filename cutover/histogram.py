"""OTel base-2 exponential histogram math shared by the processor (writes buckets) and the dashboard (reads them).

Both sides must agree on the scale and on how a bucket maps back to a value, so the math lives
here, below both, and neither imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Bucket i covers (2^(i/2^s), 2^((i+1)/2^s)], so a bucket's midpoint is within
# (2^(2^-s)-1)/(2^(2^-s)+1) = 0.54% of any value in it.
HISTOGRAM_SCALE = 6


def bucket_bounds(index: int, scale: int = HISTOGRAM_SCALE) -> tuple[float, float]:
    base = 2.0 ** (2.0**-scale)
    return base**index, base ** (index + 1)


def representative(index: int, scale: int = HISTOGRAM_SCALE) -> float:
    """The point of a bucket with the least worst-case relative error: 2lu/(l+u)."""
    low, high = bucket_bounds(index, scale)
    return 2 * low * high / (low + high)


def quantile(buckets: Mapping[int, int], q: float, zero_count: int = 0, scale: int = HISTOGRAM_SCALE) -> float | None:
    """Nearest-rank quantile from merged buckets; within 0.54% of the exact value at scale 6."""
    total = zero_count + sum(buckets.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    if rank <= zero_count:
        return 0.0
    seen = zero_count
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return representative(index, scale)
    return representative(max(buckets), scale)
