"""Rows set aside instead of refusing the whole upload (``bad_rows=quarantine``).

A row that cannot be parsed (a delimited record with the wrong number of fields or broken
quoting, an NDJSON line that is not a JSON object) is kept with its physical line number,
its raw text and the reason, up to a limit; past the limit, or when no row is good, the
upload is refused as it would be without quarantine, naming the first bad lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import IngestError

REJECT = "reject"
QUARANTINE = "quarantine"
BAD_ROW_MODES = (REJECT, QUARANTINE)
DEFAULT_MAX_BAD_ROWS = 10_000
# Characters of a bad row's raw text that are kept: an unclosed quote can swallow the rest
# of a file into one "row".
RAW_LIMIT = 8192
_FIRST = 10


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    raw: str


class Quarantine:
    """Collects bad rows; raises once more than ``limit`` are found."""

    def __init__(self, limit: int = DEFAULT_MAX_BAD_ROWS):
        self.limit = limit
        self.rows: list[BadRow] = []

    def add(self, line: int, reason: str, raw: str) -> None:
        if len(raw) > RAW_LIMIT:
            raw, reason = raw[:RAW_LIMIT], f"{reason} (raw text cut to its first {RAW_LIMIT} characters)"
        self.rows.append(BadRow(line, reason, raw))
        if len(self.rows) > self.limit:
            raise self.refused(f"more than {self.limit} rows cannot be read (MAX_BAD_ROWS)")

    def check_good_rows(self, good: int) -> None:
        if good == 0 and self.rows:
            raise self.refused("no row can be read")

    def refused(self, why: str) -> IngestError:
        first = self.rows[:_FIRST]
        lines = ", ".join(str(r.line) for r in first)
        return IngestError(
            f"{why}; the first bad lines: {lines} ({first[0].reason})",
            code="too_many_bad_rows",
            status=400,
            details={"lines": [r.line for r in first], "reasons": [r.reason for r in first], "limit": self.limit},
        )


class LineRecorder:
    """Iterates the lines of a text file, keeping those read since ``take()`` was last
    called: the raw text of the record a csv reader has just read (or failed on)."""

    def __init__(self, fh):
        self._fh = fh
        self._lines: list[str] = []
        self._size = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        if self._size <= RAW_LIMIT:  # enough is kept already: the rest would be cut
            self._lines.append(line)
            self._size += len(line)
        return line

    def take(self) -> str:
        raw = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        return raw.rstrip("\r\n")
