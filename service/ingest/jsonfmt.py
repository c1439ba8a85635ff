"""JSON (an array of objects), NDJSON (one object per line) and API records to Parquet.

Two streaming passes over the file: the first learns the columns (in order of first
appearance) and the JSON types each one holds, the second writes batches with the final
schema. Only a chunk of text and one batch of objects are held in memory at a time.

Column types: integers -> int64, numbers (integers and floats mixed) -> float64, booleans ->
bool, strings -> string (never parsed further), objects/arrays -> their JSON text (type
"json"). A column mixing other JSON types keeps the JSON text of every value as a string,
so no value is lost or coerced.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.errors import IngestError
from service.ingest.badrows import Quarantine
from service.ingest.columns import DEFAULT_MAX_COLUMNS, check_column_count, unique_names
from service.ingest.detect import NDJSON_EXTENSIONS
from service.ingest.encoding import CHUNK_SIZE, CP1252, UTF8, open_text
from service.ingest.model import LOCAL_PARQUET_CODEC, ConvertResult, SourceColumn

BATCH_ROWS = 65_536
# Values per written batch: wide files get fewer rows per batch, so a batch of 4,096
# columns stays as small in memory as one of 64.
BATCH_CELLS = 4 << 20

# Deepest nesting accepted, counting the document's own array or object as level 1.
# Python's parser recurses per level; deeper documents are refused before it is called.
MAX_JSON_DEPTH = 64

# Kinds of JSON values seen in a column.
_NULL, _INT, _FLOAT, _BOOL, _STR, _NESTED, _BIGINT = "null", "int", "float", "bool", "str", "nested", "bigint"
_KIND_OF_TYPE = {
    type(None): _NULL,
    bool: _BOOL,
    int: _INT,
    float: _FLOAT,
    str: _STR,
    dict: _NESTED,
    list: _NESTED,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT_ONLY = frozenset({int, type(None)})

_MIXED = "mixed"  # stored as the JSON text of each value; reported as "string"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def invalid_json(message: str, **details) -> IngestError:
    return IngestError(message, code="invalid_json", status=400, details=details)


def not_an_array() -> IngestError:
    return invalid_json("JSON must be an array of objects.")


def too_deep(where: str = "") -> IngestError:
    return IngestError(
        f"{where}JSON is nested deeper than {MAX_JSON_DEPTH} levels, the limit",
        code="json_too_deep",
        status=400,
        details={"max_depth": MAX_JSON_DEPTH},
    )


# A string token (complete); the unrolled form keeps the regex engine linear and fast.
_STRING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def text_depth(text: str) -> int:
    """Deepest bracket nesting of complete JSON text (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return MAX_JSON_DEPTH  # too few openings to go deeper: skip the scan
    brackets = _BRACKET.findall(_STRING_TOKEN.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def value_depth(value, base: int = 0) -> int:
    """Deepest nesting of a parsed value (iterative: values may be deep), at most MAX_JSON_DEPTH + 1."""
    deepest = base
    stack = [(value, base)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return depth
            deepest = max(deepest, depth)
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


class _InvalidConstant(ValueError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _reject_constant(name: str):
    raise _InvalidConstant(name)


def _decoder() -> json.JSONDecoder:
    # NaN and Infinity are accepted by Python but are not JSON.
    return json.JSONDecoder(parse_constant=_reject_constant)


def _all_objects(values: list) -> bool:
    return bool(values) and set(map(type, values)) == {dict}


# --------------------------------------------------------------------------- readers


class _ArrayReader:
    """Yields lists of the objects of a top-level JSON array, reading the text in chunks.

    Fast path: parse everything up to the last ``},`` of the buffer in one call. A cut that is
    not between two elements never parses (it ends inside a string or an open object), and
    then the elements are read one by one, which also gives exact error locations.
    """

    def __init__(self, fh, *, base_depth: int = 1, not_object=None):
        self.fh = fh
        self.base_depth = base_depth  # nesting of the elements' container
        self.not_object = not_object  # error for an element that is not an object (index, message)
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line and column of buf[0]
        self.col_base = 1
        self.slow_until = 0  # buffer offset up to which elements are read one by one
        self.decoder = _decoder()

    def _fill(self, at_least: int = 0) -> bool:
        data = self.fh.read(max(CHUNK_SIZE, at_least))
        if not data:
            self.eof = True
            return False
        if self.pos:
            newlines = self.buf.count("\n", 0, self.pos)
            if newlines:
                self.line_base += newlines
                self.col_base = self.pos - self.buf.rfind("\n", 0, self.pos)
            else:
                self.col_base += self.pos
            self.buf = self.buf[self.pos :]
            self.slow_until = max(0, self.slow_until - self.pos)
            self.pos = 0
        self.buf += data
        return True

    def location(self, pos: int) -> tuple[int, int]:
        newlines = self.buf.count("\n", 0, pos)
        if newlines:
            return self.line_base + newlines, pos - self.buf.rfind("\n", 0, pos)
        return self.line_base, self.col_base + pos

    def error(self, pos: int, message: str) -> IngestError:
        line, column = self.location(pos)
        return invalid_json(f"line {line}, column {column}: {message}", line=line, column=column)

    def _peek(self) -> str:
        while True:
            # The pattern matches the empty string too, so there is always a match.
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _value(self):
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Truncated by the chunk edge rather than invalid: read more (doubling) and retry.
                truncated = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - 64
                if not self.eof and truncated and self._fill(len(self.buf) - self.pos):
                    continue
                raise self.error(exc.pos, exc.msg) from None
            except _InvalidConstant as exc:
                raise self.error(self.pos, f"{exc.name} is not valid JSON") from None
            except RecursionError:
                raise self._too_deep(self.pos) from None
            except ValueError as exc:  # e.g. an integer of more digits than Python converts
                raise self.error(self.pos, str(exc)) from None
            if end == len(self.buf) and not self.eof and self._fill(len(self.buf) - self.pos):
                continue  # a number may go on in the next chunk
            if value_depth(value, self.base_depth) > MAX_JSON_DEPTH:
                raise self._too_deep(self.pos)
            self.pos = end
            return value

    def _too_deep(self, pos: int) -> IngestError:
        line, column = self.location(pos)
        error = too_deep(f"line {line}, column {column}: ")
        error.details.update(line=line, column=column)
        return error

    def _many(self) -> list[dict] | None:
        if self.pos < self.slow_until:
            return None
        if len(self.buf) - self.pos < CHUNK_SIZE // 2 and not self.eof:
            self._fill()
        # Element separators as writers emit them: "}," or "}\n," (comma-first style).
        cut = max(self.buf.rfind("},", self.pos), self.buf.rfind("}\n,", self.pos))
        if cut < 0:
            self.slow_until = len(self.buf)  # nothing to try before more text arrives
            return None
        text = self.buf[self.pos : cut + 1]
        values = None
        # Too deep (or not elements after all): the slow path reads one by one and says where.
        if text_depth(text) + self.base_depth <= MAX_JSON_DEPTH:
            try:
                values = self.decoder.decode("[" + text + "]")
            except ValueError:
                values = None
        if not values or not _all_objects(values):
            self.slow_until = cut + 1
            return None
        self.pos = cut + 1
        return values

    def batches(self, *, nested: bool = False) -> Iterator[list[dict]]:
        """The array's objects in lists; ``nested``: the array is a value inside the document,
        so the reader stops after its closing bracket."""
        if self._peek() != "[":
            raise not_an_array()
        self.pos += 1
        if self._peek() == "]":
            self.pos += 1
            if not nested:
                self._expect_end()
            return
        index = 0
        while True:
            values = self._many()
            if values is None:
                start = self.pos
                value = self._value()
                if not isinstance(value, dict):
                    if self.not_object is not None:
                        raise self.not_object(index)
                    raise self.error(
                        start, f"array element [{index}] is not an object; JSON must be an array of objects"
                    )
                values = [value]
            index += len(values)
            yield values
            c = self._peek()
            if c == ",":
                self.pos += 1
                self._peek()
                continue
            if c == "]":
                self.pos += 1
                if not nested:
                    self._expect_end()
                return
            if c == "":
                raise self.error(self.pos, "unexpected end of file: the array is not closed")
            raise self.error(self.pos, "Expecting ',' delimiter")

    def _expect_end(self) -> None:
        if self._peek() != "":
            raise self.error(self.pos, "unexpected content after the end of the array")


class _Wrapped(Exception):
    """The file is one JSON object rather than NDJSON records: its records are inside it."""


def _ndjson_batches(fh, *, extension: str, quarantine: Quarantine | None = None) -> Iterator[list[dict]]:
    decoder = _decoder()
    lineno = 0
    count = 0
    while lines := fh.readlines(CHUNK_SIZE):
        first = lineno + 1
        lineno += len(lines)
        texts = [line for line in lines if line.strip(" \t\r\n")]
        if not texts:
            continue
        # One parser call for the whole chunk; line by line only to explain a failure.
        joined = "[" + ",".join(texts) + "]"
        values = None
        if text_depth(joined) <= MAX_JSON_DEPTH + 1:
            try:
                values = decoder.decode(joined)
            except ValueError:
                values = None
        if values is None or len(values) != len(texts) or not _all_objects(values):
            values = _ndjson_lines(decoder, lines, first, first_record=count == 0, quarantine=quarantine)
        count += len(values)
        yield values
    if count == 1 and extension not in NDJSON_EXTENSIONS:
        # One object alone is a JSON document, not a list of records (unless named .ndjson/.jsonl).
        raise _Wrapped


def _ndjson_lines(
    decoder, lines: list[str], first: int, *, first_record: bool, quarantine: Quarantine | None = None
) -> list[dict]:
    """The objects of ``lines``; a bad line raises, or goes to ``quarantine`` once a good one was read."""
    values: list[dict] = []
    for lineno, line in enumerate(lines, first):
        try:
            values.append(_ndjson_line(decoder, line, lineno, first_record=first_record and not values))
        except IngestError as exc:
            if quarantine is None or exc.code == "json_too_deep":
                raise
            quarantine.add(lineno, exc.message, line.rstrip("\r\n"))
        except _Blank:
            continue
    return values


class _Blank(Exception):
    """A line of only whitespace: no record, and no error."""


def _ndjson_line(decoder, line: str, lineno: int, *, first_record: bool) -> dict:
    text = line.strip(" \t\r\n")
    if not text:
        raise _Blank
    if text_depth(text) > MAX_JSON_DEPTH:
        error = too_deep(f"line {lineno}: ")
        error.details["line"] = lineno
        raise error
    try:
        value, end = decoder.raw_decode(text)
        if end != len(text):
            raise json.JSONDecodeError("Extra data after the object", text, end)
    except json.JSONDecodeError as exc:
        if first_record and text.startswith("{"):
            raise _Wrapped from None  # a pretty-printed object: read as one document
        column = exc.pos + len(line) - len(line.lstrip(" \t\r\n")) + 1
        raise invalid_json(f"line {lineno}: {exc.msg} (column {column})", line=lineno, column=column) from None
    except _InvalidConstant as exc:
        raise invalid_json(f"line {lineno}: {exc.name} is not valid JSON", line=lineno) from None
    except ValueError as exc:
        raise invalid_json(f"line {lineno}: {exc}", line=lineno) from None
    if not isinstance(value, dict):
        raise invalid_json(f"line {lineno}: expected a JSON object (NDJSON needs one object per line)", line=lineno)
    return value


# --------------------------------------------------------------------------- records inside an object


def _members(reader: _ArrayReader) -> Iterator[str]:
    """The keys of the object at the reader, each yielded with the reader at its value,
    which the caller reads (or skips) before asking for the next key."""
    if reader._peek() != "{":
        raise invalid_json("expected a JSON object")
    reader.pos += 1
    if reader._peek() == "}":
        reader.pos += 1
        return
    seen: set[str] = set()
    while True:
        reader._peek()
        start = reader.pos
        key = reader._value()
        if not isinstance(key, str):
            raise reader.error(start, "Expecting property name enclosed in double quotes")
        if key in seen:
            raise reader.error(start, f"the member {key!r} appears twice")
        seen.add(key)
        if reader._peek() != ":":
            raise reader.error(reader.pos, "Expecting ':' delimiter")
        reader.pos += 1
        reader._peek()
        yield key
        c = reader._peek()
        if c == ",":
            reader.pos += 1
            continue
        if c == "}":
            reader.pos += 1
            return
        if c == "":
            raise reader.error(reader.pos, "unexpected end of file: the object is not closed")
        raise reader.error(reader.pos, "Expecting ',' delimiter")


def _skip_value(reader: _ArrayReader) -> bool:
    """Read past the value at the reader, an array one element at a time; whether it is a
    non-empty array of objects."""
    if reader._peek() != "[":
        reader._value()
        return False
    reader.pos += 1
    if reader._peek() == "]":
        reader.pos += 1
        return False
    objects = True
    while True:
        reader._peek()
        objects = isinstance(reader._value(), dict) and objects
        c = reader._peek()
        if c == ",":
            reader.pos += 1
            continue
        if c == "]":
            reader.pos += 1
            return objects
        raise reader.error(reader.pos, "Expecting ',' delimiter" if c else "unexpected end of file")


def _find_records_path(fh) -> str:
    """The one top-level member that is an array of objects."""
    reader = _ArrayReader(fh)
    found = [key for key in _members(reader) if _skip_value(reader)]
    reader._expect_end()
    if len(found) == 1:
        return found[0]
    which = f" ({', '.join(map(repr, found[:5]))})" if found else ""
    raise invalid_json(
        f"JSON must be an array of objects, or an object with one member that is an array of objects; "
        f"this object has {len(found)}{which}: name one with records_path",
        candidates=found[:20],
    )


def path_not_found(path: str, what: str) -> IngestError:
    return IngestError(
        f"records_path {path!r}: {what}", code="records_path_not_found", status=400, details={"records_path": path}
    )


def _batches_at(fh, path: str) -> Iterator[list[dict]]:
    """The records of the array at the dotted ``path`` inside the document's object."""
    segments = path.split(".")
    reader = _ArrayReader(fh, base_depth=len(segments) + 1)
    if reader._peek() != "{":
        raise path_not_found(path, "the document is not a JSON object")
    yield from _descend(reader, segments, path)
    reader._expect_end()


def _descend(reader: _ArrayReader, segments: list[str], path: str) -> Iterator[list[dict]]:
    found = False
    for key in _members(reader):
        if found or key != segments[0]:
            _skip_value(reader)
            continue
        found = True
        if len(segments) > 1:
            if reader._peek() != "{":
                raise path_not_found(path, f"{key!r} is not an object")
            yield from _descend(reader, segments[1:], path)
        elif reader._peek() != "[":
            raise path_not_found(path, f"{key!r} is not an array of objects")
        else:
            yield from reader.batches(nested=True)
    if not found:
        raise path_not_found(path, f"no member {segments[0]!r}")


def _rebatch(batches: Iterable[list[dict]], size: int = BATCH_ROWS) -> Iterator[list[dict]]:
    pending: list[dict] = []
    for batch in batches:
        pending.extend(batch)
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


# --------------------------------------------------------------------------- schema and writing


def _column(batch: list[dict], key: str) -> list:
    return list(map(dict.get, batch, itertools.repeat(key)))


class _Schema:
    def __init__(self, max_columns: int = DEFAULT_MAX_COLUMNS):
        self.kinds: dict[str, set[str]] = {}
        self.rows = 0
        self.max_columns = max_columns

    def observe(self, batch: list[dict]) -> None:
        self.rows += len(batch)
        keys = dict.fromkeys(itertools.chain.from_iterable(batch))
        new = sum(1 for key in keys if key not in self.kinds)
        check_column_count(len(self.kinds) + new, self.max_columns, at_least=True)
        cells = sum(map(len, batch))
        if len(keys) * len(batch) <= 4 * cells + BATCH_ROWS:
            # Dense records: a column at a time, at C speed.
            for key in keys:
                self._observe_column(key, _column(batch, key))
            return
        # Sparse records (many keys, few per record): each record is walked once, so the
        # work grows with the values, not with keys x records.
        columns: dict[str, list] = {}
        for record in batch:
            for key, value in record.items():
                columns.setdefault(key, []).append(value)
        for key, values in columns.items():
            self._observe_column(key, values)  # absent values would add only "null"

    def _observe_column(self, key: str, values: list) -> None:
        types = set(map(type, values))
        kinds = self.kinds.setdefault(key, set())
        for t in types:
            kinds.add(_KIND_OF_TYPE.get(t) or (_NESTED if issubclass(t, (dict, list)) else _STR))
        if int in types:
            ints = list(filter(None, values) if types <= _INT_ONLY else (v for v in values if type(v) is int))
            if ints and (max(ints) > _INT64_MAX or min(ints) < _INT64_MIN):
                kinds.add(_BIGINT)

    def column_types(self) -> dict[str, str]:
        return {key: _column_type(kinds) for key, kinds in self.kinds.items()}


def _column_type(kinds: set[str]) -> str:
    kinds = kinds - {_NULL}
    if not kinds or kinds == {_STR}:
        return "string"
    if kinds == {_INT}:
        return "integer"
    if kinds <= {_INT, _FLOAT}:
        return "double"
    if kinds == {_BOOL}:
        return "boolean"
    if kinds == {_NESTED}:
        return "json"
    return _MIXED  # includes integers beyond int64, which no numeric column could hold exactly


_ARROW_TYPES = {"integer": pa.int64(), "double": pa.float64(), "boolean": pa.bool_()}


def _to_array(values: list, kind: str) -> pa.Array:
    if values.count(None) == len(values):  # common in sparse records
        return pa.nulls(len(values), _ARROW_TYPES.get(kind, pa.string()))
    if kind in _ARROW_TYPES:
        return pa.array(values, type=_ARROW_TYPES[kind])
    if kind in ("json", _MIXED):
        values = [None if v is None else _dumps(v) for v in values]
    return pa.array(values, type=pa.string())


def _write(batches: Iterable[list[dict]], out: Path, column_types: dict[str, str]) -> int:
    keys = list(column_types)
    kinds = [column_types[k] for k in keys]
    names = unique_names(keys)
    schema = pa.schema([pa.field(n, _ARROW_TYPES.get(kind, pa.string())) for n, kind in zip(names, kinds)])
    rows = 0
    batch_rows = max(1, min(BATCH_ROWS, BATCH_CELLS // max(1, len(keys))))
    with pq.ParquetWriter(out, schema, compression=LOCAL_PARQUET_CODEC) as writer:
        for batch in _rebatch(batches, batch_rows):
            arrays = [_to_array(_column(batch, key), kind) for key, kind in zip(keys, kinds)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += len(batch)
    return rows


def _result(source_format: str, rows: int, column_types: dict[str, str]) -> ConvertResult:
    names = unique_names(list(column_types))
    types = ["string" if t == _MIXED else t for t in column_types.values()]
    return ConvertResult(
        source_format=source_format,
        row_count=rows,
        columns=[SourceColumn(n, t) for n, t in zip(names, types)],
    )


def _check_shape(schema: _Schema, column_types: dict[str, str], what: str) -> None:
    if schema.rows == 0:
        raise IngestError(f"{what} contains no records.", code="empty_file", status=400)
    if not column_types:
        raise IngestError(f"{what} has records but no fields.", code="empty_file", status=400)


# --------------------------------------------------------------------------- entry points


def _scan(batches: Iterable[list[dict]], max_columns: int) -> _Schema:
    schema = _Schema(max_columns)
    for batch in _rebatch(batches):
        schema.observe(batch)
    return schema


def convert_json_file(
    src: Path,
    out: Path,
    *,
    ndjson: bool,
    extension: str,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    records_path: str | None = None,
    quarantine: Quarantine | None = None,
) -> ConvertResult:
    """A JSON array of objects, NDJSON, or (``records_path``, or found) the array of objects
    inside a JSON object, such as ``{"items": [...]}``. With ``quarantine``, NDJSON lines
    that are not objects are set aside there (a JSON document has no rows to skip)."""
    path = records_path

    def batches(encoding: str, sink: Quarantine | None = None) -> Iterator[list[dict]]:
        with open_text(src, encoding) as fh:
            if path is not None:
                yield from _batches_at(fh, path)
            elif ndjson:
                yield from _ndjson_batches(fh, extension=extension, quarantine=sink)
            else:
                yield from _ArrayReader(fh).batches()

    def scan() -> tuple[str, _Schema]:
        # Bad lines are collected on the first pass; the writing pass skips them again.
        for encoding in (UTF8, CP1252):
            if quarantine is not None:
                quarantine.rows.clear()
            try:
                return encoding, _scan(batches(encoding, quarantine), max_columns)
            except UnicodeDecodeError:
                if encoding == CP1252:
                    raise
        raise AssertionError("unreachable")

    try:
        encoding, schema = scan()
    except _Wrapped:
        with open_text(src, UTF8) as fh:
            try:
                path = _find_records_path(fh)
            except UnicodeDecodeError:
                path = None
        if path is None:
            with open_text(src, CP1252) as fh:
                path = _find_records_path(fh)
        encoding, schema = scan()
    if quarantine is not None:
        quarantine.check_good_rows(schema.rows)
    column_types = schema.column_types()
    _check_shape(schema, column_types, "The file")
    written = _write(
        batches(encoding, Quarantine(limit=len(quarantine.rows)) if quarantine else None), out, column_types
    )
    source_format = "ndjson" if ndjson and path is None else "json"
    return dataclasses.replace(_result(source_format, written, column_types), records_path=path)


def convert_record_list(records, out: Path, *, max_columns: int = DEFAULT_MAX_COLUMNS) -> ConvertResult:
    if not isinstance(records, list):
        raise invalid_json("records must be an array of objects.")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise invalid_json(f"records[{index}] is not an object.", index=index)
    schema = _Schema(max_columns)
    for start in range(0, len(records), BATCH_ROWS):
        schema.observe(records[start : start + BATCH_ROWS])
    column_types = schema.column_types()
    _check_shape(schema, column_types, "The record list")
    batches = (records[start : start + BATCH_ROWS] for start in range(0, len(records), BATCH_ROWS))
    written = _write(batches, out, column_types)
    return _result("json", written, column_types)


# --------------------------------------------------------------------------- API bodies

RECORDS_KEY = "records"


def _record_not_object(index: int) -> IngestError:
    return IngestError(
        f"invalid request: records: element {index} is not an object",
        code="validation_error",
        status=422,
        details={"json": {RECORDS_KEY: {str(index): ["Not a valid mapping type."]}}},
    )


def _body_batches(fh, fields: dict) -> Iterator[list[dict]]:
    """The records of a body ``{"name": ..., "records": [...], ...}`` in lists, read as a
    stream; every other member is put into ``fields``, and ``fields["records"]`` becomes
    the number of records (or the value itself when it is not an array)."""
    reader = _ArrayReader(fh, base_depth=2, not_object=_record_not_object)
    if reader._peek() != "{":
        raise invalid_json('the JSON body must be an object: {"name": ..., "records": [...]}')
    for key in _members(reader):
        if key == RECORDS_KEY and reader._peek() == "[":
            fields[key] = 0
            for batch in reader.batches(nested=True):
                fields[key] += len(batch)
                yield batch
        else:
            fields[key] = reader._value()
    reader._expect_end()


def convert_json_body(
    src: Path, out: Path, *, validate: Callable[[dict], dict], max_columns: int = DEFAULT_MAX_COLUMNS
) -> tuple[dict, ConvertResult]:
    """Convert the records of an API body spooled at ``src``, reading it twice as a stream
    and never holding more than a batch of records.

    ``validate`` gets the body's other members (``records`` replaced by a list of as many
    empty objects, at most one) after the first pass and returns them checked; its
    error stops the conversion before anything is written.
    """

    def batches(fields: dict) -> Iterator[list[dict]]:
        try:
            with open_text(src, UTF8) as fh:
                yield from _body_batches(fh, fields)
        except UnicodeDecodeError as exc:
            raise invalid_json(f"the body is not valid UTF-8 (byte {exc.start})") from None

    fields: dict = {}
    schema = _scan(batches(fields), max_columns)
    summary = dict(fields)
    if isinstance(summary.get(RECORDS_KEY), int):
        summary[RECORDS_KEY] = [{}] * min(1, summary[RECORDS_KEY])
    checked = validate(summary)
    column_types = schema.column_types()
    _check_shape(schema, column_types, "The record list")
    written = _write(batches({}), out, column_types)
    return checked, _result("json", written, column_types)
