"""Reference record counts of delimited files, to cross-check the fast converter.

Python's ``csv`` module is the reference parser. Where the file holds neither its quote
nor its escape character, a record is exactly a non-blank physical line (CR, LF or CRLF
ended, as the reader splits them), and the lines are counted on bytes at memory speed
instead of being parsed.

Any reader's records are never more than the non-blank lines, so a converter that found one
record per line needs no parse to be confirmed. ``LineTally`` gives a bound of those lines
from counts of line breaks alone (the blank lines at the start and the end taken off), fed
piece by piece; only when a converter's count misses it are the blank lines between
records looked for (``count_nonblank_lines``), which costs about as much again.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from service.ingest.encoding import CHUNK_SIZE, UTF8, UTF8_BOM, open_text, strip_bom

# A compiled search finds a blank line faster than ``in`` on line-dense text.
_BLANK_LINE = re.compile(rb"\n\n")


def _has_any(path: Path, needles: set[bytes]) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            if any(n in chunk for n in needles):
                return True
    return False


_CR, _LF = 13, 10
# How far back from the end of a piece the line breaks after its last character are sought
# before the whole piece is stripped (a piece of line breaks only).
_TAIL = 64


def _breaks(data: bytes | bytearray) -> int:
    """Line breaks in ``data``: LF, CR and CRLF, each one break."""
    count = data.count(b"\n")
    if b"\r" in data:
        count += data.count(b"\r") - data.count(b"\r\n")
    return count


def _content_end(data: bytes | bytearray) -> int:
    """Length of ``data`` without its trailing line breaks."""
    tail = data[-_TAIL:].rstrip(b"\r\n")
    if tail:
        return len(data) - min(len(data), _TAIL) + len(tail)
    return len(data.rstrip(b"\r\n"))


@dataclass(frozen=True)
class LineCount:
    lines: int  # physical lines, blank ones included
    blank_edges: int  # blank lines before the first and after the last non-blank one

    @property
    def nonblank_bound(self) -> int:
        """At least the non-blank lines: equal to them unless blank lines lie between two others."""
        return self.lines - self.blank_edges


class LineTally:
    """Physical lines of a byte stream fed in pieces of any size (a leading UTF-8 BOM is not
    one), split as ``count_nonblank_lines`` splits them, at the cost of counting line breaks."""

    def __init__(self) -> None:
        self._head: bytes | None = b""  # the first bytes, until they show whether a BOM starts the stream
        self._breaks = 0
        self._ends_cr = False  # the last piece ended with CR: an LF starting the next one is its CRLF
        self._open = False  # characters follow the last line break
        self._leading: int | None = None  # breaks before the first character, once one came
        self._breaks_to_content = 0  # breaks up to the last character

    def feed(self, data: bytes | bytearray) -> None:
        if self._head is not None:
            self._head += data
            if len(self._head) < len(UTF8_BOM) and UTF8_BOM.startswith(self._head):
                return
            data, self._head = strip_bom(self._head), None
        self._count(data)

    def _count(self, data: bytes | bytearray) -> None:
        if not data:
            return
        before = self._breaks
        crlf_split = self._ends_cr and data[0] == _LF
        self._breaks += _breaks(data) - crlf_split
        self._ends_cr = data[-1] == _CR
        end = _content_end(data)
        self._open = end == len(data)
        if end == 0:
            return  # line breaks only
        if self._leading is None:
            start = len(data) - len(data.lstrip(b"\r\n"))
            self._leading = before + _breaks(data[:start]) - crlf_split
        self._breaks_to_content = self._breaks - _breaks(data[end:])

    def result(self) -> LineCount:
        """The count of what was fed so far (a stream shorter than a BOM counted as it is)."""
        if self._head is not None:
            rest = LineTally()
            rest._head = None
            rest._count(self._head)
            return rest.result()
        lines = self._breaks + self._open
        if self._leading is None:
            return LineCount(lines, lines)
        trailing = max(0, self._breaks - self._breaks_to_content - 1)
        return LineCount(lines, self._leading + trailing)


def count_lines(path: Path) -> LineCount:
    """The ``LineTally`` of a file."""
    tally = LineTally()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            tally.feed(chunk)
    return tally.result()


def count_nonblank_lines(path: Path) -> int:
    """Physical lines holding at least one character (a BOM alone is not one)."""
    count = 0
    after_newline = True  # the previous chunk ended with a line break (or nothing came yet)
    carry = b""
    with open(path, "rb") as fh:
        if fh.read(len(UTF8_BOM)) != UTF8_BOM:
            fh.seek(0)
        while True:
            chunk = fh.read(CHUNK_SIZE)
            data = carry + chunk
            if chunk and data.endswith(b"\r"):
                carry, data = b"\r", data[:-1]  # it may be the first half of a CRLF
            else:
                carry = b""
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if data:
                if _BLANK_LINE.search(data):
                    parts = data.split(b"\n")
                    nonempty = len(parts) - parts.count(b"")
                    # a line that began in the previous chunk is counted there already
                    if not after_newline and parts[0]:
                        nonempty -= 1
                else:
                    newlines = data.count(b"\n")
                    nonempty = newlines + (0 if data.endswith(b"\n") else 1)
                    if data.startswith(b"\n"):
                        nonempty -= 1
                    if not after_newline and not data.startswith(b"\n"):
                        nonempty -= 1
                count += nonempty
                after_newline = data.endswith(b"\n")
            if not chunk:
                break
    return count


def reference_records(
    path: Path, reader_options: dict, quote: str | None, escape: str | None, *, nonblank: int | None = None
) -> int:
    """Non-empty records of a UTF-8 file (header included), as Python's csv module reads them;
    ``nonblank`` is the file's non-blank lines when already counted.

    Records never outnumber non-blank lines: a converter that found exactly one record per
    non-blank line needs no parse to be confirmed (see ``delimited._duckdb_checked``)."""
    specials = {c.encode() for c in (quote, escape) if c}
    if not specials or not _has_any(path, specials):
        return count_nonblank_lines(path) if nonblank is None else nonblank
    count = 0
    with open_text(path, UTF8) as fh:
        for row in csv.reader(fh, **reader_options):
            if row:
                count += 1
    return count
