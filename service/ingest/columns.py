"""Column naming shared by every format."""
from __future__ import annotations

from collections.abc import Iterable


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
    result = []
    for i, name in enumerate(names):
        if first_index[name.lower()] == i:
            result.append(name)
            continue
        n = 2
        while f"{name}_{n}".lower() in taken:
            n += 1
        new = f"{name}_{n}"
        taken.add(new.lower())
        result.append(new)
    return result
