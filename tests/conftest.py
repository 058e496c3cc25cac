"""Shared fixtures: quiet offline settings and small subsets of the shared dataset.

The real dataset comes from ``FINGERSPELL_DATASET`` (``.ci/run`` and the Makefile point it at
``../shared/datasets/asl-letters``); its images are never committed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

from tasks.core.records import LETTERS
from tasks.core.settings import QUIET_ENV

# Before any test module imports ultralytics/albumentations/mlflow: offline and quiet.
os.environ.update(QUIET_ENV)
# Prefect's database and result cache live in a fresh folder per test session.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fingerspell-prefect-")
# One settings folder per user, reused across sessions, never the user's own ~/.config.
os.environ.setdefault(
    "YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), f"fingerspell-yolo-{os.getuid()}")
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "asl-letters"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "weights"
PRETRAINED_FILE = "yolov5n-coco-backbone.pt"
if (DEFAULT_WEIGHTS / PRETRAINED_FILE).is_file():  # as the Makefile and .ci/run do
    os.environ.setdefault("FINGERSPELL_WEIGHTS_DIR", str(DEFAULT_WEIGHTS))


def _shared_dataset_path() -> Path | None:
    candidate = Path(os.environ.get("FINGERSPELL_DATASET", DEFAULT_DATASET))
    return candidate if (candidate / "data.yaml").is_file() else None


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    """The full shared YOLO dataset (read-only)."""
    path = _shared_dataset_path()
    if path is None:
        message = "shared dataset not found: set FINGERSPELL_DATASET to the asl-letters export"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """The folder of pretrained weights that stand in for downloads (``../shared/weights``)."""
    folder = Path(os.environ.get("FINGERSPELL_WEIGHTS_DIR", DEFAULT_WEIGHTS))
    if not (folder / PRETRAINED_FILE).is_file():
        message = f"no {PRETRAINED_FILE} in {folder}: set FINGERSPELL_WEIGHTS_DIR"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def copy_subset(source: Path, target: Path, per_class: dict[str, int]) -> Path:
    """Copy the first N images of each class per split (with labels) into a new YOLO folder.

    Args:
        source: A YOLO export with train/valid/test folders and data.yaml.
        target: Folder to create.
        per_class: Images per class to keep, by split name.

    Returns:
        ``target``.
    """
    for split, keep in per_class.items():
        taken: dict[str, int] = defaultdict(int)
        for image in sorted((source / split / "images").iterdir()):
            letter = image.name[0]
            if taken[letter] >= keep:
                continue
            taken[letter] += 1
            label = source / split / "labels" / f"{image.stem}.txt"
            for src, kind in ((image, "images"), (label, "labels")):
                dst = target / split / kind / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    shutil.copyfile(source / "data.yaml", target / "data.yaml")
    return target


@pytest.fixture(scope="session")
def subset_dataset(shared_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real subset: 2 train, 1 valid, 1 test image per letter (test lacks E and L)."""
    target = tmp_path_factory.mktemp("subset") / "asl-subset"
    return copy_subset(shared_dataset, target, {"train": 2, "valid": 1, "test": 1})


