"""Practice scoring: correct after a hold, misses, streaks, skipping, focusing on misses."""

from __future__ import annotations

from collections import Counter

from tasks.core.records import LETTERS
from ui.practice import HANDSHAPES, PracticeSession


def hold(session: PracticeSession, letter: str | None, start: float, seconds: float = 0.5):
    """Show ``letter`` from ``start`` for ``seconds`` at 10 fps; return the time after."""
    t = start
    outcomes = []
    while t <= start + seconds + 1e-9:
        outcomes.append(session.observe(letter, 0.9, t))
        t += 0.1
    outcomes.append(session.observe(None, 0.0, t))  # hand down
    return t + 0.1, [o for o in outcomes if o]


def test_every_letter_has_a_handshape_description():
    assert set(HANDSHAPES) == set(LETTERS)
    assert all(len(text) > 20 for text in HANDSHAPES.values())


def test_holding_the_target_scores_and_moves_on():
    session = PracticeSession(hold_seconds=0.3, min_confidence=0.5, seed=1)
    target = session.target
    _, outcomes = hold(session, target, 0.0)
    assert [(o.target, o.seen, o.correct) for o in outcomes] == [(target, target, True)]
    view = session.view()
    assert (view.score, view.attempts, view.streak, view.best_streak) == (1, 1, 1, 1)
    assert view.target != target
    assert view.description == HANDSHAPES[view.target]


def test_feedback_says_what_it_sees_instead():
    session = PracticeSession(letters="AB", hold_seconds=1.0, min_confidence=0.5, seed=0)
    other = "B" if session.target == "A" else "A"
    session.observe(other, 0.9, 0.0)
    view = session.view()
    assert (view.kind, view.seen) == ("other", other)
    session.observe(session.target, 0.9, 0.1)
    assert session.view().kind == "holding"
    session.observe(None, 0.0, 0.2)
    assert session.view().kind == "waiting"


def test_a_held_wrong_letter_is_a_miss_and_breaks_the_streak():
    session = PracticeSession(letters="AB", hold_seconds=0.3, min_confidence=0.5, seed=3)
    t, _ = hold(session, session.target, 0.0)
    target = session.target
    wrong = "B" if target == "A" else "A"
    t, outcomes = hold(session, wrong, t)
    assert [(o.seen, o.correct) for o in outcomes] == [(wrong, False)]
    view = session.view()
    assert view.target == target, "a miss keeps the target: try again"
    assert (view.score, view.attempts, view.streak, view.best_streak) == (1, 2, 0, 1)
    assert view.most_missed == ((target, 1),)


def test_skip_counts_a_miss_and_moves_on():
    session = PracticeSession(hold_seconds=0.3, min_confidence=0.5, seed=5)
    target = session.target
    session.skip()
    view = session.view()
    assert view.target != target and view.last.seen == "skipped"
    assert view.most_missed == ((target, 1),) and view.attempts == 1 and view.score == 0


def test_low_confidence_never_answers():
    session = PracticeSession(hold_seconds=0.2, min_confidence=0.8, seed=2)
    outcomes = [session.observe(session.target, 0.5, i * 0.1) for i in range(30)]
    assert not any(outcomes) and session.view().attempts == 0


def test_focus_on_misses_draws_only_missed_letters_most_missed_most_often():
    session = PracticeSession(hold_seconds=0.2, min_confidence=0.5, seed=7)
    session.misses.update({"Q": 6, "R": 2})
    session.configure(0.2, 0.5, focus_misses=True)
    first = session.target  # drawn before any miss; skipping it makes it a missed letter too
    drawn = Counter()
    for _ in range(400):
        session.skip()  # adds a miss to the skipped target too
        drawn[session.view().target] += 1
    assert set(drawn) <= {"Q", "R", first}
    assert drawn["Q"] > drawn["R"] > 0


def test_without_focus_targets_cover_the_alphabet():
    session = PracticeSession(hold_seconds=0.2, min_confidence=0.5, seed=11)
    seen = set()
    for _ in range(300):
        seen.add(session.target)
        session.skip()
    assert seen == set(LETTERS)
