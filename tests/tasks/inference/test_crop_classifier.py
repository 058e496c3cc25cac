"""Two-stage recognition: hands from the detector, letters from the crop classifier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.records import LETTERS
from tasks.inference.recognizer import Recognizer, decode


@pytest.fixture(scope="module")
def recognizer(two_stage_model: Path) -> Recognizer:
    return Recognizer.load(str(two_stage_model))


@pytest.fixture(scope="module")
def image(subset_dataset: Path) -> np.ndarray:
    return cv2.imread(str(sorted((subset_dataset / "test" / "images").iterdir())[0]))


def test_two_stage_folder_loads_as_a_26_letter_recognizer(recognizer: Recognizer):
    assert recognizer.names == LETTERS
    assert recognizer.classifier is not None
    assert recognizer.source.classifier is not None
    assert recognizer.source.classifier.name == "classifier.onnx"
    assert recognizer.imgsz == 160


def test_letters_sit_on_hand_boxes_with_joint_confidence(recognizer: Recognizer, image):
    result = recognizer.recognize(image, conf=1e-6, max_det=50)
    assert result.detections, "a tiny threshold yields letters even from a smoke model"
    assert "classify" in result.timing_ms
    # Stage one alone, decoded the way the recognizer does it.
    tensor, placement = recognizer._preprocess(image)
    hands = decode(recognizer._infer(tensor), placement, ("hand",), 1e-6, 0.45, 50, True)
    # An untrained detector may repeat a zero-area box (IoU 0 survives NMS): keep all scores.
    by_box: dict[tuple[float, ...], list[float]] = {}
    for hand in hands:
        by_box.setdefault((hand.box.x1, hand.box.y1, hand.box.x2, hand.box.y2), []).append(
            hand.confidence
        )
    for det in result.detections:
        box = (det.box.x1, det.box.y1, det.box.x2, det.box.y2)
        assert box in by_box, "every letter must be on a detected hand's box"
        prob = float(recognizer.classifier.probabilities(image, box)[det.class_id])
        assert det.letter == LETTERS[det.class_id]
        assert any(det.confidence == pytest.approx(c * prob, rel=1e-5) for c in by_box[box])
    confidences = [d.confidence for d in result.detections]
    assert confidences == sorted(confidences, reverse=True)


def test_agnostic_gives_one_letter_per_hand(recognizer: Recognizer, image):
    many = recognizer.recognize(image, conf=1e-6, max_det=10)
    one = recognizer.recognize(image, conf=1e-6, max_det=10, agnostic=True)
    tensor, placement = recognizer._preprocess(image)
    hands = decode(recognizer._infer(tensor), placement, ("hand",), 1e-6, 0.45, 10, True)
    assert len(one.detections) <= len(hands)
    letters_on = {}
    for det in many.detections:  # per-class results: a hand carries several letters
        letters_on.setdefault((det.box.x1, det.box.y1, det.box.x2, det.box.y2), set()).add(
            det.letter
        )
    assert max(len(v) for v in letters_on.values()) > 1
    for det in one.detections:  # each hand's letter is its classifier's best
        box = (det.box.x1, det.box.y1, det.box.x2, det.box.y2)
        assert det.class_id == int(recognizer.classifier.probabilities(image, box).argmax())
    assert one.top is not None and many.top is not None
    assert one.top == many.top, "the best letter is the same either way"


def test_classifier_probabilities_are_a_distribution(recognizer: Recognizer, image):
    probs = recognizer.classifier.probabilities(image, (10.0, 20.0, 200.0, 220.0))
    assert probs.shape == (26,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert (probs >= 0).all()


def test_a_two_stage_folder_without_its_classifier_is_refused(two_stage_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(two_stage_model, broken)
    (broken / "classifier.onnx").unlink()
    assert json.loads((broken / "metadata.json").read_text())["two_stage"] is True
    with pytest.raises(FileNotFoundError, match=r"classifier\.onnx"):
        Recognizer.load(str(broken))


def test_crop_margin_comes_from_metadata(two_stage_model: Path, tmp_path: Path):
    copy = tmp_path / "model"
    shutil.copytree(two_stage_model, copy)
    (copy / "metadata.json").write_text(json.dumps({"two_stage": True, "crop_pad": 0.5}))
    assert Recognizer.load(str(copy)).classifier.pad == 0.5


def _mirrored(two_stage_model: Path, tmp_path: Path) -> Recognizer:
    copy = tmp_path / "mirrored"
    shutil.copytree(two_stage_model, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**meta, "crop_mirror": True}))
    return Recognizer.load(str(copy))


def test_mirror_averages_the_crop_and_its_mirror_image(
    recognizer: Recognizer, two_stage_model: Path, tmp_path: Path, image: np.ndarray
):
    assert recognizer.classifier.mirror is False  # the fixture's metadata does not ask for it
    mirrored = _mirrored(two_stage_model, tmp_path)
    assert mirrored.classifier.mirror is True
    box = (10.0, 20.0, 200.0, 220.0)
    # The mirror image of the crop is the crop of the mirrored frame at the mirrored box.
    width = image.shape[1]
    flipped_box = (width - box[2], box[1], width - box[0], box[3])
    plain = recognizer.classifier.probabilities(image, box)
    other_side = recognizer.classifier.probabilities(cv2.flip(image, 1), flipped_box)
    averaged = mirrored.classifier.probabilities(image, box)
    assert averaged == pytest.approx((plain + other_side) / 2, abs=1e-5)
    assert averaged.sum() == pytest.approx(1.0, abs=1e-4)


def test_with_mirror_a_flipped_frame_reads_the_same_letters(
    two_stage_model: Path, tmp_path: Path, image: np.ndarray
):
    mirrored = _mirrored(two_stage_model, tmp_path)
    width = image.shape[1]
    box = (30.0, 40.0, 250.0, 260.0)
    flipped_box = (width - box[2], box[1], width - box[0], box[3])
    probs = mirrored.classifier.probabilities(image, box)
    flipped = mirrored.classifier.probabilities(cv2.flip(image, 1), flipped_box)
    # Up to a pixel of resampling where the crop edges round differently.
    assert int(probs.argmax()) == int(flipped.argmax())
    assert flipped == pytest.approx(probs, abs=0.02)


def _constant_classifier(path: Path, probs: np.ndarray, side: int) -> Path:
    """An ONNX "classifier" that reads every crop as ``probs``: an ensemble member whose
    contribution to the average is known exactly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "shape"),
        numpy_helper.from_array(probs.astype(np.float32)[None], "probs"),
    ]
    nodes = [  # 0 * sum(crop) + probs: the input is read, so the graph stays valid
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=1),
        helper.make_node("Reshape", ["total", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "probs"], ["output0"]),
    ]
    crop = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 26])
    graph = helper.make_graph(nodes, "constant", [crop], [out], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": str(dict(enumerate(LETTERS)))})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def ensemble(two_stage_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's model plus a 96-px member that always reads "Z"."""
    from tasks.inference.bundle import assemble, crop_settings

    root = tmp_path_factory.mktemp("ensemble")
    sure_z = np.zeros(26, np.float32)
    sure_z[LETTERS.index("Z")] = 1.0
    second = _constant_classifier(root / "z.onnx", sure_z, 96)
    pad, mirror = crop_settings(two_stage_model)
    return assemble(
        two_stage_model / "model.onnx", two_stage_model / "classifier.onnx",
        two_stage_model / "classifier.pt", root / "model", pad, mirror=mirror,
        extra_classifiers=[second],
    )  # fmt: skip


def test_an_ensemble_averages_its_members_each_at_its_own_size(
    ensemble: Path, recognizer: Recognizer, image: np.ndarray
):
    both = Recognizer.load(str(ensemble))
    assert [p.name for p in both.classifier.paths] == ["classifier.onnx", "classifier-1.onnx"]
    assert [m.size for m in both.classifier._members] == [64, 96]
    box = (10.0, 20.0, 200.0, 220.0)
    first = recognizer.classifier.probabilities(image, box)
    averaged = both.classifier.probabilities(image, box)
    expected = first / 2
    expected[LETTERS.index("Z")] += 0.5
    assert averaged == pytest.approx(expected, abs=1e-5)
    # An untrained first member is near uniform, so the sure member decides the letter.
    result = both.recognize(image, conf=1e-6, max_det=5, agnostic=True)
    assert result.top is not None and result.top.letter == "Z"


def test_an_ensemble_missing_a_member_is_refused_by_name(ensemble: Path, tmp_path: Path):
    broken = tmp_path / "model"
    shutil.copytree(ensemble, broken)
    (broken / "classifier-1.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"classifier-1\.onnx"):
        Recognizer.load(str(broken))


def test_members_must_read_the_same_letters(ensemble: Path, tmp_path: Path):
    import onnx

    from tasks.inference.crop_classifier import CropClassifier

    model = onnx.load(str(ensemble / "classifier-1.onnx"))
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = str({i: f"x{i}" for i in range(26)})
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    with pytest.raises(ValueError, match="other letters"):
        CropClassifier([ensemble / "classifier.onnx", other])
