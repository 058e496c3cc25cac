"""Turning a stream of per-frame top letters into accepted letters and a transcript.

Pure logic, no Streamlit: the webcam callback thread feeds :class:`Speller` one observation per
frame and the page reads :meth:`Speller.view`; one lock guards the state both sides touch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HoldView:
    """What the hold tracker is doing right now, for display."""

    candidate: str | None
    progress: float  # 0..1 of the hold time; 1 once accepted


@dataclass(slots=True)
class HoldTracker:
    """Accepts a letter once it has stayed the top prediction above a threshold for a hold time.

    A held letter is accepted once; the same letter is accepted again only after the top
    prediction changed (another letter, or nothing above the threshold), so holding "L" for
    ten seconds types one L, and "LL" means showing L, dropping the hand, showing L again.
    """

    hold_seconds: float = 0.8
    min_confidence: float = 0.5
    _candidate: str | None = None
    _since: float = 0.0
    _accepted: bool = False

    def update(self, letter: str | None, confidence: float, now: float) -> str | None:
        """Feed one frame's top prediction.

        Args:
            letter: The frame's most confident letter, or None when nothing was detected.
            confidence: Its confidence (ignored when ``letter`` is None).
            now: The frame's time in seconds (any monotonic clock).

        Returns:
            The letter accepted by this frame, or None.
        """
        if letter is None or confidence < self.min_confidence:
            letter = None
        if letter != self._candidate:
            self._candidate, self._since, self._accepted = letter, now, False
        if letter is None or self._accepted or now - self._since < self.hold_seconds:
            return None
        self._accepted = True
        return letter

    def view(self, now: float) -> HoldView:
        """The current candidate and how far through the hold time it is."""
        if self._candidate is None:
            return HoldView(None, 0.0)
        if self._accepted or self.hold_seconds <= 0:
            return HoldView(self._candidate, 1.0)
        return HoldView(self._candidate, min(1.0, (now - self._since) / self.hold_seconds))

    def reset(self) -> None:
        """Forget the current candidate (e.g. after the settings or the target changed)."""
        self._candidate, self._since, self._accepted = None, 0.0, False


@dataclass(slots=True)
class Transcript:
    """The spelled text with the editing controls of the page."""

    text: str = ""

    def append(self, letter: str) -> None:
        """Add an accepted letter."""
        self.text += letter

    def space(self) -> None:
        """Add a word break (never two in a row, never at the start)."""
        if self.text and not self.text.endswith(" "):
            self.text += " "

    def backspace(self) -> None:
        """Remove the last character, if any."""
        self.text = self.text[:-1]

    def clear(self) -> None:
        """Start over."""
        self.text = ""


@dataclass(frozen=True, slots=True)
class SpellingView:
    """A consistent snapshot of the speller for the page."""

    text: str
    candidate: str | None
    progress: float
    accepted: tuple[str, ...]


@dataclass
class Speller:
    """Thread-safe hold tracker + transcript shared by the video callback and the page."""

    hold_seconds: float = 0.8
    min_confidence: float = 0.5
    _tracker: HoldTracker = field(init=False)
    _transcript: Transcript = field(default_factory=Transcript, init=False)
    _accepted: list[str] = field(default_factory=list, init=False)
    _last_now: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._tracker = HoldTracker(self.hold_seconds, self.min_confidence)

    def configure(self, hold_seconds: float, min_confidence: float) -> None:
        """Change the hold time and threshold; the current hold starts over if they changed."""
        with self._lock:
            if (hold_seconds, min_confidence) != (self.hold_seconds, self.min_confidence):
                self.hold_seconds, self.min_confidence = hold_seconds, min_confidence
                self._tracker = HoldTracker(hold_seconds, min_confidence)

    def observe(self, letter: str | None, confidence: float, now: float) -> str | None:
        """Feed one frame (from the video thread); returns the letter it accepted, if any."""
        with self._lock:
            self._last_now = now
            accepted = self._tracker.update(letter, confidence, now)
            if accepted is not None:
                self._transcript.append(accepted)
                self._accepted.append(accepted)
            return accepted

    def space(self) -> None:
        """Add a word break."""
        with self._lock:
            self._transcript.space()

    def backspace(self) -> None:
        """Delete the last character."""
        with self._lock:
            self._transcript.backspace()

    def clear(self) -> None:
        """Empty the transcript."""
        with self._lock:
            self._transcript.clear()
            self._tracker.reset()

    def view(self) -> SpellingView:
        """A snapshot for the page (taken at the last observed frame's time)."""
        with self._lock:
            hold = self._tracker.view(self._last_now)
            return SpellingView(
                self._transcript.text, hold.candidate, hold.progress, tuple(self._accepted)
            )
