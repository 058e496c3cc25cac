"""Headless Chromium with a fake camera playing a clip, driven by Selenium, fully offline.

Used by the browser test and ``benchmarks/browser.py``. The clip is a YUV4MPEG2 file (what
Chromium's ``--use-file-for-fake-video-capture`` plays, looping); the driver is Debian's
chromedriver, named explicitly so Selenium Manager never looks for one on the network.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path(os.environ.get("FINGERSPELL_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FINGERSPELL_CHROMEDRIVER", "/usr/bin/chromedriver"))
FRAME_SIZE = (640, 480)  # (width, height) of the fake camera
_PROCESSED = re.compile(
    r"Processed\s+(\d+) frames · ([\d.]+) FPS · (\d+) ms per frame\s+\(p95\s+(\d+) ms"
)
_VIDEO = re.compile(r"Video\s+(\d+) frames · ([\d.]+) FPS")
_SEEN = re.compile(r"([A-Z]) (\d+)")


def have_chromium() -> bool:
    """Whether Chromium and its driver are installed."""
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def camera_frame(image: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Place a BGR image, scaled to the frame height, in the middle of a grey camera frame."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    frame = np.full((height, width, 3), 114, np.uint8)
    left, top = (width - w) // 2, (height - h) // 2
    frame[top : top + h, left : left + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def write_y4m(frames: Sequence[np.ndarray], path: Path, fps: int = 30) -> Path:
    """Write BGR frames (all the same even size) as an uncompressed 4:2:0 YUV4MPEG2 clip."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            # OpenCV's I420: the Y plane, then U, then V - the layout of a y4m 4:2:0 frame.
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def y4m_frame(frame: np.ndarray) -> np.ndarray:
    """The frame as Chromium will read it back from the clip (after the 4:2:0 round trip)."""
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)


def start_chromium(clip: Path, window: tuple[int, int] = (1400, 1000)) -> WebDriver:
    """A headless Chromium whose camera plays ``clip`` and that never leaves 127.0.0.1."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
        f"--window-size={window[0]},{window[1]}",
        # A background tab must not throttle its timers or video while other tabs run.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@dataclass(frozen=True, slots=True)
class PageStats:
    """What the live page's readout says."""

    frames: int
    fps: float
    latency_ms: float
    latency_p95_ms: float
    seen: dict[str, int]
    video_frames: int = 0  # background mode: every frame returned, recognized or not
    video_fps: float = 0.0


def read_stats(driver: WebDriver) -> PageStats | None:
    """Parse the live page's readout, or None when it is not on the page yet."""
    text = driver.find_element("tag name", "body").text
    processed = _PROCESSED.search(text)
    if processed is None:
        return None
    seen: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("Letters seen"):
            seen = {letter: int(n) for letter, n in _SEEN.findall(line.split(":", 1)[1])}
    frames, fps, latency, p95 = processed.groups()
    video = _VIDEO.search(text)
    video_frames, video_fps = (int(video.group(1)), float(video.group(2))) if video else (0, 0.0)
    return PageStats(
        int(frames), float(fps), float(latency), float(p95), seen, video_frames, video_fps
    )


def click_start(driver: WebDriver, timeout: float = 60, label: str = "START") -> None:
    """Click the webcam widget's START (or STOP) button, inside the component's iframe."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title*='webrtc']")))
    driver.switch_to.frame(frame)
    try:
        button = wait.until(  # CSS upper-cases the label; the DOM text is "Start".
            ec.element_to_be_clickable(
                (
                    By.XPATH,
                    f"//button[translate(normalize-space(), '{label.lower()}', '{label}')"
                    f"='{label}']",
                )
            )
        )
        button.click()
    finally:
        driver.switch_to.default_content()


def wait_for_text(driver: WebDriver, text: str, timeout: float) -> str:
    """Wait until the page's text contains ``text``; returns the page's text."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if text in body:
            return body
        time.sleep(0.5)
    raise TimeoutError(f"{text!r} not on the page after {timeout}s; it shows:\n{body[-2000:]}")


def wait_for_button(driver: WebDriver, prefix: str, timeout: float) -> str:
    """Wait for a Streamlit button whose label starts with ``prefix``; returns its label.

    Streamlit draws a rerun's elements one by one, so a text above a button can show first, and
    a rerun replaces buttons while we look at them: the labels are read in one script call, so a
    button swapped between finding and reading cannot go stale under us.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        labels = driver.execute_script(
            r"return Array.from(document.querySelectorAll('button'),"
            r" b => b.innerText.replace(/\s+/g, ' ').trim());"
        )
        for label in labels:
            if label.startswith(prefix):
                return label
        time.sleep(0.5)
    raise TimeoutError(f"no button starting {prefix!r} on the page after {timeout}s")


def click_button(driver: WebDriver, label: str, timeout: float = 30) -> None:
    """Click the Streamlit button labelled ``label`` (outside the webcam iframe).

    A rerun can replace the button between finding and clicking it; then it is found again.
    """
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    deadline = time.monotonic() + timeout
    locator = (By.XPATH, f"//button[normalize-space()='{label}']")
    while True:
        left = deadline - time.monotonic()
        try:
            wait = WebDriverWait(driver, max(left, 0.1))
            button = wait.until(ec.element_to_be_clickable(locator))
            button.click()
            return
        except (StaleElementReferenceException, ElementClickInterceptedException):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.3)


def wait_for_frames(driver: WebDriver, frames: int, timeout: float) -> PageStats:
    """Wait until the page reports at least ``frames`` processed frames."""
    deadline = time.monotonic() + timeout
    stats = None
    while time.monotonic() < deadline:
        stats = read_stats(driver)
        if stats is not None and stats.frames >= frames:
            return stats
        time.sleep(0.5)
    raise TimeoutError(f"fewer than {frames} processed frames after {timeout}s: {stats}")


def start_stream(
    driver: WebDriver,
    url: str,
    first_frames: int = 10,
    timeout: float = 60,
    attempts: int = 2,
) -> PageStats:
    """Open the live page, click START and wait until frames keep coming, retrying once.

    streamlit-webrtc's first connection to a freshly started server has been seen to stall
    after a few frames; a reload (a new session and peer connection) gets going. So the
    stream counts as started once ``first_frames`` frames were processed and as many again
    followed within ``timeout / 3`` seconds.

    Returns:
        The readout once the stream is flowing.
    """
    for attempt in range(1, attempts + 1):
        driver.get(url)
        click_start(driver, timeout)
        try:
            wait_for_frames(driver, first_frames, timeout)
            return wait_for_frames(driver, 2 * first_frames, timeout / 3)
        except TimeoutError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
