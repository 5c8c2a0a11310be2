"""google-adk-memguard: memguard for Google ADK's events compaction.

`MemGuardSummarizer` wraps an ADK events summarizer (`LlmEventSummarizer` or your own) and
commits, replaces or vetoes each compaction on MemRM's word, both in-flow (before a model call,
the winning probe served as the step's response) and post-invocation; its `plugin` goes last in
`App(plugins=[...])`, and `guard_app` wires both into a copy of an app. `ContentBridge` converts
ADK request contents to memguard's view and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from google_adk_memguard.app import guard_app
from google_adk_memguard.fallbacks import SummarizerStrategy, strategy_name
from google_adk_memguard.plugin import MemGuardPlugin
from google_adk_memguard.probing import probe
from google_adk_memguard.rebuild import CandidateUnavailable, build_contents, contents_with, probe_request
from google_adk_memguard.summarizer import MemGuardSummarizer
from google_adk_memguard.views import REF, ContentBridge, response_view

__all__ = [
    "REF",
    "CandidateUnavailable",
    "ContentBridge",
    "MemGuardPlugin",
    "MemGuardSummarizer",
    "SummarizerStrategy",
    "build_contents",
    "contents_with",
    "guard_app",
    "probe",
    "probe_request",
    "response_view",
    "strategy_name",
]
try:
    __version__ = version("google-adk-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
