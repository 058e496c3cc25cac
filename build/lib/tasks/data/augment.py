"""Box-aware offline augmentation of a YOLO dataset with Albumentations.

Only label-preserving transforms are used. ASL letters are told apart by orientation
(H vs U, G vs Q, K vs P), so there is no vertical flip and no 90° rotation, ever; a
horizontal flip is fine because left-handed signers mirror the alphabet.

An augmented copy whose box is cut too far off the image is retried with a new seed and,
after a few failures, dropped. It is not kept as a background image: the hand would still
be partly visible, and an empty label would teach the model that a visible letter is
nothing.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import random
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import albumentations as A
import cv2
import numpy as np

from tasks.core.files import build_dir
from tasks.core.records import SPLITS
from tasks.data.augment_config import AugmentConfig as AugmentConfig  # re-exported
from tasks.data.preview import preview_grid as preview_grid  # re-exported: part of this stage's API
from tasks.data.yolo_format import (
    count_images,
    data_yaml_spec,
    format_labels,
    list_images,
    read_labels,
    write_data_yaml,
)

log = logging.getLogger(__name__)

# Part of augmented_id: bump it whenever build_transform changes what a config produces.
RECIPE_VERSION = 1
MAX_ATTEMPTS = 5
# YOLO's letterbox gray: filled borders look like padding, not like a mirrored second hand.
FILL = 114


def build_transform(config: AugmentConfig) -> A.Compose:
    """Build the Albumentations pipeline for a config.

    Args:
        config: Augmentation strength and box filtering.

    Returns:
        A compose taking ``image`` (RGB), ``bboxes`` (YOLO) and ``class_labels``.
    """
    rotate = config.max_rotate_deg
    blur_noise = [
        A.GaussianBlur(sigma_limit=(0.3, 1.2), p=1.0),
        A.MotionBlur(blur_limit=(3, 7), p=1.0),
        A.GaussNoise(std_range=(0.02, 0.08), p=1.0),
        A.ImageCompression(quality_range=(40, 80), p=1.0),
    ]
    return A.Compose(
        [
            A.HorizontalFlip(p=config.hflip_p),
            A.Affine(
                scale=(config.scale_min, config.scale_max),
                keep_ratio=True,
                translate_percent=(-config.translate, config.translate),
                rotate=(-rotate, rotate),
                # The ellipse inscribed in the box fits a hand better than the box corners,
                # so rotated boxes stay tight.
                rotate_method="ellipse",
                border_mode=cv2.BORDER_CONSTANT,
                fill=FILL,
                p=1.0,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=config.brightness, contrast_limit=config.contrast, p=config.color_p
            ),
            A.HueSaturationValue(
                hue_shift_limit=config.hue_shift,
                sat_shift_limit=config.saturation_shift,
                val_shift_limit=0,
                p=config.color_p,
            ),
            A.OneOf(blur_noise, p=config.blur_noise_p),
        ],
        bbox_params=A.BboxParams(
            format="yolo",
            label_fields=["class_labels"],
            min_visibility=config.min_visibility,
            min_area=config.min_area,
            # Exports often hold boxes a hair outside [0, 1]: clip them instead of failing.
            clip=True,
            filter_invalid_bboxes=True,
            # Only flip and affine move boxes, so one filter at the end suffices; filtering
            # after every transform cost about a fifth of the time.
            check_each_transform=False,
        ),
    )


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts, stable across processes and Python runs."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def augment_image(
    transform: A.Compose, image: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int], seed: int
) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """Augment one image, retrying with new seeds until every box survives.

    Args:
        transform: From :func:`build_transform`.
        image: RGB image.
        boxes: YOLO boxes, shape (N, 4).
        class_ids: Class id of each box.
        seed: Base seed; attempt ``i`` uses a seed derived from it.

    Returns:
        The image, its boxes (inside [0, 1]) and class ids, or None if every attempt lost a box.
    """
    for attempt in range(MAX_ATTEMPTS):
        attempt_seed = derive_seed(seed, attempt)
        # One shared generator for the whole pipeline: Compose.set_random_seed would give each
        # transform the same seed, so their "apply?" draws would be identical and correlated.
        transform.set_random_state(np.random.default_rng(attempt_seed), random.Random(attempt_seed))
        out = transform(image=image, bboxes=boxes, class_labels=list(class_ids))
        if len(out["bboxes"]) == len(boxes):
            return out["image"], np.asarray(out["bboxes"]), [int(c) for c in out["class_labels"]]
    return None


def augmented_id(parent_id: str, config: AugmentConfig) -> str:
    """Content id of an augmented dataset: its parent and every setting that changes output.

    Args:
        parent_id: Id of the source dataset.
        config: The augmentation recipe; ``workers`` is left out as it changes nothing.

    Returns:
        16 hex characters.
    """
    recipe = config.model_dump_json(exclude={"workers"})
    text = f"{parent_id}\n{RECIPE_VERSION}\n{recipe}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Job(NamedTuple):
    image: Path
    label: Path
    out_images: Path
    out_labels: Path
    split: str


def _augment_job(job: _Job, transform: A.Compose, config: AugmentConfig) -> int:
    """Write the augmented copies of one image; returns how many were dropped."""
    bgr = cv2.imread(str(job.image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {job.image}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    class_ids, boxes = read_labels(job.label)
    skipped = 0
    for k in range(config.copies):
        result = augment_image(
            transform, rgb, boxes, class_ids, derive_seed(config.seed, job.split, job.image.name, k)
        )
        if result is None:
            skipped += 1
            continue
        image, out_boxes, out_ids = result
        stem = f"{job.image.stem}__aug{k}"
        params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ValueError(f"cannot encode augmented {job.image}")
        (job.out_images / f"{stem}.jpg").write_bytes(encoded.tobytes())
        (job.out_labels / f"{stem}.txt").write_text(format_labels(out_boxes, out_ids))
    return skipped


_WORKER: tuple[A.Compose, AugmentConfig] | None = None


def _init_worker(config: AugmentConfig) -> None:
    global _WORKER
    # Each worker owns one core; OpenCV's own threads would only fight the other worker.
    cv2.setNumThreads(1)
    _WORKER = (build_transform(config), config)


def _worker_job(job: _Job) -> int:
    assert _WORKER is not None, "worker not initialized"
    return _augment_job(job, *_WORKER)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed: copy instead
        shutil.copyfile(source, target)


def _write_data_yaml(
    root: Path, final_root: Path, splits: Sequence[str], names: Sequence[str]
) -> None:
    write_data_yaml(root / "data.yaml", data_yaml_spec(final_root, splits, names))


def _fill(
    source_root: Path, tmp: Path, final: Path, config: AugmentConfig, names: Sequence[str]
) -> None:
    splits = [s for s in SPLITS if (source_root / s / "images").is_dir()]
    if "train" not in splits:
        raise FileNotFoundError(f"{source_root} has no train/images folder")
    jobs: list[_Job] = []
    for split in splits:
        out_images, out_labels = tmp / split / "images", tmp / split / "labels"
        out_images.mkdir(parents=True)
        out_labels.mkdir(parents=True)
        for image in list_images(source_root / split / "images"):
            label = source_root / split / "labels" / f"{image.stem}.txt"
            _link_or_copy(image, out_images / image.name)
            if label.is_file():
                _link_or_copy(label, out_labels / label.name)
            # Fail before the slow part on a label that the class list cannot hold.
            if any(not 0 <= c < len(names) for c in read_labels(label)[0]):
                raise ValueError(f"{label}: class id out of range for {len(names)} names")
            if split == "train" or config.augment_eval_splits:
                jobs.append(_Job(image, label, out_images, out_labels, split))
    if config.copies == 0 or not jobs:
        results: list[int] = []
    elif config.workers == 1:
        transform = build_transform(config)
        results = [_augment_job(job, transform, config) for job in jobs]
    else:
        # spawn, not fork: callers (Prefect, pytest) run threads, and forking them can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            config.workers, mp_context=context, initializer=_init_worker, initargs=(config,)
        ) as pool:
            results = list(pool.map(_worker_job, jobs, chunksize=8))
    skipped = sum(results)
    if skipped:
        log.warning("dropped %d augmented copies whose box left the image", skipped)
    _write_data_yaml(tmp, final, splits, names)


def augment_dataset(
    source_root: Path, target_root: Path, config: AugmentConfig, names: Sequence[str]
) -> dict[str, int]:
    """Write originals plus augmented train copies as a new YOLO dataset, atomically.

    The dataset is built in a hidden folder next to ``target_root`` and renamed into
    place only when complete; on any error nothing is left behind. If ``target_root``
    exists already it is taken as done (datasets are written once) and left alone.

    Args:
        source_root: A YOLO dataset with ``{train,valid,test}/{images,labels}``.
        target_root: Folder to create.
        config: Augmentation recipe.
        names: Class names, index = class id.

    Returns:
        Number of images per split in the target.
    """
    target_root = Path(target_root).expanduser().resolve()
    if target_root.exists():
        log.info("augmented dataset %s exists already", target_root)
        return count_images(target_root)
    # Another run of the same recipe may publish first: same recipe, same bytes.
    with build_dir(target_root, complete="data.yaml") as tmp:
        _fill(Path(source_root), tmp, target_root, config, names)
    return count_images(target_root)
