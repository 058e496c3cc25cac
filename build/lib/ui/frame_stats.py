"""Per-session video statistics written by the frame callback and read by the page.

No Streamlit here: the callback runs on streamlit-webrtc's worker thread, where ``st.*`` calls
are not allowed, so it records into :class:`FrameStats` under a lock and the page polls
:meth:`FrameStats.snapshot`.
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

WINDOW_SECONDS = 2.0  # FPS and latency are averaged over the last two seconds of frames
HISTORY = 200  # distinct top letters remembered, in order


@dataclass(frozen=True, slots=True)
class LetterRun:
    """One stretch of consecutive frames whose top letter was the same."""

    letter: str
    frames: int


@dataclass(frozen=True, slots=True)
class StatsView:
    """A consistent snapshot of the statistics."""

    frames: int
    fps: float
    latency_ms: float
    latency_p95_ms: float
    letter: str | None
    confidence: float
    runs: tuple[LetterRun, ...]
    totals: tuple[tuple[str, int], ...]  # frames per top letter of this stream, most first

    def letters_seen(self, min_frames: int = 1) -> tuple[str, ...]:
        """Top letters in the order they appeared, runs shorter than ``min_frames`` left out."""
        return tuple(run.letter for run in self.runs if run.frames >= min_frames)


def processed_line(view: StatsView) -> str:
    """The readout's first line (markdown), as the live page shows it and the tests parse it."""
    return (
        f"**Processed** {view.frames} frames · {view.fps:.1f} FPS · "
        f"{view.latency_ms:.0f} ms per frame (p95 {view.latency_p95_ms:.0f} ms)"
    )


def video_line(view: StatsView) -> str:
    """The readout line for every frame returned (background mode), as the tests parse it."""
    return (
        f"**Video** {view.frames} frames · {view.fps:.1f} FPS · "
        f"{view.latency_ms:.0f} ms in the app (p95 {view.latency_p95_ms:.0f} ms)"
    )


@dataclass
class FrameStats:
    """Processed-frame rate, processing latency and the sequence of top letters."""

    _times: deque[tuple[float, float]] = field(default_factory=deque, init=False)
    _frames: int = field(default=0, init=False)
    _letter: str | None = field(default=None, init=False)
    _confidence: float = field(default=0.0, init=False)
    _runs: deque[list[str | int]] = field(default_factory=lambda: deque(maxlen=HISTORY), init=False)
    _totals: Counter[str] = field(default_factory=Counter, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def record(self, now: float, latency_ms: float, letter: str | None, confidence: float) -> None:
        """Record one processed frame.

        Args:
            now: When processing finished (monotonic seconds).
            latency_ms: How long the frame spent in the callback.
            letter: Its top letter, or None.
            confidence: The top letter's confidence (0 when None).
        """
        with self._lock:
            self._frames += 1
            self._times.append((now, latency_ms))
            while self._times and now - self._times[0][0] > WINDOW_SECONDS:
                self._times.popleft()
            self._letter, self._confidence = letter, confidence
            if letter is None:
                return
            self._totals[letter] += 1
            if self._runs and self._runs[-1][0] == letter:
                self._runs[-1][1] = int(self._runs[-1][1]) + 1
            else:
                self._runs.append([letter, 1])

    def snapshot(self, now: float | None = None) -> StatsView:
        """Statistics over the recent window.

        Args:
            now: The current monotonic time; frames older than the window no longer count, so
                the rate drops to zero when the stream stops. Default: the last frame's time.
        """
        with self._lock:
            times = list(self._times)
            runs = tuple(LetterRun(str(letter), int(n)) for letter, n in self._runs)
            totals = tuple(self._totals.most_common())
            frames, letter, confidence = self._frames, self._letter, self._confidence
        if now is not None:
            times = [t for t in times if now - t[0] <= WINDOW_SECONDS]
        fps = 0.0
        if len(times) >= 2 and times[-1][0] > times[0][0]:
            fps = (len(times) - 1) / (times[-1][0] - times[0][0])
        latencies = [latency for _, latency in times]
        mean = statistics.fmean(latencies) if latencies else 0.0
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
        return StatsView(frames, fps, mean, p95, letter, confidence, runs, totals)
