"""Start and stop real server processes on 127.0.0.1 (only the PIDs a test started)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def run_command(args: list[str], env: dict[str, str], timeout: float, log: Path) -> str:
    """Run a CLI command in the checkout to completion; fail with its output and ``log``'s
    tail if it fails or hangs. Returns stdout and stderr."""
    try:
        done = subprocess.run(
            args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args[:4]} hung for {timeout}s:\n{exc.stdout}\n{log.read_text()[-4000:]}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args[:4]} failed:\n{output[-4000:]}\n{log.read_text()[-4000:]}"
    return output


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Wait until ``url`` answers 200, failing early (with the log) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a server we started (its whole process group), then make sure it is gone."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_server(
    args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start a server in its own process group with output to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(
        args,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )


def start_app(port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the Streamlit app (``ui/app.py``) on 127.0.0.1:``port``, as ``make app`` does.

    It runs in the repository root, so ``.streamlit/config.toml`` applies. Wait for it with
    :func:`wait_http` on ``/_stcore/health``.
    """
    root = Path(__file__).resolve().parents[2]
    return start_server(
        [
            str(BIN / "streamlit"),
            "run",
            str(root / "ui" / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        log,
        env,
        cwd=root,
    )
