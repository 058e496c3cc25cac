"""Offline, proven by the kernel: reading landmarks or palms opens no network socket.

MediaPipe's Tasks API looks up a Google metrics host from native code, where no Python
socket patch can see it; the project runs the landmark network through LiteRT instead. This
test runs a fused recognizer in a child process under ``strace`` and reads every socket
call the process and its threads made: none may be an internet socket (a DNS lookup
included), whatever Python-level switches say.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import sys
from pathlib import Path
import cv2
from tasks.inference.landmarks import LandmarkReader
from tasks.inference.palm import PalmDetector
from tasks.inference.recognizer import Recognizer

image = cv2.imread(sys.argv[2])
reader = LandmarkReader(Path(sys.argv[1]))
hand = reader.read(image, (0.0, 0.0, float(image.shape[1]), float(image.shape[0])))
print("presence", round(hand.presence, 3))
print("palms", len(PalmDetector(Path(sys.argv[1])).detect(image)))
if len(sys.argv) > 3:
    recognizer = Recognizer.load(sys.argv[3])
    found = recognizer.recognize(image, conf=0.0)
    print("detections", len(found.detections))
    # No detector box at all: the palm detector searches the frame.
    print("palm read", len(recognizer.fused.letters(image, (), 0.0, 1, 1)))
"""


def _traced(tmp_path: Path, *args: str) -> tuple[str, str]:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (.ci/run installs it)")
    log = tmp_path / "strace.log"
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=socket,connect,sendto,sendmsg", "-o", str(log),
         sys.executable, "-c", CHILD, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, log.read_text()


def _inet_calls(trace: str) -> list[str]:
    return [line for line in trace.splitlines() if re.search(r"AF_INET6?\b", line)]


def test_the_tracer_sees_an_internet_socket(tmp_path: Path) -> None:
    """The check itself: a child that opens a TCP socket is caught."""
    log = tmp_path / "strace.log"
    subprocess.run(
        ["strace", "-f", "-e", "trace=socket,connect", "-o", str(log), sys.executable, "-c",
         "import socket; socket.socket().close()"],
        check=True, timeout=60,
    )  # fmt: skip
    assert _inet_calls(log.read_text())


def test_reading_landmarks_opens_no_internet_socket(
    landmarker_task: Path, shared_dataset: Path, tmp_path: Path
) -> None:
    image = next((shared_dataset / "valid" / "images").glob("*.jpg"))
    out, trace = _traced(tmp_path, str(landmarker_task), str(image))
    assert "presence" in out and "palms 1" in out
    assert _inet_calls(trace) == []


def test_a_fused_recognizer_opens_no_internet_socket(
    landmarker_task: Path, shared_dataset: Path, fused_model: Path, tmp_path: Path
) -> None:
    image = next((shared_dataset / "valid" / "images").glob("*.jpg"))
    out, trace = _traced(tmp_path, str(landmarker_task), str(image), str(fused_model))
    assert "detections" in out and "palm read 1" in out
    assert _inet_calls(trace) == []
