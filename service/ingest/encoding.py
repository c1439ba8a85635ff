"""Text encodings of uploads: UTF-8 (with or without BOM), else Windows-1252.

Files that are not valid UTF-8 are read as Windows-1252, which is what spreadsheet
exports on Windows produce and a superset of the printable Latin-1 range. The five
bytes that cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) are taken as
Latin-1 so that no byte is ever rejected or lost.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path

UTF8 = "utf-8"
CP1252 = "cp1252"

UTF8_BOM = codecs.BOM_UTF8
CHUNK_SIZE = 1 << 20

_ERRORS = "lakesync-cp1252-latin1"


def _latin1_fallback(err: UnicodeError):
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error(_ERRORS, _latin1_fallback)


def decode_cp1252(data: bytes) -> str:
    return data.decode(CP1252, errors=_ERRORS)


def strip_bom(data: bytes) -> bytes:
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def is_utf8_prefix(data: bytes, *, complete: bool) -> bool:
    """Whether ``data`` is valid UTF-8; a sequence cut at the end is fine unless ``complete``."""
    try:
        codecs.getincrementaldecoder(UTF8)().decode(data, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def decode_prefix(data: bytes, encoding: str, *, complete: bool) -> str:
    """Decode the head of a file (BOM removed); a multi-byte sequence cut at the end is dropped."""
    data = strip_bom(data)
    if encoding == UTF8:
        return codecs.getincrementaldecoder(UTF8)().decode(data, final=complete)
    return decode_cp1252(data)


def is_utf8_file(path: Path) -> bool:
    """Streaming validity check of a whole file."""
    decoder = codecs.getincrementaldecoder(UTF8)()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_SIZE):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def transcode_cp1252_to_utf8(src: Path, dst: Path) -> None:
    """Chunked rewrite of a cp1252 file as UTF-8 (no BOM); single-byte input, so chunk edges are safe."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        first = True
        while chunk := fin.read(CHUNK_SIZE):
            if first:
                chunk = strip_bom(chunk)
                first = False
            fout.write(decode_cp1252(chunk).encode(UTF8))


def open_text(path: Path, encoding: str) -> io.TextIOBase:
    """Open for streaming text reads with line endings untranslated (``newline=""``), BOM skipped."""
    if encoding == UTF8:
        return open(path, encoding="utf-8-sig", newline="")
    raw = open(path, "rb")
    try:
        if raw.read(len(UTF8_BOM)) != UTF8_BOM:
            raw.seek(0)
        return io.TextIOWrapper(raw, encoding=CP1252, errors=_ERRORS, newline="")
    except BaseException:
        raw.close()
        raise
