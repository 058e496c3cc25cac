"""The small typed records that flows pass between stages (see docs in README)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field

LETTERS: tuple[str, ...] = tuple(chr(ord("A") + i) for i in range(26))
SPLITS: tuple[str, ...] = ("train", "valid", "test")
IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


class Record(BaseModel):
    """Base for records: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetRef(Record):
    """A dataset written once under a content id and never changed afterwards.

    ``uri`` is where any machine that runs a later stage can read it: a local path
    (``file://``), a ``gs://`` prefix, or an MLflow artifact URI.
    """

    id: str = Field(description="Content id: hash of the files and, if augmented, the recipe.")
    uri: str = Field(description="Location of the YOLO dataset folder (holds data.yaml).")
    names: tuple[str, ...] = Field(default=LETTERS, description="Class names, index = class id.")
    counts: dict[str, int] = Field(default_factory=dict, description="Images per split.")
    parent_id: str | None = Field(default=None, description="Id of the source dataset, if derived.")

    @property
    def local_path(self) -> Path:
        """The dataset folder on this machine; raises if the URI is not local."""
        parsed = urlparse(self.uri)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path) if parsed.scheme else self.uri)
        raise ValueError(f"dataset {self.id} is at {self.uri}; materialize it first")

    @property
    def data_yaml(self) -> Path:
        """Path of the dataset's ``data.yaml`` on this machine."""
        return self.local_path / "data.yaml"


class Box(Record):
    """A box in pixel coordinates of the original image (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(Record):
    """One recognized letter in an image."""

    letter: str
    class_id: int
    confidence: float
    box: Box
    landmarks: tuple[tuple[float, float], ...] | None = Field(
        default=None, description="The hand's 21 landmarks (x, y) in image pixels, if read."
    )


class ModelVersion(Record):
    """A registered model version as the registry reports it."""

    name: str
    version: str
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    dataset_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
