"""Hand crops: the square, padded region around a labelled or detected hand.

A letter classifier sees only the hand, so it needs far fewer samples than a 26-class
detector that must also learn where hands are. The same crop geometry must be used when
the crop dataset is built and when a detected hand is classified, hence one function.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.core.files import build_dir
from tasks.core.records import SPLITS
from tasks.data.yolo_format import label_path, list_images, read_label_lines, read_names
from tasks.inference.crop_classifier import DEFAULT_PAD, square_crop

# ultralytics' classification loader expects train/val/test folders.
_CLS_SPLITS = {"train": "train", "valid": "val", "test": "test"}


def jitter_box(
    box_xyxy: tuple[float, ...], amount: float, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Shift and scale a box at random by up to ``amount`` of its size.

    A detector's boxes sit a little off the labelled ones; a classifier trained only on
    labelled crops loses accuracy on detected ones, so train crops are jittered.
    """
    x0, y0, x1, y1 = box_xyxy
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + rng.uniform(-amount, amount) * w, (y0 + y1) / 2
    cy += rng.uniform(-amount, amount) * h
    scale = rng.uniform(1 - amount, 1 + amount)
    return cx - w * scale / 2, cy - h * scale / 2, cx + w * scale / 2, cy + h * scale / 2


def build_crop_dataset(
    dataset_root: Path,
    target: Path,
    pad: float = DEFAULT_PAD,
    size: int = 160,
    jitter: float = 0.0,
    train_copies: int = 1,
    seed: int = 0,
) -> Path:
    """Write an image-folder classification dataset of hand crops from a YOLO dataset.

    Args:
        dataset_root: A validated YOLO dataset (``data.yaml``, ``<split>/images|labels``).
        target: Folder to create (``train|val|test/<letter>/*.jpg``); must not exist.
        pad: Margin around each box (see :func:`square_crop`).
        size: Side of the stored crops; training resizes again to its own size.
        jitter: Train crops only: random shift/scale of each box (see :func:`jitter_box`).
        train_copies: Train crops per box (each jittered anew when ``jitter`` > 0).
        seed: Seed of the jitter, so a crop set is reproducible.

    Returns:
        ``target``, written in a temp folder beside it and renamed when complete.
    """
    if target.exists():
        raise FileExistsError(f"{target} exists; crops are written once per dataset")
    names = read_names(dataset_root / "data.yaml")
    rng = np.random.default_rng(seed)
    with build_dir(target) as staged:
        for split in SPLITS:
            images = dataset_root / split / "images"
            for name in names:
                (staged / _CLS_SPLITS[split] / name).mkdir(parents=True, exist_ok=True)
            for image_path in list_images(images):
                label = label_path(image_path)
                image = cv2.imread(str(image_path))
                if image is None or not label.is_file():
                    continue  # validation reported it; a crop set only holds usable samples
                height, width = image.shape[:2]
                copies, amount = (train_copies, jitter) if split == "train" else (1, 0.0)
                for i, line in enumerate(read_label_lines(label)):
                    cls, box = line.cls, line.xyxy(width, height)
                    for copy in range(copies):
                        moved = jitter_box(box, amount, rng) if amount > 0 else box
                        crop = square_crop(image, moved, pad, size)  # type: ignore[arg-type]
                        name = f"{image_path.stem}_{i}_{copy}.jpg"
                        cv2.imwrite(str(staged / _CLS_SPLITS[split] / names[cls] / name), crop)
    return target