@pytest.fixture
def subset_yaml(subset_dataset: Path, tmp_path: Path) -> Path:
    """A ``data.yaml`` of the subset whose ``path`` is absolute, as training reads it."""
    text = (subset_dataset / "data.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("path:")]
    path = tmp_path / "data.yaml"
    path.write_text(f"path: {subset_dataset}\n" + "\n".join(lines) + "\n")
    return path


def _track_batchnorm_quickly(trainer: object) -> None:
    """Let BatchNorm running statistics follow the batches within a few steps.

    A smoke run makes ~20 optimizer steps; at the default momentum (0.03) the running
    statistics stay near their initial values, and the eval-mode model then outputs the same
    boxes and scores for every image, which would make comparisons between backends trivial.
    """
    import torch

    for module in trainer.model.modules():  # type: ignore[attr-defined]
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.5


def _without_ultralytics_mlflow(trainer: object) -> None:
    """Drop ultralytics' MLflow callbacks from this trainer only.

    They skip logging under pytest, except in tests whose id contains "test_mlflow", where they
    would log the smoke run to the default store (./mlflow.db) and call ``mlflow.autolog()``.
    """
    hooks = trainer.callbacks  # type: ignore[attr-defined]
    for event, functions in hooks.items():
        hooks[event] = [f for f in functions if "mlflow" not in f.__module__]


@pytest.fixture(scope="session")
def smoke_weights(subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLO11n trained from scratch for 3 epochs at 320 px on the subset (about a minute).

    Its confidences are low (around 0.001-0.02) but depend on the image. Returns best.pt.
    """
    import yaml
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("smoke")
    # The subset's data.yaml says `path: .`, which ultralytics resolves against the cwd.
    config = yaml.safe_load((subset_dataset / "data.yaml").read_text())
    config["path"] = str(subset_dataset)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump(config))

    model = YOLO("yolo11n.yaml")
    model.add_callback("on_pretrain_routine_start", _without_ultralytics_mlflow)
    model.add_callback("on_train_start", _track_batchnorm_quickly)
    with pytest.MonkeyPatch.context() as patch:
        # Ultralytics' MLflow callback logs wherever these point; a smoke run logs nowhere.
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        model.train(
            data=str(data),
            epochs=3,
            imgsz=320,
            batch=8,
            workers=0,
            device="cpu",
            project=str(root),
            name="train",
            exist_ok=True,
            plots=False,
            val=False,
            warmup_epochs=0,
            seed=0,
            verbose=False,
        )
    weights = root / "train" / "weights"
    best = weights / "best.pt"
    return best if best.is_file() else weights / "last.pt"


@pytest.fixture(scope="session")
def smoke_onnx(smoke_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke weights exported to a static 320 px ONNX file (``model.onnx``)."""
    from tasks.inference.export import export_onnx

    return export_onnx(smoke_weights, 320, tmp_path_factory.mktemp("smoke-onnx"))


@pytest.fixture(scope="session")
def two_stage_model(subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-stage model folder trained for an epoch each on the subset (under a minute).

    Built with the project's own tasks: the one-class detector through
    ``tasks.training.detector``, the classifier through ``tasks.training.classifier``, both
    exported and put together by ``tasks.inference.bundle.assemble``. Its letters are near
    chance; the tests check plumbing.
    """
    from tasks.inference.bundle import assemble
    from tasks.inference.export import export_onnx
    from tasks.training.classifier import train_classifier
    from tasks.training.classifier_config import ClassifierConfig
    from tasks.training.detector import TrainConfig, train

    root = tmp_path_factory.mktemp("two-stage")
    text = (subset_dataset / "data.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("path:")]
    data = root / "data.yaml"
    data.write_text(f"path: {subset_dataset}\n" + "\n".join(lines) + "\n")
    stage2 = ClassifierConfig(model="yolo11n-cls.yaml", imgsz=64, epochs=2, batch=16, workers=0)
    config = TrainConfig(
        model="yolo11n.yaml", imgsz=160, epochs=2, batch=16, patience=0, workers=0,
        optimizer="AdamW", overrides={"val": False, "warmup_epochs": 0}, classifier=stage2,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        hands = train(data, "subset", config, root / "runs")
        letters = train_classifier(subset_dataset, "subset", stage2, root / "runs")
    detector = export_onnx(hands.best, 160, root / "hand-export")
    classifier = export_onnx(letters.best, 64, root / "cls-export")
    return assemble(detector, classifier, letters.best, root / "model", pad=stage2.pad)


@pytest.fixture(scope="session")
def landmarker_task(shared_weights: Path) -> Path:
    """MediaPipe's ``hand_landmarker.task`` from the shared weights (stands in for a download)."""
    task = shared_weights / "hand_landmarker.task"
    if not task.is_file():
        message = f"no hand_landmarker.task in {shared_weights}: set FINGERSPELL_WEIGHTS_DIR"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return task


@pytest.fixture(scope="session")
def fused_model(
    two_stage_model: Path,
    subset_dataset: Path,
    landmarker_task: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """``two_stage_model`` with a landmark classifier and a fusion rule: a fused model folder.

    The landmark stage runs as the training flow runs it (landmarks of the subset, a short
    training, the rule chosen on the subset's valid), in seconds.
    """
    from tasks.inference.bundle import assemble, crop_settings
    from tasks.training.landmark_config import LandmarkConfig
    from tasks.training.landmark_stage import train_landmark_stage

    root = tmp_path_factory.mktemp("fused")
    pad, mirror = crop_settings(two_stage_model)
    stage = train_landmark_stage(
        subset_dataset / "data.yaml", "subset", LETTERS, two_stage_model / "classifier.onnx",
        pad, mirror, LandmarkConfig(epochs=30), root / "landmarks", root / "runs",
        landmarker_task.parent,
    )  # fmt: skip
    assert stage is not None
    return assemble(
        two_stage_model / "model.onnx", two_stage_model / "classifier.onnx", None,
        root / "model", pad=pad, mirror=mirror,
        landmarks=(stage.classifier, stage.task, stage.rule),
    )  # fmt: skip


# Session fixtures that train a model: a test that uses one (directly or through another
# fixture) is slow by the marker's own definition, so `make test-fast` leaves it out.
TRAINED_FIXTURES = frozenset(
    {"smoke_weights", "smoke_onnx", "two_stage_model", "fused_model", "trained_weights"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop Prefect's temporary API servers while pytest's output is still open.

    Prefect stops them at interpreter exit and logs that through a handler bound to the
    captured stdout, which pytest has closed by then ("I/O operation on closed file").
    """
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(getattr(SubprocessASGIServer, "_instances", {}).values()):
        server.stop()
