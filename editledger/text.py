"""Text printed to a terminal: stored strings (subjects, notes, what a user typed) without the
control characters a terminal acts on. No dependencies, so the CLI's --help can import it."""
from __future__ import annotations

import re

# C0 and C1 control characters except newline and tab: printed raw they could move the cursor or
# rewrite the terminal's title (ESC ] 0 ; ... BEL)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
