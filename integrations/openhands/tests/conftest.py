"""Keep OpenHands offline and quiet before anything imports it (LiteLLM fetches a cost map at import).

These tests need openhands-sdk (Python >= 3.12): elsewhere (the main 3.11 venv) they are not collected.
"""

import importlib.util
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

try:
    _HAS_OPENHANDS = importlib.util.find_spec("openhands.sdk") is not None
except ModuleNotFoundError:
    _HAS_OPENHANDS = False
if not _HAS_OPENHANDS:
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config):
    # LiteLLM's typed dicts use ReadOnly items, which pydantic warns about on first use.
    config.addinivalue_line("filterwarnings", "ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
