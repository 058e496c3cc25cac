"""Train the landmark letter classifier: hand landmarks of a split → a small MLP → ONNX.

Landmarks are read once per dataset (cached by dataset id, split, crop margin and the
landmark model's sha256) from each labelled box with MediaPipe's landmark network, the way
the recognizer reads a detector box. Boxes where it finds no hand are counted and kept in
the report, never dropped silently. Training augments in landmark space (rotation, stretch,
point noise, mirror), so the network sees more poses than the photos hold; it takes seconds
on a CPU. The export is a plain ONNX graph (Gemm/Relu), so serving needs no new runtime.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from tasks.core.files import build_dir, build_file
from tasks.data.yolo_format import label_path, list_images, read_boxes_xyxy, split_images
from tasks.inference.fusion import LANDMARK_ONNX
from tasks.inference.landmarks import FEATURES, POINTS, LandmarkReader, features
from tasks.training.landmark_config import LandmarkConfig

log = logging.getLogger(__name__)


class LandmarkSet(NamedTuple):
    """The labelled boxes of one split with their landmark features.

    ``features`` rows are NaN where the landmark network found no hand in the box.
    """

    images: tuple[str, ...]  # image path of each box
    boxes: np.ndarray  # (N, 4) xyxy pixels
    labels: np.ndarray  # (N,) class ids
    features: np.ndarray  # (N, 63) float32, NaN rows where no hand was found

    @property
    def found(self) -> np.ndarray:
        """Which boxes hold a hand by the landmark network."""
        return ~np.isnan(self.features).any(axis=1)


def extract(
    data_yaml: Path,
    split: str,
    reader: LandmarkReader,
    config: LandmarkConfig,
    cache: Path | None = None,
) -> LandmarkSet:
    """The landmark features of every labelled box of ``split`` (read from ``cache`` if there).

    Args:
        data_yaml: The dataset.
        split: ``train``, ``valid`` or ``test``.
        reader: MediaPipe's landmark network.
        config: The crop margin and least presence.
        cache: A ``.npz`` file to reuse or write (name it by dataset id and model).

    Returns:
        The split's boxes, labels and features.
    """
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            return LandmarkSet(
                tuple(str(p) for p in saved["images"]), saved["boxes"], saved["labels"],
                saved["features"],
            )  # fmt: skip
    folder, _ = split_images(data_yaml, split)
    images, boxes, labels, rows = [], [], [], []
    for path in list_images(folder):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read {path} as an image")
        found, classes = read_boxes_xyxy(label_path(path), image.shape[1], image.shape[0])
        for box, cls in zip(found, classes, strict=True):
            hand = reader.read(image, tuple(float(v) for v in box), config.crop_pad)
            images.append(str(path))
            boxes.append(box)
            labels.append(int(cls))
            if hand.presence >= config.presence:
                rows.append(features(hand.points, hand.right))
            else:
                rows.append(np.full(FEATURES, np.nan, np.float32))
    result = LandmarkSet(
        tuple(images),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(rows, np.float32).reshape(-1, FEATURES),
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with build_file(cache) as staged:  # same name: savez keeps a name ending in .npz
            np.savez(staged, images=np.asarray(images, str), boxes=result.boxes,
                     labels=result.labels, features=result.features)  # fmt: skip
    missing = int((~result.found).sum())
    log.info("%s: landmarks of %d boxes, no hand found in %d", split, len(labels), missing)
    return result


def augment(batch: np.ndarray, rng: np.random.Generator, config: LandmarkConfig) -> np.ndarray:
    """Randomly rotated, stretched, jittered and mirrored copies of feature vectors."""
    points = batch.reshape(-1, POINTS, 3).copy()
    n = len(points)
    angle = np.deg2rad(rng.uniform(-config.rotate_deg, config.rotate_deg, n))
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = points[..., 0].copy(), points[..., 1].copy()
    points[..., 0] = cos[:, None] * x - sin[:, None] * y
    points[..., 1] = sin[:, None] * x + cos[:, None] * y
    stretch = 1 + rng.uniform(-config.stretch, config.stretch, (n, 1, 2))
    points[..., :2] *= stretch
    points += rng.normal(0, config.jitter, points.shape)
    flip = rng.random(n) < config.mirror
    points[flip, :, 0] *= -1
    points -= points[:, :1]  # the wrist stays the origin
    reach = np.linalg.norm(points[..., :2], axis=2).max(axis=1)
    points /= np.maximum(reach, 1e-6)[:, None, None]
    return points.reshape(n, FEATURES).astype(np.float32)


class LandmarkResult(NamedTuple):
    """A trained landmark classifier: its ONNX file and its figures on train and valid."""

    onnx: Path
    metrics: dict[str, float]
    seconds: float


def train_landmarks(
    train: LandmarkSet,
    valid: LandmarkSet,
    names: tuple[str, ...],
    config: LandmarkConfig,
    out_dir: Path,
) -> LandmarkResult:
    """Train the MLP on ``train``'s hands and export it as ``out_dir/landmarks.onnx``.

    Args:
        train: Landmarks of the (augmented) train split.
        valid: Landmarks of valid, for the reported top-1 only (nothing is chosen on it here).
        names: Letter names, by class id.
        config: The recipe.
        out_dir: Created if missing; written beside and renamed when complete.

    Returns:
        The export and its metrics (``landmark_valid_top1`` counts boxes without a hand as
        wrong, as the fused recognizer cannot read them).
    """
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 256-wide layers: a second thread costs more than it saves
    try:
        return _train(train, valid, names, config, out_dir, started)
    finally:
        torch.set_num_threads(threads)


def _train(
    train: LandmarkSet,
    valid: LandmarkSet,
    names: tuple[str, ...],
    config: LandmarkConfig,
    out_dir: Path,
    started: float,
) -> LandmarkResult:
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    keep = train.found
    inputs, targets = train.features[keep], torch.as_tensor(train.labels[keep])
    net = _network(len(names), config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    batch = 256
    for _ in range(config.epochs):
        net.train()
        order = rng.permutation(len(inputs))
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            x = torch.from_numpy(augment(inputs[chosen], rng, config))
            optimizer.zero_grad()
            loss_fn(net(x), targets[chosen]).backward()
            optimizer.step()
        schedule.step()
    net.eval()
    with build_dir(out_dir, replace=True) as staged:
        write_onnx(net, names, staged / LANDMARK_ONNX)
    metrics = {
        "landmark_train_found": float(keep.mean()) if len(keep) else 0.0,
        "landmark_valid_found": float(valid.found.mean()) if len(valid.labels) else 0.0,
        "landmark_valid_top1": top1(net, valid),
    }
    seconds = time.perf_counter() - started
    log.info("landmark classifier trained in %.1f s: %s", seconds, metrics)
    return LandmarkResult(out_dir / LANDMARK_ONNX, metrics, seconds)


def top1(net: object, split: LandmarkSet) -> float:
    """Share of ``split``'s boxes the network reads right (no hand found: wrong)."""
    import torch

    if not len(split.labels):
        return 0.0
    found = split.found
    with torch.no_grad():
        guesses = net(torch.from_numpy(split.features[found])).argmax(1).numpy()  # type: ignore[operator]
    return float((guesses == split.labels[found]).sum() / len(split.labels))


def _network(classes: int, config: LandmarkConfig) -> object:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, config.hidden), torch.nn.ReLU(), torch.nn.Dropout(config.dropout),
        torch.nn.Linear(config.hidden, config.hidden), torch.nn.ReLU(),
        torch.nn.Dropout(config.dropout), torch.nn.Linear(config.hidden, classes),
    )  # fmt: skip


def write_onnx(net: object, names: tuple[str, ...], path: Path) -> Path:
    """Write the MLP as an ONNX graph of Gemm and Relu nodes, naming its letters.

    Built node by node from the weights: the graph is three matrix products, and this keeps
    the export independent of torch's ONNX exporters.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = [m for m in net if hasattr(m, "weight")]  # type: ignore[attr-defined]
    nodes, weights, current = [], [], "features"
    for i, layer in enumerate(layers):
        w = layer.weight.detach().numpy().astype(np.float32)
        b = layer.bias.detach().numpy().astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "logits" if i == len(layers) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [out], transB=1))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        current = out
    graph = helper.make_graph(
        nodes,
        "landmark_letters",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(names)])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": json.dumps(list(names))})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
