"""Offline for every test: no AWS credentials, no outbound sockets (the default model is Bedrock).

These tests need strands-agents, which lives in its own venv (scripts/setup_strands_venv.sh): where
it is not installed (the main venv), they are not collected.
"""

from __future__ import annotations

import importlib.util
import os
import socket

for _name in [name for name in os.environ if name.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # botocore must not look for instance credentials

try:
    _HAS_STRANDS = importlib.util.find_spec("strands") is not None
except ModuleNotFoundError:
    _HAS_STRANDS = False
if not _HAS_STRANDS:
    collect_ignore_glob = ["test_*.py"]
else:
    import pytest

    _connect = socket.socket.connect

    def _local_only(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise OSError(f"strands-memguard tests must stay offline (tried {host!r})")
        return _connect(self, address)  # type: ignore[arg-type]

    @pytest.fixture(autouse=True)
    def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(socket.socket, "connect", _local_only)
