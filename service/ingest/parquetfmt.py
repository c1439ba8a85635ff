"""Parquet uploads: the footer checked against a byte budget, every page checked to be
readable, then the file kept byte for byte.

A few hundred bytes of Parquet can decode to gigabytes: pages compress runs of one value
to nothing, and a dictionary page of one large value can be referenced by every row. So
before a page is decoded, the footer's sizes (rows, uncompressed bytes of each column
chunk) must fit the budget; then the pages are decoded with string columns kept as
dictionaries, and the bytes each row group would take once its values are materialized
(as the sync steps and the row preview read them) must fit it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from service.errors import IngestError
from service.ingest.columns import check_column_count
from service.ingest.model import ConvertResult, IngestSettings, SourceColumn, logical_type

BATCH_ROWS = 65_536
# Bytes of decoded values per batch of the readability check.
BATCH_BYTES = 32 << 20

# Decoded bytes per value of fixed-width physical types (booleans counted as a byte).
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}
_OFFSET_BYTES = 4  # an offset per value of a variable-width column


def invalid_parquet(reason: str) -> IngestError:
    return IngestError(f"The file is not a readable Parquet file: {reason}", code="invalid_parquet", status=400)


def over_budget(row_group: int, decoded: int, budget: int) -> IngestError:
    return IngestError(
        f"row group {row_group} of the Parquet file decodes to about {decoded >> 20} MB, more than the "
        f"{budget >> 20} MB a row group may take (PARQUET_DECODE_BUDGET_MB); write it with smaller row groups",
        code="parquet_too_large_to_decode",
        status=413,
        details={"row_group": row_group, "decoded_bytes": decoded, "budget_bytes": budget},
    )


def footer_estimates(meta: pq.FileMetaData) -> list[int]:
    """Decoded bytes of each row group as its footer announces them (a lower bound for
    dictionary-encoded text: the dictionary is counted once, not once per row)."""
    sizes = []
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        total = 0
        for j in range(group.num_columns):
            chunk = group.column(j)
            width = _FIXED_WIDTH.get(chunk.physical_type)
            if width is None:  # BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY
                width = _OFFSET_BYTES
            total += max(chunk.total_uncompressed_size, chunk.num_values * width)
        sizes.append(max(total, group.num_rows))
    return sizes


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Top-level text columns: read as dictionaries, so a value repeated on every row is
    held once while the file is checked."""
    kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return [f.name for f in schema if any(is_kind(f.type) for is_kind in kinds)]


def _materialized_bytes(batch: pa.RecordBatch) -> int:
    """Bytes of the batch once dictionary columns are expanded to one value per row."""
    total = 0
    for column in batch.columns:
        if isinstance(column, pa.DictionaryArray):
            lengths = pc.binary_length(column.dictionary)
            taken = pc.sum(pc.take(lengths, column.indices)).as_py() or 0
            total += taken + _OFFSET_BYTES * len(column)
        else:
            total += column.nbytes
    return total


def _check_pages(pf: pq.ParquetFile, estimates: list[int], budget: int) -> int:
    """Decode every page within the budget; the number of rows read."""
    rows = 0
    meta = pf.metadata
    for index in range(meta.num_row_groups):
        group_rows = meta.row_group(index).num_rows
        if group_rows == 0:
            continue
        per_row = max(1, estimates[index] // group_rows)
        batch_rows = max(1, min(BATCH_ROWS, BATCH_BYTES // per_row))
        decoded = 0
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[index], use_threads=False):
            rows += batch.num_rows
            decoded += _materialized_bytes(batch)
            if decoded > budget:
                raise over_budget(index, decoded, budget)
    return rows


def convert_parquet(src: Path, out: Path, *, settings: IngestSettings | None = None) -> ConvertResult:
    settings = settings or IngestSettings()
    budget = int(settings.parquet_decode_budget)
    try:
        with pq.ParquetFile(src) as probe:
            schema = probe.schema_arrow
            meta = probe.metadata
        check_column_count(len(schema), settings.max_columns)
        check_column_count(meta.num_columns, settings.max_columns)
        estimates = footer_estimates(meta)
        for index, estimate in enumerate(estimates):
            if estimate > budget:
                raise over_budget(index, estimate, budget)
        with pq.ParquetFile(src, read_dictionary=_dictionary_columns(schema), pre_buffer=False) as pf:
            rows = _check_pages(pf, estimates, budget)
    except IngestError:
        raise
    except (pa.ArrowException, OSError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise invalid_parquet(str(exc) or type(exc).__name__) from None
    if rows != meta.num_rows:
        raise invalid_parquet(f"the footer announces {meta.num_rows} rows but {rows} could be read")
    shutil.copyfile(src, out)
    return ConvertResult(
        source_format="parquet",
        row_count=rows,
        columns=[SourceColumn(field.name, logical_type(field.type)) for field in schema],
    )
