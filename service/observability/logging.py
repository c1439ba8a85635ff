"""Log configuration of every process: plain text (the default) or one JSON object per line.

``LOG_FORMAT=json`` gives ``ts``, ``level``, ``logger``, ``message`` and, where they apply,
the context's ``request_id``, ``tenant``, ``dataset_id``, ``run_id``, ``task_id``, ``step``,
and a record's own ``duration_ms`` / ``error_code`` (passed as ``extra``).
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from service.observability import context

LOG_FORMATS = ("text", "json")
# Fields a record may carry as ``extra``; the text format shows them with the context's.
EXTRA_FIELDS = ("duration_ms", "error_code")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record (a field passed as ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context.snapshot().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The plain format, followed by the record's context fields in brackets."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [f"{key}={getattr(record, key)}" for key in (*context.FIELDS, *EXTRA_FIELDS) if hasattr(record, key)]
        if not fields:
            return text
        head, sep, rest = text.partition("\n")  # keep a traceback below the bracketed fields
        return f"{head} [{' '.join(fields)}]{sep}{rest}"


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes: a test runner swaps it for
    a capture file, and closes that at exit. (Celery is kept from turning sys.stderr into
    a logger, see celery_signals.)"""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(sys.stderr, "closed", False):
            super().emit(record)


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="ts",
    )


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return json_formatter() if log_format == "json" else TextFormatter(TEXT_FORMAT)


def configure_logging(level: str | int = "INFO", log_format: str = "text") -> logging.Handler:
    """Send the root logger's records to stderr in the chosen format.

    Idempotent: a second call replaces the handler of the first and leaves other handlers
    (a test runner's, for example) alone.
    """
    root = logging.getLogger()
    handler = StderrHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter())
    handler.set_name("lakesync")
    for old in [h for h in root.handlers if h.get_name() == "lakesync"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become records too, so json output stays JSON
    return handler
