"""Offline for every test: no outbound sockets (the scripted chat client never needs one).

These tests need agent-framework-core; where it is not installed they are not collected.
"""

from __future__ import annotations

import importlib.util
import socket

import pytest

if importlib.util.find_spec("agent_framework") is None:
    collect_ignore_glob = ["test_*.py"]

_connect = socket.socket.connect


def _local_only(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"agent-framework-memguard tests must stay offline (tried {host!r})")
    return _connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _local_only)
