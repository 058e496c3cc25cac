"""Hold-to-accept and the transcript, as plain logic with explicit frame times."""

from __future__ import annotations

import threading

import pytest

from ui.spelling import HoldTracker, Speller, Transcript


def feed(tracker: HoldTracker, frames: list[tuple[str | None, float]], fps: float = 10.0):
    """Feed (letter, confidence) frames at ``fps``; return what each frame accepted."""
    return [tracker.update(letter, conf, i / fps) for i, (letter, conf) in enumerate(frames)]


def test_letter_is_accepted_once_after_the_hold_time():
    tracker = HoldTracker(hold_seconds=0.5, min_confidence=0.6)
    accepted = feed(tracker, [("A", 0.9)] * 20)
    # Frame 5 is the first at t >= 0.5 s after the hold began at t = 0.
    assert accepted[5] == "A"
    assert [a for a in accepted if a] == ["A"], "holding on must not repeat the letter"


def test_low_confidence_frames_do_not_count_and_break_the_hold():
    tracker = HoldTracker(hold_seconds=0.3, min_confidence=0.6)
    frames = [("B", 0.9), ("B", 0.9), ("B", 0.5), ("B", 0.9), ("B", 0.9), ("B", 0.9)]
    assert feed(tracker, frames) == [None] * 6
    assert tracker.update("B", 0.9, 0.6) == "B"  # held from t=0.3 to t=0.6


def test_switching_letters_restarts_the_hold():
    tracker = HoldTracker(hold_seconds=0.3, min_confidence=0.5)
    frames = [("A", 0.9), ("A", 0.9), ("C", 0.9), ("C", 0.9), ("C", 0.9), ("C", 0.9)]
    assert feed(tracker, frames) == [None, None, None, None, None, "C"]


def test_same_letter_twice_needs_a_release_in_between():
    tracker = HoldTracker(hold_seconds=0.2, min_confidence=0.5)
    frames = [("L", 0.9)] * 4 + [(None, 0.0)] + [("L", 0.9)] * 4
    assert [a for a in feed(tracker, frames) if a] == ["L", "L"]


def test_view_reports_progress_toward_the_hold():
    tracker = HoldTracker(hold_seconds=1.0, min_confidence=0.5)
    tracker.update("Y", 0.9, 10.0)
    assert tracker.view(10.25).candidate == "Y"
    assert tracker.view(10.25).progress == pytest.approx(0.25)
    tracker.update("Y", 0.9, 11.0)
    assert tracker.view(11.0).progress == 1.0
    tracker.update(None, 0.0, 11.1)
    assert tracker.view(11.1).candidate is None


def test_transcript_controls():
    text = Transcript()
    text.space()
    assert text.text == "", "no leading space"
    for letter in "HI":
        text.append(letter)
    text.space()
    text.space()
    assert text.text == "HI ", "never two spaces in a row"
    text.backspace()
    text.backspace()
    assert text.text == "H"
    text.clear()
    text.backspace()
    assert text.text == ""


def test_speller_types_a_word_and_keeps_it_across_views():
    speller = Speller(hold_seconds=0.2, min_confidence=0.5)
    t = 0.0
    for letter in "HELLO":
        for _ in range(4):
            speller.observe(letter, 0.9, t)
            t += 0.1
        speller.observe(None, 0.0, t)  # hand down between letters (needed for the double L)
        t += 0.1
    speller.space()
    assert speller.view().text == "HELLO "
    assert speller.view().accepted == tuple("HELLO")
    speller.backspace()
    speller.backspace()
    assert speller.view().text == "HELL"


def test_configure_changes_threshold_and_restarts_the_hold():
    speller = Speller(hold_seconds=0.2, min_confidence=0.9)
    for i in range(5):
        speller.observe("A", 0.7, i * 0.1)
    assert speller.view().text == ""
    speller.configure(hold_seconds=0.2, min_confidence=0.5)
    for i in range(5, 10):
        speller.observe("A", 0.7, i * 0.1)
    assert speller.view().text == "A"


def test_speller_is_safe_to_feed_from_another_thread():
    speller = Speller(hold_seconds=0.0, min_confidence=0.5)
    letters = "AB" * 500

    def callback_thread() -> None:
        for i, letter in enumerate(letters):
            speller.observe(letter, 0.9, float(i))

    worker = threading.Thread(target=callback_thread)
    worker.start()
    views = [speller.view() for _ in range(200)]  # the page polling meanwhile
    worker.join()
    assert speller.view().text == letters
    assert all(letters.startswith(v.text) for v in views), "a view must never be torn"
