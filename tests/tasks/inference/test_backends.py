"""How a model is opened (:mod:`tasks.inference.backends`): which file, its metadata, a backend.

ONNX graphs are written here with onnx's helpers (a constant head behind a real input), so the
ONNX backend's size, names and int8 rules are checked in milliseconds; the PyTorch backend
opens the pretrained stand-in of ``../shared/weights``. Choosing a file only looks at names, so
those tests use placeholder files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.core.files import sha256_of
from tasks.core.records import LETTERS
from tasks.inference.backends import (
    class_names,
    classifier_beside,
    input_size,
    onnx_backend,
    pick_model_file,
    read_metadata,
    torch_backend,
)
from tasks.inference.crop_classifier import DEFAULT_PAD

FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt": "best.pt"}
ANCHORS = 5


def _onnx(
    path: Path,
    input_dims: list[int | str],
    output: np.ndarray,
    props: dict[str, str] | None = None,
) -> Path:
    """A graph that reads ``images`` (summed, times zero) and returns ``output``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
        numpy_helper.from_array(output.astype(np.float32), "constant"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "constant"], ["output0"]),
    ]
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, input_dims)
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    graph = helper.make_graph(nodes, "constant", [image], [out], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if props:
        helper.set_model_props(model, props)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _head(classes: int) -> np.ndarray:
    """A detector's raw head: (1, 4 + classes, anchors), each value distinct."""
    return np.arange((4 + classes) * ANCHORS, dtype=np.float32).reshape(1, 4 + classes, ANCHORS)


def _names_prop(names: tuple[str, ...]) -> str:
    return str(dict(enumerate(names)))  # how ultralytics embeds them


def _classifier(path: Path) -> Path:
    probs = np.full((1, len(LETTERS)), 1 / len(LETTERS), np.float32)
    return _onnx(path, [1, 3, 32, 32], probs, {"names": _names_prop(LETTERS)})


# --- choosing the file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "order"),
    [
        ("onnx", ["onnx", "int8", "pt"]),
        ("int8", ["int8", "onnx", "pt"]),
        ("pt", ["pt", "onnx", "int8"]),
    ],
)
def test_a_folder_gives_the_preferred_file_then_the_fallbacks(
    tmp_path: Path, prefer: Any, order: list[str]
) -> None:
    for name in FILES.values():
        (tmp_path / name).touch()
    (tmp_path / "metadata.json").write_text(json.dumps({"imgsz": 256}))
    for expected in order:
        path, fmt, meta = pick_model_file(tmp_path, prefer)
        assert (path, fmt, meta) == (tmp_path / FILES[expected], expected, {"imgsz": 256})
        path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        pick_model_file(tmp_path, prefer)


def test_an_mlflow_models_artifacts_come_before_files_beside_them(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").touch()
    (tmp_path / "metadata.json").write_text(json.dumps({"where": "top"}))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "best.pt").touch()
    (artifacts / "metadata.json").write_text(json.dumps({"where": "artifacts"}))
    path, fmt, meta = pick_model_file(tmp_path, "onnx")
    assert (path, fmt, meta) == (artifacts / "best.pt", "pt", {"where": "artifacts"})


@pytest.mark.parametrize(
    ("name", "fmt"), [("best.pt", "pt"), ("model.onnx", "onnx"), ("model.int8.onnx", "onnx")]
)
def test_a_file_is_used_as_it_is_with_the_metadata_beside_it(
    tmp_path: Path, name: str, fmt: str
) -> None:
    (tmp_path / name).touch()
    (tmp_path / "model.onnx").touch()
    (tmp_path / "metadata.json").write_text(json.dumps({"imgsz": 96}))
    assert pick_model_file(tmp_path / name, "int8") == (tmp_path / name, fmt, {"imgsz": 96})


