"""Upload checks: size limit, non-images, pixel bombs, downscaling; messages name the file."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ui.uploads import UploadedImage, UploadProblem, read_upload

MB = 1024 * 1024


def read(name: str, data: bytes, max_bytes: int = 10 * MB, max_side: int = 1920):
    return read_upload(name, data, max_bytes, max_side, max_pixels=50_000_000)


def png(width: int, height: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    return cv2.imencode(".png", image)[1].tobytes()


def test_a_dataset_image_decodes_unchanged(shared_dataset: Path):
    path = sorted((shared_dataset / "test" / "images").iterdir())[0]
    upload = read(path.name, path.read_bytes())
    assert isinstance(upload, UploadedImage) and not upload.downscaled
    assert np.array_equal(upload.image, cv2.imread(str(path)))


def test_non_image_and_empty_files_are_named_in_the_message():
    problem = read("notes.txt", b"hello, not a picture")
    assert isinstance(problem, UploadProblem)
    assert problem.message.startswith("notes.txt is not an image")
    assert read("empty.jpg", b"").message == "empty.jpg is empty."


def test_a_truncated_image_is_a_problem_not_an_exception():
    data = png(64, 64)
    problem = read("cut.png", data[: len(data) // 2])
    assert isinstance(problem, UploadProblem) and problem.name == "cut.png"


def test_files_over_the_limit_are_refused_with_both_sizes():
    problem = read("big.png", png(32, 32) + b"\0" * (2 * MB), max_bytes=1 * MB)
    assert isinstance(problem, UploadProblem)
    assert problem.message == "big.png is 2.0 MB; the limit is 1 MB."


def test_huge_images_are_downscaled_keeping_the_aspect_ratio():
    upload = read("wide.png", png(4000, 1000), max_side=1000)
    assert isinstance(upload, UploadedImage) and upload.downscaled
    assert upload.image.shape == (250, 1000, 3) and upload.original_size == (4000, 1000)


def bilevel_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")  # a few KB for millions of pixels
    return buffer.getvalue()


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding():
    problem = read("many.png", bilevel_png(9000, 9000))
    assert isinstance(problem, UploadProblem)
    assert problem.message == "many.png has 9000×9000 pixels; images up to 50,000,000 are accepted."
    bomb = read("bomb.png", bilevel_png(20000, 20000))  # beyond Pillow's own bomb limit
    assert bomb.message == "bomb.png has too many pixels; images up to 50,000,000 are accepted."
