"""docs/openhands.md: its Python blocks run offline, in order, as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "openhands.md"


def test_the_docs_examples_run_offline(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) >= 2
    module = types.ModuleType("docs_openhands")  # a real module: pydantic generics look their module up
    sys.modules[module.__name__] = module
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    out = capsys.readouterr().out.splitlines()
    assert "FACT-42" in out
