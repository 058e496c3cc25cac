"""The recognizer against ultralytics itself, and its loading, mapping, NMS and threading."""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.boxes import corners, iou

from tasks.core.records import LETTERS, Box, Detection
from tasks.inference.recognizer import (
    Letterbox,
    Recognizer,
    decode,
    letterbox,
    nms,
    preprocess,
    unletterbox,
)

CONF = 0.001  # a 3-epoch model scores 0.001-0.02; below this its scores are the class prior
IOU = 0.45


def _ultralytics(model: object, image: np.ndarray, max_det: int = 10) -> list[Detection]:
    result = model.predict(  # type: ignore[attr-defined]
        image, imgsz=320, conf=CONF, iou=IOU, max_det=max_det, verbose=False
    )[0]
    return [
        Detection(
            letter=LETTERS[int(c)],
            class_id=int(c),
            confidence=float(s),
            box=Box(**dict(zip(("x1", "y1", "x2", "y2"), xyxy, strict=True))),
        )
        for c, s, xyxy in zip(
            result.boxes.cls.tolist(),
            result.boxes.conf.tolist(),
            result.boxes.xyxy.tolist(),
            strict=True,
        )
    ]


def _same(a: Detection, b: Detection) -> bool:
    close = abs(a.confidence - b.confidence) <= 1e-6 + 0.02 * b.confidence
    return a.letter == b.letter and close and iou(corners(a.box), corners(b.box)) >= 0.9


def _assert_match(ours: list[Detection], theirs: list[Detection], k: int = 3) -> None:
    """Each side's top-k is found in the other's list, and the best detections agree."""
    for mine in ours[:k]:
        assert any(_same(mine, other) for other in theirs), (mine, theirs)
    for other in theirs[:k]:
        assert any(_same(mine, other) for mine in ours), (other, ours)
    if ours and theirs:
        tied = len(theirs) > 1 and theirs[0].confidence - theirs[1].confidence < 1e-6
        assert tied or _same(ours[0], theirs[0]), (ours[0], theirs[0])


@pytest.fixture(scope="module")
def images(subset_dataset: Path) -> list[Path]:
    """Twelve images: the first of each split plus the training images the model has seen."""
    train = sorted((subset_dataset / "train" / "images").iterdir())
    test = sorted((subset_dataset / "test" / "images").iterdir())
    return train[::5][:8] + test[:4]


@pytest.fixture(scope="module")
def recognizer(smoke_onnx: Path) -> Recognizer:
    return Recognizer.load(str(smoke_onnx))


def test_matches_ultralytics_on_dataset_images(
    recognizer: Recognizer, smoke_weights: Path, images: list[Path]
) -> None:
    from ultralytics import YOLO

    reference = YOLO(str(smoke_weights))
    compared = 0
    for path in images:
        ours = list(recognizer.recognize_path(path, conf=CONF, iou=IOU).detections)
        theirs = _ultralytics(reference, cv2.imread(str(path)))
        _assert_match(ours, theirs)
        compared += min(len(ours), 3)
    assert compared >= 10, "too few detections above CONF to compare; the smoke model changed"


@pytest.mark.parametrize("shape", [(300, 416), (416, 250), (480, 640)])
def test_matches_ultralytics_on_non_square_frames(
    recognizer: Recognizer, smoke_onnx: Path, images: list[Path], shape: tuple[int, int]
) -> None:
    from ultralytics import YOLO

    reference = YOLO(str(smoke_onnx), task="detect")  # same fp32 graph, ultralytics' own pipeline
    compared = 0
    for path in images[:6]:
        frame = cv2.resize(cv2.imread(str(path)), shape[::-1])
        ours = list(recognizer.recognize(frame, conf=CONF, iou=IOU).detections)
        theirs = _ultralytics(reference, frame)
        _assert_match(ours, theirs)
        compared += len(ours)
        for d in ours:
            assert 0 <= d.box.x1 <= d.box.x2 <= shape[1] and 0 <= d.box.y1 <= d.box.y2 <= shape[0]
    assert compared > 0


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(8, 1200),
    w=st.integers(8, 1200),
    size=st.sampled_from([(320, 320), (416, 416), (256, 320)]),
    corners=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_letterbox_round_trip(
    h: int, w: int, size: tuple[int, int], corners: tuple[float, ...]
) -> None:
    image = np.zeros((h, w, 3), np.uint8)
    canvas, placement = letterbox(image, size)
    assert canvas.shape == (*size, 3)
    (gx, gy), (left, top) = placement.gain, placement.pad
    x1, x2 = sorted((corners[0] * w, corners[2] * w))
    y1, y2 = sorted((corners[1] * h, corners[3] * h))
    on_canvas = np.array([[x1 * gx + left, y1 * gy + top, x2 * gx + left, y2 * gy + top]])
    np.testing.assert_allclose(unletterbox(on_canvas, placement), [[x1, y1, x2, y2]], atol=1e-2)


