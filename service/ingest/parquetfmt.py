"""Parquet uploads: checked to be fully readable, then kept byte for byte."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.errors import IngestError
from service.ingest.model import ConvertResult, SourceColumn, logical_type

BATCH_ROWS = 65_536


def invalid_parquet(reason: str) -> IngestError:
    return IngestError(
        f"The file is not a readable Parquet file: {reason}", code="invalid_parquet", status=400
    )


def convert_parquet(src: Path, out: Path) -> ConvertResult:
    try:
        with pq.ParquetFile(src) as pf:
            schema = pf.schema_arrow
            expected = pf.metadata.num_rows
            rows = 0
            # Decoding every page is the only way to know the data is readable; one batch at a time.
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                rows += batch.num_rows
    except (pa.ArrowException, OSError, ValueError, EOFError, IndexError) as exc:
        raise invalid_parquet(str(exc) or type(exc).__name__) from None
    if rows != expected:
        raise invalid_parquet(f"the footer announces {expected} rows but {rows} could be read")
    shutil.copyfile(src, out)
    return ConvertResult(
        source_format="parquet",
        row_count=rows,
        columns=[SourceColumn(field.name, logical_type(field.type)) for field in schema],
    )
