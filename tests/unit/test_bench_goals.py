"""Unit tests of the benchmark's goals: ratios of medians over interleaved runs, the small
open-loop goals, CPU per dataset."""

from __future__ import annotations

import pytest

from bench.report import goals, markdown, ratio_goal, small_goals
from bench.small import cpu_per_dataset

MiB = 2**20


def _ours(*runs: tuple[float, float], status: str = "synced") -> dict:
    """A lakesync file result with repeats of (upload → 201, → synced) per round."""
    repeats = [
        {"upload_s": up, "upload_status": 201, "upload_to_synced_s": done, "status": status, "round": i + 1}
        for i, (up, done) in enumerate(runs)
    ]
    return {
        "repeats": repeats,
        "status": status,
        "memory": {"worker_peak_bytes": 700 * MiB, "api_peak_bytes": 400 * MiB},
    }


def _peer(*seconds: float) -> dict:
    return {
        "rows": 1000,
        "peak_rss_bytes": 100 * MiB,
        "seconds": sorted(seconds)[(len(seconds) - 1) // 2],
        "repeats": [{"seconds": s, "round": i + 1} for i, s in enumerate(seconds)],
    }


def test_ratio_goal_is_the_ratio_of_medians_with_each_rounds_ratio():
    ours = _ours((3.0, 9.0), (2.0, 6.0), (2.5, 7.0))
    dlt = {"dlt": _peer(10.0, 8.0, 9.0)}
    measured = ratio_goal("synced", "dlt", ours, dlt)
    assert measured["value"] == pytest.approx(7.0 / 9.0)
    assert measured["per_run"] == pytest.approx([0.9, 0.75, 7.0 / 9.0])
    assert "per run 0.90 / 0.75 / 0.78×" in measured["detail"]
    # The time to 201 has its own median, not the one of the run with the median sync.
    assert ratio_goal("201", "dlt", ours, dlt)["value"] == pytest.approx(2.5 / 9.0)


def test_ratio_goal_pairs_runs_by_round_and_ranks_failures_last():
    ours = _ours((1.0, 5.0), (1.0, 6.0), (1.0, 7.0))
    ours["repeats"][0]["status"] = "failed"  # round 1 did not sync
    peer = {"dlt": {"repeats": [{"seconds": 5.0, "round": 2}, {"seconds": 5.0, "round": 3}]}}
    measured = ratio_goal("synced", "dlt", ours, peer)
    # lakesync: [fail, 6, 7] → 7; the peer's round 1 is missing.
    assert measured["value"] == pytest.approx(7.0 / 5.0)
    assert measured["per_run"] == pytest.approx([6.0 / 5.0, 7.0 / 5.0])


def test_ratio_goal_without_the_peer_is_not_measured():
    assert ratio_goal("synced", "dlt", _ours((1.0, 2.0)), {})["value"] is None


def _results() -> dict:
    return {
        "data": {
            "big": {"rows": 5_000_000, "columns": 8},
            "huge": {"rows": 20_000_000, "columns": 8},
            "wide": {"rows": 100_000, "columns": 500},
        },
        "ours": {
            "big": _ours((2.0, 4.0), (2.0, 4.0), (2.0, 4.0)),
            "huge": _ours((9.0, 20.0), (9.0, 20.0), (9.0, 20.0)),
            "wide": _ours((5.0, 12.0), (5.0, 12.0), (5.0, 12.0)),
        },
        "peers": {
            "big": {"dlt": _peer(6.0, 6.0, 6.0), "duckdb": _peer(1.8, 1.8, 1.8)},
            "huge": {"dlt": _peer(19.0, 19.0, 19.0)},
            "wide": {"dlt": _peer(12.5, 12.5, 12.5)},
        },
    }


def test_file_goals_and_their_limits():
    by_title = {g["goal"]: g for g in goals(_results())}
    big = by_title["big (5,000,000 rows × 8 cols): upload start → synced ≤ 0.75× dlt's load"]
    assert (big["value"], big["passed"], big["part"]) == (pytest.approx(4.0 / 6.0), True, "big")
    duck = by_title["big (5,000,000 rows × 8 cols): upload start → synced ≤ 2× the DuckDB single pass"]
    assert duck["passed"] is False  # 4.0 / 1.8 = 2.2
    upload = by_title["big (5,000,000 rows × 8 cols): upload → 201 ≤ 1.2× the DuckDB single pass"]
    assert upload["passed"] is True  # 2.0 / 1.8 = 1.11
    huge = by_title["4× big (20,000,000 rows × 8 cols): upload start → synced ≤ 1× dlt's load"]
    assert huge["passed"] is False  # 20 / 19
    wide = by_title["wide (100,000 rows × 500 cols): upload start → synced ≤ 1× dlt's load"]
    assert wide["passed"] is True
    assert by_title["big: worker peak RSS ≤ 1 GiB"]["passed"] is True
    assert by_title["big: API peak RSS ≤ 600 MiB"]["passed"] is True
    assert by_title["4× file raises the worker peak by ≤ 20%"]["value"] == pytest.approx(1.0)
    # Only the goals measured in this run: none for the small uploads here.
    assert {g["part"] for g in by_title.values()} == {"big", "huge", "wide", "memory"}


def _small(**over) -> dict:
    small = {
        "rate": 20.0,
        "rate_achieved": 19.9,
        "offered": 1200,
        "accepted": 1200,
        "failed_uploads": 0,
        "synced": 1200,
        "not_synced": 0,
        "upload_latency_s": {"n": 1200, "p50": 0.03, "p95": 0.1, "p99": 0.2, "max": 0.3},
        "last_upload_to_synced_s": 4.0,
        "worker_cpu_per_dataset_s": 0.035,
    }
    return small | over


def test_small_goals_pass_when_every_figure_is_within_its_limit():
    out = small_goals(_small())
    assert [g["passed"] for g in out] == [True, True, True, True]
    assert [g["value"] for g in out] == pytest.approx([30.0, 200.0, 4.0, 35.0])
    assert all(g["part"] == "small" and g["goal"].startswith("small (20/s open loop)") for g in out)


def test_small_goals_fail_on_slow_uploads_slow_syncs_and_cpu():
    out = small_goals(
        _small(
            upload_latency_s={"n": 10, "p50": 0.06, "p99": 0.3},
            last_upload_to_synced_s=12.0,
            worker_cpu_per_dataset_s=0.079,
        )
    )
    assert [g["passed"] for g in out] == [False, False, False, False]


def test_a_dataset_never_synced_misses_the_sync_goal_however_fast_the_others():
    drain = small_goals(_small(synced=1199, not_synced=1, failed_uploads=1))[2]
    assert drain["value"] == 4.0
    assert drain["passed"] is False
    assert drain["detail"] == "1199 of 1200 synced"


def test_small_goals_not_measured_are_neither_passed_nor_failed():
    out = small_goals(_small(upload_latency_s={"n": 0}, worker_cpu_per_dataset_s=None))
    assert [g["passed"] for g in out] == [None, None, True, None]


def test_markdown_lists_the_goals_and_the_small_scenario():
    results = _results() | {"settings": {"full": True, "repeat": 3}}
    results["ours"]["small"] = _small(connections=16, rows_per_file=1000, memory={}, connection_wait_s={"n": 0})
    results["goals"] = goals(results)
    text = markdown(results)
    assert "## Many small datasets, open loop: 1200 uploads of 1000 rows offered at 20/s over 16 connections" in text
    assert "| small (20/s open loop): worker CPU per dataset ≤ 40 ms | 35.00 ms | <= 40 ms | pass |" in text
    assert "per run 0.67 / 0.67 / 0.67×" in text


def test_markdown_puts_the_duckdb_floor_in_the_units_of_the_goals():
    results = _results() | {"settings": {"full": True, "repeat": 3}}
    floor = _peer(4.5, 4.5, 4.5) | {"stages": {"land_as_text": 2.7, "typed_distinct": 1.8}}
    results["peers"]["big"]["floor"] = floor
    results["goals"] = goals(results)
    text = markdown(results)
    assert (
        "- big: every value landed as text 2.7 s = 1.50× the single pass; then typed with duplicates "
        "removed, 4.5 s in all = 2.50× the single pass, 0.75× dlt's load"
    ) in text
    # A peer row of its own in the files table.
    assert "| DuckDB as text, then typed DISTINCT | | 4.5 s | 222 | 100 MiB |" in text


def test_cpu_per_dataset_is_the_difference_of_two_readings_divided():
    out = cpu_per_dataset({"api": 10.0, "worker": 20.0}, {"api": 12.0, "worker": 28.0}, 200)
    assert out == pytest.approx(
        {"api_cpu_s": 2.0, "api_cpu_per_dataset_s": 0.01, "worker_cpu_s": 8.0, "worker_cpu_per_dataset_s": 0.04}
    )
    # No datasets: the CPU used is known, not its share.
    assert cpu_per_dataset({"worker": 1.0}, {"worker": 2.0}, 0) == {
        "worker_cpu_s": 1.0,
        "worker_cpu_per_dataset_s": None,
    }
    assert cpu_per_dataset({}, {}, 10) == {}
