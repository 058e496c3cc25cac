"""Tests for box-aware augmentation: safe transforms, valid boxes, determinism, atomic writes."""

from __future__ import annotations

import filecmp
import shutil
import threading
from functools import cache
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.core.records import LETTERS
from tasks.data.augment import (
    AugmentConfig,
    augment_dataset,
    augment_image,
    augmented_id,
    build_transform,
    preview_grid,
)
from tasks.data.yolo_format import format_labels, read_labels

FAST = AugmentConfig(copies=2, workers=1)
# The strongest settings the validators allow: the box guarantees must hold here too.
STRONG = AugmentConfig(
    max_rotate_deg=20,
    scale_min=0.5,
    scale_max=1.5,
    translate=0.25,
    brightness=0.5,
    contrast=0.5,
    hue_shift=30,
    saturation_shift=60,
    color_p=1,
    blur_noise_p=1,
    min_visibility=0.3,
    min_area=0,
)


@cache
def _transform(strong: bool) -> A.Compose:
    return build_transform(STRONG if strong else AugmentConfig())


def _files(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob(pattern))
        if p.is_file() and p.name != "data.yaml"
    }


def _leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".tmp-" in p.name]


def _walk(transform: A.BaseCompose) -> list[A.BasicTransform]:
    found = []
    for child in transform.transforms:
        found.extend(_walk(child) if isinstance(child, A.BaseCompose) else [child])
    return found


@pytest.fixture(scope="module")
def augmented(subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("augmented") / "ds"
    augment_dataset(subset_dataset, target, FAST, LETTERS)
    return target


def test_config_defaults_are_safe() -> None:
    config = AugmentConfig()
    assert (config.copies, config.seed, config.workers) == (3, 0, 2)
    assert config.augment_eval_splits is False
    assert config.max_rotate_deg <= 20
    with pytest.raises(ValidationError):
        config.copies = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_rotate_deg": 45}, "orientation"),
        ({"max_rotate_deg": 90}, "orientation"),
        ({"scale_min": 1.2, "scale_max": 0.9}, "larger than scale_max"),
        ({"min_visibility": 0.1}, "out of view"),
        ({"hflip_p": 1.5}, "less than or equal to 1"),
        ({"vflip_p": 0.5}, "Extra inputs"),
    ],
)
def test_config_rejects_unsafe_values(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AugmentConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("strong", [False, True])
def test_pipeline_never_flips_vertically_or_turns_90(strong: bool) -> None:
    transform = _transform(strong)
    forbidden = (A.VerticalFlip, A.Transpose, A.RandomRotate90, A.D4, A.SquareSymmetry)
    transforms = _walk(transform)
    assert not [t for t in transforms if isinstance(t, forbidden)]
    for t in transforms:
        for limits in (getattr(t, "rotate", None), getattr(t, "limit", None)):
            assert limits is None or max(map(abs, limits)) <= 20, t
    params = transform.processors["bboxes"].params
    assert params.format == "yolo" and params.clip is True
    assert params.min_visibility >= 0.3


boxes_st = st.tuples(
    st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)
).map(lambda t: (t[2] * (1 - t[0]) + t[0] / 2, t[3] * (1 - t[1]) + t[1] / 2, t[0], t[1]))


@settings(max_examples=60, deadline=None)
@given(
    box=boxes_st,
    class_id=st.integers(0, 25),
    size=st.tuples(st.integers(48, 160), st.integers(48, 160)),
    seed=st.integers(0, 2**32),
    strong=st.booleans(),
)
def test_boxes_stay_inside_and_keep_their_class(
    box: tuple[float, float, float, float],
    class_id: int,
    size: tuple[int, int],
    seed: int,
    strong: bool,
) -> None:
    image = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    result = augment_image(_transform(strong), image, np.array([box], np.float32), [class_id], seed)
    if result is None:  # every retry lost the box: the copy is dropped, nothing to check
        return
    out_image, out_boxes, out_ids = result
    assert out_image.shape == image.shape
    assert out_ids == [class_id]
    # Check what lands on disk, after formatting, not only the in-memory floats.
    ids, written = _parse_labels(format_labels(out_boxes, out_ids))
    assert ids == [class_id]
    cx, cy, w, h = written[0]
    assert w > 0 and h > 0
    assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
    assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6


def _parse_labels(text: str) -> tuple[list[int], np.ndarray]:
    rows = [line.split() for line in text.splitlines()]
    return [int(r[0]) for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


def test_retries_keep_almost_every_copy() -> None:
    rng = np.random.default_rng(7)
    image = np.zeros((200, 200, 3), np.uint8)
    dropped = 0
    for i in range(150):
        w, h = rng.uniform(0.25, 0.8, 2)
        box = [rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2), w, h]
        result = augment_image(_transform(False), image, np.array([box], np.float32), [0], i)
        dropped += result is None
    assert dropped <= 3


