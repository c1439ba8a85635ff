"""Unit tests of the benchmark's open-loop load: the schedule, the records, their summary."""

from __future__ import annotations

import threading
import time

import pytest

from bench.openloop import Sent, due_offsets, rate_between, run_open_loop, summarize


def test_due_offsets_space_requests_evenly_from_zero():
    assert due_offsets(4, 20) == pytest.approx([0.0, 0.05, 0.10, 0.15])
    assert due_offsets(0, 20) == []
    assert due_offsets(3, 0.5) == [0.0, 2.0, 4.0]


def test_due_offsets_refuse_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match="rate"):
        due_offsets(3, 0)


def test_rate_between_counts_intervals_not_events():
    # 5 sends over 2 s: 4 intervals, 2 per second.
    assert rate_between([0.0, 0.5, 1.0, 1.5, 2.0]) == pytest.approx(2.0)
    assert rate_between([3.0, 1.0, 2.0]) == pytest.approx(1.0)  # order does not matter
    assert rate_between([1.0]) is None
    assert rate_between([1.0, 1.0]) is None


def test_summarize_measures_latency_from_the_due_time_of_accepted_uploads():
    records = [
        # Due at 0, sent at once, answered after 40 ms.
        Sent(0, 0.0, 0.0, 0.04, 201, "a"),
        # Due at 0.05 but waited 0.1 s for a connection: 0.15 s in all.
        Sent(1, 0.05, 0.15, 0.2, 201, "b"),
        Sent(2, 0.10, 0.15, 0.3, 500, None, "boom"),
        Sent(3, 0.15, 0.2, 0.25, 0, None, "ConnectionError()"),
    ]
    out = summarize(records, 20)
    assert (out["offered"], out["accepted"], out["failed_uploads"]) == (4, 2, 2)
    assert out["upload_errors"] == ["500: boom", "0: ConnectionError()"]
    lat = out["upload_latency_s"]
    assert lat["n"] == 2  # refused uploads are counted as failures, not as latencies
    assert (lat["min"], lat["max"]) == pytest.approx((0.04, 0.15))
    assert out["connection_wait_s"]["max"] == pytest.approx(0.1)
    # Sends from 0 to 0.2 s: 3 intervals.
    assert out["rate_achieved"] == pytest.approx(15.0)
    assert out["rate_target"] == 20
    assert out["offered_s"] == pytest.approx(0.15)
    assert out["last_answer_s"] == pytest.approx(0.3)


def test_summarize_of_nothing_is_empty():
    out = summarize([], 20)
    assert (out["offered"], out["accepted"], out["rate_achieved"], out["last_answer_s"]) == (0, 0, None, None)
    assert out["upload_latency_s"] == {"n": 0}


def test_open_loop_sends_every_item_once_on_schedule_with_one_sender_per_connection():
    senders = []
    lock = threading.Lock()

    def make_send():
        seen: list[str] = []
        with lock:
            senders.append(seen)

        def send(item: str):
            seen.append(item)
            return (201, f"id-{item}", None) if item != "bad" else (415, None, "refused")

        return send

    items = ["a", "b", "bad", "d", "e", "f"]
    records, t0 = run_open_loop(items, rate=500, connections=3, make_send=make_send)
    assert len(senders) == 3
    assert sorted(x for seen in senders for x in seen) == sorted(items)
    assert [r.k for r in records] == list(range(6))
    assert [r.due_s for r in records] == pytest.approx(due_offsets(6, 500))
    assert [r.ident for r in records] == ["id-a", "id-b", None, "id-d", "id-e", "id-f"]
    assert records[2].status == 415 and records[2].error == "refused"
    # Nothing is sent before it is due, and the answer comes after the send.
    assert all(r.due_s <= r.sent_s <= r.answered_s for r in records)
    assert t0 > 0


def test_open_loop_does_not_wait_for_answers_and_counts_the_queueing():
    """One connection held by a slow first upload: the later ones are still due on schedule,
    wait for the connection, and that wait is in their latency."""
    hold = 0.2

    def make_send():
        def send(item: int):
            if item == 0:
                time.sleep(hold)
            return 201, str(item), None

        return send

    records, _ = run_open_loop(list(range(5)), rate=1000, connections=1, make_send=make_send)
    assert [r.due_s for r in records] == pytest.approx([0.0, 0.001, 0.002, 0.003, 0.004])
    for r in records[1:]:
        # Each waited at least until the first upload gave the connection back.
        assert r.sent_s >= hold
        assert r.latency_s >= r.wait_s >= hold - r.due_s


def test_a_send_that_raises_is_a_failed_upload():
    def make_send():
        def send(item):
            raise ConnectionError("refused")

        return send

    records, _ = run_open_loop(["x"], rate=10, connections=2, make_send=make_send)
    assert records[0].status == 0
    assert "refused" in (records[0].error or "")
