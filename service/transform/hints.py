"""Schema hints: the uploader's types for some columns, checked against the dataset's columns.

A hint names a column by its source name or its silver (snake_case) name, and a type of
``service.transform.plan`` (``decimal(p,s)`` included). They are kept by source name.
"""

from __future__ import annotations

from service.transform.plan import SILVER_TYPES, normalized_type

HINT_TYPES = (*SILVER_TYPES, "decimal(p,s)")


class HintError(ValueError):
    def __init__(self, message: str, problems: dict[str, str]):
        super().__init__(message)
        self.problems = problems


def check_types(hints: object) -> dict[str, str]:
    """The hints with their types normalized; HintError naming every bad entry."""
    if not isinstance(hints, dict):
        raise HintError("schema_hints must be a JSON object of column name to type", {})
    problems: dict[str, str] = {}
    result: dict[str, str] = {}
    for column, type_text in hints.items():
        normalized = normalized_type(type_text) if isinstance(type_text, str) else None
        if normalized is None:
            problems[str(column)] = f"unknown type {type_text!r}; one of {', '.join(HINT_TYPES)}"
        else:
            result[str(column)] = normalized
    if problems:
        raise HintError("schema_hints: " + "; ".join(f"{k}: {v}" for k, v in problems.items()), problems)
    return result


def resolve(hints: dict[str, str], columns: list[dict]) -> dict[str, str]:
    """Hints keyed by source name; ``columns`` are the dataset's (name, source_name) dicts."""
    by_source = {c["source_name"]: c["source_name"] for c in columns}
    by_silver = {c["name"]: c["source_name"] for c in columns}
    problems: dict[str, str] = {}
    result: dict[str, str] = {}
    for column, type_name in hints.items():
        source = by_source.get(column) or by_silver.get(column)
        if source is None:
            problems[column] = "no such column"
        elif source in result and result[source] != type_name:
            problems[column] = f"the column {source!r} is hinted twice"
        else:
            result[source] = type_name
    if problems:
        raise HintError("schema_hints: " + "; ".join(f"{k}: {v}" for k, v in problems.items()), problems)
    return result
