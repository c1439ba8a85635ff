"""Every file of the generated corpus converts with the row count of a reference parser."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from service.ingest import convert_file
from tests.corpus.files import CORPUS, build


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    return directory, {f.name: f.rows for f in build(directory)}


def test_the_corpus_is_large_enough(corpus):
    assert len(corpus[1]) >= 20


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_file_converts_with_the_reference_row_count(corpus, tmp_path, name):
    directory, rows = corpus
    out = tmp_path / "out.parquet"
    result = convert_file(directory / name, out, file_name=name)
    assert rows[name] > 0
    assert result.row_count == rows[name]
    assert pq.ParquetFile(out).metadata.num_rows == rows[name]
