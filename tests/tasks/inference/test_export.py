"""ONNX export and int8 quantization (:mod:`tasks.inference.export`) on real weights.

The weights are the pretrained stand-in of ``../shared/weights`` (YOLOv5n, COCO backbone, 80
classes), exported at 64 px: no training, a few seconds per export. Covered: the static export
and its embedded metadata, that it computes what the checkpoint computes (the head's DFL is
swapped for a last-axis softmax), that it leaves the weights' folder alone and replaces an old
export atomically, the errors for missing or damaged weights, and the int8 variant (metadata,
scores kept apart from coordinates, refused calibration sets with nothing written).
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.files import sha256_of
from tasks.inference.backends import onnx_backend, torch_backend
from tasks.inference.export import export_onnx, quantize_int8
from tasks.inference.yolo_decode import preprocess

SIDE = 64  # a multiple of the stride, as small as an export gets while still running


@pytest.fixture(scope="module")
def weights(shared_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the pretrained stand-in, alone in its folder, as ``best.pt``."""
    folder = tmp_path_factory.mktemp("weights")
    return Path(shutil.copyfile(shared_weights / "yolov5n-coco-backbone.pt", folder / "best.pt"))


@pytest.fixture(scope="module")
def exported(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``weights`` exported at 64 px into a folder that does not exist yet."""
    return export_onnx(weights, SIDE, tmp_path_factory.mktemp("export") / "run" / "export")


@pytest.fixture(scope="module")
def frames(shared_dataset: Path) -> list[np.ndarray]:
    """Three real photos of valid, as the recognizer reads them."""
    paths = sorted((shared_dataset / "valid" / "images").iterdir())[:3]
    return [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths]


@pytest.fixture(scope="module")
def int8(exported: Path, shared_dataset: Path) -> Path:
    calibration = sorted((shared_dataset / "train" / "images").iterdir())[:6]
    return quantize_int8(exported, calibration, exported.with_name("model.int8.onnx"))


def _metadata(path: Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def _leftovers(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith("."))


def test_the_export_is_static_and_names_what_the_checkpoint_names(
    exported: Path, weights: Path
) -> None:
    import onnx

    from tasks.training.weights import load_checkpoint

    assert exported.name == "model.onnx" and exported.parent.is_dir()
    graph = onnx.load(str(exported)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, SIDE, SIDE]
    meta = _metadata(exported)
    checkpoint = load_checkpoint(weights)
    names = checkpoint["model"].names
    assert ast.literal_eval(meta["names"]) == dict(names) and len(names) == 80
    assert ast.literal_eval(meta["imgsz"]) == [SIDE, SIDE] and meta["stride"] == "32"


def test_the_export_computes_what_the_checkpoint_computes(
    exported: Path, weights: Path, frames: list[np.ndarray]
) -> None:
    onnx_infer, size, onnx_names, _ = onnx_backend(exported, {}, 1, False)
    torch_infer, _, torch_names = torch_backend(weights, {}, None)
    assert size == (SIDE, SIDE) and onnx_names == torch_names
    for frame in frames:
        tensor, _ = preprocess(frame, size)
        ours, theirs = onnx_infer(tensor)[0], torch_infer(tensor)[0]
        # Box sides come from the DFL integral: they must vary, or any DFL would agree.
        assert ours[2:4].std(axis=1).min() > 1.0
        np.testing.assert_allclose(ours[:4], theirs[:4], atol=0.05)  # pixels
        np.testing.assert_allclose(ours[4:], theirs[4:], rtol=0.01, atol=1e-7)  # scores


def test_the_weights_folder_is_left_as_it_was(
    exported: Path, weights: Path, shared_weights: Path
) -> None:
    assert exported.is_file()
    assert [entry.name for entry in weights.parent.iterdir()] == ["best.pt"]
    assert sha256_of(weights) == sha256_of(shared_weights / "yolov5n-coco-backbone.pt")
    assert [entry.name for entry in exported.parent.iterdir()] == ["model.onnx"]


def test_a_new_export_replaces_the_old_file_and_leaves_no_temp_file(
    exported: Path, weights: Path, tmp_path: Path
) -> None:
    import onnx

    out_dir = tmp_path / "export"
    out_dir.mkdir()
    shutil.copyfile(exported, out_dir / "model.onnx")  # last run's export, at 64 px
    again = export_onnx(weights, 32, out_dir)
    assert again == out_dir / "model.onnx"
    dims = onnx.load(str(again)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][2:] == [32, 32]
    assert [entry.name for entry in out_dir.iterdir()] == ["model.onnx"]


def test_missing_weights_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    from ultralytics.utils import checks

    autoinstall = checks.AUTOINSTALL
    missing = tmp_path / "runs" / "best.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        export_onnx(missing, SIDE, tmp_path / "export")
    assert not (tmp_path / "export" / "model.onnx").exists()
    assert autoinstall == checks.AUTOINSTALL, "ultralytics' auto-install switch is put back"


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_damaged_weights_are_reported_by_their_own_name(
    weights: Path, tmp_path: Path, damage: str
) -> None:
    broken = tmp_path / "runs" / "best.pt"
    broken.parent.mkdir()
    data = weights.read_bytes()
    broken.write_bytes(b"not a checkpoint\n" if damage == "text" else data[: len(data) // 2])
    with pytest.raises(Exception, match=re.escape(str(broken))):
        export_onnx(broken, SIDE, tmp_path / "export")
    assert not (tmp_path / "export" / "model.onnx").exists()


def test_the_int8_variant_keeps_the_metadata_and_says_it_is_int8(
    exported: Path, int8: Path
) -> None:
    import onnx

    fp32_meta, int8_meta = _metadata(exported), _metadata(int8)
    assert int8_meta.pop("quantization") == "int8"
    assert int8_meta == fp32_meta
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert onnx_backend(int8, {}, 1, False)[3] == "int8"


def test_int8_keeps_scores_apart_from_pixel_coordinates(
    exported: Path, int8: Path, frames: list[np.ndarray]
) -> None:
    fp32_infer, size, _, _ = onnx_backend(exported, {}, 1, False)
    int8_infer = onnx_backend(int8, {}, 1, False)[0]
    for frame in frames:
        tensor, _ = preprocess(frame, size)
        fp32, quantized = fp32_infer(tensor)[0], int8_infer(tensor)[0]
        assert np.abs(fp32[:4] - quantized[:4]).mean() < 2.0  # pixels of a 64-px input
        # Scores are ~1e-4 here; one int8 scale shared with 0..64 px coordinates would round
        # every one of them to the same value.
        assert len(np.unique(quantized[4:])) > 10
        assert np.corrcoef(fp32[4:].ravel(), quantized[4:].ravel())[0, 1] > 0.9


def test_quantizing_without_calibration_images_is_refused(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(ValueError, match="needs calibration images"):
        quantize_int8(exported, [], out)
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_calibration_image_is_named_and_the_old_file_kept(
    exported: Path, shared_dataset: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "frame.jpg"
    bad.write_text("not an image")
    out = tmp_path / "model.int8.onnx"
    out.write_bytes(b"the last good int8 model")
    calibration = [*sorted((shared_dataset / "train" / "images").iterdir())[:2], bad]
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        quantize_int8(exported, calibration, out)
    assert out.read_bytes() == b"the last good int8 model"
    assert _leftovers(tmp_path) == []
