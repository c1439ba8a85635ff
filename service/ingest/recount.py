"""Reference record counts of delimited files, to cross-check the fast converter.

Python's ``csv`` module is the reference parser. Where the file holds neither its quote
nor its escape character, a record is exactly a non-blank physical line (CR, LF or CRLF
ended, as the reader splits them), and the lines are counted on bytes at memory speed
instead of being parsed.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from service.ingest.encoding import CHUNK_SIZE, UTF8, UTF8_BOM, open_text

# A compiled search finds a blank line faster than ``in`` on line-dense text.
_BLANK_LINE = re.compile(rb"\n\n")


def _has_any(path: Path, needles: set[bytes]) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            if any(n in chunk for n in needles):
                return True
    return False


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


def reference_records(path: Path, reader_options: dict, quote: str | None, escape: str | None) -> int:
    """Non-empty records of a UTF-8 file (header included), as Python's csv module reads them.

    Records never outnumber non-blank lines: a converter that found exactly one record per
    non-blank line needs no parse to be confirmed (see ``delimited._duckdb_checked``)."""
    specials = {c.encode() for c in (quote, escape) if c}
    if not specials or not _has_any(path, specials):
        return count_nonblank_lines(path)
    count = 0
    with open_text(path, UTF8) as fh:
        for row in csv.reader(fh, **reader_options):
            if row:
                count += 1
    return count