def test_augments_train_and_leaves_eval_splits_untouched(
    augmented: Path, subset_dataset: Path
) -> None:
    train = sorted((subset_dataset / "train" / "images").iterdir())
    images = sorted((augmented / "train" / "images").iterdir())
    assert len(images) == len(train) * 3
    assert {p.name for p in images if "__aug" not in p.name} == {p.name for p in train}
    for split in ("valid", "test"):
        for kind in ("images", "labels"):
            source, copy = subset_dataset / split / kind, augmented / split / kind
            names = sorted(p.name for p in source.iterdir())
            assert sorted(p.name for p in copy.iterdir()) == names
            _, mismatch, errors = filecmp.cmpfiles(source, copy, names, shallow=False)
            assert (mismatch, errors) == ([], [])
    for original in train:
        parent_ids, _ = read_labels(subset_dataset / "train" / "labels" / f"{original.stem}.txt")
        for k in range(FAST.copies):
            stem = f"{original.stem}__aug{k}"
            image = cv2.imread(str(augmented / "train" / "images" / f"{stem}.jpg"))
            assert image is not None
            ids, boxes = read_labels(augmented / "train" / "labels" / f"{stem}.txt")
            assert ids == parent_ids
            assert (boxes[:, 2:] > 0).all()
            assert (boxes[:, :2] - boxes[:, 2:] / 2 >= -1e-6).all()
            assert (boxes[:, :2] + boxes[:, 2:] / 2 <= 1 + 1e-6).all()


def test_data_yaml_is_absolute_and_loadable(augmented: Path) -> None:
    data = yaml.safe_load((augmented / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute()
    assert Path(data["path"]) == augmented.resolve()
    assert data["nc"] == 26 and data["names"] == list(LETTERS)
    for key in ("train", "val", "test"):
        assert (Path(data["path"]) / data[key]).is_dir()
    assert not _leftovers(augmented.parent)


def test_same_seed_same_bytes_in_any_worker_count(
    augmented: Path, subset_dataset: Path, tmp_path: Path
) -> None:
    counts = augment_dataset(
        subset_dataset, tmp_path / "parallel", FAST.model_copy(update={"workers": 2}), LETTERS
    )
    assert counts == {"train": 156, "valid": 26, "test": 24}
    assert _files(tmp_path / "parallel") == _files(augmented)


def test_another_seed_gives_other_images(
    augmented: Path, subset_dataset: Path, tmp_path: Path
) -> None:
    other = FAST.model_copy(update={"seed": 1})
    augment_dataset(subset_dataset, tmp_path / "other", other, LETTERS)
    ours, theirs = _files(augmented, "*__aug*.jpg"), _files(tmp_path / "other", "*__aug*.jpg")
    assert ours.keys() == theirs.keys()
    assert sum(ours[k] != theirs[k] for k in ours) > 0.9 * len(ours)


def test_existing_target_is_left_alone(subset_dataset: Path, tmp_path: Path) -> None:
    target = tmp_path / "ds"
    (target / "train" / "images").mkdir(parents=True)
    (target / "train" / "images" / "keep.jpg").write_bytes(b"x")
    counts = augment_dataset(subset_dataset, target, FAST, LETTERS)
    assert counts == {"train": 1}
    assert [p.name for p in target.rglob("*") if p.is_file()] == ["keep.jpg"]
    assert not _leftovers(tmp_path)


def test_failure_leaves_neither_target_nor_temp(subset_dataset: Path, tmp_path: Path) -> None:
    source = shutil.copytree(subset_dataset, tmp_path / "source")
    broken = sorted((source / "train" / "images").iterdir())[-1]
    broken.write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="cannot decode"):
        augment_dataset(source, out / "ds", FAST, LETTERS)
    assert list(out.iterdir()) == []


def test_target_only_ever_appears_complete(subset_dataset: Path, tmp_path: Path) -> None:
    target = tmp_path / "ds"
    seen_incomplete: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if target.exists():
                seen_incomplete.append(not (target / "data.yaml").is_file())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        augment_dataset(subset_dataset, target, AugmentConfig(copies=1, workers=1), LETTERS)
    finally:
        done.set()
        watcher.join()
    assert (target / "data.yaml").is_file()
    assert not any(seen_incomplete)


def test_tiny_images_background_and_edge_boxes(tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    labels = {
        "edge": "2 0.5 0.5 1.02 0.6\n",  # a hair outside the image, as exports sometimes are
        "corner": "5 0.2 0.2 0.4 0.4\n",
        "background": None,  # no label file: an image without a hand
    }
    for split in ("train", "valid"):
        (source / split / "images").mkdir(parents=True)
        (source / split / "labels").mkdir(parents=True)
        for stem, text in labels.items():
            image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
            cv2.imwrite(str(source / split / "images" / f"{stem}.jpg"), image)
            if text is not None:
                (source / split / "labels" / f"{stem}.txt").write_text(text)
    config = AugmentConfig(copies=2, workers=1, min_area=0)
    counts = augment_dataset(source, tmp_path / "out", config, LETTERS)
    assert counts == {"train": 9, "valid": 3}
    out_labels = tmp_path / "out" / "train" / "labels"
    assert not (out_labels / "background__aug0.txt").read_text()
    ids, boxes = read_labels(out_labels / "edge__aug1.txt")
    assert ids == [2] and (boxes[:, 2] <= 1).all()
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert "test" not in data and data["val"] == "valid/images"


def test_augmented_id() -> None:
    config = AugmentConfig()
    ident = augmented_id("parent", config)
    assert len(ident) == 16 and int(ident, 16) >= 0
    assert augmented_id("parent", config.model_copy(update={"workers": 7})) == ident
    assert augmented_id("parent", config.model_copy(update={"seed": 1})) != ident
    assert augmented_id("other", config) != ident


@pytest.mark.parametrize(("n", "shape"), [(16, (1024, 1024, 3)), (5, (512, 768, 3))])
def test_preview_grid(augmented: Path, tmp_path: Path, n: int, shape: tuple[int, ...]) -> None:
    path = preview_grid(augmented, LETTERS, tmp_path / "preview" / "grid.png", n=n)
    image = cv2.imread(str(path))
    assert image is not None and image.shape == shape
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
