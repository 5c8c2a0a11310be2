"""Keep conversation text out of errors and logs.

Exceptions from agents, scorers and servers sometimes quote their input (validation errors do).
A message that shares a `QUOTE_WINDOW`-character stretch with the conversation is withheld from
Decision.error, reasons and log lines, which audit records and dashboards carry verbatim.
"""

from __future__ import annotations

QUOTE_WINDOW = 16
WITHHELD = "[message withheld: it quotes the conversation]"


def quotes(message: str, corpus: str, window: int = QUOTE_WINDOW) -> bool:
    """True when `message` repeats a `window`-character stretch of `corpus` (or all of a shorter one)."""
    if not message.strip():
        return False
    if len(message) < window:
        return message in corpus
    return any(message[i : i + window] in corpus for i in range(len(message) - window + 1))


def exception_text(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, bounded; "" when it has none or cannot say."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break error handling
        return ""
    return text.splitlines()[0][:limit] if text.strip() else ""
