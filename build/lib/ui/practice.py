"""Practice mode: show a target letter, watch the learner sign it, score, move on.

Pure logic, no Streamlit: the frame callback feeds :meth:`PracticeSession.observe` and the page
reads :meth:`PracticeSession.view`; one lock guards both.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tasks.core.records import LETTERS
from ui.spelling import HoldTracker

# Short reference descriptions of the ASL handshapes (right hand, palm facing the viewer
# unless said otherwise). J and Z move in real signing; the model sees their end shape.
HANDSHAPES: dict[str, str] = {
    "A": "Fist, thumb resting straight up against the side of the index finger.",
    "B": "Flat hand, four fingers straight up and together, thumb folded across the palm.",
    "C": "Fingers and thumb curved as if holding a cup: the hand forms a C.",
    "D": "Index finger up; the other fingertips touch the thumb, making a circle.",
    "E": "Fingers bent down, fingertips resting on the thumb folded across the palm.",
    "F": "Index fingertip touches the thumb in a circle; the other three fingers up and apart.",
    "G": "Hand sideways, index finger and thumb pointing forward, parallel; others folded.",
    "H": "Hand sideways, index and middle fingers together pointing forward.",
    "I": "Little finger up; the other fingers in a fist with the thumb across them.",
    "J": "An I handshape that draws a J: little finger sweeps down and curves up.",
    "K": "Index and middle fingers up in a V, thumb touching the middle finger between them.",
    "L": "Index finger up and thumb out to the side: an L.",
    "M": "Thumb tucked under the index, middle and ring fingers, fist closed.",
    "N": "Thumb tucked under the index and middle fingers, fist closed.",
    "O": "All fingertips curve to touch the thumb tip: an O.",
    "P": "A K handshape pointing down, the middle finger toward the floor.",
    "Q": "A G handshape pointing down: index finger and thumb toward the floor.",
    "R": "Index and middle fingers up and crossed.",
    "S": "Fist with the thumb across the front of the fingers.",
    "T": "Fist with the thumb tucked between the index and middle fingers.",
    "U": "Index and middle fingers up and together, thumb holding the others down.",
    "V": "Index and middle fingers up and spread: a V.",
    "W": "Index, middle and ring fingers up and spread: a W.",
    "X": "Index finger up and hooked; the other fingers in a fist.",
    "Y": "Thumb and little finger stretched out, the other fingers folded.",
    "Z": "Index finger out, drawing a Z in the air.",
}

FeedbackKind = Literal["waiting", "holding", "other"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of the last finished attempt."""

    target: str
    seen: str
    correct: bool


@dataclass(frozen=True, slots=True)
class PracticeView:
    """A consistent snapshot of a practice session for the page."""

    target: str
    description: str
    kind: FeedbackKind  # nothing seen / holding the target / seeing another letter
    seen: str | None
    progress: float
    score: int
    attempts: int
    streak: int
    best_streak: int
    last: Outcome | None
    most_missed: tuple[tuple[str, int], ...]


class PracticeSession:
    """Targets, hold-to-answer, score and streak, and which letters the learner misses.

    A target held for the hold time scores and moves on. Another letter held for the hold time
    is a miss: the streak breaks, the target's miss count grows, and the learner tries again
    (or skips). With ``focus_misses`` new targets are drawn from the missed letters, the most
    missed most often.
    """

    def __init__(
        self,
        letters: Sequence[str] = LETTERS,
        hold_seconds: float = 1.0,
        min_confidence: float = 0.5,
        focus_misses: bool = False,
        seed: int | None = None,
    ) -> None:
        if not letters:
            raise ValueError("practice needs at least one letter")
        self.letters = tuple(letters)
        self.focus_misses = focus_misses
        self._rng = random.Random(seed)
        self._tracker = HoldTracker(hold_seconds, min_confidence)
        self._lock = threading.Lock()
        self._now = 0.0
        self.score = self.attempts = self.streak = self.best_streak = 0
        self.misses: Counter[str] = Counter()
        self.last: Outcome | None = None
        self.target = self._pick(None)

    def configure(self, hold_seconds: float, min_confidence: float, focus_misses: bool) -> None:
        """Change the hold time, threshold and target choice (the current hold starts over)."""
        with self._lock:
            tracker = self._tracker
            if (tracker.hold_seconds, tracker.min_confidence) != (hold_seconds, min_confidence):
                self._tracker = HoldTracker(hold_seconds, min_confidence)
            self.focus_misses = focus_misses

    def observe(self, letter: str | None, confidence: float, now: float) -> Outcome | None:
        """Feed one frame's top letter (from the video thread).

        Returns:
            The attempt this frame finished, or None.
        """
        with self._lock:
            self._now = now
            accepted = self._tracker.update(letter, confidence, now)
            if accepted is None:
                return None
            return self._finish(accepted)

    def skip(self) -> None:
        """Give up on the target: counts as a miss and moves on."""
        with self._lock:
            self.attempts += 1
            self.misses[self.target] += 1
            self.streak = 0
            self.last = Outcome(self.target, "skipped", False)
            self._advance()

    def view(self) -> PracticeView:
        """A snapshot for the page."""
        with self._lock:
            hold = self._tracker.view(self._now)
            if hold.candidate is None:
                kind: FeedbackKind = "waiting"
            else:
                kind = "holding" if hold.candidate == self.target else "other"
            return PracticeView(
                target=self.target,
                description=HANDSHAPES.get(self.target, ""),
                kind=kind,
                seen=hold.candidate,
                progress=hold.progress,
                score=self.score,
                attempts=self.attempts,
                streak=self.streak,
                best_streak=self.best_streak,
                last=self.last,
                most_missed=tuple(self.misses.most_common(5)),
            )

    def _finish(self, seen: str) -> Outcome:
        self.attempts += 1
        outcome = Outcome(self.target, seen, seen == self.target)
        self.last = outcome
        if outcome.correct:
            self.score += 1
            self.streak += 1
            self.best_streak = max(self.best_streak, self.streak)
            self._advance()
        else:
            self.misses[self.target] += 1
            self.streak = 0
        return outcome

    def _advance(self) -> None:
        self.target = self._pick(self.target)
        self._tracker.reset()

    def _pick(self, current: str | None) -> str:
        pool = [x for x in self.letters if x != current] or list(self.letters)
        missed = [x for x in pool if self.misses[x] > 0]
        if self.focus_misses and missed:
            return self._rng.choices(missed, weights=[self.misses[x] for x in missed])[0]
        return self._rng.choice(pool)
