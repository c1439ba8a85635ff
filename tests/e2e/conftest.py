"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select


@pytest.fixture
def leftovers(app):
    """Counts stored Parquet files, incoming parts and dataset rows, to prove nothing was kept."""
    from service.db import session_scope
    from service.models import Dataset

    store = Path(app.config["STORAGE_DIR"])

    def snapshot():
        with app.app_context(), session_scope() as session:
            rows = session.scalar(select(func.count()).select_from(Dataset))
        files = sorted(p.name for p in store.glob("*.parquet"))
        incoming = sorted(p.name for p in (store / ".incoming").iterdir())
        return rows, files, incoming

    return snapshot
