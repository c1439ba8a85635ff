"""CSV / TSV (and semicolon or pipe separated) files to Parquet, every value kept as its exact text.

The conversion runs in DuckDB (parallel, streaming, bounded memory) with its sniffer switched
off: the dialect and the header are read here from the head of the file, and the reader is
strict so that malformed rows fail instead of being patched. Python's ``csv`` module is the
reference parser for the rare cases DuckDB rejects: it finds the exact physical line of an
error, and converts files DuckDB's strict reader refuses but that are valid CSV (for example
mixed line endings or very long lines). Every fast conversion is checked against the
reference parser's record count (see recount.py); when they differ, the reference parser's
rows are stored.

Quotes are data in many exports (TSV above all): a file that cannot be read with quoting but
whose every record has the header's field count without it is read without quoting.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from service.errors import IngestError
from service.ingest.badrows import LineRecorder, Quarantine
from service.ingest.columns import check_column_count, unique_names
from service.ingest.encoding import (
    CP1252,
    UTF8,
    UTF8_BOM,
    decode_prefix,
    is_utf8_prefix,
    open_text,
    transcode_cp1252_to_utf8,
)
from service.ingest.model import LOCAL_PARQUET_CODEC, ConvertResult, IngestSettings, SourceColumn
from service.ingest.output import remove_quietly, scratch_file
from service.ingest.recount import count_lines, count_nonblank_lines, reference_records
from service.ingest.sql import connect, sql_string

SNIFF_BYTES = 1 << 20
MAX_HEADER_BYTES = 64 << 20
SNIFF_RECORDS = 200
DELIMITERS = (",", "\t", ";", "|")

# Largest field the fallback parser accepts (characters); it also bounds memory when a quote
# is left open near the start of a large file.
FIELD_LIMIT = 32 << 20
if csv.field_size_limit() < FIELD_LIMIT:
    csv.field_size_limit(FIELD_LIMIT)

# Rows per Parquet row group.
ROW_GROUP_ROWS = 122_880
MIN_ROW_GROUP_ROWS = 2_048
# A row group is buffered whole (by each writer thread) before it is written: bound its
# size in memory, estimated as 16 bytes per value plus the row's text, so files of many
# or long columns stay inside the DuckDB memory limit. Smaller groups than that cost time
# and memory per column chunk (bench/README.md).
ROW_GROUP_BYTES = 96 << 20


def row_group_rows(columns: int, line_bytes: float = 0.0) -> int:
    row_bytes = 16 * max(1, columns) + max(0.0, line_bytes)
    return max(MIN_ROW_GROUP_ROWS, min(ROW_GROUP_ROWS, int(ROW_GROUP_BYTES // row_bytes)))


# Distinct values per column and row group up to which a column is dictionary-encoded.
# Columns with few distinct values (codes, flags, dates, small counts) are common, and on
# dictionary pages every later scan reads and casts each distinct value once, which saves
# the silver step CPU at no conversion cost (bench/README.md).
# The writer holds a dictionary per column and thread, so wide files get smaller ones.
DICTIONARY_VALUES = 10_000
DICTIONARY_CELLS = 250_000


def dictionary_limit(columns: int) -> int:
    return max(1, min(DICTIONARY_VALUES, DICTIONARY_CELLS // max(1, columns)))


DUCKDB_MAX_LINE = 2_000_000  # DuckDB's default max_line_size

# DuckDB's Parquet writer holds buffers per column and thread: 4,000 columns ran out of a
# 512MB limit even for one row. Wider files are written by pyarrow, a batch at a time.
DUCKDB_MAX_COLUMNS = 1024
# Values per pyarrow batch of a wide file.
WIDE_BATCH_CELLS = 4 << 20

# An unquoted field can never contain a newline, so this null string never matches: every
# empty field stays "" (quoted empty fields are protected by allow_quoted_nulls=false).
_NEVER_NULL = "\n"


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    quote: str | None = '"'  # None: quotes are data
    escape: str | None = '"'  # equal to quote: a quote inside a quoted field is doubled

    def reader_options(self, *, strict: bool = True) -> dict:
        if self.quote is None:
            return {"delimiter": self.delimiter, "quoting": csv.QUOTE_NONE, "strict": strict}
        options = {"delimiter": self.delimiter, "quotechar": self.quote, "strict": strict}
        if self.escape == self.quote:
            options["doublequote"] = True
        else:
            options.update(doublequote=False, escapechar=self.escape)
        return options


@dataclass(frozen=True)
class Layout:
    dialect: Dialect
    names: list[str]
    skip_lines: int  # blank lines before the header
    line_bytes: float = 0.0  # average length of the sniffed lines, 0 when unknown

    def describe(self, encoding: str) -> dict:
        """The dialect as reported to the uploader."""
        d = self.dialect
        return {
            "delimiter": d.delimiter,
            "quote": d.quote,
            "escape": d.escape if d.quote is not None else None,
            "header_line": self.skip_lines + 1,
            "encoding": encoding,
        }


class NotUtf8(Exception):
    """The file turned out not to be valid UTF-8 past the sniffed head."""


def malformed(line: int, message: str, **details) -> IngestError:
    return IngestError(f"line {line}: {message}", code="malformed_csv", status=400, details={"line": line, **details})


# --------------------------------------------------------------------------- sniffing


def _read_head(path: Path, nbytes: int) -> tuple[bytes, bool]:
    with open(path, "rb") as fh:
        data = fh.read(nbytes + 1)
    return data[:nbytes], len(data) <= nbytes


def _complete_lines(text: str, complete: bool) -> str:
    """Drop a trailing partial line of a truncated sample."""
    if complete:
        return text
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1] if cut >= 0 else text


def _field_counts(text: str, dialect: Dialect, complete: bool) -> list[int]:
    counts: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""), **dialect.reader_options(strict=False))
    try:
        for row in reader:
            if row:
                counts.append(len(row))
                if len(counts) > SNIFF_RECORDS:
                    return counts
    except csv.Error:
        pass
    if not complete and len(counts) > 1:
        counts.pop()  # the sample may end inside a quoted field
    return counts


def _best_delimiter(
    text: str, quote: str | None, escape: str | None, complete: bool, prefer_tab: bool
) -> tuple[str, float]:
    best: str | None = None
    best_key: tuple[float, bool, int] | None = None
    single_column = None
    for order, delimiter in enumerate(DELIMITERS):
        counts = _field_counts(text, Dialect(delimiter, quote, escape), complete)
        if not counts:
            continue
        if counts[0] < 2:
            if single_column is None and all(c == 1 for c in counts):
                single_column = delimiter
            continue
        consistency = sum(1 for c in counts if c == counts[0]) / len(counts)
        key = (consistency, prefer_tab and delimiter == "\t", -order)
        if best_key is None or key > best_key:
            best, best_key = delimiter, key
    if best is None:
        # One column: any delimiter that never occurs keeps values such as "1,5" whole.
        if prefer_tab and single_column is not None:
            single_column = "\t" if "\t" not in text else single_column
        return single_column or ("\t" if prefer_tab else ","), 0.0
    assert best_key is not None  # set together with best
    return best, best_key[0]


def _single_quoted(text: str, delimiter: str) -> bool:
    """Fields wrapped in single quotes: most fields are, or one hides a delimiter or newline."""
    if '"' in text or "'" not in text:
        return False
    d = re.escape(delimiter)
    wrapped = re.findall(rf"(?:^|{d})'((?:[^']|'')*)'(?={d}|\r?$)", text, flags=re.M)
    if not wrapped:
        return False
    if any(delimiter in w or "\n" in w or "\r" in w for w in wrapped):
        return True
    fields = sum(len(line.split(delimiter)) for line in text.splitlines() if line)
    return len(wrapped) * 2 >= fields


def sniff_dialect(text: str, *, complete: bool, prefer_tab: bool) -> Dialect:
    text = _complete_lines(text, complete)
    delimiter, consistency = _best_delimiter(text, '"', '"', complete, prefer_tab)
    quote = '"'
    if _single_quoted(text, delimiter):
        quote = "'"
        delimiter, consistency = _best_delimiter(text, quote, quote, complete, prefer_tab)
    escape: str | None = quote
    if "\\" + quote in text:
        # Backslash-escaped quotes (\") only when doubled quotes do not explain the sample.
        backslash = Dialect(delimiter, quote, "\\")
        if not _parses(text, Dialect(delimiter, quote, quote), complete) and _parses(text, backslash, complete):
            escape = "\\"
        elif consistency < 1.0:
            _, with_backslash = _best_delimiter(text, quote, "\\", complete, prefer_tab)
            if with_backslash > consistency:
                escape = "\\"
    dialect = Dialect(delimiter, quote, escape)
    return _plain_instead(text, dialect, consistency, complete, prefer_tab) or dialect


def quote_error_allows_plain(message: str, delimiter: str) -> bool:
    """Whether a quoting error may be explained by quotes being data. In comma-separated
    files a quote opening a field that is never closed is taken as a real error."""
    return delimiter == "\t" or "unclosed quote" not in message


def _plain_instead(text: str, dialect: Dialect, consistency: float, complete: bool, prefer_tab: bool) -> Dialect | None:
    """The dialect without quoting when the sample refuses to parse with quotes (or their
    fields disagree in number) but every record has the same number of fields without."""
    if dialect.quote is None or dialect.quote not in text:
        return None
    error = _strict_error(text, dialect, complete)
    if error is None and consistency == 1.0:
        return None
    if error is not None and not quote_error_allows_plain(error, dialect.delimiter):
        return None
    delimiter, plain = _best_delimiter(text, None, None, complete, prefer_tab)
    counts = _field_counts(text, Dialect(delimiter, None, None), complete)
    if plain == 1.0 and counts and counts[0] >= 2:
        return Dialect(delimiter, None, None)
    return None


def _strict_error(text: str, dialect: Dialect, complete: bool) -> str | None:
    """The reference parser's complaint about the sample, in the words of ``_parse_error``."""
    reader = csv.reader(io.StringIO(text, newline=""), **dialect.reader_options())
    try:
        for _ in itertools.islice(reader, SNIFF_RECORDS):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return None if not complete else "unclosed quote"
        return str(exc)
    return None


