"""The live and teach pages in a real headless Chromium whose fake camera plays dataset images.

A real MLflow server holds a smoke-trained champion; the app loads it from there and records
every frame its callback receives (``FINGERSPELL_UI_RECORD_DIR``). Two things are checked:

* the video path: the received frames are the clip's images (after VP8 and maybe a lower
  resolution, which WebRTC picks under CPU load), every image of the clip among them;
* the page: the letters it reports (frames per top letter) are exactly what the recognizer
  returns offline for those same received frames.

The teach page gets a clip of one image of A held still: a burst captured there is saved as A
(class 0) with the box the recognizer finds in the frames. A learner's model registered under
``personal-me`` and picked in the sidebar is the one whose letters the live page then reports.
And the whole loop in one browser session: two bursts taught, Personalize runs the real flow
(seconds per stage), and the Live page uses the model it registered.

Why not compare with the clean images directly: a smoke model's top letter is a near tie
between classes, and VP8 at a low start-up bitrate flips it for most images (measured: even
images screened as stable under VP8/downscaling read differently in the browser).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from chromium import (
    camera_frame,
    click_button,
    click_start,
    have_chromium,
    start_chromium,
    start_stream,
    wait_for_button,
    wait_for_frames,
    wait_for_text,
    y4m_frame,
)
from chromium import write_y4m as write_clip
from selenium.common.exceptions import TimeoutException
from support.servers import free_port, start_app, stop, wait_http

from tasks.core.records import LETTERS, Box
from tasks.data.captures import learner_dir, read_bursts
from tasks.inference.recognizer import Recognizer
from ui.teach import one_hand

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HOLD_FRAMES = 45  # 1.5 s per image at 30 fps; the clip loops
# Processed frames to compare. The camera plays 30 fps and the page processes at most that, so
# this many span over two holds (3 s) at any frame rate: every image of the looping clip shows.
# (40 frames did not: an idle, faster machine processed them within 1.4 s, two images.)
FRAMES = 2 * HOLD_FRAMES + 15
THUMB = (80, 60)  # frames are compared at this size: compression noise averages out
MAX_DIFFERENCE = 14.0  # mean absolute difference (0-255) to the nearest clip image
TEACH_FRAMES = 4
WARM_UP_FRAMES = 60  # 2 s at 30 fps


def top_letter(recognizer: Recognizer, frame: np.ndarray) -> str | None:
    """The live page's top letter: its threshold (0 here), 3 detections, agnostic NMS."""
    top = recognizer.recognize(frame, conf=0.0, max_det=3, agnostic=True).top
    return top.letter if top else None


