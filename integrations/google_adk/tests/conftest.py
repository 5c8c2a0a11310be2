"""Offline for every test: no Google credentials, no telemetry export, no outbound sockets.

These tests need google-adk, which cannot share the main venv (scripts/setup_google_adk_venv.sh
builds its own): where it is missing they are not collected.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import warnings

try:
    _HAS_ADK = importlib.util.find_spec("google.adk") is not None
except ModuleNotFoundError:
    _HAS_ADK = False
if not _HAS_ADK:
    collect_ignore_glob = ["test_*.py"]
else:  # only where these tests run: the main suite's own OpenTelemetry tests need the SDK on
    for _name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
                  "GOOGLE_GENAI_USE_VERTEXAI", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        os.environ.pop(_name, None)
    os.environ["OTEL_SDK_DISABLED"] = "true"

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
attempts: list[object] = []
"""Every outbound connection a test tried (refused): test_adk_offline checks it stays empty."""


def _local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return host in ("127.0.0.1", "::1", "localhost")


def _local_only(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address):
        attempts.append(address)
        raise OSError(f"google-adk-memguard tests must stay offline (tried {address!r})")
    return _connect(self, address)  # type: ignore[arg-type]


def _local_only_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address):
        attempts.append(address)
        raise OSError(f"google-adk-memguard tests must stay offline (tried {address!r})")
    return _connect_ex(self, address)  # type: ignore[arg-type]


if _HAS_ADK:  # installed before ADK is imported (at import time, not per test): an import-time call is refused too
    socket.socket.connect = _local_only  # type: ignore[method-assign]
    socket.socket.connect_ex = _local_only_ex  # type: ignore[method-assign]


def pytest_configure(config):
    # ADK marks its compaction API experimental and says so on every use.
    warnings.filterwarnings("ignore", message=r"\[EXPERIMENTAL\]", category=UserWarning)
    config.addinivalue_line("filterwarnings", r"ignore:\[EXPERIMENTAL\]:UserWarning")


def pytest_sessionfinish(session, exitstatus):
    # A refused connection that ADK swallowed (telemetry, say) fails no test by itself: fail the run.
    if attempts and exitstatus == 0:
        print(f"\ngoogle-adk-memguard tests tried to reach the network: {attempts}")
        session.exitstatus = 1
