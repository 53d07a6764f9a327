"""Exchange text made safe to show: the one place every string from Bitget passes before it is used.

A symbol, coin, code or message from Bitget ends up in log lines, pages, chat messages and database columns.
It must not be able to forge a line there (a newline, a carriage return, a bidi override that reverses what
follows) nor be large enough to flood them, so characters that are not printable are escaped and every
string is clipped to a length a real answer never needs.
"""

from __future__ import annotations

# The longest real values are far shorter: Bitget's messages are a sentence, codes five digits, coins a few
# letters and symbols a pair of them. Database columns take these lengths (codes and coins varchar(32)).
MESSAGE = 300
CODE = 32
COIN = 32
SYMBOL = 64
TEXT = 64  # any other string (modes, user ids, permission names, IP addresses)

_ELLIPSIS = "…"


def clean(text: str, limit: int) -> str:
    """`text` with every non-printable character escaped (`\\n`, `\\u202e`, ...), at most `limit` characters.

    Not printable, in Python's sense, covers the control characters (Cc), format characters (Cf: the bidi
    overrides U+202A-U+202E and isolates U+2066-U+2069, zero-width joiners), line and paragraph separators,
    and unassigned code points. A clipped text ends in an ellipsis, so a reader sees it was cut.
    """
    head = text[: limit + 1]  # never more work than the limit asks for, whatever Bitget sent
    if not head.isprintable():
        head = "".join(ch if ch.isprintable() else _escape(ch) for ch in head)
    if len(head) <= limit and len(text) <= limit:
        return head
    return head[: limit - 1] + _ELLIPSIS


def _escape(ch: str) -> str:
    text = repr(ch)[1:-1]  # "\n", "\x1b", "\u202e": Python's own escapes
    return text if text != ch else f"\\u{ord(ch):04x}"
