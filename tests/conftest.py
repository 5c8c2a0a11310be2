"""Shared fixtures: tiny MemRM look-alikes on disk, built once per session, no network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests must never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

from memguard._extras import EXTRA_MODULES, MissingExtra  # noqa: E402
from memguard.testing import build_qwen_tokenizer, build_tiny_rm, load_tokenizer  # noqa: E402
from tests import figures  # noqa: E402

# Property tests: "ci" is sized so tests/test_bad_input.py runs in < 30 s on 2 cores and gives the
# same examples on every run; "dev" explores more, randomly. CI=1 (any value) selects "ci".
settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("dev"), max_examples=2000)  # bug hunts
settings.load_profile(os.environ.get("MEMGUARD_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# --------------------------------------------------------------------------- optional extras
#
# A test that needs an extra carries its marker (`@pytest.mark.local`, `cli`, `otel`, `langchain`);
# tests using the tiny-model fixtures below get `local` automatically, and a test module that
# imports an extra's package at its top is skipped whole when that package is missing. Where the
# extra is missing, those tests are skipped with a reason that names it: the light-core CI job
# (`pip install -e ".[test]"`, no torch) runs everything else. MEMGUARD_TEST_EXTRAS makes the run
# strict: "all" (the full job) refuses to start unless every extra is installed, so nothing is
# ever skipped there for a missing package; "none" (the light job) refuses to start if any is.

EXTRA_MARKERS = ("local", "cli", "otel", "langchain", "docs")
MODEL_FIXTURES = frozenset({"qwen_tokenizer_dir", "qwen_tokenizer", "qwen_rm_dir", "byte_rm_dir", "qwen_rm", "byte_rm"})


def _installed(extra: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES[extra])


def _skip_reason(extra: str) -> str:
    return f"needs memguard[{extra}] (pip install 'memguard[{extra}]')"


def pytest_configure(config):
    expected = os.environ.get("MEMGUARD_TEST_EXTRAS", "")
    if expected not in ("", "all", "none"):
        raise pytest.UsageError(f"MEMGUARD_TEST_EXTRAS must be 'all', 'none' or unset, not {expected!r}")
    if expected == "all" and (missing := [e for e in EXTRA_MARKERS if not _installed(e)]):
        raise pytest.UsageError(f"MEMGUARD_TEST_EXTRAS=all, but these extras are not installed: {missing}")
    if expected == "none" and (present := [e for e in EXTRA_MARKERS if _installed(e)]):
        raise pytest.UsageError(f"MEMGUARD_TEST_EXTRAS=none (the light core), but these extras are installed: {present}")


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.local)
        for extra in EXTRA_MARKERS:
            if item.get_closest_marker(extra) is not None and not _installed(extra):
                item.add_marker(pytest.mark.skip(reason=_skip_reason(extra)))
                break


def _missing_extra(error: BaseException | None, test_file: Path) -> tuple[str, str] | None:
    """(extra, package) whose absence made `test_file` fail to import; None for any other failure.

    Only two failures count: memguard's own `MissingExtra`, and a `ModuleNotFoundError` for an
    extra's package raised by an import statement in the test file itself. A memguard module
    that imports torch unguarded is a bug, and stays a collection error.
    """
    if isinstance(error, MissingExtra):
        return None if _installed(error.extra) else (error.extra, error.missing)
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")]
    if not frames or Path(frames[-1].filename).resolve() != test_file.resolve():
        return None
    top = error.name.partition(".")[0]
    for extra, modules in EXTRA_MODULES.items():
        if extra in EXTRA_MARKERS and top in modules and not _installed(extra):
            return extra, top
    return None


class _ExtraAwareModule(pytest.Module):
    """A test module that skips itself, naming the extra, when it cannot import an extra's package."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        try:
            return super().collect()
        except pytest.Collector.CollectError as failure:
            missing = _missing_extra(failure.__cause__, self.path)
            if missing is None:
                raise
            extra, package = missing
            pytest.skip(f"{self.path.name} imports {package}: {_skip_reason(extra)}", allow_module_level=True)


def pytest_pycollect_makemodule(module_path: Path, parent):
    if module_path.name.startswith("test_") and os.environ.get("MEMGUARD_TEST_EXTRAS") != "all":
        return _ExtraAwareModule.from_parent(parent, path=module_path)
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """Print what the hardening tests tried (faults, inputs, threads, lines lost)."""
    rows = figures.lines()
    if rows:
        terminalreporter.write_sep("-", "memguard hardening figures")
        for row in rows:
            terminalreporter.write_line(row)


@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    """The real Qwen2/3 vocabulary, built offline (cached across sessions by file hash)."""
    return build_qwen_tokenizer()


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir):
    return load_tokenizer(qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def qwen_rm_dir(tmp_path_factory) -> Path:
    """Tiny random Qwen3 + non-zero LoRA, real Qwen tokenizer (151,936-row vocab)."""
    return build_tiny_rm(tmp_path_factory.mktemp("qwen_rm"), seed=0, tokenizer="qwen")


@pytest.fixture(scope="session")
def byte_rm_dir(tmp_path_factory) -> Path:
    """Same shape with a 264-token byte vocabulary: fast, for loading/error-path tests."""
    return build_tiny_rm(tmp_path_factory.mktemp("byte_rm"), seed=1, tokenizer="byte")


@pytest.fixture(scope="session")
def qwen_rm(qwen_rm_dir):
    """Loaded through the public path, default settings (CPU: fp32, merged)."""
    from memguard import MemRM

    return MemRM.from_pretrained(**rm_paths(qwen_rm_dir))


@pytest.fixture(scope="session")
def byte_rm(byte_rm_dir):
    """The byte-vocabulary tiny MemRM, loaded through the public path (cheap to build and run)."""
    from memguard import MemRM

    return MemRM.from_pretrained(**rm_paths(byte_rm_dir))


def rm_paths(root: Path) -> dict[str, str]:
    """from_pretrained kwargs for a directory written by build_tiny_rm."""
    return dict(base=str(root / "base"), adapter=str(root / "adapter"), subfolder="checkpoint-500")
