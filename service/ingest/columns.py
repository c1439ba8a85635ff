"""Column naming shared by every format, and the cap on the number of columns."""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import IngestError

DEFAULT_MAX_COLUMNS = 4096


def too_many_columns(found: int, limit: int, *, at_least: bool = False) -> IngestError:
    """422 for data wider than the column cap; raised before any naming or conversion work."""
    count = f"more than {limit}" if at_least else str(found)
    return IngestError(
        f"the data has {count} columns; at most {limit} are accepted (MAX_COLUMNS)",
        code="too_many_columns",
        status=422,
        details={"columns": found, "limit": limit},
    )


def check_column_count(found: int, limit: int, *, at_least: bool = False) -> None:
    if limit and found > limit:
        raise too_many_columns(found, limit, at_least=at_least)


def unique_names(raw: Iterable[str]) -> list[str]:
    """Source names kept as they are, except: an empty name becomes ``column_<n>`` (1-based
    position) and a repeated name gets ``_2``, ``_3``... Names are compared case-insensitively
    because DuckDB and Delta Lake both treat ``a`` and ``A`` as the same column."""
    names = [name if name != "" else f"column_{i}" for i, name in enumerate(raw, 1)]
    # The first occurrence of every name keeps it, so a later duplicate never takes an original name.
    first_index: dict[str, int] = {}
    for i, name in enumerate(names):
        first_index.setdefault(name.lower(), i)
    taken = set(first_index)
    # The next suffix to try per name: one pass however many columns share a name.
    next_suffix: dict[str, int] = {}
    result = []
    for i, name in enumerate(names):
        key = name.lower()
        if first_index[key] == i:
            result.append(name)
            continue
        n = next_suffix.get(key, 2)
        while f"{key}_{n}" in taken:
            n += 1
        next_suffix[key] = n + 1
        new = f"{name}_{n}"
        taken.add(new.lower())
        result.append(new)
    return result
