"""docs/langchain.md runs as written, offline, and prints what its text says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "langchain.md"


def test_the_langchain_guide_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python([^\n]*)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    runnable = [code for fence, code in blocks if 'test="skip"' not in fence]
    skipped = [fence for fence, _ in blocks if 'test="skip"' in fence]
    assert len(runnable) == 4 and all('reason="' in fence for fence in skipped)
    monkeypatch.chdir(tmp_path)  # the audit example writes its JSONL here
    namespace: dict = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for index, code in enumerate(runnable):
            exec(compile(code, f"{DOC.name}[{index}]", "exec"), namespace)
    lines = out.getvalue().splitlines()
    # "a veto at step 3, a cooldown skip at step 4 (the summariser is not called), and a veto at step 5"
    assert [line.split()[:3] for line in lines[:3]] == [["veto", "step", "3:"], ["veto", "step", "4:"],
                                                        ["veto", "step", "5:"]]
    assert "cooldown" in lines[1] and "P(HARMFUL)=0.900" in lines[0]
    assert lines[3] == "12 messages in the state: nothing was summarised"
    assert lines[4] == "{'reviews': 2, 'veto': 2, 'cooldown_skips': 1}"
    assert lines[5] == "1 compaction(s) audited" and lines[6] == "1 compaction(s) detected"
    assert (tmp_path / "memguard-audit.jsonl").read_text().count("\n") == 1
