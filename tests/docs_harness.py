"""Run every Python block of the documentation (docs/*.md, the READMEs) as a test of its own.

Blocks are found by pytest-examples and named after their file and lines
(``docs/guard.md:42-60``). The blocks of one page run in order and share their globals, as a
reader would type them one after another; running one block alone runs the blocks above it
first. Each page runs:

- offline: the Hugging Face hub is a local cache holding tiny random models under MemRM's real
  ids (`memguard.testing.hub`), so ``MemRM.from_pretrained()`` runs its real loading code; any
  socket connection outside loopback raises;
- in a fresh temporary working directory, so no example leaves a file behind in the checkout.

A block that cannot run offline says so in its fence: ```` ```python test="skip" reason="..." ````
(a skip without a reason fails). A page whose framework lives in another virtual environment
names it in its front matter (``test_env: openhands``); that environment's own suite runs it
through `page_examples(env="openhands")`.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC_SOURCES = ("README.md", "docs", "integrations")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def page_env(path: Path) -> str:
    """The virtual environment a page's blocks run in (front matter ``test_env``, default main)."""
    match = _FRONT_MATTER.match(path.read_text(encoding="utf-8"))
    if match:
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "test_env":
                return value.strip()
    return "main"


def doc_pages() -> list[Path]:
    """Every Markdown page whose Python blocks the suite runs, in a stable order."""
    pages: list[Path] = [ROOT / "README.md"]
    pages += sorted((ROOT / "docs").rglob("*.md"))
    pages += sorted((ROOT / "integrations").glob("*/README.md"))
    return [p for p in pages if p.is_file()]


def page_examples(env: str = "main") -> list[Any]:
    """The Python blocks (pytest-examples `CodeExample`s) of every page that runs in `env`."""
    from pytest_examples import find_examples

    found: list[Any] = []
    for page in doc_pages():
        if page_env(page) == env:
            found.extend(find_examples(page))
    return found


def skip_reason(example: Any) -> str | None:
    """Why a block is not run (``test="skip" reason="..."``), or None; a bare skip is an error."""
    settings = example.prefix_settings()
    if settings.get("test") != "skip":
        return None
    reason = settings.get("reason", "").strip()
    if not reason:
        raise ValueError(f"{example}: test=\"skip\" needs a reason=\"...\" saying why it cannot run offline")
    return reason


def example_id(example: Any) -> str:
    """``docs/guard.md:42-60``: the page relative to the repository root, and the block's lines."""
    return f"{example.path.relative_to(ROOT)}:{example.start_line}-{example.end_line}"


@dataclass
class PageState:
    """What the blocks of one page have defined so far, and how far they got."""

    globals: dict[str, Any] = field(default_factory=dict)
    ran: set[int] = field(default_factory=set)
    failed: str | None = None
    workdir: Path | None = None


class _NetworkBlocked(OSError):
    pass


_LOOPBACK = ("127.", "::1", "localhost")


@contextmanager
def no_network() -> Iterator[None]:
    """Refuse socket connections outside loopback (local test servers keep working)."""
    original_connect, original_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def refuse(host: Any) -> _NetworkBlocked:
        return _NetworkBlocked(f"documentation examples run offline: refused to reach {host!r}")

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family == socket.AF_UNIX or str(host).startswith(_LOOPBACK):
            return original_connect(self, address)
        raise refuse(host)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is None or str(host).startswith(_LOOPBACK):
            return original_getaddrinfo(host, *args, **kwargs)
        raise refuse(host)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.getaddrinfo = original_getaddrinfo  # type: ignore[assignment]


@contextmanager
def in_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