def test_a_folder_without_a_model_names_the_folder_and_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{}")
    (tmp_path / "classifier.onnx").touch()
    with pytest.raises(FileNotFoundError) as caught:
        pick_model_file(tmp_path, "onnx")
    message = str(caught.value)
    assert str(tmp_path) in message
    assert all(name in message for name in FILES.values())


# --- metadata, names and sizes -----------------------------------------------------------


def test_metadata_is_empty_without_a_file_and_read_as_written(tmp_path: Path) -> None:
    assert read_metadata(tmp_path / "metadata.json") == {}
    written = {"names": ["hand"], "imgsz": [256, 320], "two_stage": True}
    (tmp_path / "metadata.json").write_text(json.dumps(written))
    assert read_metadata(tmp_path / "metadata.json") == written


@pytest.mark.parametrize("text", ['{"names": ["A", "B"', '["A", "B"]'], ids=["cut", "list"])
def test_a_damaged_metadata_file_is_named_in_the_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "model" / "metadata.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_metadata(path)


@pytest.mark.parametrize(
    ("meta", "nc", "expected"),
    [
        ({"names": {"10": "K", "2": "C", "0": "A"}}, 3, ("A", "C", "K")),  # by id, not text
        ({"names": {0: "hand"}}, 1, ("hand",)),
        ({"names": ["x", "y"]}, None, ("x", "y")),
        ({}, len(LETTERS), LETTERS),
        ({}, None, LETTERS),
    ],
    ids=["ids-as-text", "ids-as-int", "list", "letters-by-count", "letters-by-default"],
)
def test_class_names(meta: dict[str, Any], nc: int | None, expected: tuple[str, ...]) -> None:
    assert class_names(meta, nc) == expected


@pytest.mark.parametrize(
    ("meta", "nc"), [({"names": ["hand"]}, 26), ({}, 5)], ids=["too-few-names", "no-names"]
)
def test_names_that_do_not_fit_the_head_are_refused(meta: dict[str, Any], nc: int) -> None:
    with pytest.raises(ValueError, match=f"model has {nc} classes"):
        class_names(meta, nc)


def test_input_size_of_a_side_or_a_pair() -> None:
    assert input_size(320) == (320, 320)
    assert input_size([256, 320]) == (256, 320)
    assert input_size(("96", "128")) == (96, 128)


# --- the ONNX backend --------------------------------------------------------------------


def test_a_static_graph_dictates_its_size_and_embedded_names_are_read(tmp_path: Path) -> None:
    names = ("hand",)
    head = _head(len(names))
    path = _onnx(tmp_path / "model.onnx", [1, 3, 48, 80], head, {"names": _names_prop(names)})
    infer, size, got_names, fmt = onnx_backend(path, {"imgsz": 640}, 1, False)
    assert (size, got_names, fmt) == ((48, 80), names, "onnx")
    out = infer(np.ones((1, 3, 48, 80), np.float32))
    np.testing.assert_array_equal(out, head)


def test_metadata_json_names_win_over_embedded_ones(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "model.onnx", [1, 3, 32, 32], _head(2), {"names": "{0: 'a', 1: 'b'}"})
    assert onnx_backend(path, {"names": ["left", "right"]}, 1, False)[2] == ("left", "right")


@pytest.mark.parametrize(
    ("props", "meta", "size"),
    [
        ({"imgsz": "[96, 128]"}, {}, (96, 128)),
        ({"imgsz": "[96, 128]"}, {"imgsz": 160}, (160, 160)),
        ({}, {}, (640, 640)),
    ],
    ids=["embedded", "metadata-json-wins", "default"],
)
def test_a_dynamic_graph_runs_at_the_size_it_was_made_for(
    tmp_path: Path, props: dict[str, str], meta: dict[str, Any], size: tuple[int, int]
) -> None:
    path = _onnx(tmp_path / "model.onnx", [1, 3, "height", "width"], _head(26), props)
    infer, got, names, _ = onnx_backend(path, meta, 1, False)
    assert got == size and names == LETTERS
    assert infer(np.zeros((1, 3, *size), np.float32)).shape == (1, 30, ANCHORS)


