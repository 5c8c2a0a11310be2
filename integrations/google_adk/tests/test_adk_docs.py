"""The complete example in docs/google_adk.md runs offline and shows the lossy summary vetoed."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "google_adk.md"


def test_the_docs_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    (program,) = [block for block in blocks if "asyncio.run(main())" in block]
    exec(compile(program, str(DOC), "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "agent: FACT-42" in out and "memguard: veto" in out
    assert "'in_flow_reviews': 1" in out
