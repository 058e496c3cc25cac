"""Recipe trials for CPU quality: each trains under the same time budget and is scored on valid.

    python benchmarks/quality_trials.py detector   --minutes 30 --imgsz 320
    python benchmarks/quality_trials.py classifier --minutes 30 --imgsz 128
    python benchmarks/quality_trials.py hand       --minutes 30 --imgsz 256
    python benchmarks/quality_trials.py compose    --hand RUN_DIR --classifier RUN_DIR

* ``detector``: the 26-class YOLO detector (today's engine); top-1 through the project's
  evaluation (the shared recognizer).
* ``classifier``: an ultralytics ``-cls`` model on padded hand crops cut from the labels: the
  letter accuracy a two-stage recognizer reaches with a perfect hand detector.
* ``hand``: a one-class hand detector (``single_cls``); mAP50 of "a hand is here".
* ``compose``: both trials exported and assembled into the two-stage model the train flow
  ships, scored by the project's evaluation (top-1, mAP from the recognizer's detections).

Every trial is an MLflow run in the ``fingerspell-trials`` experiment and a row appended to
``benchmarks/results/quality_trials.json``. Test is scored only with ``--final`` (the chosen
recipe, once). The optimizer is explicit: ultralytics' ``auto`` picks MuSGD whenever
``epochs × batches`` exceeds 10 000, which a time budget (epochs=1000) always does, and
MuSGD's per-step orthogonalisation costs more than the model on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, dataset_path, print_table, write_results

TRIALS_FILE = RESULTS / "quality_trials.json"
EXPERIMENT = "fingerspell-trials"


def _train_cls(crops: Path, args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, float]]:
    from ultralytics import YOLO

    from tasks.training import architectures
    from tasks.training.weights import resolve_weights, transfer

    model = YOLO(architectures.resolve(args.model or "yolo11n-cls.yaml"))
    start = resolve_weights(args.weights, _weights_dir(), out / "pretrained")
    transfer(model, start)
    optional = {"scale": args.scale, "weight_decay": args.weight_decay}  # unset: ultralytics'
    extra = {"dropout": args.dropout} | {k: v for k, v in optional.items() if v is not None}
    model.train(
        data=str(crops), imgsz=args.imgsz, epochs=1000, time=args.minutes / 60, batch=args.batch,
        optimizer=args.optimizer, lr0=args.lr0, workers=2, project=str(out), name="cls",
        exist_ok=True, plots=False, verbose=False, pretrained=start.pretrained, amp=False,
        seed=args.seed,
        **extra,
    )  # fmt: skip
    best = out / "cls" / "weights" / "best.pt"
    scores = {}
    for split in ("val", "test") if args.final else ("val",):
        metrics = YOLO(str(best)).val(
            data=str(crops), split=split, imgsz=args.imgsz, batch=32, plots=False, verbose=False
        )
        scores[f"{'valid' if split == 'val' else split}_top1"] = float(metrics.top1)
    return best, scores


def _train_det(dataset: Any, args: argparse.Namespace, out: Path, one_class: bool):
    from tasks.evaluation.evaluate import evaluate
    from tasks.training.detector import TrainConfig, train

    overrides: dict[str, Any] = {"lr0": args.lr0} | ({"single_cls": True} if one_class else {})
    config = TrainConfig(
        model=args.model or "yolo11n.yaml", weights=args.weights, imgsz=args.imgsz, epochs=1000,
        time_hours=args.minutes / 60,
        batch=args.batch, patience=0, workers=2, optimizer=args.optimizer, overrides=overrides,
    )  # fmt: skip
    result = train(dataset.data_yaml, dataset.id, config, out / "runs", weights_dir=_weights_dir())
    scores: dict[str, float] = {"epochs": float(result.epochs_completed)}
    if one_class:
        from ultralytics import YOLO

        for split in ("val", "test") if args.final else ("val",):
            metrics = YOLO(str(result.best)).val(
                data=str(dataset.data_yaml), split=split, imgsz=args.imgsz, single_cls=True,
                plots=False, verbose=False,
            )  # fmt: skip
            scores[f"{'valid' if split == 'val' else split}_hand_map50"] = float(metrics.box.map50)
        return result.best, scores
    for split in ("valid", "test") if args.final else ("valid",):
        report = evaluate(result.best, dataset.data_yaml, split, out / "eval", args.imgsz)
        scores |= {f"{split}_map50": report.map50, f"{split}_top1": report.top1_accuracy}
    return result.best, scores


def _weights_dir() -> Path | None:
    folder = os.environ.get("FINGERSPELL_WEIGHTS_DIR")
    return Path(folder) if folder else None


def _compose(dataset: Any, args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, float]]:
    """Both stages as the train flow ships them: exported, assembled, run by the recognizer."""
    from tasks.evaluation.evaluate import evaluate
    from tasks.inference.bundle import assemble
    from tasks.inference.export import export_onnx

    hand = next(Path(args.hand).rglob("weights/best.pt"))
    detector = export_onnx(hand, args.hand_imgsz, out / "hand-export")
    exports = []
    for i, folder in enumerate(args.classifier):
        letters = next(Path(folder).rglob("weights/best.pt"))
        side = _trained_imgsz(letters) or args.imgsz
        exports.append((letters, export_onnx(letters, side, out / f"cls-export-{i}")))
    model = assemble(
        detector, exports[0][1], exports[0][0], out / "model", args.pad, mirror=args.mirror,
        extra_classifiers=[onnx for _, onnx in exports[1:]],
    )  # fmt: skip
    scores: dict[str, float] = {}
    for split in ("valid", "test") if args.final else ("valid",):
        report = evaluate(model, dataset.data_yaml, split, out / "eval", args.hand_imgsz)
        scores |= {f"{split}_top1": report.top1_accuracy, f"{split}_map50": report.map50}
        scores[f"{split}_map50_95"] = report.map50_95
        for row in report.per_letter:
            if row.top1_accuracy is not None:
                scores[f"{split}_top1_{row.letter}"] = row.top1_accuracy
        print(report.to_markdown())
        scores[f"{split}_flip_agreement"] = _flip_agreement(model, dataset.local_path / split)
    return model, scores


def _trained_imgsz(weights: Path) -> int | None:
    """The input size a classifier trial trained at (its run's args.yaml)."""
    import yaml

    args = weights.parents[1] / "args.yaml"
    return int(yaml.safe_load(args.read_text())["imgsz"]) if args.is_file() else None


def _flip_agreement(model: Path, split_dir: Path) -> float:
    """Share of images whose best letter stays the same when the image is mirrored.

    A behavioural check: a left hand fingerspells the mirror image of a right hand.
    """
    import cv2

    from tasks.inference.recognizer import Recognizer

    recognizer = Recognizer.load(str(model))
    same = total = 0
    for path in sorted((split_dir / "images").iterdir()):
        image = cv2.imread(str(path))
        plain = recognizer.recognize(image, conf=0.001, max_det=1).top
        mirrored = recognizer.recognize(cv2.flip(image, 1), conf=0.001, max_det=1).top
        same += (plain and plain.letter) == (mirrored and mirrored.letter)
        total += 1
    return same / total


def main() -> None:
    """Run one trial, log it to MLflow, append it to the trials file and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["detector", "classifier", "hand", "compose"])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="default 32 (classifier), 16")
    parser.add_argument("--optimizer", default="AdamW")
    parser.add_argument("--lr0", type=float, default=0.002)
    parser.add_argument("--jitter", type=float, default=0.0, help="classifier: train-box jitter")
    parser.add_argument("--model", help="ultralytics model yaml (yolo11n.yaml, yolo11n-cls.yaml)")
    parser.add_argument(
        "--augment-copies", type=int, default=0,
        help="our Albumentations copies per train photo, added before crops are cut",
    )  # fmt: skip
    parser.add_argument(
        "--weights", help="pretrained weights (yolov5nu.pt; FINGERSPELL_WEIGHTS_DIR first)"
    )
    parser.add_argument("--seed", type=int, default=0, help="classifier: crops and training")
    parser.add_argument("--dropout", type=float, default=0.0, help="classifier: head dropout")
    parser.add_argument("--scale", type=float, help="classifier: random-crop scale (0.5)")
    parser.add_argument(
        "--weight-decay", type=float, help="classifier: weight decay (ultralytics' 0.0005)"
    )
    parser.add_argument("--copies", type=int, default=1, help="classifier: crops per train box")
    parser.add_argument("--hand", help="compose: the hand trial's folder (holds weights/best.pt)")
    parser.add_argument("--pad", type=float, default=0.2, help="compose: crop margin")
    parser.add_argument("--mirror", action="store_true", help="compose: average crop + mirror")
    parser.add_argument("--hand-imgsz", type=int, default=256)
    parser.add_argument(
        "--classifier", nargs="+",
        help="compose: the classifier trial's folder; several make an averaged ensemble",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="trial name (default: kind + settings)")
    parser.add_argument("--final", action="store_true", help="also score test (once, the pick)")
    args = parser.parse_args()
    args.imgsz = args.imgsz or {"classifier": 128, "compose": 128, "hand": 256}.get(args.kind, 320)
    args.batch = args.batch or (32 if args.kind == "classifier" else 16)

    home = Path(os.environ.get("FINGERSPELL_HOME") or tempfile.mkdtemp(prefix="fs-trials-"))
    os.environ["FINGERSPELL_HOME"] = str(home)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(home / "ultralytics"))
    from ultralytics.utils import SETTINGS

    from tasks.core.settings import get_settings
    from tasks.data.acquire import acquire
    from tasks.training.classifier_config import ClassifierConfig
    from tasks.training.crops import build_crop_dataset

    SETTINGS.update(mlflow=False, sync=False)
    dataset = acquire(str(dataset_path()), home / "datasets")
    data_root, data_id = dataset.local_path, dataset.id
    if args.augment_copies:
        from tasks.data.augment import AugmentConfig, augment_dataset, augmented_id

        augment = AugmentConfig(copies=args.augment_copies)
        data_id = augmented_id(dataset.id, augment)
        data_root = home / "datasets" / "augmented" / data_id
        augment_dataset(dataset.local_path, data_root, augment, dataset.names)
    name = args.name or f"{args.kind}-{args.imgsz}px-{args.minutes:g}min-{args.optimizer}"
    if args.jitter:
        name += f"-jitter{args.jitter:g}"
    if args.copies > 1:
        name += f"-copies{args.copies}"
    if args.mirror:
        name += "-mirror"
    if args.augment_copies:
        name += f"-aug{args.augment_copies}"
    if args.seed:
        name += f"-seed{args.seed}"
    if args.dropout:
        name += f"-dropout{args.dropout:g}"
    if args.scale is not None:
        name += f"-scale{args.scale:g}"
    if args.weight_decay is not None:
        name += f"-wd{args.weight_decay:g}"
    if args.model and args.kind in ("classifier", "hand", "detector"):
        name += f"-{Path(args.model).stem}"
    if args.weights:
        name += "-pretrained"
    out = home / "trials" / name
    started = time.time()
    if args.kind == "classifier":
        side = ClassifierConfig(imgsz=args.imgsz).crop_side  # as the train flow cuts them
        cut = f"{data_id}-jitter{args.jitter:g}-copies{args.copies}-{side}px-seed{args.seed}"
        crops = home / "crops" / cut
        if not crops.exists():
            build_crop_dataset(
                data_root, crops, size=side, jitter=args.jitter, train_copies=args.copies,
                seed=args.seed,
            )  # fmt: skip
        weights, scores = _train_cls(crops, args, out)
    elif args.kind in ("detector", "hand"):
        weights, scores = _train_det(dataset, args, out, one_class=args.kind == "hand")
    else:
        weights, scores = _compose(dataset, args, out)
    row = {
        "trial": name, "kind": args.kind, "imgsz": args.imgsz, "budget_min": args.minutes,
        "optimizer": args.optimizer, "lr0": args.lr0, "batch": args.batch, "jitter": args.jitter,
        "model": args.model, "copies": args.copies, "augment_copies": args.augment_copies,
        "dropout": args.dropout, "scale": args.scale, "seed": args.seed,
        "weight_decay": args.weight_decay, "pretrained": args.weights,
        "wall_s": round(time.time() - started), "weights": str(weights) if weights else None,
        **{k: round(v, 4) for k, v in scores.items()},
    }  # fmt: skip

    import mlflow

    settings = get_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=name):
        mlflow.log_params({k: v for k, v in row.items() if not isinstance(v, float)})
        mlflow.log_metrics({k: v for k, v in scores.items()})

    trials = json.loads(TRIALS_FILE.read_text())["trials"] if TRIALS_FILE.exists() else []
    trials.append(row)
    write_results("quality_trials", {"trials": trials})
    keys = ["trial", "wall_s", "valid_top1", "valid_map50", "valid_hand_map50", "test_top1"]
    print_table(keys, [[t.get(k, "") for k in keys] for t in trials])


if __name__ == "__main__":
    main()