def _parses(text: str, dialect: Dialect, complete: bool) -> bool:
    """Whether the sample reads without error under strict rules (a cut-off last field is fine)."""
    reader = csv.reader(io.StringIO(text, newline=""), **dialect.reader_options())
    try:
        for _ in itertools.islice(reader, SNIFF_RECORDS):
            pass
    except csv.Error as exc:
        return not complete and "unexpected end of data" in str(exc)
    return True


class _HeaderIncomplete(Exception):
    pass


class _HeaderInvalid(Exception):
    pass


def _parse_header(text: str, complete: bool, dialect: Dialect) -> tuple[list[str], int]:
    """Header fields and the number of blank lines before them."""
    reader = csv.reader(io.StringIO(text, newline=""), **dialect.reader_options())
    skip = 0
    try:
        for row in reader:
            if not row:
                skip = reader.line_num
                continue
            if not complete and reader.line_num >= sum(1 for _ in io.StringIO(text, newline="")):
                raise _HeaderIncomplete
            return row, skip
    except csv.Error as exc:
        raise (_HeaderInvalid if complete else _HeaderIncomplete) from exc
    raise _HeaderIncomplete


def read_layout(path: Path, *, prefer_tab: bool, max_columns: int = 0) -> Layout:
    """Dialect and column names of a UTF-8 file (BOM allowed). Raises NotUtf8 if the head is not."""
    nbytes = SNIFF_BYTES
    while True:
        data, complete = _read_head(path, nbytes)
        if not is_utf8_prefix(data, complete=complete):
            raise NotUtf8
        text = decode_prefix(data, UTF8, complete=complete)
        sample = _complete_lines(text, complete)
        dialect = sniff_dialect(sample, complete=complete, prefer_tab=prefer_tab)
        try:
            fields, skip = _parse_header(sample, complete, dialect)
        except _HeaderIncomplete:
            if complete or nbytes >= MAX_HEADER_BYTES:
                raise _HeaderInvalid from None
            nbytes *= 4
            continue
        check_column_count(len(fields), max_columns)
        lines = max(data.count(b"\n"), data.count(b"\r"), 1)
        return Layout(dialect, unique_names(fields), skip, line_bytes=len(data) / lines)


