"""The Python blocks of docs/integrating.md run as written (offline, no model)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrating.md"


def test_the_integration_guide_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], f"{DOC.name}[0]", "exec"), {})
    assert out.getvalue().split() == ["2", "4"]  # what the block's comment says: 2 reviews, 4 skipped steps
    namespace: dict = {}
    exec(compile(blocks[1], f"{DOC.name}[1]", "exec"), namespace)
    assert issubclass(namespace["TestMyFramework"], namespace["IntegrationContract"])