def test_letterbox_places_and_pads_a_wide_frame() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    cv2.rectangle(frame, (100, 50), (299, 199), (255, 255, 255), thickness=-1)
    canvas, placement = letterbox(frame, (320, 320))
    assert placement == Letterbox(shape=(480, 640), gain=(0.5, 0.5), pad=(0, 40))
    assert (canvas[:40] == 114).all() and (canvas[280:] == 114).all()
    ys, xs = np.nonzero(canvas[:, :, 0] > 200)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(unletterbox(found, placement), [[100, 50, 300, 200]], atol=2)
    tensor, same = preprocess(frame, (320, 320))
    assert same == placement and tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], canvas[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
    # Boxes reaching into the padding are clipped to the frame.
    assert unletterbox(np.array([[-5.0, 0.0, 330.0, 320.0]]), placement).tolist() == [
        [0.0, 0.0, 640.0, 480.0]
    ]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.5]], np.float32
    )
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    # [1] beats [0] (IoU 0.68) and [3] (IoU 0.65 with [1]); [2] overlaps nothing.
    assert nms(boxes, scores, iou=0.45, max_det=10).tolist() == [1, 2]
    assert nms(boxes, scores, iou=0.7, max_det=10).tolist() == [1, 0, 2]
    assert nms(boxes, scores, iou=0.45, max_det=1).tolist() == [1]
    assert nms(boxes[:0], scores[:0], iou=0.45, max_det=10).tolist() == []


def _head_output(rows: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """A fake (1, 4 + 26, N) YOLO11 output from (cx, cy, w, h, class, score) rows."""
    out = np.zeros((1, 4 + len(LETTERS), len(rows)), np.float32)
    for i, (cx, cy, bw, bh, cls, score) in enumerate(rows):
        out[0, :4, i] = cx, cy, bw, bh
        out[0, 4 + cls, i] = score
    return out


def test_decode_thresholds_sorts_and_separates_classes() -> None:
    output = _head_output(
        [
            (50, 50, 20, 20, 0, 0.60),  # A
            (51, 51, 20, 20, 1, 0.90),  # B on the same spot
            (52, 50, 20, 20, 1, 0.50),  # weaker B: suppressed by the better B
            (200, 200, 10, 10, 2, 0.25),  # C at the threshold: dropped (strictly above only)
        ]
    )
    identity = Letterbox(shape=(320, 320), gain=(1.0, 1.0), pad=(0, 0))
    per_class = decode(output, identity, LETTERS, conf=0.25, iou=0.45)
    assert [(d.letter, round(d.confidence, 2)) for d in per_class] == [("B", 0.9), ("A", 0.6)]
    assert per_class[0].box == Box(x1=41, y1=41, x2=61, y2=61)
    agnostic = decode(output, identity, LETTERS, conf=0.25, iou=0.45, agnostic=True)
    assert [d.letter for d in agnostic] == ["B"]
    halved = Letterbox(shape=(640, 800), gain=(0.4, 0.4), pad=(0, 32))
    assert decode(output, halved, LETTERS, conf=0.8)[0].box == Box(
        x1=102.5, y1=22.5, x2=152.5, y2=72.5
    )


def test_loads_files_folders_and_mlflow_layout(
    smoke_onnx: Path, smoke_weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copyfile(smoke_onnx, flat / "model.onnx")
    loaded = Recognizer.load(str(flat))
    assert (loaded.source.format, loaded.imgsz, loaded.names) == ("onnx", 320, LETTERS)

    artifacts = tmp_path / "mlflow-model" / "artifacts"
    artifacts.mkdir(parents=True)
    shutil.copyfile(smoke_onnx, artifacts / "model.onnx")
    shutil.copyfile(smoke_weights, artifacts / "best.pt")
    names = [f"letter-{c}" for c in LETTERS]
    (artifacts / "metadata.json").write_text(json.dumps({"names": names, "imgsz": 320}))
    by_folder = Recognizer.load(str(artifacts.parent))
    assert by_folder.source.path == artifacts / "model.onnx"
    assert by_folder.names == tuple(names)  # metadata.json wins over the embedded names
    assert Recognizer.load(str(artifacts.parent), prefer="pt").source.format == "pt"

    (artifacts / "model.onnx").unlink()
    with caplog.at_level(logging.INFO, logger="tasks.inference.recognizer"):
        fallback = Recognizer.load(str(artifacts.parent))
    assert fallback.source.format == "pt"
    assert "no ONNX export found, using PyTorch weights" in caplog.text

    with pytest.raises(FileNotFoundError, match="no model"):
        Recognizer.load(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=str(flat.parent)):
        Recognizer.load(str(tmp_path))


def test_loads_mlflow_uris_and_follows_a_moved_alias(
    smoke_onnx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Earlier tests may have pinned mlflow's process-wide URIs; point them here, then restore.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    request.addfinalizer(lambda: (mlflow.set_tracking_uri(previous[0]),
                                  mlflow.set_registry_uri(previous[1])))  # fmt: skip
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("recognize", (tmp_path / "artifacts").as_uri())
    client.create_registered_model("asl-test")
    versions = []
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(smoke_onnx), "model/artifacts")
        versions.append(
            client.create_model_version(
                "asl-test", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            ).version
        )
    cache = tmp_path / "cache"
    by_run = Recognizer.load(f"runs:/{run.info.run_id}/model", cache_dir=cache)
    assert by_run.source.format == "onnx" and cache in by_run.source.path.parents

    client.set_registered_model_alias("asl-test", "champion", versions[0])
    first = Recognizer.load("models:/asl-test@champion", cache_dir=cache)
    downloads = []
    real_download = mlflow.artifacts.download_artifacts
    monkeypatch.setattr(
        mlflow.artifacts,
        "download_artifacts",
        lambda **kw: downloads.append(kw["artifact_uri"]) or real_download(**kw),
    )
    again = Recognizer.load("models:/asl-test@champion", cache_dir=cache)
    assert downloads == [] and again.source.path == first.source.path
    client.set_registered_model_alias("asl-test", "champion", versions[1])
    moved = Recognizer.load("models:/asl-test@champion", cache_dir=cache)
    assert downloads == [f"models:/asl-test/{versions[1]}"]
    assert moved.source.path != first.source.path


