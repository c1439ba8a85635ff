"""A tenant's usage figures, each computed by PostgreSQL in one query."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from service.models import LOCAL_ONLY, SYNC_STATUSES, Dataset, SyncRun

USAGE_DAYS = 30

# Every day of the window, uploads or not, in UTC.
_UPLOADS_BY_DAY = text("""
    SELECT d.day::date AS day, count(ds.id) AS uploads
    FROM generate_series((now() AT TIME ZONE 'UTC')::date - :days + 1, (now() AT TIME ZONE 'UTC')::date,
                         interval '1 day') AS d(day)
    LEFT JOIN datasets ds
        ON ds.tenant_id = :tenant_id AND (ds.created_at AT TIME ZONE 'UTC')::date = d.day::date
    GROUP BY d.day
    ORDER BY d.day
""")


def tenant_usage(session: Session, tenant_id: uuid.UUID) -> dict:
    by_status = session.execute(
        select(
            Dataset.sync_status,
            func.count(),
            func.coalesce(func.sum(Dataset.row_count), 0),
            func.coalesce(func.sum(Dataset.size_bytes), 0),
        )
        .where(Dataset.tenant_id == tenant_id)
        .group_by(Dataset.sync_status)
    ).all()
    datasets = {status: 0 for status in SYNC_STATUSES}
    rows = size = 0
    for status, count, status_rows, status_bytes in by_status:
        datasets[status] = count
        rows += int(status_rows)
        size += int(status_bytes)
    total = sum(datasets.values())
    asked = total - datasets[LOCAL_ONLY]

    seconds = func.extract("epoch", SyncRun.finished_at - SyncRun.created_at)
    mean, p95, runs = session.execute(
        select(func.avg(seconds), func.percentile_cont(0.95).within_group(seconds), func.count())
        .join(Dataset, Dataset.id == SyncRun.dataset_id)
        .where(Dataset.tenant_id == tenant_id, SyncRun.status == "synced", SyncRun.finished_at.is_not(None))
    ).one()

    days = session.execute(_UPLOADS_BY_DAY, {"days": USAGE_DAYS, "tenant_id": tenant_id}).all()
    return {
        "datasets": {"total": total, **datasets},
        "sync_percentage": round(100.0 * datasets["synced"] / asked, 1) if asked else 0.0,
        "rows": rows,
        "bytes": size,
        "uploads_by_day": [{"day": day, "uploads": uploads} for day, uploads in days],
        "time_to_synced_seconds": {
            "mean": float(mean) if mean is not None else None,
            "p95": float(p95) if p95 is not None else None,
            "runs": runs,
        },
    }
