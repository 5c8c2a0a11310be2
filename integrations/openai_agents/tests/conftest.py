"""Offline for every test: tracing off (nothing is exported), no API key, no outbound sockets."""

from __future__ import annotations

import os
import socket

os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
os.environ.pop("OPENAI_API_KEY", None)

import pytest
from agents import set_tracing_disabled

set_tracing_disabled(True)

_connect = socket.socket.connect


def _local_only(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"openai-agents-memguard tests must stay offline (tried {host!r})")
    return _connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _local_only)
