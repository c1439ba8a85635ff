"""Unit tests of the benchmark's statistics: percentiles, spreads, the median run, the sustained rate."""

from __future__ import annotations

import math

import pytest

from bench.stats import REPEAT_FIELDS, dist, lower_median, median_run, percentile, sustained_rate


def test_percentile_interpolates_between_the_nearest_values():
    values = [40.0, 10.0, 30.0, 20.0]  # order does not matter
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == pytest.approx(25.0)
    # rank (4 - 1) * 0.95 = 2.85: 30 + 0.85 * (40 - 30)
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_dist_skips_missing_values():
    spread = dist([3.0, None, 1.0, 2.0, None])
    assert spread["n"] == 3
    assert spread["mean"] == pytest.approx(2.0)
    assert (spread["min"], spread["p50"], spread["max"]) == (1.0, 2.0, 3.0)
    assert spread["p95"] == pytest.approx(2.9)
    assert spread["p99"] == pytest.approx(2.98)


def test_dist_of_no_values_is_only_a_count():
    assert dist([]) == {"n": 0}
    assert dist([None, None]) == {"n": 0}


def _seconds(run: dict) -> float | None:
    return run.get("seconds")


def test_median_run_picks_the_middle_run_and_keeps_every_repeat():
    runs = [{"seconds": 3.0, "rows": 1}, {"seconds": 1.0, "rows": 2}, {"seconds": 2.0, "rows": 3}]
    chosen = median_run(runs, _seconds)
    assert chosen["rows"] == 3
    # Only the listed fields of each run, in the order they ran, with the value ranked and the round.
    assert chosen["repeats"] == [
        {"seconds": 3.0, "value": 3.0, "round": 1},
        {"seconds": 1.0, "value": 1.0, "round": 2},
        {"seconds": 2.0, "value": 2.0, "round": 3},
    ]
    assert "rows" not in REPEAT_FIELDS
    assert "repeats" not in runs[2]  # the chosen run is a copy


def test_median_run_takes_the_lower_middle_of_an_even_count():
    runs = [{"seconds": 4.0}, {"seconds": 1.0}, {"seconds": 3.0}, {"seconds": 2.0}]
    assert median_run(runs, _seconds)["seconds"] == 2.0


def test_failed_runs_count_as_the_slowest():
    # A run that failed fast is not the median: it ranks after every measured one.
    runs = [{"seconds": 1.0, "error": "exit 1"}, {"seconds": 2.0}, {"seconds": 3.0}, None]
    chosen = median_run(runs, _seconds)
    assert chosen["seconds"] == 3.0
    # The missing run (None) is left out of the repeats; the rounds still say which run was which.
    assert [r["value"] for r in chosen["repeats"]] == [math.inf, 2.0, 3.0]
    assert [r["round"] for r in chosen["repeats"]] == [1, 2, 3]
    assert chosen["repeats"][0] == {"seconds": 1.0, "error": "exit 1", "value": math.inf, "round": 1}
    assert [r["round"] for r in median_run([None, {"seconds": 1.0}], _seconds)["repeats"]] == [2]
    # So does a run without a figure.
    assert median_run([{"seconds": None}, {"seconds": 1.0}, {"seconds": 2.0}], _seconds)["seconds"] == 2.0


def test_median_run_of_no_runs_is_none():
    assert median_run([], _seconds) is None
    assert median_run([None, None], _seconds) is None


def test_sustained_rate_leaves_out_ramp_up_and_tail():
    # 20 completions: a slow start, one per second in the middle, a slow tail.
    finished = [0.0, 5.0] + [10.0 + i for i in range(16)] + [40.0, 60.0]
    # 10th percentile index 2 (t=10), index int(20 * 0.9) - 1 = 17 (t=25): 15 completions in 15 s.
    assert sustained_rate(finished) == pytest.approx(1.0)


def test_sustained_rate_needs_a_spread_of_completions():
    assert sustained_rate([1.0]) is None
    assert sustained_rate([1.0, 2.0]) is None  # the 10th and 90th percentile are the same one
    assert sustained_rate([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert sustained_rate([5.0] * 20) is None  # all at once: no time between them


def test_lower_median_ranks_missing_values_last():
    assert lower_median([3.0, 1.0, 2.0]) == 2.0
    assert lower_median([4.0, 1.0, 3.0, 2.0]) == 2.0  # the lower middle, as median_run picks
    assert lower_median([None, 1.0, 2.0]) == 2.0
    # When the middle one is missing the median is not known.
    assert lower_median([None, None, 1.0]) is None
    assert lower_median([]) is None