# --------------------------------------------------------------------------- DuckDB path


def _duckdb_copy(
    path: Path,
    out: Path,
    layout: Layout,
    settings: IngestSettings,
    *,
    max_line_size: int | None = None,
    header: bool = True,
) -> int:
    d = layout.dialect
    columns = "{" + ", ".join(f"{sql_string(name)}: 'VARCHAR'" for name in layout.names) + "}"
    # An empty quote and escape switch quoting off.
    quote, escape = d.quote or "", (d.escape or "") if d.quote else ""
    source = (
        f"read_csv({sql_string(str(path))}, auto_detect=false, header={'true' if header else 'false'}, "
        f"skip={layout.skip_lines}, "
        f"delim={sql_string(d.delimiter)}, quote={sql_string(quote)}, escape={sql_string(escape)}, "
        f"strict_mode=true, null_padding=false, allow_quoted_nulls=false, nullstr={sql_string(_NEVER_NULL)}, "
        f"encoding='utf-8', columns={columns}"
    )
    if max_line_size and max_line_size > DUCKDB_MAX_LINE:
        # Only for the normalized copy: a larger limit makes every scan buffer larger.
        source += f", max_line_size={int(max_line_size)}"
    source += ")"
    # Snappy, not zstd: the file is written while the client waits and read by every sync
    # step (it is often the bronze data file as it is); zstd is slower at both.
    sql = (
        f"COPY (SELECT * FROM {source}) TO {sql_string(str(out))} "
        f"(FORMAT parquet, COMPRESSION {LOCAL_PARQUET_CODEC}, "
        f"ROW_GROUP_SIZE {row_group_rows(len(layout.names), layout.line_bytes)}, "
        f"DICTIONARY_SIZE_LIMIT {dictionary_limit(len(layout.names))})"
    )
    with connect(settings) as con:
        return int(con.execute(sql).fetchone()[0])


