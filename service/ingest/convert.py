"""Entry points: an uploaded file or a list of API records to the dataset's local Parquet file."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

from service.errors import IngestError
from service.ingest import unwrap
from service.ingest.badrows import QUARANTINE, REJECT, Quarantine
from service.ingest.delimited import convert_delimited
from service.ingest.detect import (
    DELIMITED,
    EXCEL,
    JSON_ARRAY,
    NDJSON,
    PARQUET,
    detect_kind,
    extension_of,
    unsupported_format,
)
from service.ingest.excel import convert_workbook
from service.ingest.jsonfmt import convert_json_body, convert_json_file, convert_record_list
from service.ingest.model import ConvertResult, IngestSettings
from service.ingest.output import atomic_output, scratch_file
from service.ingest.parquetfmt import convert_parquet


def convert_file(
    src: Path | str,
    dest: Path | str,
    *,
    file_name: str | None = None,
    settings: IngestSettings | None = None,
    sheet: str | None = None,
    records_path: str | None = None,
    bad_rows: str = REJECT,
) -> ConvertResult:
    """Convert the upload at ``src`` into Parquet at ``dest``.

    The format comes from the content; ``file_name`` (the client's name for the file) only
    breaks ties through its extension. A gzip or Zstandard layer and UTF-16 text are removed
    first (see unwrap.py). ``sheet`` names a workbook's sheet, ``records_path`` the array of
    records inside a JSON object. ``bad_rows="quarantine"`` sets unreadable rows of delimited
    and NDJSON files aside (``ConvertResult.bad_rows``) instead of refusing the file. Raises
    ``IngestError`` for content that cannot be accepted; ``dest`` is then left untouched and no
    partial output remains.
    """
    path, dest = Path(src), Path(dest)
    settings = settings or IngestSettings()
    hint: str | None = file_name if file_name is not None else path.name
    work_dir = Path(settings.temp_dir) if settings.temp_dir else dest.parent
    quarantine = Quarantine(settings.max_bad_rows) if bad_rows == QUARANTINE else None
    with contextlib.ExitStack() as scratch:
        compression = unwrap.compression_of(_head(path))
        if compression is not None:
            expanded = scratch.enter_context(scratch_file(work_dir, ".expanded"))
            unwrap.decompress(
                path,
                expanded,
                compression,
                max_bytes=settings.max_uncompressed_bytes,
                max_ratio=settings.max_compression_ratio,
            )
            path, hint = expanded, unwrap.inner_file_name(hint, compression)
        text_encoding = unwrap.utf16_encoding(_head(path))
        if text_encoding is not None:
            utf8 = scratch.enter_context(scratch_file(work_dir, ".utf8"))
            unwrap.transcode_utf16(path, utf8, text_encoding)
            path = utf8
        extension = extension_of(hint)
        kind = detect_kind(path, hint)
        if compression is not None and kind in (PARQUET, EXCEL):
            raise unsupported_format(f"a compressed {kind} file (upload it as it is)")
        if sheet is not None and kind != EXCEL:
            raise IngestError(
                "sheet applies to Excel workbooks only",
                code="validation_error",
                status=422,
                details={"form": {"sheet": ["only for .xlsx uploads"]}},
            )
        if records_path is not None and kind not in (JSON_ARRAY, NDJSON):
            raise IngestError(
                "records_path applies to JSON files only",
                code="validation_error",
                status=422,
                details={"form": {"records_path": ["only for JSON uploads"]}},
            )
        with atomic_output(dest) as tmp:
            if kind == PARQUET:
                result = convert_parquet(path, tmp, settings=settings)
            elif kind == EXCEL:
                result = convert_workbook(path, tmp, settings=settings, sheet=sheet)
            elif kind == DELIMITED:
                result = convert_delimited(
                    path,
                    tmp,
                    extension=extension,
                    settings=settings,
                    work_dir=work_dir,
                    encoding_label=text_encoding,
                    quarantine=quarantine,
                )
            else:
                result = convert_json_file(
                    path,
                    tmp,
                    ndjson=kind == NDJSON,
                    extension=extension,
                    max_columns=settings.max_columns,
                    records_path=records_path,
                    quarantine=quarantine,
                )
            size = tmp.stat().st_size
    found = quarantine.rows if quarantine is not None else []
    return dataclasses.replace(result, size_bytes=size, compression=compression, bad_rows=found)


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(16)


def convert_records(records: list, dest: Path | str, *, settings: IngestSettings | None = None) -> ConvertResult:
    """Convert the ``records`` of a JSON API body (a list of objects) like a JSON array file."""
    dest = Path(dest)
    settings = settings or IngestSettings()
    with atomic_output(dest) as tmp:
        result = convert_record_list(records, tmp, max_columns=settings.max_columns)
        size = tmp.stat().st_size
    return dataclasses.replace(result, size_bytes=size)


def convert_body(
    src: Path | str, dest: Path | str, *, validate: Callable[[dict], dict], settings: IngestSettings | None = None
) -> tuple[dict, ConvertResult]:
    """Convert a JSON API body ``{"name": ..., "records": [...]}`` spooled at ``src``, as a
    stream; returns its other members as ``validate`` checked them, and the result."""
    settings = settings or IngestSettings()
    with atomic_output(Path(dest)) as tmp:
        fields, result = convert_json_body(Path(src), tmp, validate=validate, max_columns=settings.max_columns)
        size = tmp.stat().st_size
    return fields, dataclasses.replace(result, size_bytes=size)
