"""Silver column names: snake_case, unique, safe as identifiers in any SQL engine."""

from __future__ import annotations

import re
import unicodedata

from service.table_rules import META_NAMES, RESCUED_DATA

MAX_NAME_LENGTH = 128

# Metadata columns every table carries; a user column never takes one of these names.
RESERVED_NAMES = META_NAMES | {RESCUED_DATA}

# Latin letters that NFKD does not decompose into an ASCII base letter.
_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ł": "l",
        "Ł": "L",
        "ı": "i",
        "ħ": "h",
        "Ħ": "H",
    }
)

# Word boundaries inside identifiers: "customerId" -> customer|Id, "HTTPStatus" -> HTTP|Status.
_LOWER_UPPER = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM_WORD = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.translate(_TRANSLITERATIONS))
    # Dropping what is not ASCII in C: a header line may hold one name of megabytes.
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _base_name(name: str, position: int) -> str:
    text = _ascii(name)
    text = _ACRONYM_WORD.sub(r"\1_\2", text)
    text = _LOWER_UPPER.sub(r"\1_\2", text)
    text = _NON_WORD.sub("_", text).strip("_").lower()
    if not text:
        return f"column_{position}"
    if text[0].isdigit():
        text = "col_" + text
    return _truncate(text, MAX_NAME_LENGTH)


def _truncate(text: str, length: int) -> str:
    return text[:length].rstrip("_")


def snake_case_names(names: list[str]) -> list[str]:
    """One snake_case name per input name, in order: lowercase ``[a-z0-9_]``, no leading
    digit, no double or trailing underscore, at most 128 characters, unique, and never
    one of the metadata column names. Deterministic for a given list."""
    bases = [_base_name(name, i) for i, name in enumerate(names, start=1)]
    # Every base name is reserved up front, so a suffixed name never steals the name
    # another column gets on its own ("a b", "a_b", "a_b_2" -> a_b, a_b_3, a_b_2).
    taken = set(bases) | set(RESERVED_NAMES)
    assigned: set[str] = set()
    # The next suffix to try per base name: linear however many columns share one.
    next_suffix: dict[str, int] = {}
    result = []
    for base in bases:
        if base not in assigned and base not in RESERVED_NAMES:
            name = base
        else:
            n = next_suffix.get(base, 2)
            while True:
                suffix = f"_{n}"
                name = _truncate(base, MAX_NAME_LENGTH - len(suffix)) + suffix
                if name not in taken:
                    break
                n += 1
            next_suffix[base] = n + 1
            taken.add(name)
        assigned.add(name)
        result.append(name)
    return result
