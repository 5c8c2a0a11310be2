"""Every Python block of the documentation runs, offline, as a test named after its file and lines.

See `tests/docs_harness.py` for how a page runs (in order, shared globals, offline hub with tiny
models, fresh working directory). The quick start's shell command runs too.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_examples import CodeExample, find_examples

from tests import figures
from tests.docs_harness import (
    ROOT,
    doc_pages,
    example_id,
    package_readmes,
    page_env,
    page_examples,
    run_block,
    skip_reason,
)

pytestmark = [pytest.mark.docs, pytest.mark.local]

EXAMPLES = page_examples("main")


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_doc_block(example: CodeExample, request: pytest.FixtureRequest) -> None:
    if skip_reason(example) is not None:
        figures.count("docs: Python blocks skipped (each names why)")
        figures.note(f"docs: skipped {example_id(example)}", skip_reason(example))
    run_block(example, EXAMPLES, request)
    figures.count("docs: Python blocks run")


def test_every_page_is_collected() -> None:
    """Each page that holds Python blocks is run here or names the environment that runs it."""
    envs = {str(page.relative_to(ROOT)): page_env(page) for page in doc_pages()}
    known = {"main", "openhands", "strands", "google_adk", "pydantic_ai_latest"}
    assert set(envs.values()) <= known, {p: e for p, e in envs.items() if e not in known}
    assert EXAMPLES, "no documentation block found"


def test_skips_are_few_and_explained() -> None:
    skipped = [e for e in EXAMPLES if skip_reason(e) is not None]
    assert len(skipped) <= max(3, len(EXAMPLES) // 10), [example_id(e) for e in skipped]


# --------------------------------------------------------------------------- the integrations' READMEs


def _public_names(package: str) -> set[str]:
    """`__all__` of an integration package, read statically (its framework may live in another venv)."""
    folder = next((ROOT / "integrations").glob(f"*/{package}/__init__.py"), None)
    assert folder is not None, f"no integration package {package}"
    tree = ast.parse(folder.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{package} has no __all__")


@pytest.mark.parametrize("readme", package_readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_package_readme_snippets_parse_and_name_real_things(readme: Path) -> None:
    """Each block parses, and every name it imports from memguard or an integration exists."""
    import memguard

    for example in find_examples(readme):
        tree = ast.parse(example.source, filename=str(readme))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            names = {alias.name for alias in node.names}
            if node.module.endswith("_memguard"):
                assert names <= _public_names(node.module), (example_id(example), names - _public_names(node.module))
            elif node.module == "memguard":
                assert all(hasattr(memguard, name) for name in names), (example_id(example), names)
    text = readme.read_text(encoding="utf-8")
    assert "docs/" in text, f"{readme.relative_to(ROOT)} should link to its docs page"


# --------------------------------------------------------------------------- the quick start's shell


def _quick_start_commands() -> list[str]:
    """The memguard commands of the README's quick start (the part after the venv setup)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for line in block.strip().splitlines():
            last = line.split("&&")[-1].strip()
            if last.startswith("memguard "):
                commands.append(last)
    return commands


@pytest.mark.cli
@pytest.mark.parametrize("command", _quick_start_commands())
def test_quick_start_shell_command(command: str, tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("memguard")
    argv = [str(executable), *shlex.split(command)[1:]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "memguard" in done.stdout
    figures.count("docs: quick-start shell commands run")
