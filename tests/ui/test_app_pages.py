"""Each page run by Streamlit's AppTest: no model, MLflow down, a loaded model, uploads."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from streamlit.testing.v1 import AppTest

UI = Path(__file__).resolve().parents[2] / "ui"
PAGES = ("live", "practice", "upload", "model")
TIMEOUT = 120  # the first run of a page loads the model (onnxruntime) on a busy CPU


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_page(name: str) -> AppTest:
    return AppTest.from_file(str(UI / "views" / f"{name}.py"), default_timeout=TIMEOUT).run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "error", "info", "warning", "success")
             for e in getattr(at, kind)]  # fmt: skip
    return "\n".join(str(p) for p in parts)


def first_test_image(dataset: Path) -> Path:
    return sorted((dataset / "test" / "images").iterdir())[0]


@pytest.mark.parametrize("page", PAGES)
def test_without_a_model_every_page_says_what_to_run(page: str, empty_env: str, fake_webcam):
    at = run_page(page)
    assert not at.exception
    assert "No model to show yet" in texts(at)
    commands = "\n".join(c.value for c in at.code)
    assert "make demo" in commands and "python -m flows.pipeline --profile smoke" in commands
    assert "FINGERSPELL_MLFLOW_TRACKING_URI" in texts(at)
    assert not Path(empty_env.removeprefix("sqlite:///")).exists(), "looking must not create it"


def test_app_entry_navigates_to_the_live_page_first(empty_env: str, fake_webcam):
    at = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Live fingerspelling"
    assert "No model to show yet" in texts(at)


@pytest.mark.parametrize("page", ["live", "model"])
def test_unreachable_mlflow_is_explained_quickly(page: str, empty_env: str, monkeypatch,
                                                 fake_webcam):  # fmt: skip
    from tasks.core.settings import get_settings

    monkeypatch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    start = time.monotonic()
    at = run_page(page)
    assert time.monotonic() - start < 30
    assert not at.exception
    assert "Cannot reach MLflow" in texts(at)
    assert "export FINGERSPELL_MLFLOW_TRACKING_URI=" in at.code[0].value


def test_live_page_shows_frames_letters_and_edits_the_transcript(
    app_env: str, fake_webcam: SimpleNamespace, shared_dataset: Path
):
    at = run_page("live")
    assert not at.exception
    assert fake_webcam.rtc_configuration == {"iceServers": []}, "no STUN unless configured"
    assert "Processed** 0 frames" in texts(at)

    # What streamlit-webrtc's worker thread does: call the registered processor per frame.
    processor = fake_webcam.processors["live"]
    assert processor is at.session_state["live_processor"]
    at.slider(key="live_conf").set_value(0.0)
    at.slider(key="live_hold").set_value(0.0)
    fake_webcam.state.playing = True  # START clicked
    at.run()
    image = cv2.imread(str(first_test_image(shared_dataset)))
    annotated = processor.process(image)
    assert annotated.shape == image.shape and (annotated != image).any(), "nothing drawn"
    expected = processor.recognizer.recognize(image, conf=0.0, max_det=3, agnostic=True).top
    at.run()
    shown = texts(at)
    assert "Processed** 1 frames" in shown
    assert f"**Letters seen** (frames): {expected.letter} 1" in shown
    # Hold time 0: the first frame typed its letter; the transcript survives reruns.
    assert at.code[0].value == expected.letter
    at.button[0].click().run()  # Space
    at.run()
    assert at.code[0].value == f"{expected.letter} "
    at.button[1].click().run()  # Backspace
    assert at.code[0].value == expected.letter
    at.button[2].click().run()  # Clear
    assert at.code[0].value.strip() == ""


def test_practice_page_shows_target_feedback_and_score(app_env: str, fake_webcam):
    at = run_page("practice")
    assert not at.exception
    session = at.session_state["practice_session"]
    target = session.target
    assert f"## Sign **{target}**" in texts(at)
    skip = next(b for b in at.button if b.label == "Skip this letter")
    skip.click().run()
    assert f"Skipped {target}." in texts(at)
    assert session.view().attempts == 1 and session.view().most_missed == ((target, 1),)
    assert f"{target} (1)" in texts(at), "most-missed letters are listed"


def test_upload_page_annotates_a_dataset_image_and_rejects_a_non_image(
    app_env: str, shared_dataset: Path
):
    image = first_test_image(shared_dataset)
    at = run_page("upload")
    assert not at.exception
    at.slider(key="upload_conf").set_value(0.0)
    at.file_uploader(key="upload_files").set_value(
        [
            (image.name, image.read_bytes(), "image/jpeg"),
            ("notes.txt", b"certainly not a picture", "text/plain"),
        ]
    ).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "notes.txt is not an image (expected JPEG, PNG, WebP, BMP…)."
    ]
    from ui.shared_model import load_recognizer

    recognizer = load_recognizer(app_env, "models:/asl-detector/1")  # the app's cached one
    letters = [d.letter for d in recognizer.recognize_path(image, conf=0.0).detections]
    assert f"**{image.name}**: {', '.join(letters)}" in texts(at)
    assert len(at.get("image")) == 1


def test_model_page_shows_version_metrics_plots_and_switches_version(app_env: str):
    at = run_page("model")
    assert not at.exception
    assert at.subheader[0].value == "Loaded: asl-detector v1 (champion)"
    shown = texts(at)
    assert "`smoke-subset`" in shown and "profile `smoke`" in shown
    assert "**detector started from** scratch (the recipe names no pretrained weights)" in shown
    table = at.dataframe[0].value
    assert list(table.index) == ["test"]
    assert "top-1 accuracy" in table.columns and 0.0 <= table.loc["test", "top-1 accuracy"] <= 1
    assert "Absent from the test split (no score, not zero): E, L" in shown
    assert len(at.get("image")) == 1, "confusion matrix"
    options = at.selectbox(key="model_select").options
    assert [o.split(" ·")[0] for o in options] == ["v2", "v1 (champion)"]
    at.selectbox(key="model_select").set_value("2")
    next(b for b in at.button if b.label == "Load this version").click().run()
    assert not at.exception
    assert at.subheader[0].value == "Loaded: asl-detector v2 (no alias)"
    assert "This version has no recorded metrics." in texts(at)
