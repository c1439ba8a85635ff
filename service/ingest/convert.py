"""Entry points: an uploaded file or a list of API records to the dataset's local Parquet file."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from service.ingest.delimited import convert_delimited
from service.ingest.detect import DELIMITED, NDJSON, PARQUET, detect_kind, extension_of
from service.ingest.jsonfmt import convert_json_body, convert_json_file, convert_record_list
from service.ingest.model import ConvertResult, IngestSettings
from service.ingest.output import atomic_output
from service.ingest.parquetfmt import convert_parquet


def convert_file(
    src: Path | str,
    dest: Path | str,
    *,
    file_name: str | None = None,
    settings: IngestSettings | None = None,
) -> ConvertResult:
    """Convert the upload at ``src`` into Parquet at ``dest``.

    The format comes from the content; ``file_name`` (the client's name for the file) only
    breaks ties through its extension. Raises ``IngestError`` for content that cannot be
    accepted; ``dest`` is then left untouched and no partial output remains.
    """
    src, dest = Path(src), Path(dest)
    settings = settings or IngestSettings()
    hint = file_name if file_name is not None else src.name
    extension = extension_of(hint)
    kind = detect_kind(src, hint)
    work_dir = Path(settings.temp_dir) if settings.temp_dir else dest.parent
    with atomic_output(dest) as tmp:
        if kind == PARQUET:
            result = convert_parquet(src, tmp, settings=settings)
        elif kind == DELIMITED:
            result = convert_delimited(src, tmp, extension=extension, settings=settings, work_dir=work_dir)
        else:
            result = convert_json_file(src, tmp, ndjson=kind == NDJSON, extension=extension,
                                       max_columns=settings.max_columns)
        size = tmp.stat().st_size
    return dataclasses.replace(result, size_bytes=size)


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
