"""Line counts that confirm a converter's row count: the streaming tally against the exact count."""

from __future__ import annotations

import random
import re

import pytest

from service.ingest.encoding import UTF8_BOM
from service.ingest.recount import LineCount, LineTally, count_lines, count_nonblank_lines

_BREAK = re.compile(rb"\r\n|\r|\n")


def expected(data: bytes) -> LineCount:
    """Lines and blank edge lines found by splitting the whole text at once."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    lines = _BREAK.split(data)
    if lines[-1] == b"":
        lines.pop()  # nothing after the last line break
    filled = [i for i, line in enumerate(lines) if line]
    if not filled:
        return LineCount(len(lines), len(lines))
    return LineCount(len(lines), filled[0] + len(lines) - 1 - filled[-1])


def tally(pieces: list[bytes]) -> LineCount:
    counter = LineTally()
    for piece in pieces:
        counter.feed(piece)
    return counter.result()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize(
    ("data", "lines", "blank_edges"),
    [
        (b"", 0, 0),
        (UTF8_BOM, 0, 0),
        (UTF8_BOM[:2], 1, 0),  # not a BOM: a line of two bytes
        (UTF8_BOM + b"\n", 1, 1),
        (b"a", 1, 0),
        (b"a\r", 1, 0),
        (b"a\r\nb", 2, 0),
        (b"a\rb\nc\r\n", 3, 0),
        (b"\r\n\r\n", 2, 2),
        (b"\n\na\n\nb\n\n\n", 7, 4),
        (b"a\n\nb", 3, 0),  # a blank line between two others is not an edge
    ],
)
def test_tally_of_small_streams(data: bytes, lines: int, blank_edges: int) -> None:
    assert tally([data]) == LineCount(lines, blank_edges)
    # Fed a byte at a time: CRLF pairs and the BOM are split across pieces.
    assert tally([data[i : i + 1] for i in range(len(data))]) == LineCount(lines, blank_edges)


def test_crlf_split_across_pieces_is_one_break() -> None:
    assert tally([b"h\r", b"\n1\r", b"\n", b"\n"]) == LineCount(3, 1)
    assert tally([b"h\r", b"\r\n"]) == LineCount(2, 1)


def test_long_runs_of_line_breaks_past_the_tail_window() -> None:
    data = b"\r\n" * 500 + b"x,y" + b"\n" * 300 + b"z" + b"\r" * 200
    assert tally(split_at(data, [700, 1000, 1310])) == expected(data) == LineCount(1000, 699)


def test_bytearray_pieces() -> None:
    assert tally([bytearray(b"a,b\r"), bytearray(b"\n1,2\n")]) == LineCount(2, 0)


def _random_text(rng: random.Random) -> bytes:
    tokens = [b"a", b"bc", b",", b'"', b"\n", b"\r", b"\r\n", b"\n\n", b" ", "é".encode()]
    body = b"".join(rng.choice(tokens) for _ in range(rng.randrange(0, 60)))
    return (UTF8_BOM if rng.random() < 0.3 else b"") + body


def test_tally_matches_a_whole_split_and_the_exact_count(tmp_path) -> None:
    rng = random.Random(20261206)
    path = tmp_path / "lines.csv"
    for _ in range(3000):
        data = _random_text(rng)
        cuts = [rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 6))]
        got = tally(split_at(data, cuts))
        assert got == expected(data), (data, cuts)
        path.write_bytes(data)
        assert count_lines(path) == got
        nonblank = count_nonblank_lines(path)
        # Exact unless a blank line lies between two filled ones.
        assert got.nonblank_bound >= nonblank
        inner = data.removeprefix(UTF8_BOM).strip(b"\r\n")
        if not re.search(rb"(\r\n|\r|\n)(\r\n|\r|\n)", inner):
            assert got.nonblank_bound == nonblank, data
