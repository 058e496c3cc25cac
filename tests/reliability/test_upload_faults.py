"""Reliability: bad images from outside through the app's upload reader and batch prediction.

Both go through :func:`tasks.inference.image_bytes.decode_image_bytes`: one-line reasons that
name the file, and an image too large to decode is refused by its header alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tasks.inference.batch_predict import predict_images, read_image
from tasks.inference.image_bytes import ImageRejected, decode_image_bytes
from ui.app_settings import UiSettings
from ui.uploads import UploadedImage, UploadProblem, read_upload

Encoder = Callable[..., bytes]
APP = UiSettings.model_construct()  # the defaults, not this machine's environment
# What the upload page passes to read_upload.
LIMITS = {
    "max_bytes": APP.max_upload_bytes,
    "max_side": APP.max_image_side,
    "max_pixels": APP.max_image_pixels,
}
# What a "50 MP" phone camera really writes: 8160 × 6144 = 50.1 million pixels.
FIFTY_MP = (8160, 6144)


def _never_decode(*args: object, **kwargs: object) -> None:
    raise AssertionError("the image was decoded; it should have been refused by its header")


def test_non_image_upload_is_named_in_a_one_line_problem() -> None:
    problem = read_upload("letter.pdf", b"%PDF-1.7\n1 0 obj << >> endobj\n", **LIMITS)
    assert problem == UploadProblem(
        "letter.pdf", "letter.pdf is not an image (expected JPEG, PNG, WebP, BMP…)."
    )


def test_fifty_megapixel_upload_is_refused_by_its_header_before_decoding(
    huge_png: Callable[[int, int], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = huge_png(*FIFTY_MP)
    assert len(data) < 1000 and FIFTY_MP[0] * FIFTY_MP[1] > LIMITS["max_pixels"]
    monkeypatch.setattr(cv2, "imdecode", _never_decode)

    problem = read_upload("phone.png", data, **LIMITS)
    assert problem == UploadProblem(
        "phone.png", "phone.png has 8160×6144 pixels; images up to 50,000,000 are accepted."
    )


def test_upload_with_alpha_or_grayscale_decodes_to_three_channels(encoder: Encoder) -> None:
    for name, data in (
        ("alpha.png", encoder(".png", seed=1, mode="RGBA")),
        ("gray.jpg", encoder(".jpg", seed=2, mode="L")),
    ):
        upload = read_upload(name, data, **LIMITS)
        assert isinstance(upload, UploadedImage), upload
        assert upload.image.shape == (48, 64, 3) and upload.image.dtype == np.uint8


def test_corrupt_or_truncated_jpeg_upload_is_refused(encoder: Encoder) -> None:
    jpeg = encoder(".jpg", seed=3)
    corrupt = jpeg[:20] + bytes(380) + jpeg[400:]
    for name, data in (("corrupt.jpg", corrupt), ("cut.jpg", jpeg[: len(jpeg) * 2 // 3])):
        with pytest.raises(ImageRejected) as rejected:
            decode_image_bytes(data, name=name)
        message = str(rejected.value)
        assert message.startswith(f"{name} ") and "\n" not in message
        assert "not an image" in message or "could not be decoded" in message


def test_batch_predict_skips_empty_text_and_huge_files_and_predicts_the_rest(
    tmp_path: Path, encoder: Encoder, huge_png: Callable[[int, int], bytes]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.jpg").write_bytes(encoder(".jpg", seed=4))
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("not a photo")
    (photos / "huge.png").write_bytes(huge_png(*FIFTY_MP))
    seen: list[tuple[int, ...]] = []

    def recognize(image: np.ndarray, conf: float) -> SimpleNamespace:
        seen.append(image.shape)
        return SimpleNamespace(detections=[])

    recognizer = SimpleNamespace(source=SimpleNamespace(uri="stub://model"), recognize=recognize)
    images = [str(photos / name) for name in ("empty.jpg", "good.jpg", "huge.png", "notes.jpg")]
    report = predict_images(recognizer, images, tmp_path / "out")  # type: ignore[arg-type]

    assert report.n_images == 1 and seen == [(48, 64, 3)]
    reasons = {Path(skip.image).name: skip.reason for skip in report.skipped}
    assert reasons == {
        "empty.jpg": f"{photos / 'empty.jpg'} is empty.",
        "huge.png": f"{photos / 'huge.png'} has 8160×6144 pixels; images up to 50,000,000 are "
        "accepted.",
        "notes.jpg": f"{photos / 'notes.jpg'} is not an image (expected JPEG, PNG, WebP, BMP…).",
    }
    assert report.csv_path.is_file() and report.json_path.is_file()
    with pytest.raises(ValueError, match=r"empty\.jpg is empty\."):
        read_image(str(photos / "empty.jpg"))
