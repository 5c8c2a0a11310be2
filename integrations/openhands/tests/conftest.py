"""Keep OpenHands offline and quiet before anything imports it (LiteLLM fetches a cost map at import)."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def pytest_configure(config):
    # LiteLLM's typed dicts use ReadOnly items, which pydantic warns about on first use.
    config.addinivalue_line("filterwarnings", "ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