_DUCKDB_LINE = re.compile(r"CSV Error on Line: (\d+)")


def _arrow_copy(normalized: Path, out: Path, names: list[str]) -> int:
    """A normalized copy (RFC 4180, no header) to Parquet with pyarrow, every value as text."""
    schema = pa.schema([pa.field(name, pa.string()) for name in names])
    block = max(1 << 20, min(64 << 20, WIDE_BATCH_CELLS * 8 // max(1, len(names)) * len(names)))
    reader = pacsv.open_csv(
        normalized,
        read_options=pacsv.ReadOptions(column_names=names, block_size=block),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=schema, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    rows = 0
    with pq.ParquetWriter(out, schema, compression=LOCAL_PARQUET_CODEC) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


# --------------------------------------------------------------------------- Python reference path


def _quote_open_line(path: Path, dialect: Dialect, start_line: int) -> int:
    """Line where the quoted field that broke the record starting at ``start_line`` was opened."""
    q, d, e = dialect.quote, dialect.delimiter, dialect.escape
    if q is None or e is None:
        return start_line
    special = re.compile("[" + re.escape(q + e) + "]")
    opened = start_line
    state = "start"  # start (of a field) | quoted | after (a closing quote)
    with open_text(path, UTF8) as fh:
        for lineno, line in enumerate(fh, 1):
            if lineno < start_line:
                continue
            i, n = 0, len(line)
            while i < n:
                if state == "quoted":
                    m = special.search(line, i)
                    if m is None:
                        break
                    j = m.start()
                    if e != q and line[j] == e:
                        i = j + 2
                    elif e == q and j + 1 < n and line[j + 1] == q:
                        i = j + 2
                    else:
                        state, i = "after", j + 1
                elif state == "after":
                    if line[i] == d:
                        state, i = "start", i + 1
                    else:
                        return opened  # end of record, or text after the closing quote
                else:
                    if state == "start" and line[i] == q:
                        state, opened, i = "quoted", lineno, i + 1
                        continue
                    j = line.find(d, i)
                    if j < 0:
                        return opened
                    state, i = "start", j + 1
            if state != "quoted":
                return opened
    return opened


def _parse_error(path: Path, dialect: Dialect, start_line: int, current_line: int, exc: csv.Error) -> IngestError:
    text = str(exc)
    opened = _quote_open_line(path, dialect, start_line)
    if "unexpected end of data" in text:
        return malformed(opened, "unclosed quote: the quoted field that starts on this line is never closed")
    if "field larger than field limit" in text:
        return malformed(
            opened, f"a field is larger than {FIELD_LIMIT >> 20} MB; is a quote left unclosed on this line?"
        )
    if "expected after" in text:
        if opened == current_line:
            return malformed(opened, f"unexpected character after a closing quote ({text})")
        return malformed(
            opened,
            f"the quoted field that starts on this line ends on line {current_line} "
            f"and is followed by unexpected characters; is a quote unbalanced?",
            end_line=current_line,
        )
    return malformed(start_line, text)


def _reference_pass(
    path: Path,
    layout: Layout,
    normalized: Path | None,
    *,
    stop_after: int | None = None,
    header_only: bool = False,
    quarantine: Quarantine | None = None,
) -> tuple[int, int]:
    """Parse with the reference parser, raising ``malformed_csv`` at the first problem
    (or, with ``quarantine``, setting bad records aside there).

    With ``normalized``, valid rows are rewritten there as plain RFC 4180 CSV (comma, every
    field quoted, LF line endings, no header) that DuckDB's strict reader always accepts. ``stop_after``
    ends a validation-only pass after that many records, counted the way DuckDB numbers its
    error lines (blank lines and the header included). Returns the data row count and the
    longest row in characters.
    """
    ncols = len(layout.names)
    rows = records = longest = 0
    header_seen = False
    out = open(normalized, "w", encoding=UTF8, newline="") if normalized else None
    try:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n") if out else None
        with open_text(path, UTF8) as fh:
            recorder = LineRecorder(fh) if quarantine is not None else None
            reader = csv.reader(recorder if recorder is not None else fh, **layout.dialect.reader_options())
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if quarantine is None or not header_seen:
                        raise _parse_error(path, layout.dialect, start, reader.line_num, exc) from None
                    quarantine.add(start, f"cannot be parsed: {exc}", recorder.take() if recorder else "")
                    continue
                records += 1
                raw = recorder.take() if recorder is not None else ""
                if row:
                    if not header_seen:
                        header_seen = True
                        if header_only:
                            break
                    elif len(row) != ncols:
                        if quarantine is not None:
                            quarantine.add(start, f"expected {ncols} fields, found {len(row)}", raw)
                            continue
                        raise malformed(
                            start,
                            f"expected {ncols} fields, found {len(row)}",
                            expected_fields=ncols,
                            found_fields=len(row),
                        )
                    else:
                        rows += 1
                        if writer:
                            writer.writerow(row)
                            size = sum(map(len, row))
                            if size > longest:
                                longest = size
                if stop_after is not None and records >= stop_after:
                    break
    except UnicodeDecodeError:
        raise NotUtf8 from None
    finally:
        if out:
            out.close()
    return rows, longest


def _header_error(path: Path, dialect: Dialect) -> IngestError:
    """The header could not be parsed: find and describe the problem with the reference parser."""
    try:
        _reference_pass(path, Layout(dialect, [], 0), None, header_only=True)
    except IngestError as exc:
        return exc
    return malformed(1, "the header row could not be read")


def _count_mismatch(reference: int, converted: int) -> IngestError:
    return IngestError(
        f"the file could not be converted without losing rows: the reference parser reads {reference} rows, "
        f"the converter {converted}",
        code="row_count_mismatch",
        status=400,
        details={"reference_rows": reference, "converted_rows": converted},
    )


def _via_reference(
    path: Path,
    out: Path,
    layout: Layout,
    settings: IngestSettings,
    work_dir: Path,
    quarantine: Quarantine | None = None,
) -> int:
    """Validate with the reference parser and convert its normalized copy of the rows."""
    with scratch_file(work_dir, ".normalized.csv") as normalized:
        rows, longest = _reference_pass(path, layout, normalized, quarantine=quarantine)
        if quarantine is not None:
            quarantine.check_good_rows(rows)
        if len(layout.names) > DUCKDB_MAX_COLUMNS:
            written = _arrow_copy(normalized, out, layout.names)
        else:
            plain = Layout(Dialect(","), layout.names, 0, line_bytes=layout.line_bytes)
            # Room for 4 bytes per character, the quotes and the delimiters.
            max_line = 4 * longest + 3 * len(layout.names) + 16
            written = _duckdb_copy(normalized, out, plain, settings, max_line_size=max_line, header=False)
    if written != rows:
        raise _count_mismatch(rows, written)
    return rows


def _duckdb_checked(path: Path, out: Path, layout: Layout, settings: IngestSettings) -> int | None:
    """DuckDB's conversion and its row count, or None when the reference parser reads
    another number of rows.

    The lines are counted while DuckDB converts (it releases the GIL). Records never
    outnumber non-blank lines, so DuckDB's rows plus the header matching the lines (those
    blank at the start and the end taken off) confirm the conversion; otherwise the blank
    lines between records are counted, and only when DuckDB's rows miss those too does the
    reference parser run.
    """
    with ThreadPoolExecutor(1) as pool:
        lines = pool.submit(count_lines, path)
        rows = _duckdb_copy(path, out, layout, settings)
        bound = lines.result().nonblank_bound
    if rows + 1 == bound:
        return rows
    nonblank = count_nonblank_lines(path) if rows + 1 < bound else None
    if rows + 1 == nonblank:
        return rows
    d = layout.dialect
    records = reference_records(path, d.reader_options(), d.quote, d.escape, nonblank=nonblank)
    return rows if rows == max(0, records - 1) else None


def _convert_layout(path: Path, out: Path, layout: Layout, settings: IngestSettings, work_dir: Path) -> int:
    if len(layout.names) > DUCKDB_MAX_COLUMNS:
        return _via_reference(path, out, layout, settings, work_dir)
    try:
        rows = _duckdb_checked(path, out, layout, settings)
    except duckdb.InvalidInputException as exc:
        message = str(exc)
        if "Invalid unicode" in message or "not utf-8 encoded" in message:
            raise NotUtf8 from None
        remove_quietly(out)
        line = _DUCKDB_LINE.search(message)
        if line:
            # Usually a real error: find its exact physical line, reading no further than DuckDB did.
            _reference_pass(path, layout, None, stop_after=int(line.group(1)))
    else:
        if rows is not None:
            return rows
        remove_quietly(out)
    # DuckDB's strict reader refused a file the reference parser accepts so far (mixed line
    # endings, a very long line...), or read another number of rows (a header with a quoted
    # line break in a CRLF file): the reference parser's rows are stored.
    return _via_reference(path, out, layout, settings, work_dir)


def _plain_layout(path: Path, layout: Layout, error: IngestError, max_columns: int) -> Layout | None:
    """The layout without quoting, if the quoting ``error`` may come from quotes that are data
    and every record of the file has the header's number of fields without quoting."""
    d = layout.dialect
    if d.quote is None or not quote_error_allows_plain(error.message, d.delimiter):
        return None
    plain = Dialect(d.delimiter, None, None)
    data, complete = _read_head(path, SNIFF_BYTES)
    sample = _complete_lines(decode_prefix(data, UTF8, complete=complete), complete)
    try:
        fields, skip = _parse_header(sample, complete, plain)
    except (_HeaderIncomplete, _HeaderInvalid):
        return None
    check_column_count(len(fields), max_columns)
    candidate = Layout(plain, unique_names(fields), skip, line_bytes=layout.line_bytes)
    try:
        _reference_pass(path, candidate, None)
    except IngestError:
        return None
    return candidate


def _convert_utf8(
    path: Path,
    out: Path,
    *,
    prefer_tab: bool,
    settings: IngestSettings,
    work_dir: Path,
    quarantine: Quarantine | None = None,
) -> tuple[Layout, int]:
    try:
        layout = read_layout(path, prefer_tab=prefer_tab, max_columns=settings.max_columns)
    except _HeaderInvalid:
        data, complete = _read_head(path, SNIFF_BYTES)
        text = decode_prefix(data, UTF8, complete=complete)
        raise _header_error(path, sniff_dialect(text, complete=complete, prefer_tab=prefer_tab)) from None
    try:
        return layout, _convert_layout(path, out, layout, settings, work_dir)
    except IngestError as exc:
        if exc.code != "malformed_csv":
            raise
        remove_quietly(out)
        plain = _plain_layout(path, layout, exc, settings.max_columns)
        if plain is not None:
            return plain, _convert_layout(path, out, plain, settings, work_dir)
        if quarantine is None:
            raise
    # Bad rows to set aside: the quoting stays as found, the good rows are the reference parser's.
    return layout, _via_reference(path, out, layout, settings, work_dir, quarantine)


def convert_delimited(
    src: Path,
    out: Path,
    *,
    extension: str,
    settings: IngestSettings,
    work_dir: Path,
    encoding_label: str | None = None,
    quarantine: Quarantine | None = None,
) -> ConvertResult:
    prefer_tab = extension in (".tsv", ".tab")
    head, complete = _read_head(src, SNIFF_BYTES)
    encoding = UTF8 if is_utf8_prefix(head, complete=complete) else CP1252

    def convert(path: Path):
        return _convert_utf8(
            path, out, prefer_tab=prefer_tab, settings=settings, work_dir=work_dir, quarantine=quarantine
        )

    with scratch_file(work_dir, ".utf8.csv") as utf8_copy:
        if encoding == CP1252:
            transcode_cp1252_to_utf8(src, utf8_copy)
            layout, rows = convert(utf8_copy)
        else:
            try:
                layout, rows = convert(src)
            except NotUtf8:
                remove_quietly(out)
                if quarantine is not None:
                    quarantine.rows.clear()  # found again in the transcoded copy
                encoding = CP1252
                transcode_cp1252_to_utf8(src, utf8_copy)
                layout, rows = convert(utf8_copy)
    # A one-column file has no delimiter to speak of: the file name decides its label.
    tab = layout.dialect.delimiter == "\t" if len(layout.names) > 1 else prefer_tab
    if encoding_label is None:
        encoding_label = "windows-1252" if encoding == CP1252 else ("utf-8-sig" if head.startswith(UTF8_BOM) else UTF8)
    return ConvertResult(
        source_format="tsv" if tab else "csv",
        row_count=rows,
        columns=[SourceColumn(name, "string") for name in layout.names],
        dialect=layout.describe(encoding_label),
    )
