"""Turning an uploaded file into the dataset's local Parquet file.

Public interface (used by the upload endpoint and the benchmarks):

- ``SUPPORTED_FORMATS``: ``("csv", "tsv", "json", "ndjson", "parquet")``.
- ``convert_file(src, dest, *, file_name=None, settings=None) -> ConvertResult``
- ``convert_records(records, dest, *, settings=None) -> ConvertResult``
- ``convert_body(src, dest, *, validate, settings=None) -> (fields, ConvertResult)``: a
  spooled JSON API body, read as a stream

Both raise ``service.errors.IngestError`` for bad input and leave no file at ``dest``.
"""

from service.ingest.convert import convert_body, convert_file, convert_records
from service.ingest.model import SUPPORTED_FORMATS, ConvertResult, IngestSettings, SourceColumn

__all__ = [
    "ConvertResult",
    "IngestSettings",
    "SourceColumn",
    "SUPPORTED_FORMATS",
    "convert_body",
    "convert_file",
    "convert_records",
]
