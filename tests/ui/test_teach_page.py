"""The Teach page run by AppTest: a burst saved with the right labels, delete, personalize,
and switching between the champion and the learner's own model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tasks.core.records import LETTERS, Box
from tasks.data.captures import learner_dir, read_bursts, save_burst
from tasks.registry.models import MODEL_NAME
from ui.teach import one_hand

UI = Path(__file__).resolve().parents[2] / "ui"
TIMEOUT = 120


def run_page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(UI / "views" / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "error", "info", "warning", "success")
             for e in getattr(at, kind)]  # fmt: skip
    return "\n".join(str(p) for p in parts)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def home() -> Path:
    from tasks.core.settings import get_settings

    return get_settings().home


def one_hand_image(recognizer, dataset: Path) -> tuple[np.ndarray, float, Box]:
    """A test image and a threshold at which the model finds exactly one box in it."""
    best = None
    for path in sorted((dataset / "test" / "images").iterdir())[:20]:
        image = cv2.imread(str(path))
        found = recognizer.recognize(image, conf=0.0, max_det=3, agnostic=True).detections
        gap = found[0].confidence - (found[1].confidence if len(found) > 1 else 0.0)
        if found and (best is None or gap > best[0]):
            best = (gap, image, found)
    assert best is not None, "the smoke model finds nothing at all"
    _, image, found = best
    second = found[1].confidence if len(found) > 1 else 0.0
    conf = (found[0].confidence + second) / 2
    box = one_hand(recognizer.recognize(image, conf=conf, max_det=3, agnostic=True).detections)
    assert box is not None
    return image, conf, box


@pytest.fixture
def personal_alias(app_env: str) -> Iterator[str]:
    """``personal-me`` on v2 of the shared smoke store, removed afterwards."""
    from mlflow import MlflowClient

    client = MlflowClient(app_env)
    client.set_registered_model_alias(MODEL_NAME, "personal-me", "2")
    yield "personal-me"
    client.delete_registered_model_alias(MODEL_NAME, "personal-me")


def test_a_burst_is_saved_with_the_letter_and_the_detected_box(
    app_env: str, fake_webcam: SimpleNamespace, shared_dataset: Path
):
    at = run_page("teach")
    assert not at.exception
    assert "## Sign **A**" in texts(at) and "thumb resting straight up" in texts(at)
    processor = fake_webcam.processors["teach"]
    image, conf, box = one_hand_image(processor.recognizer.inner, shared_dataset)
    at.slider(key="teach_frames").set_value(3)
    at.slider(key="teach_seconds").set_value(0.5)
    at.slider(key="teach_conf").set_value(conf)
    at.run()
    button(at, "Capture a burst").click().run()
    collector = at.session_state["teach_collector"]
    assert collector.view().state == "waiting"
    # What streamlit-webrtc's worker does while the learner holds the sign.
    processor.process(np.zeros_like(image))  # no hand: the burst has not started
    deadline = time.monotonic() + 30
    while collector.view().state != "done" and time.monotonic() < deadline:
        processor.process(image)
        time.sleep(0.02)
    assert collector.view().kept == 3
    at.run()
    assert "**3 frames** with one hand" in texts(at)
    assert len(at.get("image")) == 3
    button(at, "Delete").click().run()  # the first one
    assert "**2 frames** with one hand" in texts(at)
    button(at, "Save 2 frames").click().run()
    assert not at.exception
    assert "Saved 2 frames of A (train)." in texts(at)
    assert "## Sign **B**" in texts(at), "on to the next letter"
    assert "**Saved bursts** (per letter): A 1" in texts(at)

    root = learner_dir(home(), "me")
    [burst] = read_bursts(root)
    assert (burst.letter, burst.frames, burst.split) == ("A", 2, "train")
    labels = sorted((root / "train" / "labels").glob(f"{burst.id}-*.txt"))
    assert len(labels) == 2 and len(list((root / "train" / "images").iterdir())) == 2
    height, width = image.shape[:2]
    expected = [(box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height,
                (box.x2 - box.x1) / width, (box.y2 - box.y1) / height]  # fmt: skip
    for label in labels:
        class_id, *xywh = label.read_text().split()
        assert int(class_id) == LETTERS.index("A")
        assert np.allclose([float(v) for v in xywh], expected, atol=1e-4)


def test_all_captures_are_deleted_after_a_confirmation(app_env: str, fake_webcam):
    root = learner_dir(home(), "me")
    image = np.zeros((48, 64, 3), np.uint8)
    save_burst(root, "C", [image], [Box(x1=1, y1=2, x2=30, y2=40)])
    merged = home() / "datasets" / "personal" / "me"  # what a Personalize run copied
    (merged / "base-123" / "train" / "images").mkdir(parents=True)
    (merged / "base-123" / "train" / "images" / "c.jpg").write_bytes(b"frame")
    at = run_page("teach")
    assert "**Saved bursts** (per letter): C 1" in texts(at)
    button(at, "Delete all my captures").click().run()
    assert "Delete every burst me saved, and every copy" in texts(at)
    button(at, "Cancel").click().run()
    assert root.exists()
    button(at, "Delete all my captures").click().run()
    button(at, "Yes, delete them all").click().run()
    assert not at.exception
    assert not root.exists() and not merged.exists()
    shown = texts(at)
    assert "Deleted all of me's captures: 5 files in 2 places." in shown
    assert f"- `{root}`: 4 files" in shown and f"- `{merged}`: 1 file" in shown
    assert "**Saved bursts** (per letter): none yet" in texts(at)


def test_a_bad_learner_name_is_refused(app_env: str, fake_webcam):
    at = run_page("teach")
    at.text_input(key="teach_learner").set_value("../Ann").run()
    assert "use 1-32 lower-case letters" in at.error[0].value
    assert not (home() / "captures").exists()


def test_a_running_personalize_can_be_stopped_and_keeps_the_captures(
    app_env: str, fake_webcam, monkeypatch
):
    import ui.personalize_job

    root = learner_dir(home(), "me")
    image = np.zeros((48, 64, 3), np.uint8)
    for _ in range(2):
        save_burst(root, "A", [image], [Box(x1=1, y1=2, x2=30, y2=40)])
    started = threading.Event()

    def launcher(learner: str, on_line, cancel: threading.Event) -> dict:
        started.set()
        if cancel.wait(10):
            raise ui.personalize_job.Cancelled("stopped")
        return {}

    monkeypatch.setattr(ui.personalize_job, "launch_flow", launcher)
    monkeypatch.setattr(ui.personalize_job, "_JOBS", {})
    at = run_page("teach")
    button(at, "Personalize").click().run()
    assert started.wait(5)
    at.run()
    assert button(at, "Personalize").disabled
    # The fine-tune reads the captures: they cannot be deleted under it.
    assert button(at, "Delete all my captures").disabled
    button(at, "Stop").click().run()
    job = ui.personalize_job.job_for("me")
    deadline = time.monotonic() + 10
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    assert job.state == "cancelled"
    assert "Personalizing stopped" in texts(at)
    assert not button(at, "Delete all my captures").disabled
    assert len(read_bursts(root)) == 2
    assert "model_version" not in at.session_state  # still the champion


def test_personalize_runs_in_the_background_then_uses_the_personal_model(
    app_env: str, fake_webcam, monkeypatch
):
    from mlflow import MlflowClient

    import ui.personalize_job

    root = learner_dir(home(), "me")
    image = np.zeros((48, 64, 3), np.uint8)
    for _ in range(2):  # one train burst and one held-out burst
        save_burst(root, "A", [image], [Box(x1=1, y1=2, x2=30, y2=40)])

    def launcher(learner: str, on_line, cancel) -> dict:
        on_line("fine-tuning")
        # What the flow does at its end: register and alias the learner's model.
        MlflowClient(app_env).set_registered_model_alias(MODEL_NAME, f"personal-{learner}", "2")
        return {"before": {"learner": 0.25, "base": 0.5}, "after": {"learner": 0.75, "base": 0.5}}

    monkeypatch.setattr(ui.personalize_job, "launch_flow", launcher)
    monkeypatch.setattr(ui.personalize_job, "_JOBS", {})
    try:
        at = run_page("teach")
        assert "the general model (champion, v1)" in texts(at)
        button(at, "Personalize").click().run()
        job = ui.personalize_job.job_for("me")
        deadline = time.monotonic() + 10
        while job.state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.state == "done"
        at.run()
        assert not at.exception
        assert at.session_state["model_version"] == "@personal-me"
        shown = texts(at)
        assert "your own model (personal-me, v2)" in shown
        assert "top-1 0.25 → 0.75" in shown
    finally:
        MlflowClient(app_env).delete_registered_model_alias(MODEL_NAME, "personal-me")


def test_the_model_page_switches_between_champion_and_personal_model(
    app_env: str, personal_alias: str
):
    at = run_page("model")
    assert at.subheader[0].value == "Loaded: asl-detector v1 (champion)"
    assert "the general model (champion, v1)" in texts(at)
    button(at, "Use my model (personal-me)").click().run()
    assert not at.exception
    assert at.subheader[0].value == "Loaded: asl-detector v2 (personal-me)"
    assert "your own model (personal-me, v2)" in texts(at)
    button(at, "Use the general model").click().run()
    assert at.subheader[0].value == "Loaded: asl-detector v1 (champion)"


def test_my_model_cannot_be_picked_before_it_exists(app_env: str):
    at = run_page("model")
    assert button(at, "Use my model (personal-me)").disabled


def test_the_live_page_says_which_model_it_uses(app_env: str, fake_webcam, personal_alias: str):
    at = run_page("live", model_version="@personal-me")
    assert not at.exception
    assert "Recognizing with **your own model (personal-me, v2)**" in texts(at)
    assert at.session_state["live_processor"].recognizer is not None


def test_a_missing_personal_model_is_explained_with_a_way_back(app_env: str, fake_webcam):
    at = run_page("live", model_version="@personal-nobody")
    assert "has no model personal-nobody yet" in texts(at)
    button(at, "Use the general model").click().run()
    assert "Recognizing with **the general model (champion, v1)**" in texts(at)


def test_the_app_lists_teach_and_says_which_model_is_in_use(app_env: str, fake_webcam):
    at = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    sidebar = "\n".join(str(c.value) for c in at.sidebar.caption)
    assert "Using **the general model** (champion)." in sidebar
    assert at.sidebar.button[0].label == "Use my model (personal-me)"
    assert at.sidebar.button[0].disabled, "no personal model yet"
    at.switch_page("views/teach.py").run()
    assert not at.exception
    assert at.title[0].value == "Teach"