def test_pytorch_fallback_agrees_with_onnx(
    recognizer: Recognizer, smoke_weights: Path, images: list[Path]
) -> None:
    torch_recognizer = Recognizer.load(str(smoke_weights))
    assert torch_recognizer.source.format == "pt" and torch_recognizer.imgsz == 320
    compared = 0
    for path in images:
        onnx_result = recognizer.recognize_path(path, conf=CONF, iou=IOU)
        torch_result = torch_recognizer.recognize_path(path, conf=CONF, iou=IOU)
        _assert_match(list(torch_result.detections), list(onnx_result.detections))
        compared += torch_result.top is not None
    assert compared >= 4


@pytest.mark.parametrize("backend", ["onnx", "pt"])
def test_concurrent_calls_match_sequential(
    backend: str, smoke_onnx: Path, smoke_weights: Path, images: list[Path]
) -> None:
    shared = Recognizer.load(str(smoke_onnx if backend == "onnx" else smoke_weights))
    # Different frame sizes in flight at once exercise the per-thread buffers.
    frames = [cv2.imread(str(p)) for p in images[:6]]
    frames += [cv2.resize(f, (640, 480)) for f in frames[:3]]
    sequential = [shared.recognize(f, conf=CONF).detections for f in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda f: shared.recognize(f, conf=CONF).detections, frames * 3))
    assert concurrent == sequential * 3
    assert any(sequential)


def test_timing_and_top(recognizer: Recognizer, images: list[Path]) -> None:
    result = recognizer.recognize_path(images[0], conf=CONF)
    assert set(result.timing_ms) == {"preprocess", "infer", "postprocess", "total"}
    assert result.timing_ms["total"] >= result.timing_ms["infer"] > 0
    assert result.top == (result.detections[0] if result.detections else None)
    confidences = [d.confidence for d in result.detections]
    assert confidences == sorted(confidences, reverse=True)
    assert recognizer.recognize(np.full((240, 320, 3), 114, np.uint8), conf=0.5).top is None


def test_unreadable_file_names_itself(recognizer: Recognizer, tmp_path: Path) -> None:
    fake = tmp_path / "not-an-image.jpg"
    fake.write_text("hello")
    with pytest.raises(ValueError, match=r"not-an-image\.jpg"):
        recognizer.recognize_path(fake)
    with pytest.raises(ValueError, match=r"missing\.png"):
        recognizer.recognize_path(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="BGR uint8"):
        recognizer.recognize(np.zeros((10, 10), np.uint8))


def test_int8_variant_loads_and_stays_close_to_fp32(
    recognizer: Recognizer, smoke_onnx: Path, subset_dataset: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from tasks.inference.export import quantize_int8

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(smoke_onnx, folder / "model.onnx")
    calibration = sorted((subset_dataset / "train" / "images").iterdir())[::3]
    quantize_int8(folder / "model.onnx", calibration, folder / "model.int8.onnx")
    int8 = Recognizer.load(str(folder), prefer="int8")
    assert (int8.source.format, int8.names, int8.imgsz) == ("int8", LETTERS, 320)
    assert Recognizer.load(str(folder)).source.format == "onnx"

    # Raw head outputs on the same inputs: boxes within a few pixels, class logits correlated.
    sessions = [ort.InferenceSession(str(folder / n)) for n in ("model.onnx", "model.int8.onnx")]
    for path in sorted((subset_dataset / "test" / "images").iterdir())[:4]:
        tensor, _ = preprocess(cv2.imread(str(path)), (320, 320))
        fp32, quantized = (s.run(None, {"images": tensor})[0][0] for s in sessions)
        assert np.abs(fp32[:4] - quantized[:4]).mean() < 6.0
        probs = [np.clip(o[4:], 1e-7, 1 - 1e-7) for o in (fp32, quantized)]
        logits = [np.log(p / (1 - p)) for p in probs]
        # Centre each class's logits so the shared class prior cannot inflate the correlation.
        centred = [lg - lg.mean(axis=1, keepdims=True) for lg in logits]
        assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] > 0.8
    assert int8.recognize_path(path, conf=CONF).detections