def test_int8_is_told_by_the_embedded_flag_or_the_file_name(tmp_path: Path) -> None:
    flagged = _onnx(
        tmp_path / "a" / "model.onnx", [1, 3, 32, 32], _head(26), {"quantization": "int8"}
    )
    named = _onnx(tmp_path / "b" / "model.int8.onnx", [1, 3, 32, 32], _head(26))
    plain = _onnx(tmp_path / "c" / "model.onnx", [1, 3, 32, 32], _head(26))
    assert [onnx_backend(p, {}, 1, False)[3] for p in (flagged, named, plain)] == [
        "int8",
        "int8",
        "onnx",
    ]


def test_a_head_whose_width_does_not_fit_the_names_is_refused(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "model.onnx", [1, 3, 32, 32], _head(3), {"names": "{0: 'hand'}"})
    with pytest.raises(ValueError, match=r"model has 3 classes but its metadata names \['hand'\]"):
        onnx_backend(path, {"names": ["hand"]}, 1, False)


# --- the classifier beside a detector ----------------------------------------------------


def test_a_one_stage_model_has_no_classifier(tmp_path: Path) -> None:
    assert classifier_beside(tmp_path / "model.onnx", {}) is None


def test_the_classifier_beside_takes_its_crop_from_the_metadata(tmp_path: Path) -> None:
    _classifier(tmp_path / "classifier.onnx")
    default = classifier_beside(tmp_path / "model.onnx", {"two_stage": True})
    assert default is not None and (default.pad, default.mirror) == (DEFAULT_PAD, False)
    assert default.path == tmp_path / "classifier.onnx" and default.names == LETTERS
    meta = {"two_stage": True, "crop_pad": 0.35, "crop_mirror": True}
    chosen = classifier_beside(tmp_path / "model.onnx", meta)
    assert chosen is not None and (chosen.pad, chosen.mirror) == (0.35, True)


def test_a_two_stage_model_without_its_classifier_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(tmp_path))} has no classifier"):
        classifier_beside(tmp_path / "model.onnx", {"two_stage": True})


def test_ensemble_members_load_in_order_and_a_missing_one_is_named(tmp_path: Path) -> None:
    for name in ("classifier.onnx", "classifier-1.onnx"):
        _classifier(tmp_path / name)
    members = ["classifier.onnx", "classifier-1.onnx", "classifier-2.onnx"]
    with pytest.raises(FileNotFoundError, match=r"lacks classifier-2\.onnx$"):
        classifier_beside(tmp_path / "model.onnx", {"two_stage": True, "classifiers": members})
    both = classifier_beside(tmp_path / "model.onnx", {"classifiers": members[:2]})
    assert both is not None and [p.name for p in both.paths] == members[:2]


# --- the PyTorch backend -----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(shared_weights: Path) -> Path:
    return shared_weights / "yolov5n-coco-backbone.pt"


def test_torch_backend_takes_names_and_size_from_metadata_json(checkpoint: Path) -> None:
    names = [f"thing-{i}" for i in range(80)]
    meta = {"names": names, "imgsz": [96, 128], "sha256": {checkpoint.name: sha256_of(checkpoint)}}
    infer, size, got = torch_backend(checkpoint, meta, None)
    assert size == (96, 128) and got == tuple(names)
    out = infer(np.zeros((1, 3, 96, 128), np.float32))
    anchors = (96 // 8) * (128 // 8) + (96 // 16) * (128 // 16) + (96 // 32) * (128 // 32)
    assert out.shape == (1, 4 + 80, anchors) and out.dtype == np.float32


def test_torch_backend_refuses_names_that_do_not_fit_the_checkpoint(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="model has 80 classes"):
        torch_backend(checkpoint, {"names": list(LETTERS)}, None)
