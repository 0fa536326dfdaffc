"""Names of users, models, datasets and tokens: safe in URLs, paths and shell commands."""

from __future__ import annotations

import re

from mlgov.errors import InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = (
    "1 to 128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(no path separators, spaces or control characters)"
)


def check_name(value: str, field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in {".", ".."}:
        raise InvalidInput(f"invalid {field} {value!r}: {NAME_RULE}", field=field)
    return value
