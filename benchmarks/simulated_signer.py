"""A simulated new signer for ``benchmarks/personalize.py``: the dataset's hands in new rooms.

There is no second signer's data here, so a "new user" is made from train photos only (valid
and test stay out): each hand is cut by its box, recoloured (white balance, saturation,
gamma: another camera and light), shrunk to the size a webcam at a desk shows, and pasted
into a generated room (a lit wall, a desk, shelves, noise, blur). Every source photo gives
exactly one burst of jittered frames, and bursts, not frames, are split, so no photo is on
both sides. It measures a new room and camera far more than new hands.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from tasks.core.records import LETTERS, Box
from tasks.data.captures import Burst, save_burst
from tasks.data.yolo_format import list_images, read_boxes_xyxy

FRAME = (480, 640)  # (height, width) of a webcam frame
_SOURCE = re.compile(r"^(?P<stem>[A-Z]\d+)_jpg\.rf\.")


def _room(rng: np.random.Generator) -> np.ndarray:
    height, width = FRAME
    wall = rng.uniform(60, 220, 3)
    light = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.2), width)[None, :, None]
    image = np.ones((height, width, 3)) * wall * light
    desk_top = int(height * rng.uniform(0.7, 0.85))
    image[desk_top:] = rng.uniform(30, 160, 3)
    for _ in range(rng.integers(2, 6)):  # shelves, frames, a door
        x, y = rng.integers(0, width - 60), rng.integers(0, desk_top - 40)
        w, h = rng.integers(40, 200), rng.integers(20, 160)
        image[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    image += rng.normal(0, rng.uniform(2, 10), image.shape)
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (5, 5), 0)


def _recolour(hand: np.ndarray, balance: np.ndarray, gamma: float, saturation: float) -> np.ndarray:
    hsv = cv2.cvtColor(hand, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    image = 255.0 * (image / 255.0) ** gamma * balance
    return np.clip(image, 0, 255).astype(np.uint8)


def _frame(
    hand: np.ndarray, rng: np.random.Generator, look: dict[str, object]
) -> tuple[np.ndarray, Box]:
    room = _room(np.random.default_rng(int(look["room_seed"])))  # one room per burst
    height, width = FRAME
    scale = float(look["hand_height"]) * height / hand.shape[0] * rng.uniform(0.95, 1.05)
    hand = cv2.resize(hand, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hand = _recolour(hand, look["balance"], float(look["gamma"]), float(look["saturation"]))
    h, w = hand.shape[:2]
    x = int(np.clip(float(look["x"]) * width + rng.normal(0, 6), 0, width - w))
    y = int(np.clip(float(look["y"]) * height + rng.normal(0, 6), 0, height - h))
    room[y : y + h, x : x + w] = hand
    return room, Box(x1=x, y1=y, x2=x + w, y2=y + h)


def sources_by_letter(dataset: Path) -> dict[str, list[Path]]:
    """One train image per source photo (the first of its augmented copies), by letter."""
    seen: set[str] = set()
    by_letter: dict[str, list[Path]] = defaultdict(list)
    for image in list_images(dataset / "train" / "images"):
        match = _SOURCE.match(image.name)
        stem = match.group("stem") if match else image.stem
        if stem not in seen:
            seen.add(stem)
            by_letter[stem[0]].append(image)
    return by_letter


def make_signer(
    dataset: Path, captures: Path, bursts_per_letter: int = 3, frames: int = 4, seed: int = 0
) -> list[Burst]:
    """Write the simulated signer's bursts into ``captures`` (a learner's folder).

    Args:
        dataset: The base YOLO dataset; only its train split is read.
        captures: The learner folder (see :func:`tasks.data.captures.learner_dir`).
        bursts_per_letter: Source photos (one burst each) per letter; with 3, one per letter
            is held out (the captures' own split rule).
        frames: Frames per burst.
        seed: Everything random follows it.

    Returns:
        The bursts written.
    """
    rng = np.random.default_rng(seed)
    written = []
    sources = sources_by_letter(dataset)
    for letter in LETTERS:
        photos = list(sources.get(letter, ()))
        rng.shuffle(photos)
        for photo in photos[:bursts_per_letter]:
            image = cv2.imread(str(photo))
            height, width = image.shape[:2]
            label = dataset / "train" / "labels" / f"{photo.stem}.txt"
            boxes, _ = read_boxes_xyxy(label, width, height)
            x1, y1, x2, y2 = (int(v) for v in boxes[0])
            hand = image[max(y1, 0) : y2, max(x1, 0) : x2]
            look = {
                "room_seed": int(rng.integers(1 << 31)),
                "hand_height": rng.uniform(0.25, 0.4),  # a hand at a desk, not a close-up
                "balance": rng.uniform(0.75, 1.25, 3),
                "gamma": rng.uniform(0.7, 1.4),
                "saturation": rng.uniform(0.6, 1.4),
                "x": rng.uniform(0.2, 0.6),
                "y": rng.uniform(0.15, 0.45),
            }
            shots = [_frame(hand, rng, look) for _ in range(frames)]
            written.append(
                save_burst(captures, letter, [s[0] for s in shots], [s[1] for s in shots])
            )
    return written
