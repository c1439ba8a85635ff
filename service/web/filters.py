"""How the console prints values: sizes, times, durations and sync statuses."""

from __future__ import annotations

import datetime as dt

from flask import Flask

# The badge of each sync status, as the user reads it.
STATUS_LABELS = {
    "local_only": "Local only",
    "pending": "Pending",
    "syncing": "Syncing",
    "synced": "Synced",
    "failed": "Failed",
}
STEP_STATUS_LABELS = {
    "pending": "Waiting",
    "running": "Running",
    "retrying": "Retrying",
    "succeeded": "Done",
    "failed": "Failed",
}


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", (status or "").replace("_", " ").capitalize())


def step_status_label(status: str | None) -> str:
    return STEP_STATUS_LABELS.get(status or "", (status or "").capitalize())


def filesize(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def timestamp(value: dt.datetime | None) -> str:
    """UTC, to the minute: one clock for every user of a shared console."""
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(
        status_label=status_label,
        step_status_label=step_status_label,
        filesize=filesize,
        number=number,
        timestamp=timestamp,
        duration=duration,
    )
