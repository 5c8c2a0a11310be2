"""Text made safe once, at every boundary where a Python `str` leaves the process.

A Python string may hold lone surrogates (U+D800..U+DFFF): tool output decoded with
``errors="surrogateescape"``, JSON cut inside an emoji (``"\\ud83d"``), or an injected tool output
that plants one on purpose. UTF-8 cannot encode them, so a tokenizer, an HTTP client or a file
writer raises on them, and a guard that fails open would then let every compaction of that
conversation through unreviewed. `safe_text` is the one rule memguard applies wherever text
leaves the process (the local and remote scorers, the audit sinks) and wherever it is read back
(the JSONL readers):

- a valid string is returned unchanged (the same object): the MemRM prompt stays byte-exact;
- a surrogate *pair* (high then low, as UTF-16 writes astral characters) becomes the character it
  encodes, exactly as a UTF-16 reader would show it;
- every other (lone) surrogate becomes U+FFFD, the replacement character, one per surrogate.

So a conversation holding lone surrogates scores exactly as its cleaned text does, in-process and
remotely, and an audit line that holds one reads back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REPLACEMENT", "decode_line", "safe_json", "safe_text"]

REPLACEMENT = "\ufffd"


def safe_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD and surrogate pairs joined (module docstring).

    Args:
        text: Any Python string.

    Returns:
        A string UTF-8 can encode; `text` itself when it already was one.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 is the encoding surrogates belong to: pairs decode to their character and a
        # lone one to a single U+FFFD (UTF-8's decoder would give three per surrogate).
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def safe_json(value: Any) -> Any:
    """`value` (decoded JSON: dicts, lists, strings, numbers) with `safe_text` applied to every
    string, keys included, in place. Iterative, so a deeply nested value cannot exhaust the
    stack.

    Args:
        value: What `json.loads` returned.

    Returns:
        The same structure, every string safe.
    """
    if isinstance(value, str):
        return safe_text(value)
    if not isinstance(value, (dict, list)):
        return value
    root: list[Any] = [value]
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if any(isinstance(key, str) and safe_text(key) is not key for key in node):
                items = list(node.items())  # rebuilt in order: a cleaned key keeps its place
                node.clear()
                node.update((safe_text(k) if isinstance(k, str) else k, v) for k, v in items)
            for key, item in node.items():
                if isinstance(item, str):
                    node[key] = safe_text(item)  # an existing key: the dict does not resize
                elif isinstance(item, (dict, list)):
                    stack.append(item)
        else:
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = safe_text(item)
                elif isinstance(item, (dict, list)):
                    stack.append(item)
    return root[0]


def decode_line(raw: bytes) -> str:
    """One line of a UTF-8 file as safe text.

    Strict UTF-8 first; a line holding encoded surrogates (what ``errors="surrogatepass"``
    writes, as earlier memguard audit logs did) is decoded with them and made safe.

    Args:
        raw: The line's bytes.

    Returns:
        The decoded, safe text.

    Raises:
        UnicodeDecodeError: the bytes are not UTF-8 even allowing encoded surrogates.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return safe_text(raw.decode("utf-8", "surrogatepass"))
