"""Shared fixtures: tiny MemRM look-alikes on disk, built once per session, no network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests must never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

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
