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
import sys
import types
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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
    return [p for p in pages if p.is_file()]


def package_readmes() -> list[Path]:
    """The integrations' own READMEs (their package index pages): short production wiring that
    names a real model provider, checked by `tests/test_docs.py` for syntax and real names, while
    the docs page each links to runs the same wiring offline."""
    return sorted((ROOT / "integrations").glob("*/README.md"))


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
    """What the blocks of one page have defined so far, and how far they got.

    The blocks run in a real module (registered in `sys.modules` while a block runs), as a
    script's would: pydantic and dataclasses look their defining module up by name.
    """

    module: types.ModuleType
    ran: set[int] = field(default_factory=set)
    failed: str | None = None
    workdir: Path | None = None


_STATES: dict[Path, PageState] = {}
_HUB: dict[str, Path] = {}


def _has_local_extra() -> bool:
    """Whether MemRM can load here (memguard[local]); then every page runs with the offline hub."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "peft"))


def _offline_hub(request: Any) -> Path:
    """One offline hub cache per session (tiny random MemRM under the real ids), built on first use."""
    if "cache" not in _HUB:
        from memguard.testing.hub import install_offline_hub

        factory = request.getfixturevalue("tmp_path_factory")
        _HUB["cache"] = install_offline_hub(factory.mktemp("hf-hub"), tokenizer="byte")  # fast; same loading code
    return _HUB["cache"]


def _exec_block(example: Any, state: PageState) -> None:
    """Execute one block in its page's module, compiled under the page's own name and line numbers.

    A failure's traceback then points at the Markdown file and line, like any Python source.
    """
    source = "\n" * (example.start_line) + example.source
    code = compile(source, str(example.path), "exec", dont_inherit=True)
    sys.modules[state.module.__name__] = state.module
    try:
        exec(code, state.module.__dict__)
    except BaseException:
        state.failed = f"{example_id(example)} failed"
        raise
    finally:
        sys.modules.pop(state.module.__name__, None)


def not_here(example: Any, requirements: dict[str, bool] | None = None) -> str | None:
    """Why `example` does not run in this environment, or None.

    A fence may say ``requires="NAME"``: the block runs exactly where the calling suite's
    `requirements` say NAME is available (one end of a framework's supported range, say), whatever
    its ``test="skip"`` says for the page's own environment; elsewhere it is skipped, naming NAME.
    """
    needed = example.prefix_settings().get("requires")
    if needed is not None:
        have = (requirements or {}).get(needed)
        if have is None:
            raise ValueError(f"{example}: requires={needed!r} is not a requirement this suite knows")
        return None if have else f"needs {needed}, which this environment does not have"
    return skip_reason(example)


def run_block(example: Any, examples: list[Any], request: Any, requirements: dict[str, bool] | None = None) -> None:
    """Run `example` (one test item), after the blocks above it on its page that have not run yet.

    Args:
        example: the block to run.
        examples: every block collected in this environment (the page's earlier blocks among them).
        request: the pytest request (for temporary directories and the skip mechanism).
        requirements: what this environment has, for blocks fenced ``requires="NAME"``.
    """
    import pytest

    reason = not_here(example, requirements)
    if reason is not None:
        pytest.skip(f"not run here: {reason}")
    state = _STATES.get(example.path)
    if state is None:
        name = "docs_" + re.sub(r"\W", "_", str(example.path.relative_to(ROOT)))
        state = _STATES[example.path] = PageState(module=types.ModuleType(name))
        state.module.__dict__["__file__"] = str(example.path)
    if state.workdir is None:
        state.workdir = request.getfixturevalue("tmp_path_factory").mktemp(example.path.stem)
    same_page = [e for e in examples if e.path == example.path]
    page = [e for e in same_page if e.start_line < example.start_line]
    with ExitStack() as stack:
        if _has_local_extra():  # MemRM.from_pretrained() (or a config naming it) loads the tiny model
            from memguard.testing.hub import offline_hub

            stack.enter_context(offline_hub(_offline_hub(request)))
        stack.enter_context(no_network())
        stack.enter_context(in_directory(state.workdir))
        for earlier in page:  # a block may use what the blocks above it on its page defined
            if earlier.start_line in state.ran or not_here(earlier, requirements) is not None:
                continue
            if state.failed:
                break
            _exec_block(earlier, state)
            state.ran.add(earlier.start_line)
        if state.failed:
            pytest.skip(f"an earlier block on this page failed: {state.failed}")
        _exec_block(example, state)
        state.ran.add(example.start_line)


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
