"""The landmark classifier's training: augmentation, the ONNX graph, learning, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.records import LETTERS
from tasks.inference.fusion import LandmarkClassifier
from tasks.inference.landmarks import FEATURES, LandmarkReader, features
from tasks.training.landmark_classifier import (
    LandmarkSet,
    augment,
    extract,
    train_landmarks,
    write_onnx,
)
from tasks.training.landmark_config import LandmarkConfig


def _synthetic(per_class: int, classes: int, seed: int) -> LandmarkSet:
    """Hands whose pose is their letter: one template per class, jittered."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).uniform(-1, 1, (classes, 21, 3))
    rows, labels = [], []
    for cls in range(classes):
        for _ in range(per_class):
            points = templates[cls] + rng.normal(0, 0.05, (21, 3))
            rows.append(features(points * rng.uniform(20, 80), 0.9))
            labels.append(cls)
    n = len(labels)
    return LandmarkSet(
        ("x.jpg",) * n, np.zeros((n, 4), np.float32), np.asarray(labels), np.asarray(rows)
    )


def test_augmented_hands_stay_normalised_and_change() -> None:
    batch = _synthetic(4, 3, 0).features
    out = augment(batch, np.random.default_rng(1), LandmarkConfig(mirror=0.5))
    points = out.reshape(-1, 21, 3)
    assert out.shape == batch.shape and out.dtype == np.float32
    assert np.allclose(points[:, 0], 0, atol=1e-6), "the wrist stays the origin"
    assert np.allclose(np.linalg.norm(points[..., :2], axis=2).max(axis=1), 1, atol=1e-5)
    assert not np.allclose(out, batch)
    still = LandmarkConfig(rotate_deg=0, stretch=0, jitter=0, mirror=0)
    assert np.allclose(augment(batch, np.random.default_rng(1), still), batch, atol=1e-5)


def test_the_onnx_graph_computes_what_the_network_does(tmp_path: Path) -> None:
    import torch

    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, len(LETTERS)),
    ).eval()  # fmt: skip
    classifier = LandmarkClassifier(write_onnx(net, LETTERS, tmp_path / "landmarks.onnx"))
    x = np.random.default_rng(0).normal(size=(5, FEATURES)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert classifier.names == LETTERS
    assert np.allclose(classifier.probabilities(x), expected, atol=1e-5)


def test_training_learns_poses_and_counts_boxes_without_a_hand(tmp_path: Path) -> None:
    train, valid = _synthetic(30, 4, 0), _synthetic(10, 4, 1)
    valid.features[0] = np.nan  # the landmark network found no hand in this box
    config = LandmarkConfig(epochs=40, hidden=32)
    result = train_landmarks(train, valid, LETTERS[:4], config, tmp_path / "out")
    assert result.onnx == tmp_path / "out" / "landmarks.onnx" and result.onnx.is_file()
    assert result.metrics["landmark_valid_found"] == pytest.approx(39 / 40)
    # The box without a hand counts as wrong: at most 39 of 40 can be right.
    assert 0.9 <= result.metrics["landmark_valid_top1"] <= 39 / 40


def test_extract_reads_each_box_once_and_reuses_its_cache(
    subset_dataset: Path, landmarker_task: Path, tmp_path: Path
) -> None:
    reader, config = LandmarkReader(landmarker_task), LandmarkConfig()
    cache = tmp_path / "valid.npz"
    first = extract(subset_dataset / "data.yaml", "valid", reader, config, cache)
    assert cache.is_file() and len(first.labels) == len(first.images) > 0
    assert first.found.mean() > 0.8, "the dataset's hand boxes hold hands"

    class Refuses:
        def read(self, *args: object) -> None:
            raise AssertionError("the cache was not used")

    again = extract(subset_dataset / "data.yaml", "valid", Refuses(), config, cache)  # type: ignore[arg-type]
    assert again.images == first.images
    assert np.array_equal(again.features, first.features, equal_nan=True)
