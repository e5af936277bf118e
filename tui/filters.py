"""Filter text -> a row predicate, the same on every table.

Words must all appear in the row's text (case-insensitive). A token ``field:word`` matches one
field (``flag:forgetting``, ``kind:revert``); ``field<op>number`` compares a numeric field, with
op one of < <= > >= = != (``eff<1``, ``step>=5``, ``ppl>30``). A row without a value for a
compared field does not match. Each screen names its fields.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "=": operator.eq,
}
TOKEN = re.compile(r"^([^\s:<>=!]+)(<=|>=|!=|<|>|=|:)(.+)$")


class FilterError(ValueError):
    """A token names an unknown field or compares with something that is not a number."""


@dataclass
class Field:
    name: str
    get: Callable[[Any], Any]     # a number, a string, a list of strings, or None
    help: str = ""


def _as_words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [str(v).lower() for v in value]
    return [str(value).lower()]


def compile_filter(text: str, fields: Iterable[Field], haystack: Callable[[Any], str]) -> Callable[[Any], bool] | None:
    """The predicate for ``text`` (None for an empty filter); raises FilterError naming the fields."""
    by_name = {f.name.lower(): f for f in fields}
    tests: list[Callable[[Any], bool]] = []
    words: list[str] = []
    for token in text.split():
        m = TOKEN.match(token)
        if not m:
            words.append(token.lower())
            continue
        name, op, arg = m.group(1).lower(), m.group(2), m.group(3)
        field = by_name.get(name)
        if field is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise FilterError(f"no field {name!r} here (fields: {known})")
        if op == ":":
            want = arg.lower()
            tests.append(lambda it, f=field, w=want: any(w in x for x in _as_words(f.get(it))))
            continue
        try:
            bound = float(arg)
        except ValueError:
            raise FilterError(f"{token!r}: {arg!r} is not a number (write e.g. {name}<1)") from None
        fn = OPS[op]

        def compare(it, f=field, fn=fn, bound=bound) -> bool:
            v = f.get(it)
            return isinstance(v, (int, float)) and v == v and fn(v, bound)
        tests.append(compare)
    if not tests and not words:
        return None

    def keep(item: Any) -> bool:
        if words:
            hay = haystack(item).lower()
            if not all(w in hay for w in words):
                return False
        return all(t(item) for t in tests)
    return keep
