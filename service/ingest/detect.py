"""Which reader an upload needs, from its first bytes and (as a hint only) its file name."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from service.errors import IngestError
from service.ingest.encoding import CHUNK_SIZE, strip_bom
from service.ingest.excel import is_workbook
from service.ingest.model import SUPPORTED_FORMATS

HEAD_SIZE = 64 * 1024

DELIMITED = "delimited"
JSON_ARRAY = "json"
NDJSON = "ndjson"
PARQUET = "parquet"
EXCEL = "xlsx"

PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
DELIMITED_EXTENSIONS = frozenset({".csv", ".tsv", ".tab", ".txt", ".psv"})
JSON_EXTENSIONS = frozenset({".json", ".ndjson", ".jsonl"})
NDJSON_EXTENSIONS = frozenset({".ndjson", ".jsonl"})

_WHITESPACE = b" \t\r\n\f\v"

# Signatures of common non-tabular uploads, for a clearer message than "binary content".
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive or an Office document other than .xlsx"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document such as .xls"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"(\xb5/\xfd", "a Zstandard archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1", "an Arrow IPC file"),
    (b"Obj\x01", "an Avro file"),
    (b"\xff\xfe", "UTF-16 text (save it as UTF-8)"),
    (b"\xfe\xff", "UTF-16 text (save it as UTF-8)"),
)

# Control bytes that never occur in text exports (tab, LF, CR, FF and ESC excluded).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def extension_of(file_name: str | None) -> str:
    """Lower-case extension of the client's file name; the name is never used as a path."""
    if not file_name:
        return ""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    return PurePosixPath(base).suffix.lower()


def unsupported_format(what: str | None = None) -> IngestError:
    found = f" The upload looks like {what}." if what else ""
    return IngestError(
        f"Unsupported file format.{found} Supported formats: CSV, TSV, JSON (an array of objects, or an "
        "object holding one), NDJSON (one object per line), Parquet and Excel (.xlsx); CSV, TSV, JSON and "
        "NDJSON may be gzip or Zstandard compressed.",
        code="unsupported_format",
        status=415,
        details={"supported_formats": list(SUPPORTED_FORMATS)},
    )


def empty_file() -> IngestError:
    return IngestError("The file is empty.", code="empty_file", status=400)


def binary_kind(head: bytes) -> str | None:
    """A description of the content if it is not text, else None."""
    for magic, label in _SIGNATURES:
        if head.startswith(magic):
            return label
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "a bzip2 archive"
    if b"\x00" in head:
        return "binary content"
    sample = head[:8192]
    if sample and len(sample.translate(None, _CONTROL)) < len(sample) * 0.99:
        return "binary content"
    return None


def _first_significant_byte(path: Path, head: bytes) -> int | None:
    """First byte that is not a BOM or whitespace; reads past the head only for leading whitespace."""
    text = strip_bom(head).lstrip(_WHITESPACE)
    if text:
        return text[0]
    with open(path, "rb") as fh:
        fh.seek(len(head))
        while chunk := fh.read(CHUNK_SIZE):
            chunk = chunk.lstrip(_WHITESPACE)
            if chunk:
                return chunk[0]
    return None


def detect_kind(path: Path, file_name: str | None) -> str:
    """One of DELIMITED, JSON_ARRAY, NDJSON, PARQUET, EXCEL; raises IngestError for empty or
    unsupported content."""
    ext = extension_of(file_name)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_SIZE)
    if not head:
        raise empty_file()
    if head.startswith(PARQUET_MAGIC):
        return PARQUET
    if head.startswith(ZIP_MAGIC) and is_workbook(path):
        return EXCEL
    kind = binary_kind(head)
    if kind is not None:
        if ext == ".parquet":
            raise IngestError(
                "The file is not a valid Parquet file (it does not start with the Parquet magic bytes).",
                code="invalid_parquet",
                status=400,
            )
        raise unsupported_format(kind)
    first = _first_significant_byte(path, head)
    if first is None:
        raise empty_file()
    if ext in DELIMITED_EXTENSIONS:
        return DELIMITED
    if first == ord("["):
        return JSON_ARRAY
    if first == ord("{"):
        return NDJSON
    if ext in JSON_EXTENSIONS:
        raise IngestError("JSON must be an array of objects.", code="invalid_json", status=400)
    return DELIMITED
