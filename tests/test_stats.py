"""The serving locker's figures: histograms and their bounds."""

from __future__ import annotations

from pylocker.stats import BUCKETS, FIRST_BUCKET, MAX_NAMES, Histogram, ServerStats


def test_a_percentile_is_an_upper_bound_within_a_factor_of_two() -> None:
    histogram = Histogram()
    assert histogram.percentile(0.5) is None
    for seconds in [0.0] * 51 + [0.001] * 50 + [2.5]:
        histogram.add(seconds)
    assert histogram.count == 102
    p50, p99, top = histogram.percentile(0.5), histogram.percentile(0.99), histogram.percentile(1.0)
    assert p50 is not None and p99 is not None and top is not None
    assert 0.0 <= p50 <= FIRST_BUCKET  # half the samples were 0 (and one more)
    assert 0.001 <= p99 < 0.002
    assert 2.5 <= top < 5.0
    histogram.add(10.0**9)  # beyond the last bucket: counted in the overflow one
    assert histogram.percentile(1.0) == FIRST_BUCKET * 2**BUCKETS


def test_the_names_followed_are_bounded() -> None:
    stats = ServerStats(0.0)
    for i in range(MAX_NAMES + 50):
        stats.granted((f"n{i}",), 0.0)
    assert len(stats.names) == MAX_NAMES
    assert "n0" not in stats.names
    assert f"n{MAX_NAMES + 49}" in stats.names
    assert stats.grants == MAX_NAMES + 50
