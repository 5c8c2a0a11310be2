"""The offline demo's first run prints memguard's output only; the model libraries' errors still show."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from memguard._quiet import quiet_model_libraries

pytestmark = pytest.mark.local

ROOT = Path(__file__).resolve().parent.parent


def test_progress_bars_are_off_inside_and_restored_after():
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
    with quiet_model_libraries():
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()


def test_library_warnings_are_dropped_but_ours_and_their_errors_are_not(caplog):
    def warn(module: str) -> None:
        warnings.warn_explicit("deprecated", FutureWarning, f"{module}.py", 1, module=module, registry={})

    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        with quiet_model_libraries():
            warn("transformers.modeling_utils")
            warn("peft.peft_model")
            warn("memguard.demo")
            logging.getLogger("transformers.modeling_utils").warning("a library warning")
            logging.getLogger("transformers.modeling_utils").error("a library error")
        warn("transformers.modeling_utils")  # restored after the block
    assert [w.filename for w in seen] == ["memguard.demo.py", "transformers.modeling_utils.py"]
    assert [r.getMessage() for r in caplog.records] == ["a library error"]


def test_exceptions_propagate():
    with pytest.raises(OSError, match="no weights"), quiet_model_libraries():
        raise OSError("no weights")


@pytest.mark.cli
def test_first_offline_demo_prints_only_memguard_output(tmp_path):
    """The README's main job in a fresh process: no progress bar, warning or log line but ours."""
    audit = tmp_path / "audit.jsonl"
    env = {**os.environ, "COLUMNS": "200"}  # one line per message
    result = subprocess.run(
        [sys.executable, "-m", "memguard", "demo", "--offline", "--trajectory", "17-marshmallow-code__marshmallow-1867",
         "--every", "5", "--audit", str(audit)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours = ("offline: scoring with a tiny RANDOM model", "  reviewing ", "warning: these scores come from a tiny RANDOM",
            "audit log: ", "  see it:  memguard report ")  # fmt: skip
    lines = result.stderr.splitlines()
    assert [next(p for p in ours if line.startswith(p)) for line in lines if line.startswith(ours)] == list(ours)
    assert all(line.startswith(ours) for line in lines), result.stderr
    assert "memguard demo: proposed compaction = drop the middle" in result.stdout
    assert len(audit.read_text().splitlines()) == 2