def thumb(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


@pytest.fixture(scope="module")
def clip(shared_dataset: Path, tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 640×480 y4m clip of three test images of different letters, and those frames."""
    frames: dict[str, np.ndarray] = {}
    for path in sorted((shared_dataset / "test" / "images").iterdir()):
        frames.setdefault(path.name[0], camera_frame(cv2.imread(str(path))))
        if len(frames) == 3:
            break
    images = list(frames.values())
    clip_path = tmp_path_factory.mktemp("clip") / "clip.y4m"
    return write_clip([f for f in images for _ in range(HOLD_FRAMES)], clip_path), images


def degraded(frame: np.ndarray) -> list[np.ndarray]:
    """``frame`` as the app may receive it: through the y4m file's YUV 4:2:0, VP8-like
    compression and the lower resolutions WebRTC falls back to under CPU load."""
    out = [y4m_frame(frame)]
    for quality in (50, 80):
        _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.imdecode(data, cv2.IMREAD_COLOR))
    for scale in (0.5, 0.75):
        out.append(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return out


def hand_scores(recognizer: Recognizer, frame: np.ndarray) -> tuple[float, float]:
    """The best and second-best box confidence in ``frame`` (0 where there is none)."""
    found = recognizer.recognize(frame, conf=0.0, max_det=3, agnostic=True)
    scores = [d.confidence for d in found.detections] + [0.0, 0.0]
    return scores[0], scores[1]


@pytest.fixture(scope="module")
def teach_clip(
    shared_dataset: Path, smoke_onnx: Path, tmp_path_factory
) -> tuple[Path, np.ndarray, float]:
    """A clip holding one image of A still, that frame, and a hand threshold at which the
    smoke model finds exactly one box in it.

    A smoke model's confidences are tiny and shift with compression and scale (measured: the
    image picked on the clean frame alone read a third of its clean best in the browser's
    first frames, and CI's never crossed the threshold). So the image is the one whose best
    box stays furthest above its second-best across :func:`degraded` versions, and the
    threshold sits in the geometric middle of that gap.
    """
    recognizer = Recognizer.load(str(smoke_onnx))
    best: tuple[float, np.ndarray, float, float] | None = None
    for split in ("test", "valid", "train"):
        for path in sorted((shared_dataset / split / "images").glob("A*"))[:40]:
            frame = camera_frame(cv2.imread(str(path)))
            scores = [hand_scores(recognizer, version) for version in degraded(frame)]
            low, high = min(s[0] for s in scores), max(s[1] for s in scores)
            margin = low / high if high > 0 else (float("inf") if low > 0 else 0.0)
            if best is None or margin > best[0]:
                best = (margin, frame, low, high)
    assert best is not None and best[2] > 0, "the smoke model finds nothing in any image of A"
    _, frame, low, high = best
    threshold = float(np.sqrt(low * high)) if high > 0 else low / 2
    clip_path = tmp_path_factory.mktemp("teach-clip") / "teach.y4m"
    return write_clip([frame] * 30, clip_path), frame, threshold


@pytest.fixture(scope="module")
def app(
    mlflow_server: str,
    smoke_weights: Path,
    smoke_onnx: Path,
    teach_clip: tuple[Path, np.ndarray, float],
    subset_dataset: Path,
    tmp_path_factory,
):
    """The app on 127.0.0.1 reading a smoke champion from the real MLflow server; its
    Personalize runs the real flow for a few seconds per stage on the test subset."""
    from support.model_store import register_model

    register_model(mlflow_server, smoke_weights, smoke_onnx, experiment="browser")
    root = tmp_path_factory.mktemp("app")
    port, log, record = free_port(), root / "app.log", root / "frames"
    env = {
        "FINGERSPELL_MLFLOW_TRACKING_URI": mlflow_server,
        "FINGERSPELL_HOME": str(root / "home"),
        "FINGERSPELL_UI_MIN_CONFIDENCE": "0",  # a smoke model's confidences are ~0.001-0.05
        "FINGERSPELL_UI_RECORD_DIR": str(record),
        "FINGERSPELL_UI_TEACH_HAND_CONFIDENCE": str(teach_clip[2]),
        "FINGERSPELL_UI_TEACH_FRAMES": str(TEACH_FRAMES),
        "FINGERSPELL_UI_PERSONALIZE_MINUTES": "0.25",
        "FINGERSPELL_DATASET": str(subset_dataset),  # Personalize's base data
        "HOME": str(root),  # model download cache and ~/.streamlit stay in the test's folder
    }
    process = start_app(port, log, env)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", process, timeout=90, log=log)
        yield f"http://127.0.0.1:{port}/", record, root / "home"
    finally:
        stop(process)


def recorded(record: Path, frames: int) -> list[Path]:
    """The first ``frames`` frames of the session whose page we read (the newest folder)."""
    sessions = sorted(record.iterdir(), key=lambda folder: folder.stat().st_mtime)
    files = sorted(sessions[-1].glob("*.png"))
    assert len(files) >= frames, f"{len(files)} recorded frames, the page counted {frames}"
    return files[:frames]


@pytest.mark.skipif(not have_chromium(), reason="chromium/chromedriver not installed")
def test_live_page_shows_the_letters_the_recognizer_finds(
    app: tuple[str, Path], clip: tuple[Path, list[np.ndarray]], smoke_onnx: Path, tmp_path: Path
):
    url, record, _ = app
    clip_path, images = clip
    driver = start_chromium(clip_path)
    screenshot = tmp_path / "live.png"
    try:
        start_stream(driver, url, first_frames=5, timeout=90)
        stats = wait_for_frames(driver, FRAMES, timeout=150)
        driver.save_screenshot(str(screenshot))
    finally:
        if not screenshot.exists():
            driver.save_screenshot(str(screenshot))
        driver.quit()
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, results / "browser-live.png")
    assert stats.fps > 0 and stats.latency_ms > 0, stats

    files = recorded(record, stats.frames)
    received = [cv2.imread(str(path)) for path in files]
    # The video path: each received frame is one of the clip's images.
    references = [thumb(image) for image in images]
    nearest = []
    for frame in received:
        differences = [float(np.abs(thumb(frame) - ref).mean()) for ref in references]
        nearest.append(int(np.argmin(differences)))
        assert min(differences) < MAX_DIFFERENCE, (
            f"a received frame is no clip image: {differences}"
        )
    assert set(nearest) == set(range(len(images))), f"not every image arrived: {nearest}"

    # The page: exactly the recognizer's letters for those frames, offline.
    recognizer = Recognizer.load(str(smoke_onnx))
    offline = [top_letter(recognizer, frame) for frame in received]
    assert [p.stem.split("_")[1] for p in files] == [x or "none" for x in offline]
    assert stats.seen == dict(Counter(x for x in offline if x)), "page vs offline letters"


def wait_for_recording(record: Path, earlier: set[Path], frames: int, timeout: float) -> Path:
    """The app's recording folder for the new stream once it holds ``frames`` frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in set(record.iterdir() if record.exists() else ()) - earlier:
            if sum(1 for _ in folder.glob("*.png")) >= frames:
                return folder
        time.sleep(0.5)
    raise TimeoutError(f"the app recorded fewer than {frames} frames of the stream in {timeout}s")


def received_scores(session: Path, smoke_onnx: Path, threshold: float) -> str:
    """Why no burst started: the best and second-best confidence in the last frames received."""
    recognizer = Recognizer.load(str(smoke_onnx))
    files = sorted(session.glob("*.png"))
    frames = [cv2.imread(str(path)) for path in files[-10:]]
    last = [hand_scores(recognizer, frame) for frame in frames]
    shapes = {frame.shape[:2] for frame in frames}
    return (
        f"no frame with one hand at threshold {threshold:.4f}: {len(files)} frames received "
        f"(sizes {shapes}); last best/second: {[(round(a, 4), round(b, 4)) for a, b in last]}"
    )


def yolo_box(box: Box, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """A pixel box as a YOLO label's normalized centre x, centre y, width, height (clipped to
    the frame, as the saved labels are)."""
    height, width = shape[:2]
    x1, x2 = np.clip([box.x1, box.x2], 0, width) / width
    y1, y2 = np.clip([box.y1, box.y2], 0, height) / height
    return (float(x1 + x2) / 2, float(y1 + y2) / 2, float(x2 - x1), float(y2 - y1))


@pytest.mark.skipif(not have_chromium(), reason="chromium/chromedriver not installed")
def test_teach_page_saves_a_burst_of_the_asked_letter(
    app: tuple[str, Path, Path], teach_clip: tuple[Path, np.ndarray, float], smoke_onnx: Path
):
    url, record, home = app
    clip_path, _, threshold = teach_clip
    earlier = set(record.iterdir()) if record.exists() else set()
    driver = start_chromium(clip_path)
    try:
        driver.get(url + "teach")
        wait_for_text(driver, "Sign A", timeout=90)
        click_start(driver, timeout=60)
        # VP8 starts blurry and sharpens within a second or two (measured: the best box read a
        # third of its settled confidence in the first frames); arm once the stream settles.
        session = wait_for_recording(record, earlier, WARM_UP_FRAMES, timeout=90)
        click_button(driver, "Capture a burst")
        try:
            wait_for_text(driver, "frames with one hand", timeout=90)
        except TimeoutError as error:
            raise AssertionError(received_scores(session, smoke_onnx, threshold)) from error
        save = wait_for_button(driver, "Save ", timeout=30)
        click_button(driver, save)
        wait_for_text(driver, "Saved bursts (per letter): A 1", timeout=60)
    finally:
        driver.quit()

    root = learner_dir(home, "me")
    [burst] = read_bursts(root)
    assert burst.letter == "A" and 1 <= burst.frames <= TEACH_FRAMES
    # The boxes the app found: the smoke model's best box is a near tie that VP8 flips, so
    # each label must be the one hand the recognizer finds in one of the frames the app
    # received (recorded losslessly), not the box of the clean image.
    recognizer = Recognizer.load(str(smoke_onnx))
    newest = max(record.iterdir(), key=lambda folder: folder.stat().st_mtime)
    found = set()
    for path in sorted(newest.glob("*.png")):
        received = cv2.imread(str(path))
        detections = recognizer.recognize(received, conf=threshold, max_det=3, agnostic=True)
        box = one_hand(detections.detections)
        if box is not None:
            found.add(yolo_box(box, received.shape))
    assert found, "no received frame holds exactly one hand"
    labels = sorted((root / burst.split / "labels").glob(f"{burst.id}-*.txt"))
    assert len(labels) == burst.frames
    for label in labels:
        class_id, *xywh = label.read_text().split()
        assert int(class_id) == LETTERS.index("A")
        values = [float(v) for v in xywh]
        assert any(np.allclose(values, box, atol=1e-3) for box in found), (values, found)


@pytest.mark.skipif(not have_chromium(), reason="chromium/chromedriver not installed")
def test_live_page_recognizes_with_the_learners_own_model(
    app: tuple[str, Path, Path],
    clip: tuple[Path, list[np.ndarray]],
    mlflow_server: str,
    smoke_weights: Path,
    smoke_onnx: Path,
    tmp_path: Path,
):
    """A learner's model under ``personal-me`` (what the personalize flow registers): picked in
    the sidebar, the live page reads the letters that model finds, not the champion's."""
    from support.model_store import register_model

    from tasks.inference.export import export_onnx

    # The smoke weights at another input size: a model whose letters differ from the champion's.
    own_onnx = export_onnx(smoke_weights, 256, tmp_path / "own")
    register_model(
        mlflow_server, smoke_weights, own_onnx, experiment="browser", imgsz=256,
        alias="personal-me",
    )  # fmt: skip
    url, record, _ = app
    earlier = set(record.iterdir()) if record.exists() else set()
    driver = start_chromium(clip[0])
    try:
        # The app caches registry lookups for 15 s: reload until it sees the new alias.
        deadline = time.monotonic() + 90
        while True:
            driver.get(url)
            try:
                click_button(driver, "Use my model (personal-me)", timeout=10)
                break
            except TimeoutException:
                if time.monotonic() > deadline:
                    raise
        wait_for_text(driver, "your own model (personal-me, v2)", timeout=60)
        click_start(driver, timeout=60)
        wait_for_recording(record, earlier, 5, timeout=90)
        stats = wait_for_frames(driver, FRAMES, timeout=150)
    finally:
        driver.quit()

    files = recorded(record, stats.frames)
    received = [cv2.imread(str(path)) for path in files]
    own_model, champion_model = Recognizer.load(str(own_onnx)), Recognizer.load(str(smoke_onnx))
    own = [top_letter(own_model, frame) for frame in received]
    champion = [top_letter(champion_model, frame) for frame in received]
    assert own != champion, "the two models agree on every frame: the test could not tell"
    assert stats.seen == dict(Counter(x for x in own if x)), "page vs the learner's model"


def set_learner(driver, name: str) -> None:
    """Type ``name`` into the Teach page's name field and commit it (Enter)."""
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("css selector", "input[aria-label='Your name']")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(name, Keys.ENTER)
    assert field.get_attribute("value") == name


def open_page(driver, title: str) -> None:
    """Follow the sidebar link to the page titled ``title`` (the session, and so the model it
    uses, carries over; loading the URL would start a new session)."""
    clicked = driver.execute_script(
        "const links = Array.from(document.querySelectorAll('[data-testid=stSidebarNav] a'));"
        "const link = links.find(a => a.innerText.trim().endsWith(arguments[0]));"
        "if (link) { link.click(); } return Boolean(link);",
        title,
    )
    assert clicked, f"no sidebar link to {title!r}"


@pytest.mark.skipif(not have_chromium(), reason="chromium/chromedriver not installed")
def test_teach_then_personalize_then_live_in_one_session(
    app: tuple[str, Path, Path],
    teach_clip: tuple[Path, np.ndarray, float],
    smoke_onnx: Path,
    mlflow_server: str,
):
    """The whole loop as a learner runs it: two bursts of A (the second is held out), the
    Personalize button runs the real flow (seconds per stage), its model is registered under
    ``personal-chain`` with the champion left where it was, and the Live page then uses it.

    Last in this module: it adds a registered version, and the test above counts versions."""
    from mlflow import MlflowClient

    from tasks.registry.models import MODEL_NAME

    url, record, home = app
    clip_path, _, threshold = teach_clip
    client = MlflowClient(mlflow_server)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion").version
    earlier = set(record.iterdir()) if record.exists() else set()
    driver = start_chromium(clip_path)
    try:
        driver.get(url + "teach")
        wait_for_text(driver, "Sign A", timeout=90)
        set_learner(driver, "chain")
        time.sleep(2)  # the rerun that commits the name
        click_start(driver, timeout=60)
        session = wait_for_recording(record, earlier, WARM_UP_FRAMES, timeout=90)
        for split in ("train", "valid"):
            click_button(driver, "Capture a burst")
            try:
                save = wait_for_button(driver, "Save ", timeout=90)
            except TimeoutError as error:
                raise AssertionError(received_scores(session, smoke_onnx, threshold)) from error
            click_button(driver, save)
            wait_for_text(driver, f"of A ({split})", timeout=60)
            wait_for_text(driver, "Sign B", timeout=30)
            click_button(driver, "Previous letter")
            wait_for_text(driver, "Sign A", timeout=30)
        click_button(driver, "Personalize")
        body = wait_for_text(driver, "is in use: your held-out bursts", timeout=420)
        assert "Your model personal-chain is in use" in body, body[-2000:]
        mine = client.get_model_version_by_alias(MODEL_NAME, "personal-chain").version
        open_page(driver, "Live")
        wait_for_text(driver, f"your own model (personal-chain, v{mine})", timeout=60)
    finally:
        driver.quit()
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == champion
    assert int(mine) > int(champion)
    bursts = read_bursts(learner_dir(home, "chain"))
    assert [(b.letter, b.split) for b in bursts] == [("A", "train"), ("A", "valid")]
