"""Layers around the data: gzip or Zstandard compression, and UTF-16 text.

Each is found by its first bytes and removed as a stream into a scratch file, so the
readers behind see plain UTF-8 (or single-byte) text. The expanded size is bounded by
``IngestSettings.max_uncompressed_bytes`` and by a ratio to the compressed size: a small
archive that expands without end (a decompression bomb) is refused with a 413 as soon
as it passes the bound, long before it fills the disk.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from pathlib import Path

import zstandard

from service.errors import IngestError
from service.ingest.encoding import CHUNK_SIZE, UTF8

GZIP = "gzip"
ZSTD = "zstd"
_MAGIC = ((b"\x1f\x8b", GZIP), (b"(\xb5/\xfd", ZSTD))
_EXTENSIONS = {GZIP: (".gz", ".gzip"), ZSTD: (".zst", ".zstd")}
# A compressed upload may always expand to this much, whatever its ratio (small files of
# repetitive text compress far better than large ones).
RATIO_FLOOR_BYTES = 64 << 20

UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def compression_of(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def inner_file_name(file_name: str | None, compression: str) -> str | None:
    """``data.csv.gz`` -> ``data.csv``: the inner name breaks format ties as the outer one did."""
    if not file_name:
        return file_name
    for ext in _EXTENSIONS[compression]:
        if file_name.lower().endswith(ext):
            return file_name[: -len(ext)]
    return file_name


def expansion_limit(compressed_bytes: int, max_bytes: int, max_ratio: int) -> int:
    return min(max_bytes, max(RATIO_FLOOR_BYTES, compressed_bytes * max_ratio))


def too_large(limit: int, compression: str, compressed: int, max_ratio: int) -> IngestError:
    return IngestError(
        f"the {compression} file expands to more than {limit >> 20} MB (MAX_UNCOMPRESSED_MB, or "
        f"{max_ratio} times its compressed size)",
        code="uncompressed_too_large",
        status=413,
        details={"limit_mb": limit >> 20, "compressed_bytes": compressed, "max_ratio": max_ratio},
    )


def corrupt(compression: str, reason: str) -> IngestError:
    return IngestError(
        f"the {compression} file is damaged or cut short: {reason}", code="invalid_compressed_file", status=400
    )


def decompress(src: Path, dst: Path, compression: str, *, max_bytes: int, max_ratio: int) -> None:
    """Expand ``src`` into ``dst`` chunk by chunk, stopping with a 413 past the bound."""
    compressed = src.stat().st_size
    limit = expansion_limit(compressed, max_bytes, max_ratio)
    written = 0
    try:
        with open(src, "rb") as raw, open(dst, "wb") as out:
            reader: gzip.GzipFile | zstandard.ZstdDecompressionReader
            if compression == GZIP:
                reader = gzip.GzipFile(fileobj=raw)  # reads every member of a concatenated file
            else:
                reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with reader:
                while chunk := reader.read(CHUNK_SIZE):
                    written += len(chunk)
                    if written > limit:
                        raise too_large(limit, compression, compressed, max_ratio)
                    out.write(chunk)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise corrupt(compression, str(exc) or type(exc).__name__) from None
    if written == 0:
        raise IngestError(f"the {compression} file holds no data", code="empty_file", status=400)


def utf16_encoding(head: bytes) -> str | None:
    for bom, name in UTF16_BOMS:
        if head.startswith(bom):
            return name
    return None


def transcode_utf16(src: Path, dst: Path, encoding: str) -> None:
    """UTF-16 text (BOM first) rewritten as UTF-8; the output is at most 1.5 times the input."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fin.read(2)  # the BOM
            while chunk := fin.read(CHUNK_SIZE):
                fout.write(decoder.decode(chunk).encode(UTF8))
            fout.write(decoder.decode(b"", final=True).encode(UTF8))
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"the file starts as UTF-16 text but is not valid UTF-16 ({exc.reason})", code="invalid_text", status=400
        ) from None
